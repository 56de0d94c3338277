"""The audit chain anchored outside the database: signed checkpoints (portal/audit_checkpoint.py),
`export_audit_checkpoint`, the beat task, and `verify_audit_chain` checking the chain against them."""

import base64
import json
import re
import stat
from dataclasses import replace
from io import StringIO
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.audit import verify_chain
from portal.audit_checkpoint import Checkpoint, checkpoint_parse, checkpoint_store
from portal.celery import app
from portal.models import AuditChainHead, AuditEvent
from testkit.processes import CeleryWorker, database_url_for_current_connection, wait_until
from tests.portal.test_audit_chain import append, attacker


def run(command: str, *args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
        return 0, out.getvalue()
    except CommandError as exc:
        return exc.returncode, err.getvalue() + str(exc)


def export() -> Checkpoint:
    code, output = run("export_audit_checkpoint")
    assert code == 0, output
    return checkpoint_parse(output.strip().splitlines()[-1])


def cut_the_tail(rows: int = 1) -> None:
    """What a database superuser does to make the newest rows vanish: the append-only trigger off, the
    newest chained rows deleted, and the head rewound to the row now last, so that the chain is whole."""
    newest = list(AuditEvent.objects.filter(chain_seq__isnull=False).order_by("-chain_seq")[: rows + 1])
    with attacker():
        AuditEvent.objects.filter(seq__in=[row.seq for row in newest[:rows]]).delete()
    AuditChainHead.objects.filter(id=1).update(last_seq=newest[rows].chain_seq, last_hash=newest[rows].hash)


@pytest.mark.django_db
def test_deleting_the_newest_rows_and_rewinding_the_head_is_reported_against_the_checkpoint():
    append(5)
    checkpoint = export()

    cut_the_tail()

    assert verify_chain() == []  # the chain alone cannot tell: what is left is whole
    code, output = run("verify_audit_chain")
    assert code == 1
    assert f"seq {checkpoint.chain_seq}:" in output
    assert "the chain ends at 4" in output and "rows deleted at the end" in output
    assert "BROKEN" in output


@pytest.mark.django_db
def test_the_exporter_refuses_to_checkpoint_a_chain_cut_short_and_keeps_the_newest():
    append(5)
    checkpoint = export()
    cut_the_tail(2)

    code, output = run("export_audit_checkpoint")

    assert code == 1
    assert "REFUSED" in output and "rows deleted at the end" in output
    assert checkpoint_store().newest() == checkpoint
    assert run("verify_audit_chain")[0] == 1  # still caught on the next verification


@pytest.mark.django_db
def test_a_chain_that_grew_after_the_checkpoint_verifies_intact_and_the_next_checkpoint_extends_it():
    append(3)
    first = export()
    append(4)

    code, output = run("verify_audit_chain")
    assert code == 0, output
    assert "intact" in output and "the chain reaches the checkpoint" in output

    second = export()
    assert (first.chain_seq, second.chain_seq) == (3, 7)
    assert second.rows == 7
    history = Path(settings.ECARD_AUDIT_CHECKPOINT_PATH + ".history").read_text().splitlines()
    assert [checkpoint_parse(line) for line in history] == [first, second]
    assert run("verify_audit_chain")[0] == 0


@pytest.mark.django_db
def test_an_unchanged_chain_writes_no_new_checkpoint():
    append(2)
    first = export()

    code, output = run("export_audit_checkpoint")

    assert code == 0
    assert "unchanged" in output
    assert checkpoint_parse(output.strip().splitlines()[-1]) == first
    assert len(Path(settings.ECARD_AUDIT_CHECKPOINT_PATH + ".history").read_text().splitlines()) == 1


def forge(checkpoint: Checkpoint, **changes) -> str:
    """The checkpoint rewritten by someone without the key: the old signature, or one of his own key."""
    forged = replace(checkpoint, **changes)
    if "signature" not in changes:
        own_key = Ed25519PrivateKey.generate()
        forged = replace(forged, signature=base64.b64encode(own_key.sign(forged.signed_bytes())).decode())
    return forged.to_json()


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["own key", "old signature", "no signature", "unknown key version"])
def test_a_forged_checkpoint_matching_the_cut_chain_is_reported(how):
    append(5)
    checkpoint = export()
    cut_the_tail()
    now_last = AuditEvent.objects.get(chain_seq=4)
    matching = {"chain_seq": 4, "hash": now_last.hash, "seq": now_last.seq, "rows": 4}
    forged = {
        "own key": lambda: forge(checkpoint, **matching),
        "old signature": lambda: forge(checkpoint, **matching, signature=checkpoint.signature),
        "no signature": lambda: forge(checkpoint, **matching, signature=""),
        "unknown key version": lambda: forge(checkpoint, **matching, key_version=99),
    }[how]()
    Path(settings.ECARD_AUDIT_CHECKPOINT_PATH).write_text(forged + "\n")

    code, output = run("verify_audit_chain")

    assert code == 1
    assert "no valid signature (forged or damaged)" in output
    assert run("export_audit_checkpoint")[0] == 1  # never signs over a forged checkpoint


