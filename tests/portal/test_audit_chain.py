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
from portal.audit import GENESIS, audit_record, compute_hash, verify_chain
from portal.models import AuditChainHead, AuditEvent

BASE_DIR = Path(__file__).resolve().parents[2]
ACTOR = Actor(type="user", id="7", label="clerk-7", ip="10.0.0.7")


def append(n: int, actor: Actor = ACTOR) -> list[AuditEvent]:
    with transaction.atomic():
        return [
            audit_record(actor=actor, action="citizen.update", object_type="citizen", object_id=i,
                         region_code="310000", before={"name_masked": "张*明"}, after={"name_masked": "张*华", "n": i},
                         reason="test")
            for i in range(n)
        ]


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
def test_the_database_refuses_to_update_or_delete_an_audit_row():
    append(2)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=1).update(reason="nothing happened")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=2).delete()

    assert AuditEvent.objects.get(seq=1).reason == "test"
    assert AuditEvent.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["reason", "actor_label", "after", "created_at", "region_code"])
def test_an_edited_row_in_the_middle_is_detected(field):
    append(5)
    value = {"reason": "cover-up", "actor_label": "someone-else", "after": {"name_masked": "李*"},
             "created_at": timezone.now(), "region_code": "440000"}[field]

    with attacker():
        AuditEvent.objects.filter(seq=3).update(**{field: value})

    problems = verify_chain()
    assert [(p.seq, "edited" in p.problem) for p in problems] == [(3, True)]
    code, output = run_command()
    assert code == 1
    assert "seq 3" in output


@pytest.mark.django_db
def test_an_edit_that_recomputes_the_hash_without_the_key_is_detected():
    events = append(3)
    with attacker():
        forged = AuditEvent.objects.get(seq=2)
        forged.reason = "cover-up"
        forged.hash = hashlib.sha256(forged.prev_hash.encode() + forged.reason.encode()).hexdigest()
        forged.save(update_fields=["reason", "hash"])

    problems = verify_chain()

    assert {p.seq for p in problems} == {2, 3}
    assert events[2].prev_hash != forged.hash


@pytest.mark.django_db
def test_a_deleted_row_in_the_middle_is_detected():
    append(5)

    with attacker():
        AuditEvent.objects.filter(seq=3).delete()

    problems = verify_chain()
    assert any(p.seq == 3 and "missing" in p.problem for p in problems)
    assert any(p.seq == 4 and "does not follow" in p.problem for p in problems)
    assert run_command()[0] == 1


@pytest.mark.django_db
def test_a_deleted_row_at_the_end_is_detected():
    append(5)

    with attacker():
        AuditEvent.objects.filter(seq__in=[4, 5]).delete()

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


def forged_row(seq: int, prev_hash: str) -> AuditEvent:
    event = AuditEvent(seq=seq, created_at=timezone.now(), actor_type="user", actor_id="1", actor_label="ghost",
                       action="citizen.update", object_type="citizen", object_id="1", prev_hash=prev_hash)
    # Without the key the attacker can only guess; a plain hash of the row is the best he has.
    event.hash = hashlib.sha256(f"{prev_hash}|{seq}".encode()).hexdigest()
    return event


@pytest.mark.django_db
def test_a_row_inserted_at_the_end_is_detected():
    events = append(3)

    forged_row(4, events[-1].hash).save(force_insert=True)  # no trigger needed: INSERT is allowed

    problems = verify_chain()
    assert any(p.seq == 4 and "edited or forged" in p.problem for p in problems)
    assert run_command()[0] == 1


@pytest.mark.django_db
def test_a_row_inserted_before_the_first_is_detected():
    append(3)

    forged_row(0, GENESIS).save(force_insert=True)

    problems = verify_chain()
    assert [p.seq for p in problems] == [0]
    assert "inserted" in problems[0].problem


@pytest.mark.django_db
def test_a_row_replaced_in_the_middle_is_detected():
    events = append(5)

    with attacker():
        AuditEvent.objects.filter(seq=3).delete()
        forged_row(3, events[1].hash).save(force_insert=True)

    assert {p.seq for p in verify_chain()} >= {3, 4}


@pytest.mark.django_db
def test_the_chain_hash_covers_what_the_database_gives_back_for_ipv6_and_unicode():
    actor = Actor(type="partner", id="wechat", label="微信支付", ip="2001:DB8:0:0:0:0:0:1")
    with transaction.atomic():
        event = audit_record(actor=actor, action="linkage.create", object_type="linkage", object_id="lnk_1",
                             after={"name_masked": "欧阳*华", "amount_fen": 12345, "ratio": "0.70", "ok": True, "none": None})

    stored = AuditEvent.objects.get(seq=event.seq)
    assert compute_hash(stored.prev_hash, stored) == stored.hash
    assert verify_chain() == []


@pytest.mark.django_db(transaction=True)
def test_recording_an_audit_event_outside_a_transaction_raises():
    with pytest.raises(RuntimeError):
        audit_record(actor=ACTOR, action="x", object_type="y", object_id=1)
    assert AuditEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_from_several_threads_keep_one_unbroken_chain():
    AuditChainHead.objects.get_or_create(id=1)
    threads_count, per_thread = 6, 15
    barrier = threading.Barrier(threads_count)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(per_thread):
                with transaction.atomic():
                    audit_record(actor=Actor.system(f"thread-{number}"), action="test.append", object_type="t",
                                 object_id=f"{number}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, threads_count * per_thread + 1))
    assert verify_chain() == []
    assert AuditChainHead.objects.get(id=1).last_seq == threads_count * per_thread


def _manage(db_name: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{settings.DATABASES['default'].get('USER') or 'postgres'}@" \
        f"{settings.DATABASES['default'].get('HOST') or '127.0.0.1'}:{settings.DATABASES['default'].get('PORT') or 5432}/{db_name}"
    return subprocess.run([sys.executable, "manage.py", "verify_audit_chain"], cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_0_when_intact_and_1_listing_the_problems_when_not():
    AuditChainHead.objects.get_or_create(id=1)
    append(4)
    db_name = connection.settings_dict["NAME"]

    intact = _manage(db_name)
    assert intact.returncode == 0, intact.stderr
    assert "intact" in intact.stdout

    with transaction.atomic(), attacker():
        AuditEvent.objects.filter(seq=2).update(reason="cover-up")
    broken = _manage(db_name)

    assert broken.returncode == 1
    assert "seq 2" in broken.stderr
    assert "BROKEN" in broken.stderr
