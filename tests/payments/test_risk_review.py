"""Risk rules (each firing and not firing at its boundary), the idempotent scan, and the
review queue: scoped by region, decided by administrators with a note and a confirmation
step, audited; auditors read it, clerks do not see it."""

import pytest
from django.conf import settings
from django.urls import reverse

from insurance import catalogue
from payments.models import RiskFlag, RiskFlagState, RiskRule
from payments.risk import services as risk
from payments.settlements import services as settlements
from portal.audit import verify_chain
from portal.errors import DomainError
from portal.models import AuditEvent, Role
from testkit.screens import sign_in
from testkit.settlements import SYSTEM, bound, lines, linked, make_wallet, publish_policies, token

pytestmark = pytest.mark.django_db


@pytest.fixture
def wallet(world):
    return make_wallet()


def settle(partner, linkage, bill=(("REG", 1, 2000),), *, binding=None, facility="H310-1"):
    return settlements.settlement_create(
        actor=SYSTEM, partner=partner, token=token(linkage, binding), facility_code=facility, lines=lines(*bill)
    )


def day_of(settlement):
    return settlement.created_at.astimezone(risk.SHANGHAI).date()


def facilities(regions, count: int) -> list[str]:
    codes = [f"F310-{n}" for n in range(count)]
    for code in codes:
        catalogue.facility_create(
            actor=SYSTEM, code=code, name_zh=code, name_en=code, kind="clinic", region=regions["310000"]
        )
    return codes


def flags(rule: str) -> list[RiskFlag]:
    return list(RiskFlag.objects.filter(rule=rule))


# --- One e-card at more than three facilities in a day ------------------------------------------


def test_a_card_settled_at_three_facilities_in_a_day_is_not_flagged(wallet, regions):
    linkage = linked(wallet, regions)
    made = [settle(wallet, linkage, facility=code) for code in facilities(regions, 3)]
    made.append(settle(wallet, linkage, facility="F310-0"))  # a second bill at the same facility
    assert risk.risk_scan_day(day=day_of(made[0])) == []
    assert flags(RiskRule.FACILITIES_PER_DAY) == []


def test_a_card_settled_at_four_facilities_in_a_day_is_flagged_with_its_evidence(wallet, regions):
    linkage = linked(wallet, regions)
    made = [settle(wallet, linkage, facility=code) for code in facilities(regions, 4)]
    risk.risk_scan_day(day=day_of(made[0]))
    [flag] = flags(RiskRule.FACILITIES_PER_DAY)
    assert flag.subject_type == "certificate"
    assert flag.subject_id == linkage.certificate.number
    assert flag.region_id == "310000"
    assert flag.citizen_id == linkage.citizen_id
    assert flag.evidence["facility_count"] == 4
    assert flag.evidence["facilities"] == ["F310-0", "F310-1", "F310-2", "F310-3"]
    assert sorted(flag.evidence["settlements"]) == sorted(s.public_id for s in made)


def test_cancelled_settlements_do_not_count_towards_the_facility_rule(wallet, regions):
    linkage = linked(wallet, regions)
    made = [settle(wallet, linkage, facility=code) for code in facilities(regions, 4)]
    settlements.settlement_cancel(actor=SYSTEM, settlement=made[-1])
    assert risk.risk_scan_day(day=day_of(made[0])) == []


def test_the_facility_limit_is_configurable(wallet, regions, settings):
    settings.ECARD_RISK_RULES = {"max_facilities_per_day": 1}
    linkage = linked(wallet, regions)
    made = [settle(wallet, linkage, facility=code) for code in facilities(regions, 2)]
    risk.risk_scan_day(day=day_of(made[0]))
    assert len(flags(RiskRule.FACILITIES_PER_DAY)) == 1


# --- One settlement over the amount ------------------------------------------------------------


