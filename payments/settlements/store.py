"""The settlements' SQL: the only settlement module that speaks it (docs/adr/0001-settlement-hot-path.md).

Hot statements run prepared, planned once per connection (portal/prepared.py), and their rows are
read by column name into frozen dataclasses. The SQL is assembled from the named constants below;
values are always parameters. The create's read and the confirm's lock may carry the idempotency
key's claim (payments/api/idempotency.py `Claim`), passed in explicitly: one round trip instead of two.

Lock order, the same in every statement here, so that none can deadlock another: QR token,
certificate, settlement, citizen-year accumulator, personal account, audit chain head.
"""

import datetime as dt
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from insurance.models import Certificate, Citizen, Facility, ReimbursementPolicy, ServiceItem
from payments import rows
from payments.api.idempotency import CLAIM_CTE, CLAIM_GO, Claim
from payments.ledger import services as ledger
from payments.models import (
    CitizenYearAccumulator,
    FamilyBinding,
    OutboxEvent,
    Partner,
    PersonalAccount,
    QrToken,
    Settlement,
    SettlementLine,
    SettlementState,
)
from portal import prepared
from portal.audit import NUMBER_COLUMNS, audit_insert, audit_insert_sql, audit_next_number
from portal.models import AuditEvent


def _carrying(ctes: Sequence[str], select: str) -> str:
    """`WITH <claim>, <ctes> SELECT claim.*, q.*`: the claim's `claim_*` columns, then `select`'s
    (all NULL when it found nothing or did not run); the claim's parameters come first."""
    return f"WITH {', '.join([CLAIM_CTE, *ctes])} SELECT claim.*, q.* FROM claim LEFT JOIN LATERAL ({select}) q ON true"  # noqa: S608 (constant parts)


def _plain(ctes: Sequence[str], select: str) -> str:
    return f"WITH {', '.join(ctes)} {select}" if ctes else select  # noqa: S608 (constant parts)


def _run(variants: tuple[str, str], params: list, claim: Claim | None) -> dict | None:
    """Run the plain or the carrying variant of a statement: with a pending `claim`, the key's own
    answer is raised (KeyAnswered) before anything else is looked at. The statement's own row, by
    column name, or None if it found nothing (`id` is NULL)."""
    plain, carrying = variants
    if claim is None or not claim.pending:
        return prepared.fetch_row(plain, params)
    # One row whatever it found: the claim's, LEFT JOIN LATERAL the statement's.
    row = cast(dict, prepared.fetch_row(carrying, [*claim.carry(), *params]))
    claim.settle(row)
    return None if row["id"] is None else row


# --- Create: one statement reads and locks what the split needs ------------------------------------
#
# The token consumed (a conditional UPDATE: of concurrent uses of one token, one wins and the others
# wait for it and then find `used_at` set), its certificate locked (a suspension committing now waits
# for us), the linkage, the family binding and the holder's own card, the facility, the service
# items, the policy in force, the audit row's number, and the citizen's year accumulator and personal
# account locked after the card. Each lock is a LATERAL subquery's, each depending on the card's row,
# so they are taken in the module's order. No cache: an item withdrawn or a policy version published
# a second ago counts at once.

