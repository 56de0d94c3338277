"""Settlements: a bill at a facility paid with an e-card (DESIGN.md section 4,
PARTNER_API.md "Settlement" and "Money rules in one place").

Every write is one transaction with its audit event and, where partners
hear it, its outbox event. Money is integer fen; the split is
`insurance.reimbursement.compute_split`, against the citizen-year
accumulator read under a row lock, so that concurrent settlements never
pass the deductible or the annual cap together.

Lock order, the same in every function here, so that none can deadlock
another: QR token, certificate, settlement, citizen-year accumulator,
personal account, audit chain head.
"""

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from insurance.models import Certificate, CertificateState, Citizen, Facility, ReimbursementPolicy, ServiceItem
from insurance.reimbursement import BillLine, PolicyTerms, compute_split
from payments import idempotency, ledger, rows
from payments.api.representations import settlement_repr
from payments.delivery.outbox import enqueued, outbox_event
from payments.models import (
    BindingState,
    CitizenYearAccumulator,
    FamilyBinding,
    LinkageState,
    Partner,
    PersonalAccount,
    QrToken,
    Settlement,
    SettlementLine,
    SettlementState,
    WalletLinkage,
)
from payments.tokens import services as qr
from payments.transactions import service_atomic
from portal import prepared
from portal.actors import Actor
from portal.audit import NUMBER_COLUMNS, audit_event, audit_insert, audit_next_number
from portal.errors import DomainError
from portal.models import AuditEvent

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAYMENT_WINDOW = dt.timedelta(minutes=15)
MAX_LINES = 100


@dataclass(frozen=True)
class LineInput:
    service_code: str
    quantity: int
    unit_price_fen: int


