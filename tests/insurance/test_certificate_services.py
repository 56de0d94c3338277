"""The e-card state machine (insurance/services.py), against PostgreSQL."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insurance import services
from insurance.models import LIVE_STATES, Certificate, CertificateState, CertificateTransition, Citizen, EndReason
from payments.linkages.services import linkage_create
from payments.models import LinkageState, Partner, PartnerKind, WalletLinkage
from portal.errors import DomainError
from portal.models import AuditEvent, DomainEvent
from testkit.citizens import new_id_number

STATES = [s.value for s in CertificateState]
ACTIONS = ["issue", "activate", "suspend", "reinstate", "revoke", "expire", "reissue"]

# The specification (DESIGN.md section 3), written out independently of the code:
# (state, action) -> the old card's state afterwards. Anything missing is forbidden.
ALLOWED = {
    ("revoked", "issue"): "revoked",
    ("expired", "issue"): "expired",
    ("pending_activation", "activate"): "active",
    ("active", "suspend"): "suspended",
    ("suspended", "reinstate"): "active",
    ("pending_activation", "revoke"): "revoked",
    ("active", "revoke"): "revoked",
    ("suspended", "revoke"): "revoked",
    ("active", "expire"): "expired",
    ("suspended", "expire"): "expired",
    ("active", "reissue"): "revoked",
    ("suspended", "reissue"): "revoked",
    ("expired", "reissue"): "expired",
}


def bring_to(card: Certificate, state: str, actor) -> Certificate:
    if state == "pending_activation":
        return card
    card = services.certificate_activate(actor=actor, certificate=card)
    if state == "suspended":
        card = services.certificate_suspend(actor=actor, certificate=card, reason="test")
    elif state == "revoked":
        card = services.certificate_revoke(actor=actor, certificate=card, reason="test")
    elif state == "expired":
        card = services.certificate_expire(actor=actor, certificate=card)
    return card


def apply(action: str, card: Certificate, actor, reason: str = "because") -> Certificate:
    if action == "issue":
        return services.certificate_issue(actor=actor, citizen=card.citizen, reason=reason)
    if action == "activate":
        return services.certificate_activate(actor=actor, certificate=card)
    if action == "expire":
        return services.certificate_expire(actor=actor, certificate=card)
    return getattr(services, f"certificate_{action}")(actor=actor, certificate=card, reason=reason)


def written_counts() -> tuple[int, int, int, int]:
    return (
        Certificate.objects.count(),
        CertificateTransition.objects.count(),
        AuditEvent.objects.count(),
        DomainEvent.objects.count(),
    )


@pytest.fixture
def card_in(make_citizen, system_actor):
    def factory(state: str) -> Certificate:
        citizen = make_citizen()
        card = services.certificate_issue(actor=system_actor, citizen=citizen, reason="test")
        return bring_to(card, state, system_actor)

    return factory


@pytest.fixture
def partner(db):
    def factory(code: str = "wechat") -> Partner:
        return Partner.objects.create(
            code=code, name=code, kind=PartnerKind.WALLET, webhook_url="http://127.0.0.1:9/hook"
        )

    return factory


@pytest.mark.django_db
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("state", STATES)
def test_each_action_in_each_state_does_what_the_state_machine_says(card_in, system_actor, state, action):
    card = card_in(state)
    before = written_counts()

    if (state, action) not in ALLOWED:
        with pytest.raises(DomainError) as excinfo:
            apply(action, card, system_actor)
        assert excinfo.value.code in {"invalid_state", "certificate_exists"}
        assert Certificate.objects.get(pk=card.pk).state == state
        assert written_counts() == before
        return

    result = apply(action, card, system_actor)

    old = Certificate.objects.get(pk=card.pk)
    assert old.state == ALLOWED[(state, action)]
    transition = CertificateTransition.objects.filter(certificate=result).latest("id")
    assert transition.actor_label == system_actor.label
    assert AuditEvent.objects.count() > before[2]
    if action in {"issue", "reissue"}:
        assert result.pk != card.pk
        expected_new = {"issue": "pending_activation", "reissue": "suspended" if state == "suspended" else "active"}
        assert result.state == expected_new[action]
    if ALLOWED[(state, action)] in {"revoked", "expired"} and state not in {"revoked", "expired"}:
        assert old.ended_at is not None
        assert old.end_reason


@pytest.mark.django_db
@pytest.mark.parametrize("state", STATES)
def test_allowed_actions_lists_only_what_a_person_may_do_now(card_in, state):
    card = card_in(state)

    offered = services.allowed_actions(card)

    expected = [a for a in ["suspend", "reinstate", "revoke", "reissue"] if (state, a) in ALLOWED]
    assert sorted(offered) == sorted(expected)


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["active", "suspended", "expired"])
def test_reissue_ends_the_old_card_links_the_new_one_and_moves_the_linkages(card_in, partner, system_actor, state):
    card = card_in("pending_activation")
    linkage = linkage_create(actor=system_actor, partner=partner(), citizen=card.citizen, partner_user_ref="u1")
    card.refresh_from_db()
    assert card.state == "active"  # the first linkage activated it
    if state == "suspended":
        services.certificate_suspend(actor=system_actor, certificate=card, reason="lost phone")
    elif state == "expired":
        services.certificate_expire(actor=system_actor, certificate=card)

    new = services.certificate_reissue(actor=system_actor, certificate=card, reason="new phone")

    old = Certificate.objects.get(pk=card.pk)
    assert new.previous_id == old.pk
    assert old.successor == new
    assert new.number != old.number
    assert new.state == ("suspended" if state == "suspended" else "active")
    assert old.state == ("expired" if state == "expired" else "revoked")
    if state != "expired":
        assert old.end_reason == EndReason.REISSUED
        assert old.ended_at is not None
    moved = WalletLinkage.objects.get(pk=linkage.pk)
    assert moved.public_id == linkage.public_id
    assert moved.certificate_id == new.pk
    assert moved.state == LinkageState.ACTIVE


@pytest.mark.django_db
def test_a_card_cannot_be_reissued_twice(card_in, system_actor):
    card = card_in("expired")
    services.certificate_reissue(actor=system_actor, certificate=card, reason="first")

    with pytest.raises(DomainError) as excinfo:
        services.certificate_reissue(actor=system_actor, certificate=card, reason="second")

    assert excinfo.value.code in {"invalid_state", "certificate_exists"}
    assert Certificate.objects.filter(citizen=card.citizen).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["deceased", "moved_out"])
def test_a_deceased_or_moved_out_citizen_has_live_cards_revoked_and_linkages_unlinked(
    card_in, partner, system_actor, status
):
    card = card_in("pending_activation")
    linkage = linkage_create(actor=system_actor, partner=partner(), citizen=card.citizen, partner_user_ref="u1")

    services.citizen_set_status(actor=system_actor, citizen=card.citizen, status=status, reason="registry notice")

    card.refresh_from_db()
    linkage.refresh_from_db()
    assert card.state == CertificateState.REVOKED
    assert card.end_reason == EndReason.CITIZEN_STATUS
    assert linkage.state == LinkageState.UNLINKED
    assert linkage.end_reason == "citizen_status"
    assert Citizen.objects.get(pk=card.citizen_id).status == status


@pytest.mark.django_db
def test_a_failure_while_revoking_for_citizen_status_rolls_back_the_status_too(card_in, system_actor):
    card = card_in("active")
    citizen = card.citizen
    # A reason over 128 characters is refused before anything is written.
    with pytest.raises(DomainError):
        services.citizen_set_status(actor=system_actor, citizen=citizen, status="deceased", reason="x" * 129)

    assert Citizen.objects.get(pk=citizen.pk).status == "active"
    assert Certificate.objects.get(pk=card.pk).state == "active"


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["issue", "suspend", "reinstate", "revoke", "reissue", "set_status"])
@pytest.mark.parametrize("reason", ["", "   "])
def test_a_missing_reason_is_refused_and_nothing_is_written(card_in, make_citizen, system_actor, action, reason):
    state = {"issue": "revoked", "reinstate": "suspended"}.get(action, "active")
    card = card_in(state)
    before = written_counts()

    with pytest.raises(DomainError) as excinfo:
        if action == "set_status":
            services.citizen_set_status(actor=system_actor, citizen=card.citizen, status="deceased", reason=reason)
        else:
            apply(action, card, system_actor, reason=reason)

    assert excinfo.value.code == "reason_required"
    assert excinfo.value.extra["field"] == "reason"
    assert written_counts() == before
    assert Certificate.objects.get(pk=card.pk).state == state
    assert Citizen.objects.get(pk=card.citizen_id).status == "active"


@pytest.mark.django_db
def test_the_database_refuses_a_second_live_card_even_when_inserted_directly(card_in):
    card = card_in("suspended")
    now = timezone.now()

    with pytest.raises(IntegrityError), transaction.atomic():
        Certificate.objects.create(
            number="EC-DIRECT-1", citizen=card.citizen, state="pending_activation", issued_at=now, expires_at=now
        )


@pytest.mark.django_db
def test_the_database_accepts_a_new_card_beside_ended_ones(card_in):
    card = card_in("revoked")
    now = timezone.now()

    Certificate.objects.create(
        number="EC-DIRECT-2", citizen=card.citizen, state="active", issued_at=now, expires_at=now
    )

    assert Certificate.objects.filter(citizen=card.citizen).count() == 2


@pytest.mark.django_db
def test_issuing_to_an_inactive_citizen_is_refused(make_citizen, system_actor):
    citizen = make_citizen()
    services.citizen_set_status(actor=system_actor, citizen=citizen, status="moved_out", reason="moved")

    with pytest.raises(DomainError) as excinfo:
        services.certificate_issue(actor=system_actor, citizen=citizen, reason="test")

    assert excinfo.value.code == "citizen_not_active"


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_issuances_for_one_citizen_give_exactly_one_card(regions, system_actor):
    citizen = services.citizen_register(
        actor=system_actor,
        id_number=new_id_number(),
        name="李四",
        phone="",
        region=regions["310000"],
        scheme="resident",
    )
    barrier = threading.Barrier(2)
    results: list[object] = []
    lock = threading.Lock()

    def issue() -> None:
        try:
            barrier.wait(timeout=10)
            card = services.certificate_issue(actor=system_actor, citizen=citizen, reason="race")
            outcome: object = card
        except DomainError as exc:
            outcome = exc
        finally:
            connection.close()  # each thread has its own connection
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=issue) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    cards = [r for r in results if isinstance(r, Certificate)]
    errors = [r for r in results if isinstance(r, DomainError)]
    assert len(cards) == 1, results
    assert [e.code for e in errors] == ["certificate_exists"]
    assert Certificate.objects.filter(citizen=citizen, state__in=LIVE_STATES).count() == 1


class _Rollback(Exception):
    pass


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(min_value=0, max_value=2), st.sampled_from(ACTIONS)), max_size=25))
def test_random_action_sequences_never_leave_two_live_cards_for_a_citizen(make_citizen, system_actor, steps):
    try:
        with transaction.atomic():
            citizens = [make_citizen() for _ in range(3)]
            for index, action in steps:
                citizen = citizens[index]
                current = citizen.current_certificate()
                before_state = current.state if current else None
                try:
                    if action == "issue" or current is None:
                        services.certificate_issue(actor=system_actor, citizen=citizen, reason="r")
                    else:
                        apply(action, current, system_actor, reason="r")
                    succeeded = True
                except DomainError:
                    succeeded = False
                if current is not None and action != "issue":
                    assert succeeded == ((before_state, action) in ALLOWED)
                for c in citizens:
                    assert Certificate.objects.filter(citizen=c, state__in=LIVE_STATES).count() <= 1
            raise _Rollback
    except _Rollback:
        pass
