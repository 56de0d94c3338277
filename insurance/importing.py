"""Bulk import of citizens (PARTNER_API.md "Provisioning").

One code path for `manage.py import_citizens` and the portal's background
import screen: `read_rows()` streams a CSV or XLSX file row by row, and
`import_rows()` takes any iterable of rows, validates each, registers a new
citizen (with a `pending_activation` e-card) or updates an existing one,
one transaction per batch of rows, and reports row errors and progress
through callbacks. New citizens are written in bulk (binary COPY); updates,
and any batch the bulk path cannot take, go row by row through the services.
Nothing is held beyond a batch, so memory stays flat however long the file.
Error messages never repeat the row's personal data.
"""

import csv
import datetime as dt
import hashlib
import hmac
import itertools
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from insurance import services
from insurance.identity import InvalidIdentityNumber, parse_identity_number
from insurance.models import (
    ID_NUMBER_PURPOSE,
    PHONE_PURPOSE,
    Certificate,
    CertificateState,
    CertificateTransition,
    Citizen,
    CitizenStatus,
    ImportJob,
    ImportJobState,
    ImportRowError,
    Scheme,
)
from portal import domain_events
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError
from portal.masking import mask_id_number, mask_phone
from portal.models import Region

REQUIRED_COLUMNS = ("id_number", "name", "phone", "region_code", "scheme")
OPTIONAL_COLUMNS = ("account_balance_fen",)
ISSUE_REASON = "bulk import"
_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class ImportFileError(Exception):
    """The file as a whole cannot be read (format, header); no row was imported."""


@dataclass(frozen=True)
class RowError:
    row: int  # the spreadsheet's row number: the header is row 1
    column: str  # "" when the error concerns the whole row
    message: str


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    failed: int = 0

    @property
    def rows_done(self) -> int:
        return self.created + self.updated + self.failed

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "failed": self.failed}


Row = tuple[int, Mapping[str, Any]]


# --- Reading files ----------------------------------------------------------


def _header(cells: Iterable[Any]) -> list[str]:
    names = [str(c).strip().lower() if c is not None else "" for c in cells]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ImportFileError(_("The header row lacks the column(s): %(columns)s.") % {"columns": ", ".join(missing)})
    return names