def settlement_year(moment: dt.datetime) -> int:
    """The year a settlement belongs to: that of its creation in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).year


def _accumulator_for_update(citizen_id: int, year: int) -> CitizenYearAccumulator:
    locked = CitizenYearAccumulator.objects.select_for_update()
    try:
        return locked.get(citizen_id=citizen_id, year=year)
    except CitizenYearAccumulator.DoesNotExist:  # the year's first settlement (a concurrent creator wins or waits)
        CitizenYearAccumulator.objects.bulk_create(
            [CitizenYearAccumulator(citizen_id=citizen_id, year=year)], ignore_conflicts=True
        )
        return locked.get(citizen_id=citizen_id, year=year)


def _audit_snapshot(settlement: Settlement) -> dict:
    """What the audit log keeps: amounts and states, no personal data."""
    return {
        "id": settlement.public_id,
        "partner": settlement.partner.code,
        "state": settlement.state,
        "year": settlement.year,
        "policy_version": settlement.policy.version,
        "total_fen": settlement.total_fen,
        "deductible_fen": settlement.deductible_fen,
        "fund_fen": settlement.fund_fen,
        "account_fen": settlement.account_fen,
        "self_pay_fen": settlement.self_pay_fen,
        "partner_transaction_id": settlement.partner_transaction_id,
        "version": settlement.version,
    }


def _not_active() -> DomainError:
    return DomainError("certificate_not_active", _("The e-card is not active."))


# --- The create path's reads: one statement -----------------------------------------------------
#
# Everything `settlement_create` must know before it can split, in one prepared statement
# (portal/prepared.py: planned once per connection, no ORM compilation): the token consumed
# (a conditional UPDATE in a CTE: of concurrent uses of one token, one wins and the others wait
# for it and then find `used_at` set), its certificate locked (a suspension committing now waits
# for us, one committed before is seen), the linkage, the family binding and the holder's own
# card, the facility, the service items, the policy in force, and the citizen's year accumulator
# and personal account locked after the card (the split's year-to-date use and balance: these
# locks are what keeps concurrent settlements within the deductible and the cap).
#
# No cache: the catalogue and policies are read afresh for each settlement (one round trip, the
# same statement), so an item withdrawn or a policy version published a second ago counts at
# once, and the settlement records the exact version in force. Policy versions are immutable
# (PostgreSQL refuses an UPDATE), so the row read here is the row the settlement points at.

_CREATE_SQL: dict[bool, str] = {}


def _create_sql(carried: bool = False) -> str:
    """The statement, as it is or `carried`: carrying the idempotency key's claim (its work gated on
    it, payments/idempotency.py `carrying_sql`)."""
    if carried not in _CREATE_SQL:
        t = {
            model.__name__: model._meta.db_table
            for model in (
                QrToken,
                Certificate,
                Citizen,
                WalletLinkage,
                FamilyBinding,
                Facility,
                ServiceItem,
                ReimbursementPolicy,
                CitizenYearAccumulator,
                PersonalAccount,
            )
        }
        _CREATE_SQL[carried] = idempotency.carrying_sql(
            f'used AS (UPDATE "{t["QrToken"]}" SET "used_at" = %s WHERE "jti" = %s AND "used_at" IS NULL'
            f' AND {idempotency.GO} RETURNING "id")',
            'SELECT t."id", t."expires_at", (SELECT "id" FROM used), '
            'c."id", c."number", c."state", z."id", z."region_id", z."scheme", '
            'l."id", l."public_id", l."state", l."certificate_id", b."id", b."public_id", b."state", '
            f'(SELECT hc."state" FROM "{t["Certificate"]}" hc WHERE hc."id" = l."certificate_id"), '
            f'(SELECT f."id" FROM "{t["Facility"]}" f WHERE f."code" = %s AND f."active"), '
            'COALESCE((SELECT json_agg(json_build_array(i."id", i."code", i."category", i."max_unit_price_fen",'
            f' i."active")) FROM "{t["ServiceItem"]}" i'
            # the codes as one JSON text: psycopg inspects a list parameter element by element on
            # every call, which cost more than the statement's own work
            " WHERE i.\"code\" IN (SELECT json_array_elements_text(%s::json))), '[]'), "
            '(SELECT json_build_array(p."id", p."version", p."deductible_fen", p."ratio"::text, p."annual_cap_fen",'
            f' p."personal_account_allowed", p."eligible_shares") FROM "{t["ReimbursementPolicy"]}" p'
            ' WHERE p."region_id" = z."region_id" AND p."scheme" = z."scheme" AND p."year" = %s'
            '  AND (%s OR p."effective_from" <= %s)'
            # insurance.catalogue.policy_in_force: a future year's first version, else the latest in effect
            ' ORDER BY CASE WHEN %s THEN p."version" ELSE -p."version" END LIMIT 1), '
            # the settlement's audit row: its number and transaction id (portal/audit.py), written
            # with the settlement in `_write_sql`'s statement
            f"{NUMBER_COLUMNS}, "
            # the citizen's year and account, locked: NULL for the year's first settlement (created then)
            'yr."id", yr."deductible_used_fen", yr."fund_used_fen", ac."id", ac."balance_fen", ac."held_fen" '
            f'FROM "{t["QrToken"]}" t '
            # The lock order of the module: the card, then the citizen's year, then the account. Each
            # lock is a subquery's, and each later one depends on the card's row, so they are taken
            # in that order (a lock clause of the outer query would be taken after all of them).
            f'JOIN LATERAL (SELECT "id", "number", "state", "citizen_id" FROM "{t["Certificate"]}"'
            ' WHERE "id" = t."certificate_id" FOR UPDATE) c ON true '
            f'JOIN "{t["Citizen"]}" z ON z."id" = c."citizen_id" '
            f'JOIN "{t["WalletLinkage"]}" l ON l."id" = t."linkage_id" '
            f'LEFT JOIN "{t["FamilyBinding"]}" b ON b."id" = t."family_binding_id" '
            f'LEFT JOIN LATERAL (SELECT "id", "deductible_used_fen", "fund_used_fen" FROM "{t["CitizenYearAccumulator"]}"'
            ' WHERE "citizen_id" = c."citizen_id" AND "year" = %s FOR UPDATE) yr ON true '
            f'LEFT JOIN LATERAL (SELECT "id", "balance_fen", "held_fen" FROM "{t["PersonalAccount"]}"'
            ' WHERE "citizen_id" = c."citizen_id" FOR UPDATE) ac ON true '
            f'WHERE t."jti" = %s AND {idempotency.GO}',
            carried,
        )
    return _CREATE_SQL[carried]


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _partial(model: type, fields: list[str], values: list) -> object:
    """A model instance with these fields loaded; any other field is deferred (loaded if read)."""
    return rows.loaded(model, fields, values)


@dataclass
class _CreateReads:
    row: QrToken
    certificate: Certificate
    citizen: Citizen
    binding: FamilyBinding | None
    facility: Facility | None
    items: dict[str, ServiceItem]
    policy: ReimbursementPolicy | None
    audit_number: tuple[int, int]  # (seq, xid) of the audit row to come
    # The citizen's year and account, locked; None if either is missing (the year's first
    # settlement, an account never credited)
    year_and_account: tuple[CitizenYearAccumulator, PersonalAccount] | None


def _create_reads(token: str, facility_code: str, codes: list[str], now: dt.datetime, year: int) -> _CreateReads:
    """The token consumed and its card locked, with everything the split needs; refusals in the
    documented order: 422 invalid/expired, 409 `token_used`, linkage, binding, card."""
    claims = qr.token_claims(token)
    today = now.astimezone(SHANGHAI).date()
    future = year > today.year
    params = [now, claims["jti"], facility_code, json.dumps(codes), year, future, today, future, year, claims["jti"]]
    found = idempotency.fetch_one_carrying(_create_sql, params)  # with the API request's key claim
    if found is None:
        qr.token_check_row(
            claims,
            found=False,
            certificate_number=None,
            linkage_public_id=None,
            binding_public_id=None,
            expires_at=None,
        )
    (
        token_id,
        expires_at,
        taken,
        certificate_id,
        number,
        certificate_state,
        citizen_id,
        region_code,
        scheme,
        linkage_id,
        linkage_public_id,
        linkage_state,
        holder_certificate_id,
        binding_id,
        binding_public_id,
        binding_state,
        holder_certificate_state,
        facility_id,
        items,
        policy,
        audit_seq,
        audit_xid,
        accumulator_id,
        deductible_used,
        fund_used,
        account_id,
        balance,
        held,
    ) = found
    qr.token_check_row(
        claims,
        found=True,
        certificate_number=number,
        linkage_public_id=linkage_public_id,
        binding_public_id=binding_public_id,
        expires_at=expires_at,
    )
    if taken is None:
        raise DomainError("token_used", _("This QR token was already used: ask for a new one."))
    if linkage_state != LinkageState.ACTIVE:
        raise DomainError("linkage_inactive", _("The linkage that minted this token has ended."))
    if binding_id is not None and binding_state != BindingState.ACTIVE:
        raise DomainError("binding_inactive", _("The family binding this token presents is not active."))
    if certificate_state != CertificateState.ACTIVE:
        raise _not_active()
    if binding_id is not None and holder_certificate_state != CertificateState.ACTIVE:
        raise _not_active()  # the holder's own card, as for minting
    binding = None
    if binding_id is not None:
        binding = _partial(FamilyBinding, ["id", "public_id", "state"], [binding_id, binding_public_id, binding_state])
    row = _partial(
        QrToken,
        ["id", "jti", "certificate_id", "linkage_id", "family_binding_id", "expires_at", "used_at"],
        [token_id, claims["jti"], certificate_id, linkage_id, binding_id, expires_at, now],
    )
    policy_row = None
    if policy is not None:
        policy_id, version, deductible_fen, ratio, cap_fen, account_allowed, shares = _json(policy)
        policy_row = _partial(
            ReimbursementPolicy,
            [
                "id",
                "region_id",
                "scheme",
                "year",
                "version",
                "deductible_fen",
                "ratio",
                "annual_cap_fen",
                "personal_account_allowed",
                "eligible_shares",
            ],
            [
                policy_id,
                region_code,
                scheme,
                year,
                version,
                deductible_fen,
                Decimal(ratio),
                cap_fen,
                account_allowed,
                _json(shares),
            ],
        )
    return _CreateReads(
        row=row,
        certificate=_partial(
            Certificate,
            ["id", "number", "citizen_id", "state"],
            [certificate_id, number, citizen_id, certificate_state],
        ),
        citizen=_partial(Citizen, ["id", "region_id", "scheme"], [citizen_id, region_code, scheme]),
        binding=binding,
        facility=_partial(Facility, ["id", "code", "active"], [facility_id, facility_code, True])
        if facility_id is not None
        else None,
        items={
            code: _partial(
                ServiceItem,
                ["id", "code", "category", "max_unit_price_fen", "active"],
                [item_id, code, category, max_price, active],
            )
            for item_id, code, category, max_price, active in _json(items)
        },
        policy=policy_row,
        audit_number=(audit_seq, audit_xid),
        year_and_account=None
        if accumulator_id is None or account_id is None
        else (
            _partial(
                CitizenYearAccumulator,
                ["id", "citizen_id", "year", "deductible_used_fen", "fund_used_fen"],
                [accumulator_id, citizen_id, year, deductible_used, fund_used],
            ),
            _partial(
                PersonalAccount,
                ["id", "citizen_id", "balance_fen", "held_fen"],
                [account_id, citizen_id, balance, held],
            ),
        ),
    )


def _bill_lines(lines: Sequence[LineInput], items: dict[str, ServiceItem]) -> tuple[list[BillLine], list[ServiceItem]]:
    bill: list[BillLine] = []
    services: list[ServiceItem] = []
    for index, line in enumerate(lines):
        item = items.get(line.service_code)
        if item is None or not item.active:
            raise DomainError(
                "unknown_service",
                _("Line %(line)d: no insured service has this code.") % {"line": index + 1},
                status=422,
                line=index + 1,
            )
        bill.append(
            BillLine(
                category=item.category,
                quantity=line.quantity,
                unit_price_fen=line.unit_price_fen,
                max_unit_price_fen=item.max_unit_price_fen,
                service_code=item.code,
            )
        )
        services.append(item)
    return bill, services


_WRITE_SQL: tuple[str, str, list] | None = None
_LINE_COLUMNS = (
    "position",
    "service_id",
    "service_code",
    "category",
    "quantity",
    "unit_price_fen",
    "line_total_fen",
    "eligible_fen",
)
_LINE_TYPES = ("int", "bigint", "text", "text", "bigint", "bigint", "bigint", "bigint")


def _write_sql(audit_sql: str) -> tuple[str, str, list]:
    """The settlement, its lines, the reservation and the audit row (`audit_sql`, constant):
    one statement (four INSERT/UPDATEs in CTEs), as its CTEs, its result columns and the fields of
    the settlement's parameters."""
    global _WRITE_SQL
    if _WRITE_SQL is None:
        insert_settlement, fields = rows.insert_sql(Settlement)
        # The lines as one JSON text, unpacked by json_to_recordset: eight list parameters cost psycopg
        # more than the whole INSERT (it inspects every element of a list on every call to type it).
        record = ", ".join(f'"{column}" {kind}' for column, kind in zip(_LINE_COLUMNS, _LINE_TYPES, strict=True))
        _WRITE_SQL = (
            f"s AS ({insert_settlement}), "
            f'l AS (INSERT INTO "{SettlementLine._meta.db_table}" ("settlement_id", '
            + ", ".join(f'"{column}"' for column in _LINE_COLUMNS)
            + f') SELECT s."id", u.* FROM s, json_to_recordset(%s::json) AS u({record}) RETURNING "id", "position"), '
            f'a AS (UPDATE "{CitizenYearAccumulator._meta.db_table}" SET "deductible_used_fen" = %s,'
            ' "fund_used_fen" = %s, "updated_at" = %s WHERE "id" = %s RETURNING "id"), '
            f'p AS (UPDATE "{PersonalAccount._meta.db_table}" SET "held_fen" = %s, "updated_at" = %s'
            ' WHERE "id" = %s RETURNING "id"), '
            f"au AS ({audit_sql})",
            '(SELECT "id" FROM s), (SELECT array_agg("id" ORDER BY "position") FROM l),'
            " (SELECT count(*) FROM a), (SELECT count(*) FROM p), (SELECT count(*) FROM au)",
            fields,
        )
    return _WRITE_SQL


