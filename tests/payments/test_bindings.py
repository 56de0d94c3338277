"""Family-binding services: every rule and refusal, in the contract's order, and the limit under concurrency."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from insurance import services as insurance_services
from insurance.models import CertificateState
from payments import tasks
from payments.bindings import services as bindings
from payments.linkages.services import linkage_unlink
from payments.models import BindingState, FamilyBinding, OutboxEvent
from portal.actors import Actor
from portal.audit import verify_chain
from portal.errors import DomainError
from portal.models import AuditEvent, Role
from testkit.bindings import SYSTEM, bind, events, last_event_id, link, make_wallet, register, types


@pytest.fixture
def setup(regions):
    wechat, alipay = make_wallet("wechat"), make_wallet("alipay")
    holder, _ = register(regions, name="张三明")
    linkage = link(wechat, holder)
    parent, parent_number = register(regions, "220000", name="李四")
    return {
        "wechat": wechat,
        "alipay": alipay,
        "holder": holder,
        "linkage": linkage,
        "parent": parent,
        "parent_number": parent_number,
        "regions": regions,
    }


def code_of(call) -> str:
    with pytest.raises(DomainError) as info:
        call()
    return info.value.code


# --- Create -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_binding_is_pending_at_version_one_audited_and_sends_no_event(setup):
    before = last_event_id()
    binding = bind(setup["wechat"], setup["linkage"], setup["parent_number"])

    assert (binding.state, binding.version, binding.holder_citizen, binding.beneficiary) == (
        BindingState.PENDING,
        1,
        setup["holder"],
        setup["parent"],
    )
    assert binding.public_id.startswith("fbd_")
    audit = AuditEvent.objects.get(action="family_binding.create")
    assert audit.region_code == "220000" and audit.object_id == binding.public_id
    assert "李四" not in str(audit.after) and setup["parent_number"] not in str(audit.after)
    assert last_event_id() == before
    assert verify_chain() == []


@pytest.mark.django_db
def test_names_compare_after_nfkc_normalisation(setup, regions):
    latin, number = register(regions, "220000", name="王AB")
    binding = bind(setup["wechat"], setup["linkage"], number, name="王ＡＢ")
    assert binding.beneficiary == latin


@pytest.mark.django_db
def test_an_unknown_number_or_a_different_name_is_identity_mismatch(setup, regions):
    from testkit.citizens import new_id_number

    assert code_of(lambda: bind(setup["wechat"], setup["linkage"], new_id_number("220000"))) == "identity_mismatch"
    assert (
        code_of(lambda: bind(setup["wechat"], setup["linkage"], setup["parent_number"], name="李五"))
        == "identity_mismatch"
    )
    assert code_of(lambda: bind(setup["wechat"], setup["linkage"], "not a number")) == "identity_mismatch"
    assert not FamilyBinding.objects.exists()


@pytest.mark.django_db
def test_the_holder_cannot_be_their_own_beneficiary_and_a_wrong_name_still_says_identity_mismatch(setup, regions):
    holder, number = register(regions, name="赵六")
    linkage = link(setup["alipay"], holder)

    assert code_of(lambda: bind(setup["alipay"], linkage, number, name="赵七")) == "identity_mismatch"
    with pytest.raises(DomainError) as info:
        bind(setup["alipay"], linkage, number, name="赵六")
    assert (info.value.code, info.value.status) == ("validation_error", 400)


@pytest.mark.django_db
def test_a_beneficiary_without_a_usable_card_is_certificate_unavailable(setup, regions):
    no_card, no_card_number = register(regions, "220000", name="李四", card=False)
    suspended, suspended_number = register(regions, "220000", name="李四")
    card = insurance_services.certificate_activate(actor=SYSTEM, certificate=suspended.current_certificate())
    insurance_services.certificate_suspend(actor=SYSTEM, certificate=card, reason="x")
    deceased, deceased_number = register(regions, "220000", name="李四")
    insurance_services.citizen_set_status(actor=SYSTEM, citizen=deceased, status="deceased", reason="died")

    for number in (no_card_number, suspended_number, deceased_number):
        assert code_of(lambda n=number: bind(setup["wechat"], setup["linkage"], n)) == "certificate_unavailable"


@pytest.mark.django_db
def test_a_second_open_binding_of_the_same_pair_is_binding_exists_but_an_ended_one_does_not_count(setup):
    first = bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    with pytest.raises(DomainError) as info:
        bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    assert info.value.code == "binding_exists" and info.value.extra["family_binding_id"] == first.public_id

    bindings.family_binding_revoke(actor=SYSTEM, binding=first, reason="partner_request")
    assert bind(setup["wechat"], setup["linkage"], setup["parent_number"]).state == BindingState.PENDING


@pytest.mark.django_db
def test_five_open_bindings_per_holder_across_all_partners_is_the_limit(setup, regions):
    ali_linkage = link(setup["alipay"], setup["holder"])
    made = []
    for i in range(5):
        _, number = register(regions, "220000", name="李四")
        made.append(
            bind(setup["wechat"] if i % 2 else setup["alipay"], setup["linkage"] if i % 2 else ali_linkage, number)
        )
    _, sixth = register(regions, "220000", name="李四")

    assert code_of(lambda: bind(setup["alipay"], ali_linkage, sixth)) == "binding_limit_reached"
    assert code_of(lambda: bind(setup["wechat"], setup["linkage"], sixth)) == "binding_limit_reached"

    bindings.family_binding_reject(actor=SYSTEM, binding=made[0], note="no proof")
    assert bind(setup["wechat"], setup["linkage"], sixth).state == BindingState.PENDING


@pytest.mark.django_db
def test_errors_come_in_the_contracts_order(setup, regions):
    # Five open bindings: the limit would be reached by any new one.
    for _ in range(4):
        _, number = register(regions, "220000", name="李四")
        bind(setup["wechat"], setup["linkage"], number)
    bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    _, no_card_number = register(regions, "220000", name="李四", card=False)

    # binding_exists before binding_limit_reached
    assert code_of(lambda: bind(setup["wechat"], setup["linkage"], setup["parent_number"])) == "binding_exists"
    # certificate_unavailable before both
    assert code_of(lambda: bind(setup["wechat"], setup["linkage"], no_card_number)) == "certificate_unavailable"
    # identity_mismatch before everything
    assert (
        code_of(lambda: bind(setup["wechat"], setup["linkage"], setup["parent_number"], name="王五"))
        == "identity_mismatch"
    )


@pytest.mark.django_db
def test_an_ended_holder_linkage_cannot_make_bindings_and_another_partners_linkage_is_not_found(setup):
    assert code_of(lambda: bind(setup["alipay"], setup["linkage"], setup["parent_number"])) == "not_found"
    linkage_unlink(actor=SYSTEM, linkage=setup["linkage"], reason="citizen_request")
    assert code_of(lambda: bind(setup["wechat"], setup["linkage"], setup["parent_number"])) == "linkage_inactive"


@pytest.mark.django_db
def test_an_unknown_relationship_or_an_empty_consent_is_a_validation_error(setup):
    assert (
        code_of(lambda: bind(setup["wechat"], setup["linkage"], setup["parent_number"], relationship="friend"))
        == "validation_error"
    )
    with pytest.raises(DomainError) as info:
        bindings.family_binding_create(
            actor=SYSTEM,
            partner=setup["wechat"],
            holder_linkage=setup["linkage"],
            beneficiary_id_number=setup["parent_number"],
            beneficiary_name="李四",
            relationship="parent",
            consent_reference="   ",
        )
    assert info.value.extra["field"] == "consent_reference"


# --- Approve, reject, revoke ---------------------------------------------------------------


@pytest.mark.django_db
def test_approval_activates_a_pending_card_and_only_the_bindings_partner_hears_family_binding_activated(
    setup, make_user
):
    binding = bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    # Another partner's holder has a pending binding on the same beneficiary's card.
    other_holder, _ = register(setup["regions"], name="孙八")
    other = bind(setup["alipay"], link(setup["alipay"], other_holder), setup["parent_number"])
    clerk = make_user(Role.CLERK, ("220000",))
    start = last_event_id()

    approved = bindings.family_binding_approve(actor=Actor.for_user(clerk), binding=binding, note="documents seen")

    assert (approved.state, approved.version, approved.decided_by) == (BindingState.ACTIVE, 2, clerk.username)
    assert setup["parent"].current_certificate().state == CertificateState.ACTIVE
    assert types(setup["wechat"], start) == ["family_binding.activated"]
    body = events(setup["wechat"], start)[0]["data"]["object"]
    assert body["state"] == "active" and body["beneficiary_certificate"]["state"] == "active"
    assert body["version"] == 2
    alipay = events(setup["alipay"], start)
    assert [e["type"] for e in alipay] == ["certificate.activated"]
    assert alipay[0]["data"]["object"]["id"] == other.public_id
    assert alipay[0]["data"]["object"]["state"] == "pending"
    other.refresh_from_db()
    assert other.version == 2
    assert AuditEvent.objects.filter(action="family_binding.approve", reason="documents seen").exists()


@pytest.mark.django_db
def test_approval_of_a_binding_on_an_active_card_sends_no_certificate_event(setup, make_user):
    link(setup["alipay"], setup["parent"])  # the beneficiary's own wallet activates the card
    binding = bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    start = last_event_id()

    bindings.family_binding_approve(actor=Actor.for_user(make_user(Role.CLERK, ("220000",))), binding=binding)

    assert types(setup["wechat"], start) == ["family_binding.activated"]
    assert types(setup["alipay"], start) == []


@pytest.mark.django_db
def test_only_a_writer_of_the_beneficiarys_region_may_decide(setup, make_user):
    binding = bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    holder_region_clerk = make_user(Role.CLERK, ("310000",))
    auditor = make_user(Role.AUDITOR, ("220000",))

    assert (
        code_of(lambda: bindings.family_binding_approve(actor=Actor.for_user(holder_region_clerk), binding=binding))
        == "not_found"
    )
    assert (
        code_of(lambda: bindings.family_binding_reject(actor=Actor.for_user(auditor), binding=binding, note="x"))
        == "forbidden"
    )
    binding.refresh_from_db()
    assert binding.state == BindingState.PENDING


@pytest.mark.django_db
def test_rejection_needs_a_reason_and_tells_the_partner(setup, make_user):
    binding = bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    clerk = Actor.for_user(make_user(Role.CLERK, ("220000",)))
    assert code_of(lambda: bindings.family_binding_reject(actor=clerk, binding=binding, note=" ")) == "validation_error"
    start = last_event_id()

    rejected = bindings.family_binding_reject(actor=clerk, binding=binding, note="no consent")

    assert (rejected.state, rejected.end_reason, rejected.version) == ("rejected", "clerk", 2)
    assert rejected.ended_at is not None
    [event] = events(setup["wechat"], start)
    assert event["type"] == "family_binding.rejected"
    assert event["data"]["object"]["end_reason"] == "clerk"
    assert setup["parent"].current_certificate().state == CertificateState.PENDING_ACTIVATION
    assert code_of(lambda: bindings.family_binding_approve(actor=clerk, binding=binding)) == "invalid_state"


@pytest.mark.django_db
def test_revoking_ends_an_open_binding_once_and_returns_an_ended_one_unchanged(setup, make_user):
    binding = bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    bindings.family_binding_approve(actor=Actor.for_user(make_user(Role.CLERK, ("220000",))), binding=binding)
    start = last_event_id()

    revoked = bindings.family_binding_revoke(
        actor=Actor.for_partner("wechat"), binding=binding, reason="partner_request"
    )
    again = bindings.family_binding_revoke(actor=Actor.for_partner("wechat"), binding=binding, reason="partner_request")

    assert (revoked.state, revoked.end_reason, revoked.version) == ("revoked", "partner_request", 3)
    assert (again.state, again.version) == ("revoked", 3)
    assert types(setup["wechat"], start) == ["family_binding.revoked"]
    assert AuditEvent.objects.filter(action="family_binding.revoke").count() == 1
    assert (
        code_of(lambda: bindings.family_binding_revoke(actor=SYSTEM, binding=binding, reason="timeout"))
        == "validation_error"
    )


@pytest.mark.django_db
def test_bindings_undecided_for_thirty_days_are_rejected_with_timeout_by_the_task(setup, regions):
    old = bind(setup["wechat"], setup["linkage"], setup["parent_number"])
    _, number = register(regions, "220000", name="李四")
    recent = bind(setup["wechat"], setup["linkage"], number)
    FamilyBinding.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=30, minutes=1))
    FamilyBinding.objects.filter(pk=recent.pk).update(created_at=timezone.now() - dt.timedelta(days=29))
    start = last_event_id()

    assert tasks.expire_undecided_bindings() == 1

    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.state, old.end_reason) == ("rejected", "timeout")
    assert recent.state == "pending"
    [event] = events(setup["wechat"], start)
    assert (event["type"], event["data"]["object"]["end_reason"]) == ("family_binding.rejected", "timeout")
    assert bindings.family_bindings_expire_undecided() == 0


def test_the_beat_schedule_runs_the_timeout_task():
    from django.conf import settings

    tasks_scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "payments.tasks.expire_undecided_bindings" in tasks_scheduled


# --- Concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_never_pass_five_open_bindings_per_holder(regions):
    wechat, alipay = make_wallet("wechat"), make_wallet("alipay")
    holder, _ = register(regions, name="张三明")
    linkages = [link(wechat, holder), link(alipay, holder)]
    numbers = [register(regions, "220000", name="李四")[1] for _ in range(8)]
    barrier = threading.Barrier(len(numbers))
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            partner, linkage = (wechat, linkages[0]) if i % 2 else (alipay, linkages[1])
            bind(partner, linkage, numbers[i])
            result = "created"
        except DomainError as error:
            result = error.code
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(numbers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["binding_limit_reached"] * 3 + ["created"] * 5
    assert FamilyBinding.objects.filter(holder_citizen=holder, state="pending").count() == 5
    assert not OutboxEvent.objects.filter(type__startswith="family_binding").exists()
