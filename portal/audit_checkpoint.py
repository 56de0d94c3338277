"""Signed checkpoints of the audit chain, kept outside the database.

The chain (portal/audit.py) shows a row edited, inserted or deleted in its middle, but not its
newest rows deleted together with the head rewritten to the row before them: what is left is a
shorter chain that is whole. A checkpoint closes that gap. It records the chain's position, the
hash at that position, how many chained rows lead up to it and when, signed with an Ed25519 key
from the environment (`ECARD_AUDIT_CHECKPOINT_KEYS`, never stored in the database), and it is
written where the database cannot reach (`ECARD_AUDIT_CHECKPOINT_PATH`). Beat writes one
periodically (`portal.tasks.export_audit_checkpoint`); `verify_audit_chain` then requires the
chain to reach the newest checkpoint's position with the same hash there. What is left is the
rows written after the newest checkpoint: the beat period bounds that window.

A checkpoint is written only if it extends the newest one. If the chain no longer reaches the
newest checkpoint, the writer refuses and says so, so that a tail deletion is never blessed by a
fresh checkpoint of the shortened chain.

The file store keeps the newest checkpoint in one file, replaced atomically (a new file renamed
over it: a reader sees the old checkpoint or the new one, never half of one), and first appends
every checkpoint as one line to `<path>.history`. Why both: verification needs only the newest
(the chain links every earlier position to it), read in one step; the history tells when the
chain was where, for an investigation, and still holds the newest if that file is lost. Both are
mode 0600 in a directory of mode 0700. `CheckpointStore` is the one interface the rest of the
portal uses; an object store would be another implementation chosen by the setting's form (a URL
such as `s3://...`), which this version refuses rather than misreads as a file name.
"""

import base64
import binascii
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from portal.audit import ChainProblem, audit_chain_pending
from portal.models import AuditChainHead, AuditEvent

FORMAT = "ecard-audit-checkpoint/1"


class CheckpointError(Exception):
    """A checkpoint that cannot be read or trusted, or a chain that does not reach the newest one."""


@dataclass(frozen=True)
class Checkpoint:
    chain_seq: int  # the chain's position (0: nothing chained yet)
    hash: str  # the chained hash at that position
    seq: int | None  # the insertion number (`seq`) of the row at that position, for people
    rows: int  # chained rows at positions up to `chain_seq`
    created_at: str  # RFC 3339, UTC
    key_version: int  # which of ECARD_AUDIT_CHECKPOINT_KEYS signed it
    signature: str = ""  # standard base64 of the Ed25519 signature over `signed_bytes()`

    def signed_bytes(self) -> bytes:
        fields = {**asdict(self), "format": FORMAT}
        del fields["signature"]
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        """One line: what the store writes and `export_audit_checkpoint` prints."""
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        return f"the checkpoint of {self.created_at} at chain position {self.chain_seq}"