def _write_settlement(
    settlement: Settlement,
    lines: list[SettlementLine],
    accumulator: CitizenYearAccumulator,
    account: PersonalAccount,
    audit: AuditEvent,
    audit_number: tuple[int, int],
) -> None:
    """Write the settlement, its lines, the reservation and its audit event (`audit`, numbered by
    `audit_number` read in this transaction)."""
    audit_sql, audit_params = audit_insert(audit, *audit_number)
    ctes, columns, fields = _write_sql(audit_sql)
    values = rows.insert_values(settlement, fields)
    rows_json = json.dumps(
        [{name: getattr(line, name) for name in _LINE_COLUMNS} for line in lines], ensure_ascii=False
    )
    accumulator.updated_at = account.updated_at = timezone.now()

    def written(result: list) -> None:
        settlement_id, line_ids, accumulators, accounts, audits = result
        # rows locked by us cannot vanish
        if (accumulators, accounts, audits, len(line_ids or ())) != (1, 1, 1, len(lines)):
            raise RuntimeError("settlement write: the year accumulator or the account is gone")
        rows.mark_saved(settlement, settlement_id)
        for line, line_id in zip(lines, line_ids, strict=True):
            line.settlement_id = settlement_id
            rows.mark_saved(line, line_id)

    # Possibly run later, joined with the API's stored response (prepared.joined_writes): until then
    # the settlement and its lines have no primary key, and the response is built without one.
    prepared.write_then(
        prepared.Write(
            ctes,
            columns,
            [
                *values,
                rows_json,
                accumulator.deductible_used_fen,
                accumulator.fund_used_fen,
                accumulator.updated_at,
                accumulator.pk,
                account.held_fen,
                account.updated_at,
                account.pk,
                *audit_params,
            ],
            5,
        ),
        written,
    )


