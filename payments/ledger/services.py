"""Personal accounts (个人账户): a balance and an append-only ledger of entries.

The balance is the sum of the account's entries. `PersonalAccount.balance_fen`
caches it and is written in the same transaction as every entry, under the
account's row lock; `held_fen` is what pending settlements have reserved.
Settlements (payments/settlements/services.py) call the helpers below inside their own
transaction, after locking the citizen-year accumulator (lock order:
settlement, accumulator, account, audit chain head).

`insurance` never imports `payments`: the citizen import records the domain
event `citizen.account_balance_set`, and `on_account_balance_set` turns a
changed balance into an `adjustment` entry in the import row's transaction.
"""

from typing import cast

from django.db import transaction
from django.db.models import Field, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from insurance.models import Citizen
from payments import rows
from payments.ledger.errors import LedgerErrorCode
from payments.models import AccountEntry, AccountEntryKind, PersonalAccount, Settlement
from portal import domain_events, prepared
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError
from portal.models import DomainEvent

BALANCE_SET_EVENT = "citizen.account_balance_set"


# The two hot statements of the ledger, hand-written and prepared once per connection
# (portal/prepared.py): no ORM compilation on the settlement path.
_ACCOUNT_FIELDS = ["id", "citizen_id", "balance_fen", "held_fen", "updated_at"]
_LOCK_SQL: str | None = None


def _lock_sql() -> str:
    global _LOCK_SQL
    if _LOCK_SQL is None:
        # _ACCOUNT_FIELDS are concrete fields of the model, not relations.
        columns = ", ".join(
            f'"{cast(Field, PersonalAccount._meta.get_field(name)).column}"' for name in _ACCOUNT_FIELDS
        )
        _LOCK_SQL = f'SELECT {columns} FROM "{PersonalAccount._meta.db_table}" WHERE "citizen_id" = %s FOR UPDATE'  # noqa: S608 (names from the models; values are parameters)
    return _LOCK_SQL


# An entry and the cached balance are always written together, as one statement
# (`prepared.write_together`), so never one without the other.
_ENTRY_SQL = (
    f'INSERT INTO "{AccountEntry._meta.db_table}" ("account_id", "kind", "amount_fen", "balance_after_fen",'  # noqa: S608 (names from the models; values are parameters)
    ' "settlement_id", "actor_label", "note", "created_at") VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING "id"'
)
_BALANCE_SQL = (
    f'UPDATE "{PersonalAccount._meta.db_table}" SET "balance_fen" = %s, "held_fen" = %s, "updated_at" = %s'  # noqa: S608 (names from the models; values are parameters)
    ' WHERE "id" = %s RETURNING "id"'
)


def _append_statements(account: PersonalAccount, entry: AccountEntry) -> list[tuple[str, list]]:
    """The entry's INSERT and the account's new balance, hold and time, for `prepared.write_together`."""
    return [
        (
            _ENTRY_SQL,
            [
                account.pk,
                entry.kind,
                entry.amount_fen,
                entry.balance_after_fen,
                entry.settlement_id,
                entry.actor_label,
                entry.note,
                entry.created_at,
            ],
        ),
        (_BALANCE_SQL, [account.balance_fen, account.held_fen, account.updated_at, account.pk]),
    ]


def account_for_update(citizen_id: int) -> PersonalAccount:
    """The citizen's account, created empty if missing, locked for this transaction."""
    found = prepared.fetch_one(_lock_sql(), [citizen_id])  # one statement in the usual case
    if found is None:
        PersonalAccount.objects.bulk_create([PersonalAccount(citizen_id=citizen_id)], ignore_conflicts=True)
        # Created now or by a concurrent creator (ignore_conflicts): the row exists.
        found = cast(tuple, prepared.fetch_one(_lock_sql(), [citizen_id]))
    return rows.loaded(PersonalAccount, _ACCOUNT_FIELDS, list(found))


def available_fen(account: PersonalAccount) -> int:
    """What a new settlement may take: the balance less what pending settlements hold."""
    return account.balance_fen - account.held_fen


def ledger_sum(account: PersonalAccount) -> int:
    return AccountEntry.objects.filter(account=account).aggregate(total=Sum("amount_fen"))["total"] or 0


def _entry(
    account: PersonalAccount, *, kind: str, amount_fen: int, actor: Actor, settlement: Settlement | None, note: str
) -> AccountEntry:
    """The new entry, the account's balance and time moved with it (in memory)."""
    account.balance_fen += amount_fen
    entry = AccountEntry(
        account=account,
        kind=kind,
        amount_fen=amount_fen,
        balance_after_fen=account.balance_fen,
        settlement=settlement,
        actor_label=actor.label[:150],
        note=note[:128],
        created_at=timezone.now(),
    )
    account.updated_at = entry.created_at
    return entry


