"""Writing validated rows: `import_rows()` takes any iterable of rows and imports
them in batches, one transaction each. New citizens (each with a
`pending_activation` e-card) go in with the batch's bulk insert (`store`);
existing ones are updated, and a batch the bulk insert refuses goes row by row,
through the services. Nothing is held beyond a batch."""

import itertools
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import DataError, IntegrityError, OperationalError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from insurance import services
from insurance.citizen_values import CitizenCiphers, CitizenValues, citizen_values
from insurance.errors import InsuranceErrorCode
from insurance.imports import store
from insurance.imports.reading import Row
from insurance.imports.validation import RowError, ValidRow, shown_value, validate_row
from insurance.models import Citizen
from portal import domain_events
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError
from portal.models import Region

ISSUE_REASON = "bulk import"
BULK_ATTEMPTS = 3  # a batch's bulk insert, run again after a concurrent write of one of its numbers

logger = logging.getLogger(__name__)


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


def apply_row(row: ValidRow, *, actor: Actor) -> bool:
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
                # An import does not move citizens; the refusal does not say where the citizen is.
                raise services.citizen_exists_error()
            services.citizen_update(actor=actor, citizen=citizen, name=row.name, phone=row.phone, scheme=row.scheme)
            created = False
        if row.account_balance_fen is not None:
            _record_balance(citizen.pk, citizen.region_id, row.account_balance_fen, actor=actor)
    return created


def _create_new(
    rows: list[tuple[int, ValidRow]], values: list[CitizenValues], *, actor: Actor, context: Mapping[str, Any]
) -> None:
    """Register new citizens, each with a `pending_activation` e-card, in bulk.

    The same rows as `citizen_register` + `certificate_issue` write (the values
    come from the same `citizen_values`), but three COPYs instead of a dozen
    statements per row, and one audit event per region and batch that names every
    citizen and card it created (ids and card numbers only: no personal data)."""
    if not rows:
        return
    created = store.insert_citizens_with_cards(
        [(row.region.code, v) for (_number, row), v in zip(rows, values, strict=True)],
        actor_label=actor.label,
        reason=ISSUE_REASON,
        now=timezone.now(),
    )
    for (citizen_id, _card_id, _card), (_number, row) in zip(created, rows, strict=True):
        if row.account_balance_fen is not None:
            _record_balance(citizen_id, row.region.code, row.account_balance_fen, actor=actor)
    by_region: dict[str, list[tuple[int, int, str]]] = {}
    for (number, row), (citizen_id, _card_id, card) in zip(rows, created, strict=True):
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


@dataclass
class _PreparedBatch:
    """A batch validated and encrypted ahead of its transaction (no database needed)."""

    last_row: int
    failed: int
    errors: list[RowError]
    # (row number, row, its identity number's blind indexes newest first, its stored values)
    valid: list[tuple[int, ValidRow, list[str], CitizenValues]]


def _prepare(batch: list[Row], regions: Mapping[str, Region], pilot_regions: Mapping[str, Region]) -> _PreparedBatch:
    """Validate every row and, for the valid ones, compute what a new citizen stores
    (encryption, blind indexes, masks): the CPU work, which needs no database."""
    errors: list[RowError] = []
    valid: list[tuple[int, ValidRow, list[str], CitizenValues]] = []
    today = timezone.localdate()  # once per batch, not once per row
    ciphers = CitizenCiphers()  # keys set up once per batch, not once per value
    failed = 0
    for number, raw in batch:
        row, row_errors = validate_row(number, raw, regions, today, pilot_regions=pilot_regions)
        if row is None:
            failed += 1
            errors.extend(row_errors)
            continue
        candidates = ciphers.id_number.blind_index_candidates(row.id_number)
        values = citizen_values(
            identity=row.identity,
            name=row.name,
            phone=row.phone,
            scheme=row.scheme,
            ciphers=ciphers,
            id_number_bidx=candidates[0],  # the newest key's index is the one stored
        )
        valid.append((number, row, candidates, values))
    return _PreparedBatch(batch[-1][0], failed, errors, valid)