@service_atomic
def settlement_create(
    *,
    actor: Actor,
    partner: Partner,
    token: str,
    facility_code: str,
    lines: Sequence[LineInput],
    use_personal_account: bool = False,
) -> Settlement:
    """Split a bill for the card a QR token carries, reserve the split, consume the token.

    Refusals, in this order: 422 `invalid_token` / `token_expired`, 409 `token_used`,
    409 `linkage_inactive`, 409 `binding_inactive`, 409 `certificate_not_active`,
    422 `unknown_facility`, 422 `unknown_service`, 422 `price_above_maximum`,
    409 `policy_unavailable`. Any refusal rolls everything back: the token stays unused.
    """
    now = timezone.now()
    year = settlement_year(now)
    reads = _create_reads(token, facility_code, sorted({line.service_code for line in lines}), now, year)
    row, certificate, citizen, binding = reads.row, reads.certificate, reads.citizen, reads.binding
    facility = reads.facility
    if facility is None:
        raise DomainError("unknown_facility", _("No active facility has this code."), status=422)
    if not 1 <= len(lines) <= MAX_LINES:
        raise DomainError("validation_error", _("A settlement has 1 to 100 lines."), status=400, field="lines")
    bill, services = _bill_lines(lines, reads.items)
    policy = reads.policy
    # Prices are checked against the catalogue before the policy (compute_split checks them too).
    for index, line in enumerate(bill):
        if line.unit_price_fen > line.max_unit_price_fen:
            raise DomainError(
                "price_above_maximum",
                _("Line %(line)s (%(code)s): the unit price %(price)s fen is above the catalogue maximum %(max)s fen.")
                % {
                    "line": index + 1,
                    "code": line.service_code,
                    "price": line.unit_price_fen,
                    "max": line.max_unit_price_fen,
                },
                status=422,
                line=index + 1,
            )
    if policy is None:
        raise DomainError(
            "policy_unavailable", _("No reimbursement policy is in force for this citizen's region and scheme.")
        )

    # Locked by the reads above, else created and locked now (the same order: year, then account).
    accumulator, account = reads.year_and_account or (
        _accumulator_for_update(citizen.pk, year),
        ledger.account_for_update(citizen.pk),
    )
    split = compute_split(
        lines=bill,
        policy=PolicyTerms.of(policy),
        deductible_used_fen=accumulator.deductible_used_fen,
        fund_used_fen=accumulator.fund_used_fen,
        account_balance_fen=ledger.available_fen(account),
        use_personal_account=use_personal_account,
    )
    settlement = Settlement(
        partner=partner,
        certificate=certificate,
        citizen=citizen,
        family_binding=binding,
        qr_token=row,
        facility=facility,
        policy=policy,
        state=SettlementState.PENDING_PAYMENT,
        year=year,
        total_fen=split.total_fen,
        eligible_fen=split.eligible_fen,
        deductible_fen=split.deductible_fen,
        fund_fen=split.fund_fen,
        account_fen=split.account_fen,
        self_pay_fen=split.self_pay_fen,
        use_personal_account=use_personal_account,
        created_at=now,
        expires_at=now + PAYMENT_WINDOW,
    )
    created_lines = [
        SettlementLine(
            settlement=settlement,
            position=index + 1,
            service=item,
            service_code=item.code,
            category=item.category,
            quantity=line.quantity,
            unit_price_fen=line.unit_price_fen,
            line_total_fen=part.line_total_fen,
            eligible_fen=part.eligible_fen,
        )
        for index, (line, item, part) in enumerate(zip(bill, services, split.lines, strict=True))
    ]
    # The reservation: the year's use and the account's hold, both rows locked above.
    accumulator.deductible_used_fen += split.deductible_fen
    accumulator.fund_used_fen += split.fund_fen
    account.held_fen += split.account_fen
    audit = audit_event(
        actor=actor,
        action="settlement.create",
        object_type="settlement",
        object_id=settlement.public_id,
        region_code=citizen.region_id,
        after=_audit_snapshot(settlement),
    )
    _write_settlement(settlement, created_lines, accumulator, account, audit, reads.audit_number)
    # The response is built from these objects: no re-read of what this transaction just wrote.
    settlement._prefetched_objects_cache = {"lines": created_lines}
    return settlement