_CREATE_USED = (
    'used AS (UPDATE "payments_qrtoken" SET "used_at" = %s WHERE "jti" = %s AND "used_at" IS NULL AND {go}'
    ' RETURNING "id")'
)
_CREATE_COLUMNS = (
    't."id", t."id" AS "token__id", t."expires_at" AS "token__expires_at", t."certificate_id" AS'
    ' "token__certificate_id", t."linkage_id" AS "token__linkage_id", t."family_binding_id" AS'
    ' "token__family_binding_id", (SELECT "id" FROM used) AS "taken",'
    ' c."id" AS "certificate__id", c."number" AS "certificate__number", c."state" AS "certificate__state",'
    ' c."citizen_id" AS "certificate__citizen_id",'
    ' z."id" AS "citizen__id", z."region_id" AS "citizen__region_id", z."scheme" AS "citizen__scheme",'
    ' l."public_id" AS "linkage_public_id", l."state" AS "linkage_state",'
    ' b."id" AS "binding__id", b."public_id" AS "binding__public_id", b."state" AS "binding__state"'
)
_CREATE_HOLDER = (
    '(SELECT hc."state" FROM "insurance_certificate" hc WHERE hc."id" = l."certificate_id")'
    ' AS "holder_certificate_state"'
)
_CREATE_FACILITY = '(SELECT f."id" FROM "insurance_facility" f WHERE f."code" = %s AND f."active") AS "facility__id"'
# The codes as one JSON text: psycopg inspects a list parameter element by element on every call.
_CREATE_ITEMS = (
    "COALESCE((SELECT json_agg(json_build_object('id', i.\"id\", 'code', i.\"code\", 'category', i.\"category\","
    ' \'max_unit_price_fen\', i."max_unit_price_fen", \'active\', i."active")) FROM "insurance_serviceitem" i'
    ' WHERE i."code" IN (SELECT json_array_elements_text(%s::json))), \'[]\') AS "items"'
)
# insurance.catalogue.policy_in_force: a future year's first version, else the latest in effect.
_CREATE_POLICY = (
    "(SELECT json_build_object('id', p.\"id\", 'version', p.\"version\", 'deductible_fen', p.\"deductible_fen\","
    " 'ratio', p.\"ratio\"::text, 'annual_cap_fen', p.\"annual_cap_fen\","
    " 'personal_account_allowed', p.\"personal_account_allowed\", 'eligible_shares', p.\"eligible_shares\")"
    ' FROM "insurance_reimbursementpolicy" p'
    ' WHERE p."region_id" = z."region_id" AND p."scheme" = z."scheme" AND p."year" = %s'
    ' AND (%s OR p."effective_from" <= %s)'
    ' ORDER BY CASE WHEN %s THEN p."version" ELSE -p."version" END LIMIT 1) AS "policy"'
)
_CREATE_YEAR_AND_ACCOUNT = (
    'yr."id" AS "accumulator__id", yr."deductible_used_fen" AS "accumulator__deductible_used_fen",'
    ' yr."fund_used_fen" AS "accumulator__fund_used_fen", ac."id" AS "account__id",'
    ' ac."balance_fen" AS "account__balance_fen", ac."held_fen" AS "account__held_fen"'
)
_CREATE_FROM = (
    'FROM "payments_qrtoken" t'
    ' JOIN LATERAL (SELECT "id", "number", "state", "citizen_id" FROM "insurance_certificate"'
    ' WHERE "id" = t."certificate_id" FOR UPDATE) c ON true'
    ' JOIN "insurance_citizen" z ON z."id" = c."citizen_id"'
    ' JOIN "payments_walletlinkage" l ON l."id" = t."linkage_id"'
    ' LEFT JOIN "payments_familybinding" b ON b."id" = t."family_binding_id"'
    ' LEFT JOIN LATERAL (SELECT "id", "deductible_used_fen", "fund_used_fen" FROM "payments_citizenyearaccumulator"'
    ' WHERE "citizen_id" = c."citizen_id" AND "year" = %s FOR UPDATE) yr ON true'
    ' LEFT JOIN LATERAL (SELECT "id", "balance_fen", "held_fen" FROM "payments_personalaccount"'
    ' WHERE "citizen_id" = c."citizen_id" FOR UPDATE) ac ON true'
    ' WHERE t."jti" = %s AND {go}'
)


def _create_select(go: str) -> str:
    columns = ", ".join(
        [_CREATE_COLUMNS, _CREATE_HOLDER, _CREATE_FACILITY, _CREATE_ITEMS, _CREATE_POLICY, NUMBER_COLUMNS]
    )
    return f"SELECT {columns}, {_CREATE_YEAR_AND_ACCOUNT} {_CREATE_FROM.format(go=go)}"  # noqa: S608 (constant parts)


CREATE_SQL = (
    _plain([_CREATE_USED.format(go="true")], _create_select("true")),
    _carrying([_CREATE_USED.format(go=CLAIM_GO)], _create_select(CLAIM_GO)),
)


