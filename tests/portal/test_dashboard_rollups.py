"""Dashboard rollups: after the services change things, the rollups equal a direct count of the tables;
the tick picks up new changes, never counts twice, and catches a transaction that committed late."""

import datetime as dt
import threading
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction

from insurance import services as insurance_services
from insurance.models import Certificate, Citizen
from payments.bindings import family_binding_revoke
from payments.models import FamilyBinding, Settlement, WalletLinkage
from payments.services import linkage_unlink
from payments.settlements import services
from portal.dashboards.rollups import month_key, rollups_rebuild, rollups_tick
from portal.models import AuditEvent, RollupCount, RollupDaily, RollupFact, RollupWatermark
from tests.payments.settlement_helpers import (  # noqa: F401
    SYSTEM,
    bound,
    insured,
    lines,
    linked,
    make_wallet,
    signing_key,
    token,
    world,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _day(value: dt.datetime | None) -> dt.date | None:
    return value.astimezone(SHANGHAI).date() if value else None


def direct_counts() -> dict[str, Counter]:
    """The same figures, counted straight from the tables (what the rollups must equal)."""
    result: dict[str, Counter] = {
        name: Counter() for name in ("citizens", "cards", "linkages", "bindings", "cohort", "daily")
    }
    for c in Citizen.objects.all():
        result["citizens"][(c.region_id, c.status)] += 1
        if c.status == "active":
            result["cohort"][(c.region_id, month_key(c.birth_date))] += 1
        result["daily"][(c.region_id, _day(c.created_at), "citizens_new")] += 1
    for card in Certificate.objects.select_related("citizen"):
        result["cards"][(card.citizen.region_id, card.state)] += 1
        result["daily"][(card.citizen.region_id, _day(card.issued_at), "cards_issued")] += 1
        if card.activated_at:
            result["daily"][(card.citizen.region_id, _day(card.activated_at), "cards_activated")] += 1
    for link in WalletLinkage.objects.select_related("citizen"):
        if link.state == "active":
            result["linkages"][(link.citizen.region_id, str(link.partner_id))] += 1
    for binding in FamilyBinding.objects.select_related("beneficiary"):
        result["bindings"][(binding.beneficiary.region_id, binding.state)] += 1
    for s in Settlement.objects.select_related("citizen"):
        region = s.citizen.region_id
        if s.paid_at:
            result["daily"][(region, _day(s.paid_at), "settled")] += 1
            result["daily"][(region, _day(s.paid_at), "fund_fen")] += s.fund_fen
        if s.refunded_at:
            result["daily"][(region, _day(s.refunded_at), "refunded")] += 1
            result["daily"][(region, _day(s.refunded_at), "refund_fund_fen")] += s.fund_fen
    return {k: +v for k, v in result.items()}


def rollup_counts() -> dict[str, Counter]:
    result: dict[str, Counter] = {
        name: Counter() for name in ("citizens", "cards", "linkages", "bindings", "cohort", "daily")
    }
    for row in RollupCount.objects.all():
        result[row.metric][(row.region_code, row.dim)] += row.value
    for row in RollupDaily.objects.filter(
        metric__in=[
            "citizens_new",
            "cards_issued",
            "cards_activated",
            "settled",
            "fund_fen",
            "refunded",
            "refund_fund_fen",
        ]
    ):
        result["daily"][(row.region_code, row.day, row.metric)] += row.value
    return {k: +v for k, v in result.items()}


BILL = [("REG", 1, 2000), ("DRUGA", 3, 10_000)]


def settle(partner, linkage) -> Settlement:
    created = services.settlement_create(
        actor=SYSTEM,
        partner=partner,
        token=token(linkage),
        facility_code="H310-1",
        lines=lines(*BILL),
        use_personal_account=False,
    )
    return services.settlement_confirm(
        actor=SYSTEM, settlement=created, partner_transaction_id=f"tx-{created.pk}", self_pay_fen=created.self_pay_fen
    )


def busy_day(regions) -> dict:
    """Issue, activate, suspend, revoke, reissue, bind, settle, refund: most of what moves a count."""
    wechat, alipay = make_wallet(), make_wallet()
    first = linked(wechat, regions)
    second = linked(alipay, regions, birth=dt.date(1940, 5, 5))
    linked(wechat, regions, region_code="440000")
    binding = bound(wechat, first, regions)
    paid = settle(wechat, first)
    settle(alipay, second)
    services.settlement_refund(actor=SYSTEM, settlement=paid, reason="returned")
    pending, _ = insured(regions, region_code="130000", birth=dt.date(1930, 1, 1))
    card = Certificate.objects.get(citizen=second.citizen, state="active")
    insurance_services.certificate_suspend(actor=SYSTEM, certificate=card, reason="lost phone")
    insurance_services.certificate_reissue(actor=SYSTEM, certificate=Certificate.objects.get(pk=card.pk), reason="new")
    gone, _ = insured(regions, region_code="310000")
    insurance_services.citizen_set_status(actor=SYSTEM, citizen=gone, status="deceased", reason="register office")
    return {
        "wechat": wechat,
        "alipay": alipay,
        "first": first,
        "second": second,
        "binding": binding,
        "pending": pending,
    }


@pytest.mark.django_db
@pytest.mark.usefixtures("world")
def test_the_tick_from_nothing_equals_a_direct_count(regions):
    busy_day(regions)
    rollups_tick()
    assert rollup_counts() == direct_counts()
    counts = rollup_counts()
    assert counts["cards"][("310000", "revoked")] == 2  # the deceased citizen's card and the reissued one
    assert counts["daily"][("310000", dt.datetime.now(SHANGHAI).date(), "refunded")] == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("world")
def test_rebuild_equals_a_direct_count_and_the_tick(regions):
    busy_day(regions)
    rollups_tick()
    after_tick = rollup_counts()
    rollups_rebuild()
    assert rollup_counts() == after_tick == direct_counts()
    assert RollupFact.objects.filter(kind="settlement").count() == 2


@pytest.mark.django_db
@pytest.mark.usefixtures("world")
def test_the_tick_picks_up_later_changes_and_never_counts_twice(regions):
    things = busy_day(regions)
    rollups_rebuild()
    # Later changes: the binding ends, a wallet is unlinked, a card revoked, a new citizen, another settlement.
    family_binding_revoke(actor=SYSTEM, binding=things["binding"], reason="clerk")
    linkage_unlink(actor=SYSTEM, linkage=things["first"], reason="clerk")
    card = Certificate.objects.get(citizen=things["pending"], state="pending_activation")
    insurance_services.certificate_revoke(actor=SYSTEM, certificate=card, reason="fraud")
    settle(things["alipay"], linked(things["alipay"], regions))
    insured(regions, region_code="220000")
    assert rollup_counts() != direct_counts()
    assert rollups_tick() > 0
    expected = direct_counts()
    assert rollup_counts() == expected
    assert rollups_tick() == 0
    assert rollup_counts() == expected
    # Reading the same events again (a watermark set back) changes nothing either.
    RollupWatermark.objects.filter(id=1).update(last_seq=0)
    rollups_tick()
    assert rollup_counts() == expected


@pytest.mark.django_db
@pytest.mark.usefixtures("world")
def test_a_cascade_without_its_own_audit_event_is_still_counted(regions):
    """Revoking a card unlinks its wallets inside the card's service; the touched citizen refreshes them."""
    wallet = make_wallet()
    linkage = linked(wallet, regions)
    rollups_rebuild()
    assert rollup_counts()["linkages"][("310000", str(wallet.pk))] == 1
    insurance_services.certificate_revoke(actor=SYSTEM, certificate=linkage.certificate, reason="fraud")
    rollups_tick()
    assert rollup_counts()["linkages"][("310000", str(wallet.pk))] == 0
    assert rollup_counts() == direct_counts()


@pytest.mark.django_db(transaction=True)
def test_a_transaction_that_commits_after_a_later_one_is_not_missed(regions):
    """The audit number is taken at insert: T1 takes the lower one but commits after T2 and after a tick."""
    rollups_rebuild()
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    slow_seqs: list[int] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                citizen, _ = insured(regions, region_code="350000")
                slow_seqs.extend(
                    AuditEvent.objects.filter(object_type="citizen", object_id=str(citizen.pk)).values_list(
                        "seq", flat=True
                    )
                )
                holding.set()
                release.wait(10)
        except BaseException as exc:  # noqa: BLE001 (reported to the test below)
            errors.append(exc)
            holding.set()
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert holding.wait(10)
    insured(regions, region_code="370000")
    rollups_tick()
    assert rollup_counts()["citizens"][("350000", "active")] == 0
    watermark = RollupWatermark.objects.get(id=1)
    assert slow_seqs and all(seq < watermark.last_seq and str(seq) in watermark.gaps for seq in slow_seqs)
    release.set()
    thread.join(10)
    assert not errors
    rollups_tick()
    assert rollup_counts()["citizens"][("350000", "active")] == 1
    assert rollup_counts() == direct_counts()
    assert not any(str(seq) in RollupWatermark.objects.get(id=1).gaps for seq in slow_seqs)
