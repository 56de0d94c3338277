"""`POST /premiums` and `GET /premiums/{id}` through a partner client written from the contract alone."""

import pytest

from insurance.catalogue import shanghai_today
from payments.models import PartnerKind, PremiumPayment
from payments.premiums.services import enrolment_paid
from portal.models import AuditEvent
from testkit.api import idem_key, make_partner_client, partner_of
from testkit.settlements import PREMIUM, insured, publish_policies

pytestmark = pytest.mark.django_db

PREMIUM_FIELDS = {"id", "state", "year", "amount_fen", "partner_transaction_id", "citizen", "created_at", "version"}
THIS_YEAR = shanghai_today().year


@pytest.fixture
def wallet(regions, signing_key, fresh_cache):
    publish_policies(regions)
    return make_partner_client()


@pytest.fixture
def resident(regions):
    return insured(regions, scheme="resident", name="王小明")


def pay(
    client,
    id_number: str,
    *,
    name: str = "王小明",
    year: int = THIS_YEAR,
    amount: int = PREMIUM,
    key: str | None = None,
):
    body = {
        "id_number": id_number,
        "name": name,
        "year": year,
        "amount_fen": amount,
        "partner_transaction_id": "wx-prm-1",
    }
    return client.post("/api/v1/premiums", body, idempotency_key=key or idem_key())


def test_a_wallet_pays_a_residents_premium_and_the_enrolment_is_paid(wallet, resident):
    citizen, id_number = resident
    response = pay(wallet, id_number)
    assert response.status == 201 and response.signature_valid
    body = response.json()
    assert set(body) == PREMIUM_FIELDS
    assert body["id"].startswith("prm_")
    assert (body["state"], body["year"], body["amount_fen"], body["version"]) == ("paid", THIS_YEAR, PREMIUM, 1)
    assert body["citizen"] == {
        "name_masked": "王*明",
        "id_number_masked": citizen.id_number_masked,
        "region_code": "310000",
        "scheme": "resident",
    }
    assert enrolment_paid(citizen, THIS_YEAR)
    assert AuditEvent.objects.filter(action="premium.pay", object_id=body["id"]).exists()
    assert wallet.get(f"/api/v1/premiums/{body['id']}").json() == body


def test_a_retried_payment_answers_the_first_response_and_pays_once(wallet, resident):
    key = idem_key()
    first, again = pay(wallet, resident[1], key=key), pay(wallet, resident[1], key=key)
    assert (first.status, again.status) == (201, 201)
    assert again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    assert PremiumPayment.objects.count() == 1


def test_a_second_payment_for_the_year_is_premium_already_paid(wallet, resident):
    assert pay(wallet, resident[1]).status == 201
    response = pay(make_partner_client(), resident[1])
    assert (response.status, response.code) == (409, "premium_already_paid")


def test_the_next_year_may_be_paid_when_its_policy_is_published(wallet, regions, resident):
    publish_policies(regions, year=THIS_YEAR + 1)
    assert pay(wallet, resident[1], year=THIS_YEAR + 1).status == 201


def test_a_next_year_without_a_policy_is_policy_unavailable(wallet, resident):
    response = pay(wallet, resident[1], year=THIS_YEAR + 1)
    assert (response.status, response.code) == (409, "policy_unavailable")


@pytest.mark.parametrize("year", [THIS_YEAR - 1, THIS_YEAR + 2, 0, 99999])
def test_a_year_other_than_the_current_or_next_is_a_validation_error(wallet, resident, year):
    response = pay(wallet, resident[1], year=year)
    assert (response.status, response.code) == (400, "validation_error")
    assert "year" in response.json()["errors"]


def test_a_wrong_amount_is_amount_mismatch(wallet, resident):
    response = pay(wallet, resident[1], amount=PREMIUM - 1)
    assert (response.status, response.code) == (422, "amount_mismatch")
    assert PremiumPayment.objects.count() == 0


def test_an_employee_is_not_resident_scheme(wallet, regions):
    _, id_number = insured(regions, scheme="employee", name="王小明")
    response = pay(wallet, id_number)
    assert (response.status, response.code) == (409, "not_resident_scheme")


@pytest.mark.parametrize("who", ["unknown", "wrong_name"])
def test_an_unknown_person_is_identity_mismatch(wallet, resident, who):
    id_number = "110101199003070000" if who == "unknown" else resident[1]
    response = pay(wallet, id_number, name="王小明" if who == "unknown" else "李四")
    assert (response.status, response.code) == (422, "identity_mismatch")


def test_errors_come_in_the_contracts_order(wallet, regions, resident):
    _, employee = insured(regions, scheme="employee", name="王小明")
    # identity first, whatever else is wrong
    assert pay(wallet, resident[1], name="李四", year=THIS_YEAR + 5, amount=1).code == "identity_mismatch"
    # then the scheme, before the year
    assert pay(wallet, employee, year=THIS_YEAR + 5).code == "not_resident_scheme"
    # then the year, before anything already paid or the amount
    assert pay(wallet, resident[1]).status == 201
    assert pay(wallet, resident[1], year=THIS_YEAR + 5, amount=1).code == "validation_error"
    # then already paid, before the amount
    assert pay(wallet, resident[1], amount=1).code == "premium_already_paid"


def test_a_service_platform_may_not_pay_or_read_premiums(wallet, resident):
    body = pay(wallet, resident[1]).json()
    platform = make_partner_client(PartnerKind.SERVICE_PLATFORM)
    assert (pay(platform, resident[1]).status, pay(platform, resident[1]).code) == (403, "forbidden")
    assert platform.get(f"/api/v1/premiums/{body['id']}").status == 403


def test_another_partners_premium_is_not_found(wallet, resident):
    body = pay(wallet, resident[1]).json()
    assert make_partner_client().get(f"/api/v1/premiums/{body['id']}").code == "not_found"
    assert partner_of(wallet).premiums.count() == 1


@pytest.mark.parametrize(
    "change",
    [{"amount_fen": "38000"}, {"amount_fen": 380.0}, {"year": "2026"}, {"extra": 1}, {"partner_transaction_id": ""}],
)
def test_malformed_bodies_are_validation_errors(wallet, resident, change):
    body = {
        "id_number": resident[1],
        "name": "王小明",
        "year": THIS_YEAR,
        "amount_fen": PREMIUM,
        "partner_transaction_id": "wx",
        **change,
    }
    response = wallet.post("/api/v1/premiums", body, idempotency_key=idem_key())
    assert (response.status, response.code) == (400, "validation_error")