@dataclass(frozen=True)
class CreateContext:
    """What `settlement_create` reads before it splits. The instances hold only the fields read."""

    token: QrToken
    taken: bool  # the token was unused and is consumed now
    certificate: Certificate
    citizen: Citizen
    linkage_public_id: str
    linkage_state: str
    binding: FamilyBinding | None
    holder_certificate_state: str | None
    facility: Facility | None
    items: dict[str, ServiceItem]
    policy: ReimbursementPolicy | None
    audit_number: tuple[int, int]  # (seq, xid) of the audit row to come
    # Locked; None for the year's first settlement or an account never credited (created then).
    accumulator: CitizenYearAccumulator | None
    account: PersonalAccount | None


def create_context(
    *, jti: str, now: dt.datetime, facility_code: str, codes: list[str], year: int, today: dt.date, claim: Claim | None
) -> CreateContext | None:
    """The create's read (see above), carrying `claim` if pending; None if no token has this `jti`."""
    future = year > today.year
    params = [now, jti, facility_code, json.dumps(codes), year, future, today, future, year, jti]
    row = _run(CREATE_SQL, params, claim)
    if row is None:
        return None
    parts = rows.row_parts(row)
    citizen = parts["citizen"]
    terms = rows.json_value(row["policy"])
    policy = None
    if terms is not None:
        terms.update(region_id=citizen["region_id"], scheme=citizen["scheme"], year=year)
        terms.update(ratio=Decimal(terms["ratio"]), eligible_shares=rows.json_value(terms["eligible_shares"]))
        policy = rows.loaded(ReimbursementPolicy, list(terms), list(terms.values()))
    accumulator = parts["accumulator"]
    # The token, its card and the citizen are the statement's inner-joined rows: never None.
    return CreateContext(
        token=cast(QrToken, rows.loaded_or_none(QrToken, {**parts["token"], "jti": jti, "used_at": now})),
        taken=row["taken"] is not None,
        certificate=cast(Certificate, rows.loaded_or_none(Certificate, parts["certificate"])),
        citizen=cast(Citizen, rows.loaded_or_none(Citizen, citizen)),
        linkage_public_id=row["linkage_public_id"],
        linkage_state=row["linkage_state"],
        binding=rows.loaded_or_none(FamilyBinding, parts["binding"]),
        holder_certificate_state=row["holder_certificate_state"],
        facility=rows.loaded_or_none(Facility, {**parts["facility"], "code": facility_code, "active": True}),
        items={
            item["code"]: rows.loaded(ServiceItem, list(item), list(item.values()))
            for item in rows.json_value(row["items"])
        },
        policy=policy,
        audit_number=(row["audit_seq"], row["audit_xid"]),
        accumulator=rows.loaded_or_none(
            CitizenYearAccumulator, {**accumulator, "citizen_id": citizen["id"], "year": year}
        ),
        account=rows.loaded_or_none(PersonalAccount, {**parts["account"], "citizen_id": citizen["id"]}),
    )


# --- Create: one statement writes it --------------------------------------------------------------

# The lines as one JSON text unpacked by json_to_recordset (eight list parameters cost psycopg more
# than the whole INSERT); the year's use and the account's hold, both rows locked by the read.
_LINE_RECORD = (
    '"position" int, "service_id" bigint, "service_code" text, "category" text, "quantity" bigint,'
    ' "unit_price_fen" bigint, "line_total_fen" bigint, "eligible_fen" bigint'
)
_LINE_FIELDS = tuple(column.split()[0].strip('"') for column in _LINE_RECORD.split(","))
_LINE_NAMES = ", ".join(f'"{name}"' for name in _LINE_FIELDS)
_WRITE_LINES = (
    f'l AS (INSERT INTO "payments_settlementline" ("settlement_id", {_LINE_NAMES})'  # noqa: S608 (constant parts)
    f' SELECT s."id", u.* FROM s, json_to_recordset(%s::json) AS u({_LINE_RECORD}) RETURNING "id", "position")'
)
_WRITE_YEAR = (
    'a AS (UPDATE "payments_citizenyearaccumulator" SET "deductible_used_fen" = %s, "fund_used_fen" = %s,'
    ' "updated_at" = %s WHERE "id" = %s RETURNING "id")'
)
_WRITE_HOLD = (
    'p AS (UPDATE "payments_personalaccount" SET "held_fen" = %s, "updated_at" = %s WHERE "id" = %s RETURNING "id")'
)
_WRITE_RESULT = (
    'SELECT (SELECT "id" FROM s) AS "settlement_id", (SELECT array_agg("id" ORDER BY "position") FROM l) AS "line_ids",'
    ' (SELECT count(*) FROM a) AS "years", (SELECT count(*) FROM p) AS "accounts", (SELECT count(*) FROM au) AS "audits"'
)


