"""Personal accounts: an append-only ledger whose balance is the sum of its entries; the citizen
import sets balances through it (the `citizen.account_balance_set` domain event)."""

import csv

import pytest
from django.db import DatabaseError, transaction

from insurance.imports.reading import read_rows
from insurance.imports.writing import import_rows
from insurance.services import find_citizen_id_by_id_number
from payments.ledger import services as ledger
from payments.models import AccountEntry, PersonalAccount
from payments.settlements import services
from portal.audit import verify_chain
from portal.errors import DomainError
from portal.models import AuditEvent
from testkit.citizens import new_id_number
from testkit.settlements import SYSTEM, account, assert_ledger_consistent, insured, lines, linked, make_wallet, token

pytestmark = pytest.mark.django_db


def test_setting_a_balance_writes_one_adjustment_entry_of_the_difference(regions):
    citizen, _ = insured(regions)
    first = ledger.account_balance_set(actor=SYSTEM, citizen=citizen, balance_fen=12345)
    second = ledger.account_balance_set(actor=SYSTEM, citizen=citizen, balance_fen=10000)
    assert (first.kind, first.amount_fen, first.balance_after_fen) == ("adjustment", 12345, 12345)
    assert (second.amount_fen, second.balance_after_fen) == (-2345, 10000)
    assert ledger.account_balance_set(actor=SYSTEM, citizen=citizen, balance_fen=10000) is None
    assert account(citizen.pk).balance_fen == 10000
    assert_ledger_consistent(citizen.pk)
    assert AuditEvent.objects.filter(action="account.adjust").count() == 2
    assert verify_chain() == []


@pytest.mark.parametrize("bad", [-1, True, 1.5, "100"])
def test_a_balance_is_a_whole_non_negative_number_of_fen(regions, bad):
    citizen, _ = insured(regions)
    with pytest.raises(DomainError) as caught:
        ledger.account_balance_set(actor=SYSTEM, citizen=citizen, balance_fen=bad)
    assert caught.value.code == "validation_error"


def test_ledger_entries_cannot_be_edited_or_deleted(regions):
    citizen, _ = insured(regions, balance=500)
    entry = AccountEntry.objects.get(account__citizen=citizen)
    with pytest.raises(DatabaseError), transaction.atomic():
        AccountEntry.objects.filter(pk=entry.pk).update(amount_fen=999999)
    with pytest.raises(DatabaseError), transaction.atomic():
        AccountEntry.objects.filter(pk=entry.pk).delete()
    assert AccountEntry.objects.get(pk=entry.pk).amount_fen == 500


def test_a_balance_cannot_drop_below_what_pending_settlements_hold(regions, world):
    wallet = make_wallet()
    linkage = linked(wallet, regions, balance=5000)
    services.settlement_create(
        actor=SYSTEM,
        partner=wallet,
        token=token(linkage),
        facility_code="H310-1",
        lines=lines(("REG", 1, 3000)),
        use_personal_account=True,
    )
    with pytest.raises(DomainError) as caught:
        ledger.account_balance_set(actor=SYSTEM, citizen=linkage.citizen, balance_fen=2999)
    assert caught.value.code == "account_held"
    ledger.account_balance_set(actor=SYSTEM, citizen=linkage.citizen, balance_fen=3000)
    assert_ledger_consistent(linkage.citizen_id)


def test_the_database_refuses_a_hold_larger_than_the_balance(regions):
    citizen, _ = insured(regions, balance=100)
    with pytest.raises(DatabaseError), transaction.atomic():
        PersonalAccount.objects.filter(citizen=citizen).update(held_fen=101)


def _write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_number", "name", "phone", "region_code", "scheme", "account_balance_fen"])
        writer.writerows(rows)


def test_the_citizen_import_stores_balances_as_adjustment_entries(regions, tmp_path):
    number = new_id_number("310000")
    first = tmp_path / "first.csv"
    _write_csv(first, [[number, "王五", "13800000000", "310000", "employee", "8800"]])
    assert import_rows(read_rows(first), actor=SYSTEM).as_dict() == {"created": 1, "updated": 0, "failed": 0}
    citizen_id = find_citizen_id_by_id_number(number)
    assert account(citizen_id).balance_fen == 8800

    second = tmp_path / "second.csv"
    _write_csv(
        second,
        [
            [number, "王五", "13800000000", "310000", "employee", "10000"],
            [new_id_number("310000"), "赵六", "13800000001", "310000", "employee", ""],
        ],
    )
    assert import_rows(read_rows(second), actor=SYSTEM).as_dict() == {"created": 1, "updated": 1, "failed": 0}
    assert [e.amount_fen for e in AccountEntry.objects.filter(account__citizen_id=citizen_id).order_by("id")] == [
        8800,
        1200,
    ]
    assert_ledger_consistent(citizen_id)
    # A row without a balance leaves the account alone (none is created).
    assert PersonalAccount.objects.count() == 1


def test_an_import_row_that_would_drop_below_held_money_fails_alone(regions, world, tmp_path):
    wallet = make_wallet()
    linkage = linked(wallet, regions, balance=5000)
    services.settlement_create(
        actor=SYSTEM,
        partner=wallet,
        token=token(linkage),
        facility_code="H310-1",
        lines=lines(("REG", 1, 3000)),
        use_personal_account=True,
    )
    path = tmp_path / "low.csv"
    _write_csv(path, [[linkage.citizen.id_number, linkage.citizen.name, "13800000000", "310000", "employee", "100"]])
    errors = []
    summary = import_rows(read_rows(path), actor=SYSTEM, on_error=errors.append)
    assert summary.as_dict() == {"created": 0, "updated": 0, "failed": 1}
    assert errors[0].column == "account_balance_fen"
    assert account(linkage.citizen_id).balance_fen == 5000