def test_a_settlement_at_the_threshold_is_not_flagged_and_one_fen_more_is(wallet, regions, settings):
    settings.ECARD_RISK_RULES = {"large_settlement_fen": 5000}
    linkage = linked(wallet, regions)
    at = settle(wallet, linkage, bill=[("REG", 1, 5000)])
    assert risk.risk_scan_day(day=day_of(at)) == []
    over = settle(wallet, linkage, bill=[("DRUGA", 1, 5001)])
    risk.risk_scan_day(day=day_of(over))
    [flag] = flags(RiskRule.LARGE_SETTLEMENT)
    assert flag.subject_type == "settlement"
    assert flag.subject_id == over.public_id
    assert flag.evidence["total_fen"] == 5001
    assert flag.evidence["threshold_fen"] == 5000


def test_the_default_threshold_is_five_thousand_yuan(wallet, regions):
    linkage = linked(wallet, regions)
    at = settle(wallet, linkage, bill=[("DRUGA", 25, 20000)])  # 5,000.00 yuan exactly
    assert at.total_fen == 500_000
    assert risk.risk_scan_day(day=day_of(at)) == []
    settle(wallet, linkage, bill=[("DRUGA", 25, 20000), ("REG", 1, 1)])
    assert len(risk.risk_scan_day(day=day_of(at))) == 1


def test_a_bad_rule_setting_fails_loudly(settings):
    settings.ECARD_RISK_RULES = {"large_settlement_fen": "5000"}
    with pytest.raises(ValueError, match="large_settlement_fen"):
        risk.risk_settings()
    settings.ECARD_RISK_RULES = {"no_such_rule": 1}
    with pytest.raises(ValueError, match="no_such_rule"):
        risk.risk_settings()


# --- A family binding used far more than the holder's own card ----------------------------------


@pytest.fixture
def binding_world(wallet, regions, settings):
    settings.ECARD_RISK_RULES = {"binding_ratio": 3, "binding_min_count": 4, "binding_window_days": 30}
    holder = linked(wallet, regions)
    binding = bound(wallet, holder, regions)
    return holder, binding


def test_a_binding_used_three_times_as_often_as_the_holders_card_is_not_flagged(wallet, binding_world):
    holder, binding = binding_world
    own = [settle(wallet, holder) for _ in range(2)]
    for _ in range(6):  # 6 == 3 x 2: not more than three times
        settle(wallet, holder, binding=binding)
    assert risk.risk_scan_day(day=day_of(own[0])) == []


def test_a_binding_used_more_than_three_times_as_often_is_flagged_in_the_beneficiarys_region(wallet, binding_world):
    holder, binding = binding_world
    own = [settle(wallet, holder) for _ in range(2)]
    for _ in range(7):
        settle(wallet, holder, binding=binding)
    risk.risk_scan_day(day=day_of(own[0]))
    [flag] = flags(RiskRule.BINDING_OVERUSE)
    assert flag.subject_type == "family_binding"
    assert flag.subject_id == binding.public_id
    assert flag.citizen_id == binding.beneficiary_id
    assert flag.region_id == binding.beneficiary.region_id
    assert flag.evidence["binding_settlements"] == 7
    assert flag.evidence["holder_own_settlements"] == 2


def test_a_binding_below_the_minimum_count_is_not_flagged_even_without_own_use(wallet, binding_world):
    holder, binding = binding_world
    made = [settle(wallet, holder, binding=binding) for _ in range(3)]
    assert risk.risk_scan_day(day=day_of(made[0])) == []
    settle(wallet, holder, binding=binding)  # the fourth reaches the minimum
    assert len(risk.risk_scan_day(day=day_of(made[0]))) == 1


# --- Idempotency and audit ---------------------------------------------------------------------


def test_a_rescan_of_the_same_day_raises_no_second_flag_and_no_second_audit_event(wallet, regions, settings):
    settings.ECARD_RISK_RULES = {"large_settlement_fen": 100}
    linkage = linked(wallet, regions)
    made = settle(wallet, linkage)
    assert len(risk.risk_scan_day(day=day_of(made))) == 1
    assert risk.risk_scan_day(day=day_of(made)) == []
    assert risk.risk_scan_recent() == 0
    assert RiskFlag.objects.count() == 1
    assert AuditEvent.objects.filter(action="risk_flag.raise").count() == 1
    assert verify_chain() == []