_LOCKED_SQL: dict[tuple[bool, bool, bool], str] = {}
_ACCOUNT_FIELDS = ["id", "citizen_id", "balance_fen", "held_fen", "updated_at"]


def _locked_sql(with_account: bool, by_public_id: bool = False, carried: bool = False) -> str:
    """The settlement (by pk, or by its unique public id) under its row lock, with what the write
    and the response read, and (with_account) the citizen's account locked after it; `carried`:
    carrying the idempotency key's claim (payments/idempotency.py `carrying_sql`)."""
    if (with_account, by_public_id, carried) not in _LOCKED_SQL:
        columns = ", ".join(f's."{field.column}"' for field in Settlement._meta.concrete_fields)
        t = {
            model.__name__: model._meta.db_table
            for model in (
                Settlement,
                SettlementLine,
                Partner,
                ReimbursementPolicy,
                Certificate,
                Citizen,
                Facility,
                FamilyBinding,
                PersonalAccount,
            )
        }
        key = "public_id" if by_public_id else "id"
        _LOCKED_SQL[with_account, by_public_id, carried] = idempotency.carrying_sql(
            "",
            (
                f'SELECT {columns}, pa."code", p."region_id", p."scheme", p."year", p."version", c."number",'
                ' z."region_id", f."code", b."public_id", '
                'COALESCE((SELECT json_agg(json_build_array(sl."id", sl."position", sl."service_id", sl."service_code",'
                ' sl."category", sl."quantity", sl."unit_price_fen", sl."line_total_fen", sl."eligible_fen")'
                f' ORDER BY sl."position") FROM "{t["SettlementLine"]}" sl WHERE sl."settlement_id" = s."id"), \'[]\')'
                # (confirm) the account, and the number of the audit row to come (portal/audit.py)
                + (
                    f', a."id", a."citizen_id", a."balance_fen", a."held_fen", a."updated_at", {NUMBER_COLUMNS} '
                    if with_account
                    else " "
                )
                + f'FROM "{t["Settlement"]}" s '
                f'JOIN "{t["Partner"]}" pa ON pa."id" = s."partner_id" '
                f'JOIN "{t["ReimbursementPolicy"]}" p ON p."id" = s."policy_id" '
                f'JOIN "{t["Certificate"]}" c ON c."id" = s."certificate_id" '
                f'JOIN "{t["Citizen"]}" z ON z."id" = s."citizen_id" '
                f'JOIN "{t["Facility"]}" f ON f."id" = s."facility_id" '
                f'LEFT JOIN "{t["FamilyBinding"]}" b ON b."id" = s."family_binding_id" '
                + (f'JOIN "{t["PersonalAccount"]}" a ON a."citizen_id" = s."citizen_id" ' if with_account else "")
                # The settlement's row, then (confirm) the account's: the module's lock order.
                + f'WHERE s."{key}" = %s AND {idempotency.GO} '
                + ("FOR UPDATE OF s, a" if with_account else "FOR UPDATE OF s")
            ),
            carried,
        )
    return _LOCKED_SQL[with_account, by_public_id, carried]