def _is_blank(values: Iterable[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


def _read_csv(path: Path) -> Iterator[Row]:
    # utf-8-sig drops a byte-order mark if there is one.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            names = _header(next(reader))
        except StopIteration:
            raise ImportFileError(_("The file is empty.")) from None
        for number, cells in enumerate(reader, start=2):
            if _is_blank(cells):
                continue
            # A short row leaves its last columns missing (None), not empty.
            yield number, {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(names) if name}


def _read_xlsx(path: Path) -> Iterator[Row]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)  # streaming: rows are parsed as we go
    except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException...
        raise ImportFileError(_("The file is not a readable XLSX workbook.")) from exc
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        try:
            names = _header(next(rows))
        except StopIteration:
            raise ImportFileError(_("The file is empty.")) from None
        for number, cells in enumerate(rows, start=2):
            if _is_blank(cells):
                continue
            # An empty cell reads as None: it is an empty value, not a missing column.
            yield (
                number,
                {
                    name: (("" if cells[i] is None else cells[i]) if i < len(cells) else None)
                    for i, name in enumerate(names)
                    if name
                },
            )
    finally:
        workbook.close()


def read_rows(path: str | Path) -> Iterator[Row]:
    """Stream `(row number, {column: value})` from a CSV (UTF-8) or XLSX file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".xlsx":
        return _read_xlsx(path)
    raise ImportFileError(_("Only .csv and .xlsx files can be imported."))


# --- Validating and importing -------------------------------------------------


def _text(value: Any) -> str | None:
    """A cell as text; None stays None (the column is missing from this row)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheets store phone numbers and amounts as numbers
    return str(value).strip()


@dataclass(frozen=True)
class _ValidRow:
    id_number: str
    name: str
    phone: str
    region: Region
    scheme: str
    account_balance_fen: int | None
    birth_date: dt.date
    sex: str


_SCHEMES = frozenset(Scheme.values)  # `Scheme.values` builds a new list on every access


def _validate(
    number: int, raw: Mapping[str, Any], regions: Mapping[str, Region], today: dt.date | None = None
) -> tuple[_ValidRow | None, list[RowError]]:
    errors: list[RowError] = []
    values: dict[str, str] = {}
    for column in REQUIRED_COLUMNS:
        value = _text(raw.get(column))
        if value is None:
            errors.append(RowError(number, column, _("The column is missing from this row.")))
        values[column] = value or ""
    if errors:
        return None, errors

    identity = None
    try:
        identity = parse_identity_number(values["id_number"], today=today)
    except InvalidIdentityNumber as exc:
        errors.append(RowError(number, "id_number", exc.message))
    name = values["name"]
    if not name or len(name) > 64:
        errors.append(RowError(number, "name", _("A name is 1 to 64 characters.")))
    phone = values["phone"]
    if phone and not _PHONE.fullmatch(phone):
        errors.append(RowError(number, "phone", _("A phone number is 5 to 20 digits, spaces or dashes.")))
    region = regions.get(values["region_code"])
    if region is None:
        errors.append(RowError(number, "region_code", _("Unknown pilot region code.")))
    if values["scheme"] not in _SCHEMES:
        errors.append(RowError(number, "scheme", _("The scheme is employee or resident.")))
    balance: int | None = None
    raw_balance = raw.get("account_balance_fen")
    if isinstance(raw_balance, float) and not raw_balance.is_integer():
        errors.append(RowError(number, "account_balance_fen", _("The balance is a whole number of fen.")))
    else:
        balance_text = _text(raw_balance)
        if balance_text:
            if not _INTEGER.fullmatch(balance_text):
                errors.append(RowError(number, "account_balance_fen", _("The balance is a whole number of fen.")))
            elif int(balance_text) < 0:
                errors.append(RowError(number, "account_balance_fen", _("The balance cannot be negative.")))
            else:
                balance = int(balance_text)
    if errors:
        return None, errors
    assert identity is not None and region is not None
    return _ValidRow(
        identity.value, name, phone, region, values["scheme"], balance, identity.birth_date, identity.sex
    ), []


def _record_balance(citizen_id: int, region_code: str, balance_fen: int, *, actor: Actor) -> None:
    # The personal account ledger lives in `payments`, which insurance never imports: a domain
    # event, handled in this transaction, turns a changed balance into an adjustment entry (a
    # refusal, such as a balance below what pending settlements hold, fails this row).
    domain_events.record(
        type="citizen.account_balance_set",
        aggregate_type="citizen",
        aggregate_id=str(citizen_id),
        region_code=region_code,
        data={
            "citizen_id": citizen_id,
            "balance_fen": balance_fen,
            "note": ISSUE_REASON,
            "actor": {"type": actor.type, "id": actor.id, "label": actor.label, "user_id": actor.user_id},
        },
    )


def _apply(row: _ValidRow, *, actor: Actor) -> bool:
    """Write one valid row through the services, in its own (nested) transaction;
    True if a citizen was created. The slow path: updates, and any batch whose
    fast path was refused."""
    with transaction.atomic():
        citizen_id = services.find_citizen_id_by_id_number(row.id_number)
        if citizen_id is None:
            citizen = services.citizen_register(
                actor=actor,
                id_number=row.id_number,
                name=row.name,
                phone=row.phone,
                region=row.region,
                scheme=row.scheme,
            )
            services.certificate_issue(actor=actor, citizen=citizen, reason=ISSUE_REASON)
            created = True
        else:
            citizen = Citizen.objects.get(pk=citizen_id)
            if citizen.region_id != row.region.code:
                raise DomainError(
                    "region_mismatch",
                    _("The citizen is insured in another region; an import does not move citizens."),
                    field="region_code",
                )
            services.citizen_update(actor=actor, citizen=citizen, name=row.name, phone=row.phone, scheme=row.scheme)
            created = False
        if row.account_balance_fen is not None:
            _record_balance(citizen.pk, citizen.region_id, row.account_balance_fen, actor=actor)
    return created


class _RowCrypto:
    """`portal.crypto`'s `encrypt_text` and `blind_index` for a batch of rows: the
    same bytes (`version | nonce | ciphertext+tag`, purpose as associated data;
    `"<version>:" + HMAC-SHA256(key, purpose | value)`), but the AES-GCM cipher
    and the keyed HMACs are set up once per batch rather than once per value."""

    def __init__(self) -> None:
        keys = settings.ECARD_FIELD_ENCRYPTION_KEYS
        version = max(keys)
        self._version = bytes([version])
        self._aead = AESGCM(keys[version])
        self._id_purpose = ID_NUMBER_PURPOSE.encode()
        self._phone_purpose = PHONE_PURPOSE.encode()
        index_keys = settings.ECARD_BLIND_INDEX_KEYS
        self._id_macs = [
            (f"{v}:", hmac.new(index_keys[v], f"{ID_NUMBER_PURPOSE}|".encode(), hashlib.sha256))
            for v in sorted(index_keys, reverse=True)
        ]  # newest first, as blind_index_candidates
        newest = max(index_keys)
        self._phone_mac = (f"{newest}:", hmac.new(index_keys[newest], f"{PHONE_PURPOSE}|".encode(), hashlib.sha256))

    def _encrypt(self, value: str, purpose: bytes) -> bytes:
        nonce = os.urandom(12)
        return self._version + nonce + self._aead.encrypt(nonce, value.encode(), purpose)

    @staticmethod
    def _index(prefix: str, keyed, value: str) -> str:
        mac = keyed.copy()
        mac.update(value.encode())
        return prefix + mac.hexdigest()

    def encrypt_id_number(self, value: str) -> bytes:
        return self._encrypt(value, self._id_purpose)

    def encrypt_phone(self, value: str) -> bytes:
        return self._encrypt(value, self._phone_purpose)

    def id_number_candidates(self, value: str) -> list[str]:
        return [self._index(prefix, keyed, value) for prefix, keyed in self._id_macs]

    def phone_index(self, value: str) -> str:
        return self._index(*self._phone_mac, value)


def _citizen_columns(row: _ValidRow, bidx: str, crypt: _RowCrypto) -> tuple:
    """What `citizen_register` stores for a row (less id, region, status and timestamps):
    (id_number_enc, id_number_bidx, id_number_masked, name, phone_enc, phone_bidx,
    phone_masked, birth_date, sex, scheme). A plain tuple: no model instance per row."""
    phone = row.phone  # already stripped by _text(), as `_set_phone` strips it
    if phone:
        phone_enc, phone_bidx, phone_masked = crypt.encrypt_phone(phone), crypt.phone_index(phone), mask_phone(phone)
    else:
        phone_enc, phone_bidx, phone_masked = None, "", ""
    return (
        crypt.encrypt_id_number(row.id_number),
        bidx,
        mask_id_number(row.id_number),
        row.name,
        phone_enc,
        phone_bidx,
        phone_masked,
        row.birth_date,
        row.sex,
        row.scheme,
    )


_CITIZEN_COPY_COLUMNS = (
    "id",
    "region_id",
    "id_number_enc",
    "id_number_bidx",
    "id_number_masked",
    "name",
    "phone_enc",
    "phone_bidx",
    "phone_masked",
    "birth_date",
    "sex",
    "scheme",
    "status",
    "created_at",
    "updated_at",
)
_CITIZEN_COPY_TYPES = (
    "int8",
    "varchar",
    "bytea",
    "varchar",
    "varchar",
    "varchar",
    "bytea",
    "varchar",
    "varchar",
    "date",
    "varchar",
    "varchar",
    "varchar",
    "timestamptz",
    "timestamptz",
)
_CARD_COPY_COLUMNS = ("id", "number", "citizen_id", "state", "issued_at", "expires_at", "end_reason")
_CARD_COPY_TYPES = ("int8", "varchar", "int8", "varchar", "timestamptz", "timestamptz", "varchar")
_TRANSITION_COPY_COLUMNS = ("certificate_id", "action", "from_state", "to_state", "actor_label", "reason", "at")
_TRANSITION_COPY_TYPES = ("int8", "varchar", "varchar", "varchar", "varchar", "varchar", "timestamptz")


def _copy(cursor, model, columns: tuple[str, ...], types: tuple[str, ...], records: Iterable[tuple]) -> None:
    names = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{model._meta.db_table}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
        copy.set_types(types)
        for record in records:
            copy.write_row(record)


def _insert_copy(
    rows: list[tuple[int, _ValidRow, str]], columns: list[tuple], *, actor: Actor, now: dt.datetime
) -> list[tuple[int, int, str]]:
    """The three INSERTs as binary COPY, ids taken ahead from the
    sequences in one statement; [(citizen id, card id, card number)] per row."""
    n = len(rows)
    expires = now + services.CERTIFICATE_VALIDITY
    with connection.cursor() as django_cursor, connection.wrap_database_errors:
        # A failed COPY surfaces as django.db.IntegrityError (wrap_database_errors), which the
        # caller's savepoint rolls back before the batch goes row by row through the services.
        cursor = django_cursor.cursor  # psycopg's own cursor: Django's has no copy()
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')), nextval(pg_get_serial_sequence(%s, 'id')) "
            "FROM generate_series(1, %s)",
            (Citizen._meta.db_table, Certificate._meta.db_table, n),
        )
        ids = cursor.fetchall()
        created = [
            (citizen_id, card_id, services._new_number(row.region.code))
            for (citizen_id, card_id), (_number, row, _bidx) in zip(ids, rows, strict=True)
        ]
        status = CitizenStatus.ACTIVE.value
        _copy(
            cursor,
            Citizen,
            _CITIZEN_COPY_COLUMNS,
            _CITIZEN_COPY_TYPES,
            (
                (citizen_id, row.region.code, *values, status, now, now)
                for (citizen_id, _card_id, _card), (_number, row, _bidx), values in zip(
                    created, rows, columns, strict=True
                )
            ),
        )
        state = CertificateState.PENDING_ACTIVATION.value
        _copy(
            cursor,
            Certificate,
            _CARD_COPY_COLUMNS,
            _CARD_COPY_TYPES,
            ((card_id, card, citizen_id, state, now, expires, "") for citizen_id, card_id, card in created),
        )
        label = actor.label
        _copy(
            cursor,
            CertificateTransition,
            _TRANSITION_COPY_COLUMNS,
            _TRANSITION_COPY_TYPES,
            ((card_id, "issue", "", state, label, ISSUE_REASON, now) for _citizen_id, card_id, _card in created),
        )
    return created