def test_raise_audit_events_carry_no_personal_data(wallet, regions, settings):
    settings.ECARD_RISK_RULES = {"large_settlement_fen": 100}
    linkage = linked(wallet, regions)
    risk.risk_scan_day(day=day_of(settle(wallet, linkage)))
    event = AuditEvent.objects.get(action="risk_flag.raise")
    assert event.region_code == "310000"
    assert linkage.citizen.name not in str(event.after)
    assert linkage.citizen.id_number not in str(event.after)


# --- The review queue ---------------------------------------------------------------------------


@pytest.fixture
def flagged(wallet, regions, settings):
    """One open large-settlement flag in Shanghai (310000) and one in Hebei (130000)."""
    settings.ECARD_RISK_RULES = {"large_settlement_fen": 100}
    publish_policies(regions, "130000")
    here = settle(wallet, linked(wallet, regions))
    there = settle(wallet, linked(wallet, regions, region_code="130000"))
    risk.risk_scan_day(day=day_of(here))
    if day_of(there) != day_of(here):
        risk.risk_scan_day(day=day_of(there))
    return RiskFlag.objects.get(subject_id=here.public_id), RiskFlag.objects.get(subject_id=there.public_id)


def test_an_administrator_sees_the_flags_of_their_region_only(client, make_user, flagged):
    mine, other = flagged
    sign_in(client, make_user(Role.REGION_ADMIN))
    page = client.get(reverse("risk_queue")).content.decode()
    assert mine.subject_id in page
    assert other.subject_id not in page
    detail = client.get(reverse("risk_detail", args=[mine.pk]))
    assert detail.status_code == 200
    assert "20.00 (元)" in detail.content.decode()  # the evidence's total, in yuan
    assert mine.subject_id in detail.content.decode()
    assert client.get(reverse("risk_detail", args=[other.pk])).status_code == 404
    assert client.get(reverse("risk_decide", args=[other.pk])).status_code == 404
    response = client.post(
        reverse("risk_decide", args=[other.pk]), {"decision": "dismiss", "note": "x", "confirmed": "yes"}
    )
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.state == RiskFlagState.OPEN


def test_the_queue_shows_masked_citizens_only(client, make_user, flagged):
    mine, _ = flagged
    sign_in(client, make_user(Role.REGION_ADMIN))
    page = client.get(reverse("risk_queue")).content.decode()
    assert mine.citizen.name_masked in page
    assert mine.citizen.name not in page
    assert mine.citizen.id_number not in page
    # the region by its name in the reader's language, as on every screen
    assert f"<td>{mine.region.name_zh}</td>" in page
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    assert f"<td>{mine.region.name_en}</td>" in client.get(reverse("risk_queue")).content.decode()


def test_an_administrator_dismisses_a_flag_after_a_confirmation_step_and_it_is_audited(client, make_user, flagged):
    mine, _ = flagged
    admin = make_user(Role.REGION_ADMIN)
    sign_in(client, admin)
    url = reverse("risk_decide", args=[mine.pk])
    first = client.post(url, {"decision": "dismiss", "note": "Known chronic patient"})
    assert first.status_code == 200
    assert "Please confirm" in first.content.decode() or "请确认" in first.content.decode()
    mine.refresh_from_db()
    assert mine.state == RiskFlagState.OPEN  # nothing written before the confirmation
    done = client.post(url, {"decision": "dismiss", "note": "Known chronic patient", "confirmed": "yes"})
    assert done.status_code == 302
    mine.refresh_from_db()
    assert mine.state == RiskFlagState.DISMISSED
    assert mine.decision_note == "Known chronic patient"
    assert mine.decided_by == admin.username
    event = AuditEvent.objects.get(action="risk_flag.dismiss")
    assert event.object_id == str(mine.pk)
    assert event.region_code == "310000"
    assert event.reason == "Known chronic patient"
    assert event.actor_label == admin.username
    assert event.before == {"state": "open"} and event.after["state"] == "dismissed"
    assert verify_chain() == []