_LINE_FIELDS = [
    "id",
    "position",
    "service_id",
    "service_code",
    "category",
    "quantity",
    "unit_price_fen",
    "line_total_fen",
    "eligible_fen",
]


_SETTLEMENT_ATTNAMES = [field.attname for field in Settlement._meta.concrete_fields]


def _from_locked_row(found: tuple) -> Settlement:
    width = len(_SETTLEMENT_ATTNAMES)
    locked = rows.loaded(Settlement, _SETTLEMENT_ATTNAMES, list(found[:width]))
    (
        partner_code,
        region_code,
        scheme,
        year,
        version,
        number,
        citizen_region,
        facility_code,
        binding_public_id,
        lines,
    ) = found[width : width + 10]
    rows.related(locked, "partner", _partial(Partner, ["id", "code"], [locked.partner_id, partner_code]))
    rows.related(
        locked,
        "policy",
        _partial(
            ReimbursementPolicy,
            ["id", "region_id", "scheme", "year", "version"],
            [locked.policy_id, region_code, scheme, year, version],
        ),
    )
    rows.related(locked, "certificate", _partial(Certificate, ["id", "number"], [locked.certificate_id, number]))
    rows.related(locked, "citizen", _partial(Citizen, ["id", "region_id"], [locked.citizen_id, citizen_region]))
    rows.related(locked, "facility", _partial(Facility, ["id", "code"], [locked.facility_id, facility_code]))
    rows.related(
        locked,
        "family_binding",
        _partial(FamilyBinding, ["id", "public_id"], [locked.family_binding_id, binding_public_id])
        if locked.family_binding_id is not None
        else None,
    )
    locked._prefetched_objects_cache = {
        "lines": [
            _partial(SettlementLine, [*_LINE_FIELDS, "settlement_id"], [*values, locked.pk]) for values in _json(lines)
        ]
    }
    return locked


def _locked(settlement: Settlement) -> Settlement:
    """The settlement under its row lock, with what its audit snapshot, its outbox event and the
    response read (partner code, policy, card number, region, facility, binding, lines): one
    prepared statement instead of two ORM queries with six joins."""
    found = prepared.fetch_one(_locked_sql(False), [settlement.pk])
    if found is None:
        raise Settlement.DoesNotExist("Settlement matching query does not exist.")
    return _from_locked_row(found)


LockedWithAccount = tuple[Settlement, PersonalAccount, tuple[int, int] | None]


def _locked_with_account(settlement: Settlement) -> LockedWithAccount:
    """`_locked`, and the citizen's personal account locked after it, in the same statement, with
    the number of the audit row to come (None when read step by step)."""
    found = prepared.fetch_one(_locked_sql(True), [settlement.pk])
    if found is None:  # no such settlement, or (never paid from) no account yet: one step at a time
        locked = _locked(settlement)
        return locked, ledger.account_for_update(locked.citizen_id), None
    return _with_account(found)


def _with_account(found: tuple) -> LockedWithAccount:
    width = len(_SETTLEMENT_ATTNAMES) + 10
    account = rows.loaded(PersonalAccount, _ACCOUNT_FIELDS, list(found[width : width + len(_ACCOUNT_FIELDS)]))
    return _from_locked_row(found), account, tuple(found[width + len(_ACCOUNT_FIELDS) :])