def _create_new(
    rows: list[tuple[int, _ValidRow, str]], columns: list[tuple], *, actor: Actor, context: Mapping[str, Any]
) -> None:
    """Register new citizens, each with a `pending_activation` e-card, in bulk.

    The same rows as `citizen_register` + `certificate_issue` write (the same
    encryption, blind index, masking, card number, validity and transition
    log), but three COPYs instead of a dozen statements per row, and one audit event per region and batch that names
    every citizen and card it created (ids and card numbers only: no personal data)."""
    if not rows:
        return
    now = timezone.now()
    created = _insert_copy(rows, columns, actor=actor, now=now)
    for (citizen_id, _card_id, _card), (_number, row, _bidx) in zip(created, rows, strict=True):
        if row.account_balance_fen is not None:
            _record_balance(citizen_id, row.region.code, row.account_balance_fen, actor=actor)
    by_region: dict[str, list[tuple[int, int, str]]] = {}
    for (number, row, _bidx), (citizen_id, _card_id, card) in zip(rows, created, strict=True):
        by_region.setdefault(row.region.code, []).append((number, citizen_id, card))
    for region_code, done in by_region.items():
        audit_record(
            actor=actor,
            action="citizen.import_batch",
            object_type="citizen_import",
            object_id=str(context.get("job", "command")),
            region_code=region_code,
            reason=ISSUE_REASON,
            after={
                **context,
                "rows": [done[0][0], done[-1][0]],
                "created": len(done),
                "citizens": [[citizen_id, card] for _n, citizen_id, card in done],
            },
        )


