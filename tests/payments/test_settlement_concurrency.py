"""Fifty settlements for one citizen at once, each from its own database connection: the
year's deductible and fund cap are never exceeded, the account never holds more than its
balance, and every ledger sums to its balance, through creation, confirmation,
cancellation and refund running concurrently."""

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from payments.models import Settlement, SettlementState
from payments.settlements import services
from portal.audit import verify_chain
from testkit.database import other_connection, waits_on
from testkit.settlements import (
    CAP,
    DEDUCTIBLE,
    SYSTEM,
    account,
    accumulator,
    assert_ledger_consistent,
    lines,
    linked,
    make_wallet,
    token,
)

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 50
BALANCE = 20_000


def run_concurrently(jobs: list[Callable[[], object]]) -> tuple[list[object], list[BaseException]]:
    """Run every job in its own thread (so its own database connection), released together."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(job: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=30)
            outcome = job()
            with lock:
                results.append(outcome)
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


def assert_year_consistent(citizen_id: int, year: int) -> None:
    """The accumulator equals what the live settlements (pending or paid) hold, within the policy."""
    live = Settlement.objects.filter(
        citizen_id=citizen_id, year=year, state__in=[SettlementState.PENDING_PAYMENT, SettlementState.PAID]
    )
    deductible_used, fund_used = accumulator(citizen_id, year)
    assert deductible_used == sum(s.deductible_fen for s in live) <= DEDUCTIBLE
    assert fund_used == sum(s.fund_fen for s in live) <= CAP
    pending_account = sum(s.account_fen for s in live if s.state == SettlementState.PENDING_PAYMENT)
    assert account(citizen_id).held_fen == pending_account
    assert_ledger_consistent(citizen_id)


def test_fifty_concurrent_settlements_never_pass_the_deductible_the_cap_or_the_balance(regions, world):
    wallet = make_wallet()
    linkage = linked(wallet, regions, balance=BALANCE)
    citizen_id = linkage.citizen_id
    tokens = [token(linkage) for _ in range(THREADS)]

    def create(tok: str) -> Callable[[], Settlement]:
        return lambda: services.settlement_create(
            actor=SYSTEM,
            partner=wallet,
            token=tok,
            facility_code="H310-1",
            lines=lines(("DRUGA", 1, 5000)),
            use_personal_account=True,
        )

    created, errors = run_concurrently([create(tok) for tok in tokens])
    assert errors == []
    assert len(created) == THREADS
    # 50 bills of 5000 eligible: the deductible is taken once, and 240000 x 0.70 is far above the cap.
    assert accumulator(citizen_id, world.year) == (DEDUCTIBLE, CAP)
    assert account(citizen_id).held_fen == BALANCE
    for settlement in Settlement.objects.filter(citizen_id=citizen_id):
        assert settlement.fund_fen + settlement.account_fen + settlement.self_pay_fen == settlement.total_fen == 5000
    assert_year_consistent(citizen_id, world.year)

    # Half are confirmed while the other half are cancelled, all at once.
    rows = list(Settlement.objects.filter(citizen_id=citizen_id).order_by("id"))
    to_pay, to_cancel = rows[::2], rows[1::2]
    jobs = [
        (
            lambda s=s: services.settlement_confirm(
                actor=SYSTEM, settlement=s, partner_transaction_id=f"wx-{s.pk}", self_pay_fen=s.self_pay_fen
            )
        )
        for s in to_pay
    ] + [(lambda s=s: services.settlement_cancel(actor=SYSTEM, settlement=s)) for s in to_cancel]
    _, errors = run_concurrently(jobs)
    assert errors == []
    assert_year_consistent(citizen_id, world.year)
    paid_account = sum(s.account_fen for s in to_pay)
    assert account(citizen_id).balance_fen == BALANCE - paid_account

    # New settlements race the refunds of the paid ones.
    more = [token(linkage) for _ in range(10)]
    jobs = [(lambda s=s: services.settlement_refund(actor=SYSTEM, settlement=s, reason="returned")) for s in to_pay]
    jobs += [create(tok) for tok in more]
    _, errors = run_concurrently(jobs)
    assert errors == []
    assert Settlement.objects.filter(citizen_id=citizen_id, state=SettlementState.REFUNDED).count() == len(to_pay)
    assert_year_consistent(citizen_id, world.year)
    assert verify_chain() == []


def test_one_token_sent_fifty_times_at_once_settles_once(regions, world):
    wallet = make_wallet()
    linkage = linked(wallet, regions)
    tok = token(linkage)
    jobs = [
        (
            lambda: services.settlement_create(
                actor=SYSTEM, partner=wallet, token=tok, facility_code="H310-1", lines=lines(("REG", 1, 100))
            )
        )
        for _ in range(THREADS)
    ]
    created, errors = run_concurrently(jobs)
    assert len(created) == 1
    assert {getattr(e, "code", repr(e)) for e in errors} == {"token_used"}
    assert_year_consistent(linkage.citizen_id, world.year)


def test_create_locks_the_card_before_the_citizens_year_and_account(regions, world):
    """The module's lock order (card, then year, then account), though one statement takes all
    three: while another transaction holds the card, a create waiting on it holds neither the
    year nor the account, so nothing that locks the card first can deadlock against it."""
    wallet = make_wallet()
    linkage = linked(wallet, regions, balance=BALANCE)
    first = services.settlement_create(
        actor=SYSTEM,
        partner=wallet,
        token=token(linkage),
        facility_code="H310-1",
        lines=lines(("REG", 1, 100)),
        use_personal_account=True,
    )
    assert first.pk  # the year's accumulator and the account exist: the steady state's single statement
    tok = token(linkage)
    with other_connection() as holder, other_connection() as prober:
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM insurance_certificate WHERE id = %s FOR UPDATE", [linkage.certificate_id])
        done: list[object] = []
        creator = threading.Thread(target=lambda: done.append(_create_then_close(wallet, tok)))
        creator.start()
        try:
            assert waits_on(holder), "the create never waited on the card"
            # Neither the year nor the account is locked by the waiting create.
            prober.execute(
                "SELECT 1 FROM payments_citizenyearaccumulator WHERE citizen_id = %s AND year = %s FOR UPDATE NOWAIT",
                [linkage.citizen_id, world.year],
            )
            prober.execute(
                "SELECT 1 FROM payments_personalaccount WHERE citizen_id = %s FOR UPDATE NOWAIT", [linkage.citizen_id]
            )
        finally:
            holder.execute("ROLLBACK")
            creator.join(timeout=30)
    assert not creator.is_alive()
    assert len(done) == 1 and isinstance(done[0], Settlement), done
    assert_year_consistent(linkage.citizen_id, world.year)


def _create_then_close(wallet, tok: str) -> object:
    try:
        return services.settlement_create(
            actor=SYSTEM,
            partner=wallet,
            token=tok,
            facility_code="H310-1",
            lines=lines(("REG", 1, 100)),
            use_personal_account=True,
        )
    except BaseException as exc:  # noqa: BLE001  (reported by the test)
        return exc
    finally:
        connection.close()