def _append(
    account: PersonalAccount,
    *,
    kind: str,
    amount_fen: int,
    actor: Actor,
    settlement: Settlement | None = None,
    note: str = "",
) -> AccountEntry:
    """Write one entry and the cached balance together (the account row is locked by the caller)."""
    entry = _entry(account, kind=kind, amount_fen=amount_fen, actor=actor, settlement=settlement, note=note)
    entry.pk, account_id = prepared.write_together(_append_statements(account, entry))
    if account_id is None:  # locked by the caller: cannot vanish
        raise RuntimeError("ledger append: the account is gone")
    entry._state.adding = False
    entry._state.db = "default"
    return entry


def account_hold(account: PersonalAccount, amount_fen: int) -> None:
    """Reserve part of the balance for a pending settlement."""
    if amount_fen:
        account.held_fen += amount_fen
        account.save(update_fields=["held_fen", "updated_at"])


def account_release(account: PersonalAccount, amount_fen: int) -> None:
    """Give back a hold (a pending settlement cancelled or expired)."""
    if amount_fen:
        account.held_fen -= amount_fen
        account.save(update_fields=["held_fen", "updated_at"])


def debit_held_statements(account: PersonalAccount, *, settlement: Settlement, actor: Actor) -> list[tuple[str, list]]:
    """A confirmed settlement: its hold becomes a debit entry. The two statements that write it (the
    entry, the cached balance), for the caller to run together with the rest of its change
    (`prepared.write_together`): none if the settlement took nothing from the account. The account
    row is locked by the caller."""
    if not settlement.account_fen:
        return []
    account.held_fen -= settlement.account_fen
    entry = _entry(
        account,
        kind=AccountEntryKind.SETTLEMENT,
        amount_fen=-settlement.account_fen,
        actor=actor,
        settlement=settlement,
        note="",
    )
    return _append_statements(account, entry)


def account_credit_refund(account: PersonalAccount, *, settlement: Settlement, actor: Actor) -> None:
    """A refunded settlement: exactly what it debited goes back."""
    if settlement.account_fen:
        _append(
            account, kind=AccountEntryKind.REFUND, amount_fen=settlement.account_fen, actor=actor, settlement=settlement
        )


@transaction.atomic
def account_balance_set(*, actor: Actor, citizen: Citizen, balance_fen: int, note: str = "") -> AccountEntry | None:
    """Bring the balance to `balance_fen` with one `adjustment` entry (none if unchanged).

    Refused (409 `account_held`) below what pending settlements hold, so that
    every confirmation can still be debited.
    """
    if not isinstance(balance_fen, int) or isinstance(balance_fen, bool) or balance_fen < 0:
        raise DomainError(
            LedgerErrorCode.VALIDATION_ERROR,
            _("The balance is a whole number of fen, not negative."),
            status=400,
            field="account_balance_fen",
        )
    account = account_for_update(citizen.pk)
    if balance_fen < account.held_fen:
        raise DomainError(
            LedgerErrorCode.ACCOUNT_HELD,
            _("Pending settlements hold more than this balance; retry after they end."),
            field="account_balance_fen",
        )
    delta = balance_fen - account.balance_fen
    if delta == 0:
        return None
    before = {"balance_fen": account.balance_fen}
    entry = _append(account, kind=AccountEntryKind.ADJUSTMENT, amount_fen=delta, actor=actor, note=note)
    audit_record(
        actor=actor,
        action="account.adjust",
        object_type="personal_account",
        object_id=account.pk,
        region_code=citizen.region_id,
        before=before,
        after={"balance_fen": account.balance_fen, "entry": entry.pk, "amount_fen": delta},
        reason=note,
    )
    return entry


def on_account_balance_set(event: DomainEvent) -> None:
    """`citizen.account_balance_set` (recorded by the citizen import): an adjustment entry."""
    citizen = Citizen.objects.get(pk=event.data["citizen_id"])
    recorded = event.data.get("actor") or {}
    actor = Actor(
        type=recorded.get("type", "system"),
        id=recorded.get("id", ""),
        label=recorded.get("label", "import"),
        user_id=recorded.get("user_id"),
    )
    account_balance_set(
        actor=actor, citizen=citizen, balance_fen=event.data["balance_fen"], note=event.data.get("note", "import")
    )


def register_handlers() -> None:
    domain_events.subscribe(BALANCE_SET_EVENT, on_account_balance_set)