def _existing_indexes(indexes: list[str]) -> set[str]:
    """Which of these identity-number blind indexes are already stored."""
    # One array parameter rather than an IN list of thousands: a statement the server
    # prepares once for the whole import instead of compiling and planning it per batch.
    with connection.cursor() as cursor:
        cursor.execute('SELECT "id_number_bidx" FROM "insurance_citizen" WHERE "id_number_bidx" = ANY(%s)', [indexes])
        return {found for (found,) in cursor.fetchall()}


@dataclass
class _PreparedBatch:
    """A batch validated and encrypted ahead of its transaction (no database needed)."""

    last_row: int
    failed: int
    errors: list[RowError]
    # (row number, row, its identity number's blind indexes newest first, its citizen columns)
    valid: list[tuple[int, _ValidRow, list[str], tuple]]


def _prepare(batch: list[Row], regions: Mapping[str, Region]) -> _PreparedBatch:
    """Validate every row and, for the valid ones, compute what a new citizen stores
    (encryption, blind indexes, masks): the CPU work, which needs no database."""
    errors: list[RowError] = []
    valid: list[tuple[int, _ValidRow, list[str], tuple]] = []
    today = timezone.localdate()  # once per batch, not once per row
    crypt = _RowCrypto()
    failed = 0
    for number, raw in batch:
        row, row_errors = _validate(number, raw, regions, today)
        if row is None:
            failed += 1
            errors.extend(row_errors)
        else:
            candidates = crypt.id_number_candidates(row.id_number)
            # The newest key's index is the one stored.
            valid.append((number, row, candidates, _citizen_columns(row, candidates[0], crypt)))
    return _PreparedBatch(batch[-1][0], failed, errors, valid)