def settlement_owned_locked(partner: Partner, public_id: str) -> LockedWithAccount | None:
    """This partner's settlement locked with its citizen's account, as `_locked_with_account` gives
    them, found by public id in the same statement (confirm: one statement instead of
    `settlement_owned` and then the lock); None if the partner has no such settlement. Call inside
    the transaction that writes it; another partner's row, locked for the comparison, is released
    with the rollback of the refusal."""
    if "\x00" not in public_id:  # PostgreSQL text cannot hold NUL; no public id has one
        found = idempotency.fetch_one_carrying(  # with the API request's key claim
            lambda carried: _locked_sql(True, by_public_id=True, carried=carried), [public_id]
        )
        if found is not None:
            locked, account, audit_number = _with_account(found)
            return (locked, account, audit_number) if locked.partner_id == partner.pk else None
    handle = settlement_owned(partner, public_id)  # not found, or no account yet
    return None if handle is None else _locked_with_account(handle)


def _release(settlement: Settlement) -> None:
    """Give back what a pending settlement reserved in its year and its account."""
    accumulator = _accumulator_for_update(settlement.citizen_id, settlement.year)
    accumulator.deductible_used_fen -= settlement.deductible_fen
    accumulator.fund_used_fen -= settlement.fund_fen
    accumulator.save(update_fields=["deductible_used_fen", "fund_used_fen", "updated_at"])
    account = ledger.account_for_update(settlement.citizen_id)
    ledger.account_release(account, settlement.account_fen)


def _change(
    settlement: Settlement,
    *,
    actor: Actor,
    action: str,
    event: str,
    before: dict,
    fields: list[str],
    reason: str = "",
    writes: Sequence[tuple[str, Sequence[object]]] = (),
    audit_number: tuple[int, int] | None = None,
) -> Settlement:
    """The settlement's new state, its audit event and its partner's outbox event.

    They are written together with `writes` (statements of the same change, e.g. the
    account's entry) as one statement (`prepared.write_together`), the audit row numbered by
    `audit_number` if the caller read it already (else one statement more). Every row they touch is
    locked by this transaction already, and none depends on another's write."""
    settlement.version += 1
    audit = audit_event(
        actor=actor,
        action=f"settlement.{action}",
        object_type="settlement",
        object_id=settlement.public_id,
        region_code=settlement.citizen.region_id,
        before=before,
        after=_audit_snapshot(settlement),
        reason=reason,
    )
    outbox = outbox_event(partner=settlement.partner, type=event, obj=settlement_repr(settlement))

    def written(values: list) -> None:
        if any(value is None for value in values):  # rows locked by us cannot vanish
            raise RuntimeError(f"settlement {action}: a row it writes is gone")
        rows.mark_saved(outbox, values[-2])
        enqueued(outbox)

    # Possibly run later, joined with the API's stored response (prepared.joined_writes).
    prepared.write_together(
        [
            *writes,
            rows.update_statement(settlement, [*fields, "state", "version"]),
            rows.insert_statement(outbox),
            audit_insert(audit, *(audit_number or audit_next_number())),
        ],
        then=written,
    )
    return settlement


@service_atomic
def settlement_confirm(
    *,
    actor: Actor,
    settlement: Settlement,
    partner_transaction_id: str,
    self_pay_fen: int,
    now: dt.datetime | None = None,
    locked: LockedWithAccount | None = None,
) -> Settlement:
    """The wallet collected the self-pay: `paid`, and the account hold becomes a debit.

    409 `settlement_expired` at or after `expires_at` (swept or not yet), 409
    `invalid_state` in any other state than `pending_payment`, 422 `amount_mismatch`.
    A card suspended since creation does not stop it (PARTNER_API.md). `locked`: what
    `settlement_owned_locked` gave in this transaction (the settlement is then `locked[0]`).
    """
    settlement, account, audit_number = locked or _locked_with_account(settlement)
    now = now or timezone.now()
    if settlement.state == SettlementState.EXPIRED or (
        settlement.state == SettlementState.PENDING_PAYMENT and now >= settlement.expires_at
    ):
        raise DomainError("settlement_expired", _("This settlement expired before it was confirmed."))
    if settlement.state != SettlementState.PENDING_PAYMENT:
        raise DomainError(
            "invalid_state", _("This settlement is %(state)s: it cannot be confirmed.") % {"state": settlement.state}
        )
    if self_pay_fen != settlement.self_pay_fen:
        raise DomainError(
            "amount_mismatch",
            _("The self-pay collected differs from the settlement's self-pay."),
            status=422,
            self_pay_fen=settlement.self_pay_fen,
        )
    before = _audit_snapshot(settlement)
    # The debit is written with the settlement's change, in one statement.
    debit = ledger.debit_held_statements(account, settlement=settlement, actor=actor)
    settlement.state = SettlementState.PAID
    settlement.partner_transaction_id = partner_transaction_id
    settlement.paid_at = now
    return _change(
        settlement,
        actor=actor,
        action="confirm",
        event="settlement.paid",
        before=before,
        fields=["partner_transaction_id", "paid_at"],
        writes=debit,
        audit_number=audit_number,
    )