def _private_key(version: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(settings.ECARD_AUDIT_CHECKPOINT_KEYS[version])


def public_key_b64(version: int | None = None) -> str:
    """The standard base64 of the raw Ed25519 public key (the newest version by default)."""
    version = max(settings.ECARD_AUDIT_CHECKPOINT_KEYS) if version is None else version
    raw = _private_key(version).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def checkpoint_sign(checkpoint: Checkpoint) -> Checkpoint:
    signature = _private_key(checkpoint.key_version).sign(checkpoint.signed_bytes())
    return replace(checkpoint, signature=base64.b64encode(signature).decode())


def checkpoint_signature_valid(checkpoint: Checkpoint) -> bool:
    if checkpoint.key_version not in settings.ECARD_AUDIT_CHECKPOINT_KEYS:
        return False
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        _private_key(checkpoint.key_version).public_key().verify(signature, checkpoint.signed_bytes())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def checkpoint_parse(text: str) -> Checkpoint:
    """A checkpoint from its JSON line (signature not checked yet), or CheckpointError."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise ValueError("not an audit checkpoint")
        checkpoint = Checkpoint(**data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"not a readable audit checkpoint ({exc})") from None
    typed = (
        type(checkpoint.chain_seq) is int
        and checkpoint.chain_seq >= 0
        and type(checkpoint.rows) is int
        and type(checkpoint.key_version) is int
        and (checkpoint.seq is None or type(checkpoint.seq) is int)
        and all(isinstance(v, str) for v in (checkpoint.hash, checkpoint.created_at, checkpoint.signature))
    )
    if not typed:
        raise CheckpointError("not a readable audit checkpoint (a member has the wrong type)")
    return checkpoint


# --- Where checkpoints are kept --------------------------------------------------------------


class CheckpointStore(Protocol):
    def describe(self) -> str: ...

    def newest(self) -> Checkpoint | None:
        """The newest checkpoint, None if there is none yet; CheckpointError if it cannot be read."""
        ...

    def append(self, checkpoint: Checkpoint) -> None: ...

    def exclusive(self) -> AbstractContextManager[None]:
        """A context in which this process alone appends (read the newest, decide, append)."""
        ...


class FileCheckpointStore:
    """The newest checkpoint in `path` (replaced atomically), every one also in `path.history`."""

    FILE_MODE = 0o600
    DIRECTORY_MODE = 0o700

    def __init__(self, path: Path) -> None:
        self.path = path
        self.history = path.with_name(path.name + ".history")

    def describe(self) -> str:
        return str(self.path)

    def newest(self) -> Checkpoint | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"{self.path} cannot be read ({exc.strerror})") from None
        return checkpoint_parse(text)

    def _directory(self) -> Path:
        directory = self.path.parent
        directory.mkdir(mode=self.DIRECTORY_MODE, parents=True, exist_ok=True)
        return directory

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        # A lock file beside the checkpoint: the beat task and an operator's command may meet.
        fd = os.open(self._directory() / (self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, self.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def append(self, checkpoint: Checkpoint) -> None:
        directory = self._directory()
        line = (checkpoint.to_json() + "\n").encode()
        # History first: it never lacks the checkpoint the newest file names.
        fd = os.open(self.history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.FILE_MODE)
        try:
            os.fchmod(fd, self.FILE_MODE)  # also if it was made by hand with a wider mode
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.")  # mode 0600
        try:
            os.write(fd, line)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temporary)
            raise
        os.close(fd)
        os.replace(temporary, self.path)
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)  # the rename itself survives a crash
        finally:
            os.close(directory_fd)


def checkpoint_store() -> FileCheckpointStore:
    """The store named by `ECARD_AUDIT_CHECKPOINT_PATH` (a file path; object stores are not written yet)."""
    location = str(settings.ECARD_AUDIT_CHECKPOINT_PATH)
    if "://" in location:
        raise ImproperlyConfigured(f"ECARD_AUDIT_CHECKPOINT_PATH: only a file path is supported, not {location!r}")
    return FileCheckpointStore(Path(location))


# --- Taking, writing and checking checkpoints --------------------------------------------------


def _chained_rows(above: int, up_to: int) -> int:
    """Chained rows at positions in (above, up_to]: an index-only count on the unique `chain_seq`."""
    return AuditEvent.objects.filter(chain_seq__gt=above, chain_seq__lte=up_to).count()


def _chained_rows_up_to(position: int) -> int:
    return AuditEvent.objects.filter(chain_seq__isnull=False, chain_seq__lte=position).count()


def checkpoint_problems(checkpoint: Checkpoint, *, source: str, count_rows: bool = True) -> list[ChainProblem]:
    """What is wrong between the chain as it is now and `checkpoint` (read from `source`): an
    empty list when the checkpoint is authentic and the chain still reaches it unchanged.
    `count_rows=False` leaves out the count of every row up to it (the writer's check, which
    only needs to know that the chain still reaches it)."""
    position = checkpoint.chain_seq
    if not checkpoint_signature_valid(checkpoint):
        return [ChainProblem(position, f"the checkpoint in {source} has no valid signature (forged or damaged)")]
    if position == 0:
        return []
    row = AuditEvent.objects.filter(chain_seq=position).only("seq", "hash").first()
    if row is None:
        last = (
            AuditEvent.objects.filter(chain_seq__isnull=False)
            .order_by("-chain_seq")
            .values_list("chain_seq", flat=True)
            .first()
            or 0
        )
        if last < position:
            return [
                ChainProblem(
                    position,
                    f"the chain ends at {last}, short of {checkpoint.describe()} in {source} (rows deleted at the end)",
                )
            ]
        return [ChainProblem(position, f"the row of {checkpoint.describe()} in {source} is missing (deleted)")]
    problems = []
    if row.hash != checkpoint.hash or (checkpoint.seq is not None and row.seq != checkpoint.seq):
        problems.append(
            ChainProblem(position, f"the row at this position does not match {checkpoint.describe()} in {source}")
        )
    rows = _chained_rows_up_to(position) if count_rows else checkpoint.rows
    if rows != checkpoint.rows:
        problems.append(
            ChainProblem(
                position,
                f"{rows} chained rows up to this position, {checkpoint.describe()} in {source} counted"
                f" {checkpoint.rows} (rows deleted or inserted)",
            )
        )
    return problems


def checkpoint_take(after: Checkpoint | None = None) -> Checkpoint:
    """A signed checkpoint of the chain as it is now, after chaining what is committed. `after`, a
    checkpoint the chain was found to reach: returned itself if the chain has not moved since, and
    only the rows chained since are counted."""
    audit_chain_pending()
    with transaction.atomic():
        # The chainer's lock: the head and its row are read as one state of the chain.
        head = AuditChainHead.objects.select_for_update().filter(id=1).first()
        position, last_hash = (head.last_seq, head.last_hash) if head is not None else (0, "0" * 64)
        seq = None
        if position:
            row = AuditEvent.objects.filter(chain_seq=position).only("seq", "hash").first()
            if row is None or row.hash != last_hash:
                raise CheckpointError(f"the chain head names position {position}, whose row does not match it")
            seq = row.seq
        if after is not None and (position, last_hash) == (after.chain_seq, after.hash):
            return after
        if after is not None and position < after.chain_seq:
            raise CheckpointError(f"the chain went back from {after.chain_seq} to {position}")
        if after is not None:
            rows = after.rows + _chained_rows(after.chain_seq, position)
        else:
            rows = _chained_rows_up_to(position)
    checkpoint = Checkpoint(
        chain_seq=position,
        hash=last_hash,
        seq=seq,
        rows=rows,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        key_version=max(settings.ECARD_AUDIT_CHECKPOINT_KEYS),
    )
    return checkpoint_sign(checkpoint)


def audit_checkpoint_export(store: CheckpointStore | None = None) -> tuple[Checkpoint, bool]:
    """Write a checkpoint of the chain if it moved since the newest one: (the newest checkpoint,
    whether it was written now). CheckpointError, and nothing written, if the newest checkpoint
    is not authentic or the chain no longer reaches it."""
    store = store or checkpoint_store()
    with store.exclusive():
        newest = store.newest()
        if newest is not None:
            problems = checkpoint_problems(newest, source=store.describe(), count_rows=False)
            if problems:
                raise CheckpointError("; ".join(str(problem) for problem in problems))
        checkpoint = checkpoint_take(after=newest)
        if checkpoint is newest:
            return checkpoint, False
        store.append(checkpoint)
        return checkpoint, True