@functools.cache
def _write_sql() -> tuple[str, list]:
    """The create's write and the settlement fields its first parameters follow (built from the
    models once: the INSERTs of rows.py and portal/audit.py are constant per process)."""
    insert_settlement, fields = rows.insert_sql(Settlement)
    audit_sql = audit_insert_sql()
    ctes = [f"s AS ({insert_settlement})", _WRITE_LINES, _WRITE_YEAR, _WRITE_HOLD, f"au AS ({audit_sql})"]
    return _plain(ctes, _WRITE_RESULT), fields


def settlement_insert(
    settlement: Settlement,
    lines: list[SettlementLine],
    accumulator: CitizenYearAccumulator,
    account: PersonalAccount,
    audit: AuditEvent,
    audit_number: tuple[int, int],
) -> None:
    """Write the settlement, its lines, the reservation (`accumulator` and `account` as they are now)
    and its audit event, numbered by `audit_number` read in this transaction: one statement."""
    sql, fields = _write_sql()
    _, audit_params = audit_insert(audit, *audit_number)
    accumulator.updated_at = account.updated_at = settlement.created_at
    lines_json = json.dumps(
        [{name: getattr(line, name) for name in _LINE_FIELDS} for line in lines], ensure_ascii=False
    )
    year = [accumulator.deductible_used_fen, accumulator.fund_used_fen, accumulator.updated_at, accumulator.pk]
    hold = [account.held_fen, account.updated_at, account.pk]
    params = [*rows.insert_values(settlement, fields), lines_json, *year, *hold, *audit_params]
    row = cast(dict, prepared.fetch_row(sql, params))  # a SELECT of subqueries: always one row
    if (row["years"], row["accounts"], row["audits"], len(row["line_ids"] or ())) != (1, 1, 1, len(lines)):
        raise RuntimeError("settlement write: the year accumulator or the account is gone")  # locked: cannot be
    rows.mark_saved(settlement, row["settlement_id"])
    for line, line_id in zip(lines, row["line_ids"], strict=True):
        line.settlement_id = row["settlement_id"]
        rows.mark_saved(line, line_id)


# --- A settlement locked with what its change, audit, event and response read ----------------------

_SETTLEMENT_COLUMNS = ", ".join(
    f's."{field.column}" AS "settlement__{field.attname}"' for field in Settlement._meta.concrete_fields
)
_LOCKED_COLUMNS = (
    's."id", '  # noqa: S608 (constant parts)
    + _SETTLEMENT_COLUMNS
    + ', pa."id" AS "partner__id", pa."code" AS "partner__code", p."id" AS "policy__id",'
    ' p."region_id" AS "policy__region_id", p."scheme" AS "policy__scheme", p."year" AS "policy__year",'
    ' p."version" AS "policy__version", c."id" AS "certificate__id", c."number" AS "certificate__number",'
    ' z."id" AS "citizen__id", z."region_id" AS "citizen__region_id", f."id" AS "facility__id",'
    ' f."code" AS "facility__code", b."id" AS "family_binding__id", b."public_id" AS "family_binding__public_id",'
    " COALESCE((SELECT json_agg(json_build_object('id', sl.\"id\", 'position', sl.\"position\","
    " 'service_id', sl.\"service_id\", 'service_code', sl.\"service_code\", 'category', sl.\"category\","
    " 'quantity', sl.\"quantity\", 'unit_price_fen', sl.\"unit_price_fen\", 'line_total_fen', sl.\"line_total_fen\","
    ' \'eligible_fen\', sl."eligible_fen", \'settlement_id\', sl."settlement_id") ORDER BY sl."position")'
    ' FROM "payments_settlementline" sl WHERE sl."settlement_id" = s."id"), \'[]\') AS "lines"'
)
# (confirm) the account, and the number of the audit row to come
_LOCKED_ACCOUNT_COLUMNS = (
    'a."id" AS "account__id", a."citizen_id" AS "account__citizen_id", a."balance_fen" AS "account__balance_fen",'
    f' a."held_fen" AS "account__held_fen", a."updated_at" AS "account__updated_at", {NUMBER_COLUMNS}'
)
_LOCKED_FROM = (
    'FROM "payments_settlement" s'
    ' JOIN "payments_partner" pa ON pa."id" = s."partner_id"'
    ' JOIN "insurance_reimbursementpolicy" p ON p."id" = s."policy_id"'
    ' JOIN "insurance_certificate" c ON c."id" = s."certificate_id"'
    ' JOIN "insurance_citizen" z ON z."id" = s."citizen_id"'
    ' JOIN "insurance_facility" f ON f."id" = s."facility_id"'
    ' LEFT JOIN "payments_familybinding" b ON b."id" = s."family_binding_id"'
)
_LOCKED_ACCOUNT_JOIN = ' JOIN "payments_personalaccount" a ON a."citizen_id" = s."citizen_id"'
# The settlement's row, then (confirm) the account's: the module's lock order. By public id, the
# unique index on it alone (the partner is compared afterwards: with it in the WHERE, the generic
# plan scanned the partner's settlements).
_BY_ID = ' WHERE s."id" = %s AND {go} FOR UPDATE OF s'
_BY_PUBLIC_ID = ' WHERE s."public_id" = %s AND {go} FOR UPDATE OF s'
# (expiry) still due, and skipped while someone else holds it
_DUE = ' WHERE s."id" = %s AND s."state" = %s AND s."expires_at" <= %s AND {go} FOR UPDATE OF s SKIP LOCKED'


