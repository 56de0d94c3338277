"""The HMAC-chained, append-only audit log and `verify_audit_chain`."""

import hashlib
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from portal.actors import Actor
from portal.audit import GENESIS, audit_chain_pending, audit_record, compute_hash, compute_row_hmac, verify_chain
from portal.models import AuditChainHead, AuditEvent

BASE_DIR = Path(__file__).resolve().parents[2]
ACTOR = Actor(type="user", id="7", label="clerk-7", ip="10.0.0.7")


def append(n: int, actor: Actor = ACTOR, *, chain: bool = True) -> list[AuditEvent]:
    """`n` events in one transaction; then, unless `chain=False`, what the beat task does (the
    test's own transaction is the chainer's, so its rows are chained)."""
    with transaction.atomic():
        events = [
            audit_record(
                actor=actor,
                action="citizen.update",
                object_type="citizen",
                object_id=i,
                region_code="310000",
                before={"name_masked": "张*明"},
                after={"name_masked": "张*华", "n": i},
                reason="test",
            )
            for i in range(n)
        ]
    if chain:
        assert audit_chain_pending() == n
        events = list(AuditEvent.objects.filter(seq__in=[e.seq for e in events]).order_by("chain_seq"))
    return events


@contextmanager
def attacker():
    """Someone with database access who switches the append-only trigger off."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE portal_auditevent DISABLE TRIGGER portal_auditevent_append_only")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE portal_auditevent ENABLE TRIGGER portal_auditevent_append_only")


def run_command() -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit_chain", stdout=out, stderr=err)
        return 0, out.getvalue()
    except CommandError as exc:
        return exc.returncode, err.getvalue() + str(exc)


@pytest.mark.django_db
def test_an_untouched_chain_is_reported_intact():
    append(5)

    code, output = run_command()

    assert verify_chain() == []
    assert code == 0
    assert "intact" in output
    assert "5 events" in output


@pytest.mark.django_db
def test_an_empty_log_is_intact():
    assert verify_chain() == []


@pytest.mark.django_db
def test_the_chain_positions_follow_the_writes_and_the_head_names_the_last():
    events = append(4)

    assert [e.chain_seq for e in events] == [1, 2, 3, 4]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    head = AuditChainHead.objects.get(id=1)
    assert (head.last_seq, head.last_hash) == (4, events[-1].hash)


@pytest.mark.django_db
def test_the_database_refuses_to_update_or_delete_an_audit_row():
    events = append(2)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=events[0].seq).update(reason="nothing happened")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=events[1].seq).delete()
    # Chained once: the chain columns cannot be rewritten either.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=events[1].seq).update(chain_seq=99, hash="0" * 64)

    assert AuditEvent.objects.get(seq=events[0].seq).reason == "test"
    assert AuditEvent.objects.count() == 2


@pytest.mark.django_db
def test_the_only_update_allowed_is_chaining_an_unchained_row_without_touching_its_content():
    [event] = append(1, chain=False)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=event.seq).update(chain_seq=1, prev_hash=GENESIS, hash="1" * 64, reason="x")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=event.seq).update(reason="x")

    assert audit_chain_pending() == 1
    assert AuditEvent.objects.get(seq=event.seq).chain_seq == 1


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["reason", "actor_label", "after", "created_at", "region_code"])
def test_an_edited_row_in_the_middle_is_detected(field):
    events = append(5)
    value = {
        "reason": "cover-up",
        "actor_label": "someone-else",
        "after": {"name_masked": "李*"},
        "created_at": timezone.now(),
        "region_code": "440000",
    }[field]

    with attacker():
        AuditEvent.objects.filter(seq=events[2].seq).update(**{field: value})

    problems = verify_chain()
    assert [(p.seq, "edited" in p.problem) for p in problems] == [(events[2].seq, True)]
    code, output = run_command()
    assert code == 1
    assert f"seq {events[2].seq}:" in output


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["reason", "after", "object_id"])
def test_an_unchained_row_edited_before_the_chainer_runs_is_detected_and_never_chained(field):
    chained = append(2)
    pending = append(3, chain=False)
    value = {"reason": "cover-up", "after": {"name_masked": "李*"}, "object_id": "999"}[field]

    with attacker():
        AuditEvent.objects.filter(seq=pending[1].seq).update(**{field: value})

    problems = verify_chain()
    assert [(p.seq, "not chained yet" in p.problem) for p in problems] == [(pending[1].seq, True)]
    # The chainer seals the good rows and leaves the edited one out, still reported.
    assert audit_chain_pending() == 2
    assert AuditEvent.objects.get(seq=pending[1].seq).chain_seq is None
    assert [p.seq for p in verify_chain()] == [pending[1].seq]
    assert AuditChainHead.objects.get(id=1).last_seq == len(chained) + 2
    assert run_command()[0] == 1


@pytest.mark.django_db
def test_an_edit_that_recomputes_the_hash_without_the_key_is_detected():
    events = append(3)
    with attacker():
        forged = AuditEvent.objects.get(seq=events[1].seq)
        forged.reason = "cover-up"
        forged.hash = hashlib.sha256(forged.prev_hash.encode() + forged.reason.encode()).hexdigest()
        forged.save(update_fields=["reason", "hash"])

    problems = verify_chain()

    assert {p.seq for p in problems} == {events[1].seq, events[2].seq}
    assert events[2].prev_hash != forged.hash


@pytest.mark.django_db
def test_a_deleted_row_in_the_middle_is_detected():
    events = append(5)

    with attacker():
        AuditEvent.objects.filter(seq=events[2].seq).delete()

    problems = verify_chain()
    assert any(p.seq == 3 and "missing" in p.problem for p in problems)  # chain position 3
    assert any(p.seq == events[3].seq and "does not follow" in p.problem for p in problems)
    assert run_command()[0] == 1


@pytest.mark.django_db
def test_a_deleted_row_at_the_end_is_detected():
    events = append(5)

    with attacker():
        AuditEvent.objects.filter(seq__in=[events[3].seq, events[4].seq]).delete()

    problems = verify_chain()
    assert len(problems) == 1
    assert "deleted at the end" in problems[0].problem
    assert run_command()[0] == 1


@pytest.mark.django_db
def test_deleting_every_row_is_detected():
    append(3)

    with attacker():
        AuditEvent.objects.all().delete()

    assert verify_chain() != []


def forged_row(position: int | None, prev_hash: str, seq: int) -> AuditEvent:
    event = AuditEvent(
        seq=seq,
        chain_seq=position,
        created_at=timezone.now(),
        actor_type="user",
        actor_id="1",
        actor_label="ghost",
        action="citizen.update",
        object_type="citizen",
        object_id="1",
        prev_hash=prev_hash,
    )
    # Without the key the attacker can only guess; a plain hash of the row is the best he has.
    event.row_hmac = hashlib.sha256(f"row|{seq}".encode()).hexdigest()
    event.hash = hashlib.sha256(f"{prev_hash}|{position}".encode()).hexdigest()
    return event


@pytest.mark.django_db
def test_a_row_inserted_at_the_end_is_detected():
    events = append(3)

    forged = forged_row(4, events[-1].hash, events[-1].seq + 100)
    forged.save(force_insert=True)  # no trigger needed: INSERT is allowed

    problems = verify_chain()
    assert any(p.seq == forged.seq and "edited or forged" in p.problem for p in problems)
    assert run_command()[0] == 1


@pytest.mark.django_db
def test_a_forged_unchained_row_is_detected_and_the_chainer_does_not_seal_it():
    events = append(2)

    forged = forged_row(None, "", events[-1].seq + 100)
    forged.save(force_insert=True)

    assert [p.seq for p in verify_chain()] == [forged.seq]
    assert audit_chain_pending() == 0
    assert AuditEvent.objects.get(seq=forged.seq).chain_seq is None
    assert run_command()[0] == 1


@pytest.mark.django_db
def test_a_row_inserted_before_the_first_is_detected():
    events = append(3)

    forged = forged_row(0, GENESIS, events[-1].seq + 100)
    forged.save(force_insert=True)

    problems = verify_chain()
    assert [p.seq for p in problems] == [forged.seq]
    assert "inserted" in problems[0].problem


@pytest.mark.django_db
def test_a_row_replaced_in_the_middle_is_detected():
    events = append(5)

    with attacker():
        AuditEvent.objects.filter(seq=events[2].seq).delete()
        forged_row(3, events[1].hash, events[2].seq).save(force_insert=True)

    assert {p.seq for p in verify_chain()} >= {events[2].seq, events[3].seq}


@pytest.mark.django_db
def test_the_chain_hash_covers_what_the_database_gives_back_for_ipv6_and_unicode():
    actor = Actor(type="partner", id="wechat", label="微信支付", ip="2001:DB8:0:0:0:0:0:1")
    with transaction.atomic():
        event = audit_record(
            actor=actor,
            action="linkage.create",
            object_type="linkage",
            object_id="lnk_1",
            after={"name_masked": "欧阳*华", "amount_fen": 12345, "ratio": "0.70", "ok": True, "none": None},
        )
    assert compute_row_hmac(AuditEvent.objects.get(seq=event.seq)) == event.row_hmac
    audit_chain_pending()

    stored = AuditEvent.objects.get(seq=event.seq)
    assert compute_row_hmac(stored) == stored.row_hmac
    assert compute_hash(stored.prev_hash, stored) == stored.hash
    assert verify_chain() == []


@pytest.mark.django_db(transaction=True)
def test_recording_an_audit_event_outside_a_transaction_raises():
    with pytest.raises(RuntimeError):
        audit_record(actor=ACTOR, action="x", object_type="y", object_id=1)
    assert AuditEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_write_does_not_wait_for_the_chain_head():
    """The point of the design: a transaction holding the head (a chainer) blocks no writer."""
    AuditChainHead.objects.get_or_create(id=1)
    holding, release = threading.Event(), threading.Event()

    def chainer_holding_the_head() -> None:
        try:
            with transaction.atomic():
                AuditChainHead.objects.select_for_update().get(id=1)
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=chainer_holding_the_head)
    thread.start()
    try:
        assert holding.wait(timeout=10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '3s'")  # waiting for the head would fail here
            audit_record(actor=ACTOR, action="test.append", object_type="t", object_id=1)
    finally:
        release.set()
        thread.join(timeout=30)
    assert AuditEvent.objects.filter(action="test.append").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_late_commit_is_chained_after_it_commits_never_skipped():
    AuditChainHead.objects.get_or_create(id=1)
    written, commit = threading.Event(), threading.Event()
    late: list[int] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                late.append(audit_record(actor=ACTOR, action="test.late", object_type="t", object_id=1).seq)
                written.set()
                commit.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    try:
        assert written.wait(timeout=10)
        with transaction.atomic():
            after = audit_record(actor=ACTOR, action="test.early", object_type="t", object_id=2)
        # The slow transaction is still open: its row (written first) is invisible; the later one is chained.
        assert audit_chain_pending() == 1
        assert verify_chain() == []
    finally:
        commit.set()
        thread.join(timeout=30)

    assert audit_chain_pending() == 1  # the late commit, picked up by the next run
    chained = dict(AuditEvent.objects.values_list("seq", "chain_seq"))
    assert late[0] < after.seq
    assert chained[after.seq] == 1 and chained[late[0]] == 2
    assert verify_chain() == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_write_leaves_no_hole_in_the_chain():
    AuditChainHead.objects.get_or_create(id=1)
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        audit_record(actor=ACTOR, action="test.gone", object_type="t", object_id=1)
        1 / 0  # noqa: B018 - the change fails after its audit row
    append(2)

    assert list(AuditEvent.objects.order_by("chain_seq").values_list("chain_seq", flat=True)) == [1, 2]
    assert verify_chain() == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_and_chainers_keep_one_unbroken_chain():
    AuditChainHead.objects.get_or_create(id=1)
    threads_count, per_thread = 6, 15
    barrier = threading.Barrier(threads_count + 2)
    failures: list[BaseException] = []
    writing = [True]

    def worker(number: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(per_thread):
                with transaction.atomic():
                    audit_record(
                        actor=Actor.system(f"thread-{number}"),
                        action="test.append",
                        object_type="t",
                        object_id=f"{number}-{i}",
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connection.close()

    def chainer() -> None:
        try:
            barrier.wait(timeout=10)
            while writing[0]:
                audit_chain_pending()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connection.close()

    writers = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    chainers = [threading.Thread(target=chainer) for _ in range(2)]
    for thread in writers + chainers:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    writing[0] = False
    for thread in chainers:
        thread.join(timeout=60)
    audit_chain_pending()

    assert failures == []
    positions = list(AuditEvent.objects.order_by("chain_seq").values_list("chain_seq", flat=True))
    assert positions == list(range(1, threads_count * per_thread + 1))
    assert verify_chain() == []
    assert AuditChainHead.objects.get(id=1).last_seq == threads_count * per_thread


def _manage(db_name: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["DATABASE_URL"] = (
        f"postgres://{settings.DATABASES['default'].get('USER') or 'postgres'}@"
        f"{settings.DATABASES['default'].get('HOST') or '127.0.0.1'}:{settings.DATABASES['default'].get('PORT') or 5432}/{db_name}"
    )
    return subprocess.run(
        [sys.executable, "manage.py", "verify_audit_chain"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_0_when_intact_and_1_listing_the_problems_when_not():
    AuditChainHead.objects.get_or_create(id=1)
    append(4)
    db_name = connection.settings_dict["NAME"]

    intact = _manage(db_name)
    assert intact.returncode == 0, intact.stderr
    assert "intact" in intact.stdout

    second = AuditEvent.objects.get(chain_seq=2)
    with transaction.atomic(), attacker():
        AuditEvent.objects.filter(seq=second.seq).update(reason="cover-up")
    broken = _manage(db_name)

    assert broken.returncode == 1
    assert f"seq {second.seq}:" in broken.stderr
    assert "BROKEN" in broken.stderr