def _write(
    prepared: _PreparedBatch, *, actor: Actor, context: Mapping[str, Any] | None
) -> tuple[ImportSummary, list[RowError]]:
    summary = ImportSummary(failed=prepared.failed)
    errors = list(prepared.errors)
    valid = prepared.valid
    existing = _existing_indexes([b for _n, _r, bs, _c in valid for b in bs]) if valid else set()
    new: list[tuple[int, _ValidRow, str]] = []
    columns: list[tuple] = []
    one_by_one: list[tuple[int, _ValidRow]] = []
    seen: set[str] = set()
    for number, row, candidates, values in valid:
        # A number repeated in the batch: its first row creates, the later ones update after it.
        if row.id_number in seen or not existing.isdisjoint(candidates):
            one_by_one.append((number, row))
        else:
            seen.add(row.id_number)
            new.append((number, row, candidates[0]))
            columns.append(values)
    try:
        with transaction.atomic():
            _create_new(new, columns, actor=actor, context=context or {})
        summary.created += len(new)
    except (DomainError, IntegrityError):
        one_by_one = sorted(one_by_one + [(number, row) for number, row, _bidx in new], key=lambda item: item[0])
    for number, row in one_by_one:
        try:
            if _apply(row, actor=actor):
                summary.created += 1
            else:
                summary.updated += 1
        except DomainError as exc:
            summary.failed += 1
            errors.append(RowError(number, str(exc.extra.get("field", "")), exc.message))
    errors.sort(key=lambda e: e.row)
    return summary, errors


def import_batch(
    batch: list[Row],
    *,
    actor: Actor,
    regions: Mapping[str, Region],
    context: Mapping[str, Any] | None = None,
) -> tuple[ImportSummary, list[RowError]]:
    """Validate and write one batch inside the caller's transaction.

    New citizens take the bulk path; existing ones are updated through
    `citizen_update`, row by row. Should the bulk path be refused (a
    concurrent registration of the same number, a balance the ledger
    refuses), it is rolled back and the batch's rows go one by one through
    the services, so that the outcome is exactly the per-row import's.
    """
    return _write(_prepare(batch, regions), actor=actor, context=context)


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def import_rows(
    rows: Iterable[Row],
    *,
    actor: Actor,
    on_error: Callable[[RowError], None] | None = None,
    progress: Callable[[ImportSummary], None] | None = None,
    progress_every: int = 100,
    region_codes: Collection[str] | None = None,
    batch_size: int | None = None,
    on_batch: Callable[[int, ImportSummary, list[RowError]], None] | None = None,
    context: Mapping[str, Any] | None = None,
) -> ImportSummary:
    """Import rows in batches; a bad row is reported through `on_error` and the others go on.

    Each batch (`batch_size` rows, by default `progress_every`) is one
    transaction; `on_batch(last row number, batch summary, batch errors)` runs
    inside it, so that a caller's checkpoint commits with the rows it
    describes. `on_error` and `progress` (the running summary) are called once
    the batch is committed. `region_codes` limits the import to a clerk's
    regions (a row for another region is reported as an unknown region).
    """
    regions = {r.code: r for r in Region.objects.all() if region_codes is None or r.code in region_codes}
    summary = ImportSummary()
    report = on_error or (lambda error: None)
    reported_at = -1
    size = batch_size or progress_every
    for batch in _batches(rows, size):
        # Validation and encryption before the transaction opens: it holds its locks only
        # for the writes. (Doing it in a thread while the previous batch's COPY and commit run
        # was measured: no gain on a loaded two-CPU machine, where PostgreSQL needs the other CPU.)
        prepared = _prepare(batch, regions)
        with transaction.atomic():
            delta, errors = _write(prepared, actor=actor, context=context)
            if on_batch is not None:
                on_batch(prepared.last_row, delta, errors)
        summary.created += delta.created
        summary.updated += delta.updated
        summary.failed += delta.failed
        for error in errors:
            report(error)
        if progress is not None:
            progress(summary)
            reported_at = summary.rows_done
    if progress is not None and reported_at != summary.rows_done:
        progress(summary)
    return summary