def _locked_select(where: str, go: str, *, with_account: bool) -> str:
    columns = f"{_LOCKED_COLUMNS}, {_LOCKED_ACCOUNT_COLUMNS}" if with_account else _LOCKED_COLUMNS
    joins = _LOCKED_FROM + (_LOCKED_ACCOUNT_JOIN if with_account else "")
    lock = where.format(go=go) + (", a" if with_account else "")
    return f"SELECT {columns} {joins}{lock}"  # noqa: S608 (constant parts)


LOCKED_SQL = _plain([], _locked_select(_BY_ID, "true", with_account=False))
LOCKED_WITH_ACCOUNT_SQL = _plain([], _locked_select(_BY_ID, "true", with_account=True))
LOCKED_DUE_SQL = _plain([], _locked_select(_DUE, "true", with_account=False))
LOCKED_BY_PUBLIC_ID_SQL = (
    _plain([], _locked_select(_BY_PUBLIC_ID, "true", with_account=True)),
    _carrying([], _locked_select(_BY_PUBLIC_ID, CLAIM_GO, with_account=True)),
)
_RELATED = {"partner": Partner, "policy": ReimbursementPolicy, "certificate": Certificate, "citizen": Citizen}
_RELATED |= {"facility": Facility, "family_binding": FamilyBinding}


@dataclass(frozen=True)
class LockedSettlement:
    """A settlement under its row lock, with its partner, policy, card, citizen, facility, binding
    and lines loaded; (confirm) its citizen's account locked after it and the audit row's number."""

    settlement: Settlement
    account: PersonalAccount | None = None
    audit_number: tuple[int, int] | None = None


def _locked(row: dict) -> LockedSettlement:
    parts = rows.row_parts(row)
    settlement = cast(Settlement, rows.loaded_or_none(Settlement, parts["settlement"]))  # the statement's own row
    for name, model in _RELATED.items():
        rows.related(settlement, name, rows.loaded_or_none(model, parts[name]))
    lines = [rows.loaded(SettlementLine, list(line), list(line.values())) for line in rows.json_value(row["lines"])]
    settlement._prefetched_objects_cache = {"lines": lines}  # type: ignore[attr-defined]  # Django's, not in the stubs
    if "account" not in parts:
        return LockedSettlement(settlement)
    audit_number = (row["audit_seq"], row["audit_xid"])
    return LockedSettlement(settlement, rows.loaded_or_none(PersonalAccount, parts["account"]), audit_number)