@pytest.mark.django_db
def test_an_unreadable_checkpoint_file_is_reported():
    append(2)
    export()
    Path(settings.ECARD_AUDIT_CHECKPOINT_PATH).write_text('{"format": "something else"}\n')

    code, output = run("verify_audit_chain")

    assert code == 1
    assert "not a readable audit checkpoint" in output


@pytest.mark.django_db
def test_a_checkpoint_kept_elsewhere_catches_the_cut_even_when_the_stored_file_is_gone():
    append(5)
    kept = export().to_json()  # e.g. pasted into a ticket
    cut_the_tail()
    Path(settings.ECARD_AUDIT_CHECKPOINT_PATH).unlink()

    assert run("verify_audit_chain")[0] == 0  # nothing stored to compare with
    code, output = run("verify_audit_chain", "--checkpoint", kept)

    assert code == 1
    assert "the checkpoint given on the command line" in output and "rows deleted at the end" in output


@pytest.mark.django_db
def test_a_checkpoint_file_given_on_the_command_line_is_read(tmp_path):
    append(3)
    copy = tmp_path / "kept.json"
    copy.write_text(export().to_json() + "\n")

    code, output = run("verify_audit_chain", "--checkpoint", str(copy))

    assert code == 0, output
    assert "the chain reaches the checkpoint of" in output and str(copy) in output


@pytest.mark.django_db
def test_a_rewritten_row_at_the_checkpoint_position_is_reported():
    append(3)
    checkpoint = export()
    # The attacker rebuilds the last row under the trigger's nose: new content, new hash (he lacks the
    # key, so verify_chain sees it as well; the checkpoint names the position independently).
    with attacker():
        AuditEvent.objects.filter(chain_seq=3).update(hash="f" * 64)

    code, output = run("verify_audit_chain")

    assert code == 1
    assert f"seq {checkpoint.chain_seq}: the row at this position does not match the checkpoint" in output


@pytest.mark.django_db
def test_without_any_checkpoint_the_command_says_the_end_was_not_checked():
    append(1)

    code, output = run("verify_audit_chain")

    assert code == 0
    assert "the end of the chain was not checked" in output


@pytest.mark.django_db
def test_the_printed_checkpoint_is_the_stored_one_and_its_files_are_private():
    append(2)
    code, output = run("export_audit_checkpoint")
    assert code == 0

    path = Path(settings.ECARD_AUDIT_CHECKPOINT_PATH)
    printed = output.strip().splitlines()[-1]
    assert path.read_text().strip() == printed
    assert json.loads(printed)["format"] == "ecard-audit-checkpoint/1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{path}.history").stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "checkpoint.json",
        "checkpoint.json.history",
        "checkpoint.json.lock",
    ]  # no temporary file left behind


def test_the_beat_schedule_runs_the_checkpoint_task():
    entries = [entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"].endswith("checkpoint")]

    assert [entry["task"] for entry in entries] == ["portal.tasks.export_audit_checkpoint"]
    assert 0 < entries[0]["schedule"] <= 300
    app.loader.import_default_modules()
    assert "portal.tasks.export_audit_checkpoint" in app.tasks


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_beat_and_a_worker_write_the_checkpoint_with_mode_0600(tmp_path):
    append(3)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    path = tmp_path / "anchor" / "checkpoint.json"
    worker = CeleryWorker(
        env={
            "DATABASE_URL": database_url_for_current_connection(),
            "REDIS_URL": settings.REDIS_URL,
            "ECARD_AUDIT_CHECKPOINT_PATH": str(path),
            "ECARD_AUDIT_CHECKPOINT_SECONDS": "1",
            "DB_CONN_MAX_AGE": "0",
        },
        name="checkpoint",
        concurrency=1,
    ).start()
    try:
        wait_until(
            lambda: re.search(r"Task portal\.tasks\.export_audit_checkpoint\[[^]]+\] succeeded", worker.log()),
            timeout=30,
            what="the checkpoint task run by beat",
        )
    finally:
        worker.stop()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    written = checkpoint_parse(path.read_text())
    assert (written.chain_seq, written.rows) == (3, 3)
    assert run("verify_audit_chain", "--checkpoint", str(path))[0] == 0