# --- Background jobs (the portal's import screen) -------------------------------

ALLOWED_SUFFIXES = (".csv", ".xlsx")


class _LostJob(Exception):
    """Another run took the job over (this one was presumed dead): stop without committing."""


def count_rows(path: str | Path) -> int | None:
    """The number of data rows, cheaply and approximately (for the progress bar):
    newlines of a CSV, the declared dimension of an XLSX sheet; None if unknown."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            lines, last = 0, b"\n"
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
            if last != b"\n":
                lines += 1
            return max(lines - 1, 0)
        from openpyxl import load_workbook

        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = workbook.worksheets[0].max_row
        finally:
            workbook.close()
        return max(rows - 1, 0) if rows else None
    except Exception:  # an unreadable file fails properly when it is read
        return None


def import_job_create(*, actor: Actor, user, region: Region, upload, language: str = "") -> ImportJob:
    """Store the uploaded file and queue its import once the job is committed.

    `language` is the uploader's screen language: the row errors of the report
    are written in it, whichever language the worker runs in."""
    suffix = Path(upload.name).suffix.lower()
    with transaction.atomic():
        job = ImportJob(
            uploaded_by=user,
            region=region,
            original_name=Path(upload.name).name[:255],
            file_size=upload.size,
            language=language[:16],
        )
        job.file.save(f"upload{suffix}", upload, save=False)
        job.save()
        # The file's name may carry personal data: the audit has its size and format only.
        audit_record(
            actor=actor,
            action="citizen_import.upload",
            object_type="citizen_import",
            object_id=job.pk,
            region_code=region.code,
            after={"format": suffix.lstrip("."), "size": upload.size},
        )
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from insurance.tasks import run_import

    run_import.delay(job_id)


def _stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, "ECARD_IMPORT_STALE_SECONDS", 120))


def run_import_job(job_id: int, *, batch_size: int | None = None, max_batches: int | None = None) -> ImportJob | None:
    """Import a job's file from its checkpoint to the end (or for `max_batches`
    batches, leaving the job running for the next run to go on from there).

    Each batch commits its rows, error rows, counts, checkpoint and heartbeat
    together. A run claims the job by raising `attempts` (a fencing token):
    if the job is taken over by another run (after this one's heartbeat went
    stale), this one's next batch rolls back and it stops. Row errors are
    written in the uploader's language.
    """
    language = ImportJob.objects.filter(pk=job_id).values_list("language", flat=True).first()
    with translation.override(language or settings.LANGUAGE_CODE):
        return _run_import_job(job_id, batch_size=batch_size, max_batches=max_batches)


def _run_import_job(job_id: int, *, batch_size: int | None, max_batches: int | None) -> ImportJob | None:
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().select_related("uploaded_by").filter(pk=job_id).first()
        now = timezone.now()
        if job is None or job.is_finished:
            return job
        if job.state == ImportJobState.RUNNING and job.heartbeat_at and job.heartbeat_at > now - _stale_after():
            return job  # a live run has it (a duplicate delivery of the task)
        job.state = ImportJobState.RUNNING
        job.attempts += 1
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.save(update_fields=["state", "attempts", "started_at", "heartbeat_at"])
    token = job.attempts
    path = Path(job.file.path)
    if job.rows_total is None:
        total = count_rows(path)
        ImportJob.objects.filter(pk=job.pk, attempts=token).update(rows_total=total, heartbeat_at=timezone.now())

    def on_batch(last_row: int, delta: ImportSummary, errors: list[RowError]) -> None:
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.attempts != token or locked.state != ImportJobState.RUNNING:
            raise _LostJob
        ImportRowError.objects.bulk_create(
            [
                ImportRowError(job_id=job.pk, row=e.row, column=e.column[:64], message=str(e.message)[:500])
                for e in errors
            ]
        )
        locked.created += delta.created
        locked.updated += delta.updated
        locked.failed += delta.failed
        locked.rows_done = locked.created + locked.updated + locked.failed
        locked.checkpoint_row = last_row
        locked.heartbeat_at = timezone.now()
        locked.save(update_fields=["created", "updated", "failed", "rows_done", "checkpoint_row", "heartbeat_at"])

    checkpoint = job.checkpoint_row
    size = batch_size or settings.ECARD_IMPORT_BATCH_ROWS
    limit = None if max_batches is None else max_batches * size
    paused = False

    def rows_after_checkpoint() -> Iterator[Row]:
        nonlocal paused
        taken = 0
        for row in read_rows(path):
            if row[0] <= checkpoint:
                continue
            if limit is not None and taken >= limit:
                paused = True
                return
            taken += 1
            yield row

    error = ""
    try:
        import_rows(
            rows_after_checkpoint(),
            actor=Actor.for_user(job.uploaded_by),
            region_codes={job.region_id},
            on_batch=on_batch,
            batch_size=size,
            context={"job": job.pk},
        )
    except _LostJob:
        return ImportJob.objects.get(pk=job.pk)
    except ImportFileError as exc:
        error = str(exc)
    except UnicodeDecodeError as exc:
        error = _("The file is not UTF-8 (stopped near byte %(byte)s; the rows before were imported).") % {
            "byte": exc.start
        }
    if paused:
        return ImportJob.objects.get(pk=job.pk)
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.attempts != token:
            return job
        job.state = ImportJobState.FAILED if error else ImportJobState.DONE
        job.error = error[:500]
        if not error:
            job.rows_total = job.rows_done  # the estimate becomes the exact count
        job.finished_at = job.heartbeat_at = timezone.now()
        job.save(update_fields=["state", "error", "rows_total", "finished_at", "heartbeat_at"])
    return job


def release_job(job_id: int) -> None:
    """Let the next run take the job at once (this run is stopping, e.g. at its time limit)."""
    ImportJob.objects.filter(pk=job_id, state=ImportJobState.RUNNING).update(heartbeat_at=None)


MAX_ATTEMPTS = 5


def requeue_stale_jobs() -> int:
    """Re-queue jobs whose run died (stale heartbeat) or whose task was lost (queued too long).
    A job that has died MAX_ATTEMPTS times is failed rather than retried for ever."""
    now = timezone.now()
    stale = now - _stale_after()
    requeued = 0
    with transaction.atomic():
        silent = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale)
        jobs = ImportJob.objects.select_for_update(skip_locked=True).filter(
            (Q(state=ImportJobState.RUNNING) & silent) | Q(state=ImportJobState.QUEUED, created_at__lt=stale),
            Q(requeued_at__isnull=True) | Q(requeued_at__lt=stale),
        )
        for job in jobs:
            if job.attempts >= MAX_ATTEMPTS:
                job.state = ImportJobState.FAILED
                job.error = _("The import stopped %(n)s times without finishing; upload the file again.") % {
                    "n": job.attempts
                }
                job.finished_at = now
                job.save(update_fields=["state", "error", "finished_at"])
                continue
            job.requeued_at = now
            job.save(update_fields=["requeued_at"])
            transaction.on_commit(lambda pk=job.pk: _enqueue(pk))
            requeued += 1
    return requeued