def test_a_confirmation_needs_a_note_and_a_decided_flag_cannot_be_decided_again(client, make_user, flagged):
    mine, _ = flagged
    sign_in(client, make_user(Role.REGION_ADMIN))
    url = reverse("risk_decide", args=[mine.pk])
    response = client.post(url, {"decision": "confirm", "note": "  ", "confirmed": "yes"})
    assert response.status_code == 200
    assert RiskFlag.objects.get(pk=mine.pk).state == RiskFlagState.OPEN
    client.post(url, {"decision": "confirm", "note": "Refer to inspection", "confirmed": "yes"})
    assert RiskFlag.objects.get(pk=mine.pk).state == RiskFlagState.CONFIRMED
    again = client.post(url, {"decision": "dismiss", "note": "oops", "confirmed": "yes"})
    assert again.status_code == 302
    assert RiskFlag.objects.get(pk=mine.pk).state == RiskFlagState.CONFIRMED
    assert AuditEvent.objects.filter(action__in=["risk_flag.confirm", "risk_flag.dismiss"]).count() == 1


def test_the_decision_service_refuses_a_decided_flag(flagged):
    mine, _ = flagged
    risk.risk_flag_decide(actor=SYSTEM, flag=mine, decision="confirm", note="n")
    with pytest.raises(DomainError) as refused:
        risk.risk_flag_decide(actor=SYSTEM, flag=mine, decision="dismiss", note="n")
    assert refused.value.code == "invalid_state"
    assert RiskFlag.objects.get(pk=mine.pk).state == RiskFlagState.CONFIRMED


def test_an_auditor_reads_the_queue_but_cannot_decide(client, make_user, flagged):
    mine, other = flagged
    sign_in(client, make_user(Role.AUDITOR))
    assert mine.subject_id in client.get(reverse("risk_queue")).content.decode()
    assert client.get(reverse("risk_detail", args=[mine.pk])).status_code == 200
    assert client.get(reverse("risk_detail", args=[other.pk])).status_code == 404
    assert client.get(reverse("risk_decide", args=[mine.pk])).status_code == 403
    client.post(reverse("risk_decide", args=[mine.pk]), {"decision": "dismiss", "note": "x", "confirmed": "yes"})
    assert RiskFlag.objects.get(pk=mine.pk).state == RiskFlagState.OPEN


def test_a_clerk_does_not_see_the_queue(client, make_user, flagged):
    mine, _ = flagged
    sign_in(client, make_user(Role.CLERK))
    assert client.get(reverse("risk_queue")).status_code == 403
    assert client.get(reverse("risk_detail", args=[mine.pk])).status_code == 403
    assert reverse("risk_queue") not in client.get(reverse("settlement_list")).content.decode()


def test_a_national_operator_sees_every_regions_flags(client, make_user, flagged):
    mine, other = flagged
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    page = client.get(reverse("risk_queue")).content.decode()
    assert mine.subject_id in page and other.subject_id in page


# --- The periodic scan through a real worker ------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_periodic_task_raises_flags_through_a_real_worker(wallet, regions):
    import redis
    from django.conf import settings as django_settings

    from payments.tasks import scan_risk_rules
    from testkit.processes import CeleryWorker, database_url_for_current_connection, wait_until

    made = settle(wallet, linked(wallet, regions), bill=[("DRUGA", 25, 20000), ("REG", 1, 1)])  # 5,000.01 yuan
    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()  # our own Redis db: no stale tasks
    worker = CeleryWorker(
        env={
            "DATABASE_URL": database_url_for_current_connection(),
            "REDIS_URL": django_settings.REDIS_URL,
            "DB_CONN_MAX_AGE": "0",
        },
        name="risk",
        beat=False,
    )
    worker.start()
    try:
        scan_risk_rules.delay()
        wait_until(lambda: RiskFlag.objects.filter(subject_id=made.public_id).exists(), what="the risk flag")
        scan_risk_rules.delay()  # idempotent: a second run adds nothing
        wait_until(lambda: worker.log().count("succeeded") >= 2, what="the second scan")
    finally:
        worker.stop()
        worker.dump_log()
    assert RiskFlag.objects.filter(rule=RiskRule.LARGE_SETTLEMENT).count() == 1
    assert AuditEvent.objects.filter(action="risk_flag.raise").count() == 1