@service_atomic
def settlement_cancel(*, actor: Actor, settlement: Settlement) -> Settlement:
    """A pending settlement abandoned by its partner: `cancelled`, its reservation released."""
    settlement = _locked(settlement)
    if settlement.state != SettlementState.PENDING_PAYMENT:
        raise DomainError(
            "invalid_state", _("This settlement is %(state)s: it cannot be cancelled.") % {"state": settlement.state}
        )
    before = _audit_snapshot(settlement)
    _release(settlement)
    settlement.state = SettlementState.CANCELLED
    settlement.released_at = timezone.now()
    return _change(
        settlement, actor=actor, action="cancel", event="settlement.cancelled", before=before, fields=["released_at"]
    )


@transaction.atomic
def settlement_expire(*, actor: Actor, settlement: Settlement, now: dt.datetime | None = None) -> Settlement | None:
    """A pending settlement past `expires_at`: `expired`, its reservation released (None if not due)."""
    now = now or timezone.now()
    settlement = (
        Settlement.objects.select_for_update(of=("self",), skip_locked=True)
        .select_related("partner", "policy", "certificate", "citizen", "facility", "family_binding")
        .filter(pk=settlement.pk, state=SettlementState.PENDING_PAYMENT, expires_at__lte=now)
        .first()
    )
    if settlement is None:  # confirmed, cancelled or being handled by someone else
        return None
    before = _audit_snapshot(settlement)
    _release(settlement)
    settlement.state = SettlementState.EXPIRED
    settlement.released_at = now
    return _change(
        settlement, actor=actor, action="expire", event="settlement.expired", before=before, fields=["released_at"]
    )


def settlements_expire_due(*, now: dt.datetime | None = None, batch: int = 500) -> int:
    """Expire every pending settlement past `expires_at` (beat runs it every minute); returns how many."""
    now = now or timezone.now()
    actor = Actor.system("settlement expiry")
    done = 0
    while True:
        due = list(
            Settlement.objects.filter(state=SettlementState.PENDING_PAYMENT, expires_at__lte=now)
            .order_by("expires_at", "id")
            .values_list("pk", flat=True)[:batch]
        )
        expired = 0
        for pk in due:
            if settlement_expire(actor=actor, settlement=Settlement(pk=pk), now=now) is not None:
                expired += 1
        done += expired
        if len(due) < batch or expired == 0:
            return done


@service_atomic
def settlement_refund(*, actor: Actor, settlement: Settlement, reason: str) -> Settlement:
    """Full refund of a paid settlement: its year's fund and deductible use and the account
    balance are restored exactly (whatever the card's state now)."""
    settlement = _locked(settlement)
    if settlement.state != SettlementState.PAID:
        raise DomainError(
            "invalid_state",
            _("This settlement is %(state)s: only a paid settlement can be refunded.") % {"state": settlement.state},
        )
    before = _audit_snapshot(settlement)
    accumulator = _accumulator_for_update(settlement.citizen_id, settlement.year)
    accumulator.deductible_used_fen -= settlement.deductible_fen
    accumulator.fund_used_fen -= settlement.fund_fen
    accumulator.save(update_fields=["deductible_used_fen", "fund_used_fen", "updated_at"])
    account = ledger.account_for_update(settlement.citizen_id)
    ledger.account_credit_refund(account, settlement=settlement, actor=actor)
    settlement.state = SettlementState.REFUNDED
    settlement.refunded_at = timezone.now()
    settlement.refund_reason = reason[:128]
    return _change(
        settlement,
        actor=actor,
        action="refund",
        event="settlement.refunded",
        before=before,
        fields=["refunded_at", "refund_reason"],
        reason=reason,
    )


# --- Selectors ---------------------------------------------------------------------------------


_OWNED_SQL: str | None = None


def settlement_owned(partner: Partner, public_id: str) -> Settlement | None:
    """A bare handle (its pk) on this partner's settlement, for a write whose service locks and
    reads the row itself; None if the partner has no such settlement (another's included)."""
    global _OWNED_SQL
    if _OWNED_SQL is None:
        # By the unique public id alone, the partner compared here: with `"partner_id" = %s AND` in
        # the WHERE, the generic plan of this prepared statement scanned the partner's settlements.
        _OWNED_SQL = f'SELECT "id", "partner_id" FROM "{Settlement._meta.db_table}" WHERE "public_id" = %s'
    found = prepared.fetch_one(_OWNED_SQL, [public_id]) if "\x00" not in public_id else None
    if found is None or found[1] != partner.pk:
        return None
    return _partial(Settlement, ["id", "partner_id", "public_id"], [found[0], partner.pk, public_id])


def settlements_of_partner(partner: Partner) -> QuerySet[Settlement]:
    """A partner's own settlements, with what their representation reads (a fixed number of queries)."""
    return (
        Settlement.objects.filter(partner=partner)
        .select_related("certificate", "family_binding", "facility", "policy")
        .prefetch_related("lines")
    )