def settlement_lock(settlement_id: int) -> Settlement:
    """The settlement under its row lock (Settlement.DoesNotExist if there is none)."""
    row = prepared.fetch_row(LOCKED_SQL, [settlement_id])
    if row is None:
        raise Settlement.DoesNotExist("Settlement matching query does not exist.")
    return _locked(row).settlement


def settlement_lock_with_account(settlement_id: int) -> LockedSettlement:
    """The settlement locked, then its citizen's account (without one yet, created: a statement more)."""
    row = prepared.fetch_row(LOCKED_WITH_ACCOUNT_SQL, [settlement_id])
    if row is not None:
        return _locked(row)
    settlement = settlement_lock(settlement_id)
    return LockedSettlement(settlement, ledger.account_for_update(settlement.citizen_id), None)


def settlement_owned_lock_with_account(partner_id: int, public_id: str, claim: Claim | None) -> LockedSettlement | None:
    """`settlement_lock_with_account` of this partner's settlement found by public id in the same
    statement, carrying `claim` if pending; None if the partner has no such settlement (another
    partner's row, locked for the comparison, is released with the refusal's rollback)."""
    row = None if "\x00" in public_id else _run(LOCKED_BY_PUBLIC_ID_SQL, [public_id], claim)
    if row is not None:
        return _locked(row) if row["settlement__partner_id"] == partner_id else None
    owned = settlement_owned(public_id)  # none, or no account yet
    return settlement_lock_with_account(owned[0]) if owned is not None and owned[1] == partner_id else None


def settlement_lock_due(settlement_id: int, now: dt.datetime) -> Settlement | None:
    """The settlement locked if it is still pending past `expires_at` and nobody else holds it."""
    row = prepared.fetch_row(LOCKED_DUE_SQL, [settlement_id, SettlementState.PENDING_PAYMENT, now])
    return None if row is None else _locked(row).settlement


def settlement_ids_due(now: dt.datetime, batch: int) -> list[int]:
    """Up to `batch` pending settlements past `expires_at`, the oldest first."""
    return list(
        Settlement.objects.filter(state=SettlementState.PENDING_PAYMENT, expires_at__lte=now)
        .order_by("expires_at", "id")
        .values_list("pk", flat=True)[:batch]
    )


# By the unique public id alone, the partner compared by the caller (see `_BY_PUBLIC_ID`).
OWNED_SQL = 'SELECT "id", "partner_id" FROM "payments_settlement" WHERE "public_id" = %s'


def settlement_owned(public_id: str) -> tuple[int, int] | None:
    """(id, partner id) of the settlement with this public id, or None."""
    row = None if "\x00" in public_id else prepared.fetch_row(OWNED_SQL, [public_id])
    return None if row is None else (row["id"], row["partner_id"])


def accumulator_for_update(citizen_id: int, year: int) -> CitizenYearAccumulator:
    """The citizen's year accumulator, created if missing, locked for this transaction."""
    locked = CitizenYearAccumulator.objects.select_for_update()
    try:
        return locked.get(citizen_id=citizen_id, year=year)
    except CitizenYearAccumulator.DoesNotExist:  # the year's first settlement (a concurrent creator wins or waits)
        CitizenYearAccumulator.objects.bulk_create(
            [CitizenYearAccumulator(citizen_id=citizen_id, year=year)], ignore_conflicts=True
        )
        return locked.get(citizen_id=citizen_id, year=year)


def settlement_change_write(
    settlement: Settlement,
    fields: list[str],
    outbox: OutboxEvent,
    audit: AuditEvent,
    audit_number: tuple[int, int] | None,
    writes: Sequence[tuple[str, Sequence[object]]] = (),
) -> None:
    """The settlement's changed `fields`, its outbox event, its audit event (numbered by
    `audit_number` if read already, else one statement more) and `writes` of the same change (the
    account's entry): one statement. Every row they touch is locked by this transaction already,
    and none depends on another's write."""
    values = prepared.write_together(
        [
            *writes,
            rows.update_statement(settlement, fields),
            rows.insert_statement(outbox),
            audit_insert(audit, *(audit_number or audit_next_number())),
        ]
    )
    if any(value is None for value in values):  # rows locked by us cannot vanish
        raise RuntimeError("settlement change: a row it writes is gone")
    rows.mark_saved(outbox, values[-2])