def _write(
    prepared: _PreparedBatch, *, actor: Actor, context: Mapping[str, Any] | None
) -> tuple[ImportSummary, list[RowError]]:
    """Write a prepared batch inside the caller's transaction.

    New citizens take the bulk path; existing ones are updated through
    `citizen_update`, row by row. Should the bulk path meet a concurrent
    registration of one of its numbers (another chunk of the same file, a
    clerk), it is rolled back and run again with that number looked up anew
    (now an update); should it be refused otherwise (a balance the ledger
    refuses), it is rolled back and the batch's rows go one by one through
    the services, so that the outcome is exactly the per-row import's.
    """
    summary = ImportSummary(failed=prepared.failed)
    errors = list(prepared.errors)
    for attempt in range(1, BULK_ATTEMPTS + 1):
        new, new_values, one_by_one = _sort_out(prepared.valid)
        try:
            with transaction.atomic():
                _create_new(new, new_values, actor=actor, context=context or {})
            summary.created += len(new)
            break
        except (IntegrityError, OperationalError) as exc:
            # Another transaction (a concurrent chunk of the same file, a clerk's registration)
            # committed one of these numbers while the COPY waited on it, or the two deadlocked:
            # looked up again, that number is now an update and the rest go in bulk as before.
            if attempt < BULK_ATTEMPTS and (isinstance(exc, IntegrityError) or is_concurrency_conflict(exc)):
                logger.info(
                    "import rows %s-%s: the bulk insert met a concurrent write of its numbers; run again",
                    prepared.valid[0][0],
                    prepared.last_row,
                )
                continue
            if isinstance(exc, OperationalError) and not is_concurrency_conflict(exc):
                raise
            one_by_one = sorted(one_by_one + new, key=lambda item: item[0])
            break
        except (DomainError, DataError):
            one_by_one = sorted(one_by_one + new, key=lambda item: item[0])
            break
    refused: dict[Region, list[tuple[int, str]]] = {}  # rows whose number is registered elsewhere
    for number, row in one_by_one:
        try:
            if _apply_row_once_more_if_raced(row, actor=actor):
                summary.created += 1
            else:
                summary.updated += 1
        except DomainError as exc:
            summary.failed += 1
            field = str(exc.extra.get("field", ""))
            errors.append(RowError(number, field, exc.message, shown_value(field, _row_value(row, field))))
            if exc.code == InsuranceErrorCode.CITIZEN_EXISTS:
                refused.setdefault(row.region, []).append((number, row.id_number))
        except DataError:
            # A value validation let through that the database cannot hold: the row's own
            # savepoint is rolled back, and this one row fails rather than the whole job.
            logger.warning("import row %s refused by the database", number, exc_info=True)
            summary.failed += 1
            column = "account_balance_fen" if row.account_balance_fen is not None else ""
            errors.append(RowError(number, column, _("The row could not be stored: a value is out of range.")))
    for region, rows in refused.items():
        services.citizen_register_refused(
            actor=actor,
            id_numbers=[id_number for _n, id_number in rows],
            region=region,
            context={**(context or {}), "rows": [n for n, _id in rows]},
        )
    errors.sort(key=lambda e: e.row)
    return summary, errors


def _sort_out(
    valid: list[tuple[int, ValidRow, list[str], CitizenValues]],
) -> tuple[list[tuple[int, ValidRow]], list[CitizenValues], list[tuple[int, ValidRow]]]:
    """The rows whose number is not registered yet (for the bulk path, with their values)
    and the others (updates, and repeats of a number within the batch), row by row."""
    existing = store.existing_id_number_indexes([b for _n, _r, bs, _v in valid for b in bs]) if valid else set()
    new: list[tuple[int, ValidRow]] = []
    new_values: list[CitizenValues] = []
    one_by_one: list[tuple[int, ValidRow]] = []
    seen: set[str] = set()
    for number, row, candidates, values in valid:
        # A number repeated in the batch: its first row creates, the later ones update after it.
        if row.id_number in seen or not existing.isdisjoint(candidates):
            one_by_one.append((number, row))
        else:
            seen.add(row.id_number)
            new.append((number, row))
            new_values.append(values)
    return new, new_values, one_by_one


def is_concurrency_conflict(exc: Exception) -> bool:
    """A deadlock or serialization failure (SQLSTATE class 40): the statement may be run again."""
    return str(getattr(exc.__cause__, "sqlstate", "") or "").startswith("40")


def _apply_row_once_more_if_raced(row: ValidRow, *, actor: Actor) -> bool:
    """`apply_row`, run once more if its registration lost a race on the number's unique index
    (a concurrent chunk of the same file committed it first): the row then updates that citizen,
    as it would have had it come second."""
    try:
        return apply_row(row, actor=actor)
    except DomainError as exc:
        if exc.code != InsuranceErrorCode.CITIZEN_EXISTS or not isinstance(exc.__cause__, IntegrityError):
            raise
    return apply_row(row, actor=actor)


def _row_value(row: ValidRow, column: str) -> str:
    """A column's value of a valid row, as the file gave it (for the error report)."""
    values = {
        "id_number": row.id_number,
        "name": row.name,
        "phone": row.phone,
        "region_code": row.region.code,
        "scheme": row.scheme,
        "account_balance_fen": "" if row.account_balance_fen is None else str(row.account_balance_fen),
    }
    return values.get(column, "")


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
    on_begin: Callable[[], None] | None = None,
    context: Mapping[str, Any] | None = None,
) -> ImportSummary:
    """Import rows in batches; a bad row is reported through `on_error` and the others go on.

    Each batch (`batch_size` rows, by default `progress_every`) is one
    transaction; `on_batch(last row number, batch summary, batch errors)` runs
    inside it, so that a caller's checkpoint commits with the rows it
    describes; `on_begin()` runs first in it, before any write (to take a lock). `on_error` and `progress` (the running summary) are called once
    the batch is committed. `region_codes` limits the import to a clerk's
    regions (a row for another pilot region is reported as outside them).
    """
    pilot_regions = {r.code: r for r in Region.objects.all()}
    regions = {code: r for code, r in pilot_regions.items() if region_codes is None or code in region_codes}
    summary = ImportSummary()
    report = on_error or (lambda error: None)
    reported_at = -1
    size = batch_size or progress_every
    for batch in _batches(rows, size):
        # Validation and encryption before the transaction opens: it holds its locks only
        # for the writes. (Doing it in a thread while the previous batch's COPY and commit run
        # was measured: no gain on a loaded two-CPU machine, where PostgreSQL needs the other CPU.)
        prepared = _prepare(batch, regions, pilot_regions)
        with transaction.atomic():
            if on_begin is not None:
                on_begin()
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
