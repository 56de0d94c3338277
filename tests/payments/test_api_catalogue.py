"""`GET /api/v1/services`, `/facilities` and `/policies` as a partner sees them (testkit/partner_client.py)."""

import re
import secrets
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator

from insurance import catalogue
from insurance.catalogue_demo import seed_catalogue
from insurance.models import Facility, ServiceCategory, ServiceItem
from payments import keys
from payments.models import Partner, PartnerKey, PartnerKind, PartnerState
from portal.actors import Actor
from testkit.partner_client import PartnerClient, new_key_pair

SERVICE_FIELDS = {"code", "name_zh", "name_en", "category", "unit", "max_unit_price_fen"}
FACILITY_FIELDS = {"code", "name_zh", "name_en", "kind", "region_code"}
POLICY_FIELDS = {
    "region_code",
    "scheme",
    "year",
    "version",
    "effective_from",
    "deductible_fen",
    "ratio",
    "annual_cap_fen",
    "personal_account_allowed",
    "eligible_shares",
    "premium_fen",
}
DECIMAL_STRING = re.compile(r"^[01]\.[0-9]{2,4}$")


@pytest.fixture
def catalogue_data(regions):
    seed_catalogue()
    return regions


def make_client(kind: str = PartnerKind.WALLET, code: str | None = None) -> PartnerClient:
    code = code or f"p{secrets.token_hex(4)}"
    partner = Partner.objects.create(code=code, name=code, kind=kind)
    private, public = new_key_pair()
    key = PartnerKey.objects.create(partner=partner, key_id=f"{code}-key", public_key=public)
    return PartnerClient(key_id=key.key_id, private_key=private, django_client=Client())


@pytest.fixture
def wallet(portal_key, catalogue_data) -> PartnerClient:
    return make_client()


def read_all(client: PartnerClient, target: str, limit: int) -> list[dict]:
    items: list[dict] = []
    separator = "&" if "?" in target else "?"
    url = f"{target}{separator}limit={limit}"
    for _ in range(100):
        response = client.get(url)
        assert response.status == 200, response.body
        assert response.signature_valid
        page = response.json()
        assert len(page["results"]) <= limit
        items.extend(page["results"])
        if page["next_cursor"] is None:
            return items
        assert re.fullmatch(r"[A-Za-z0-9_-]+", page["next_cursor"])
        url = f"{target}{separator}limit={limit}&cursor={page['next_cursor']}"
    raise AssertionError("pagination did not end")


# --- /services ---------------------------------------------------------------------------------


def test_the_catalogue_lists_active_services_in_the_contract_shape_ordered_by_code(wallet):
    ServiceItem.objects.filter(code="OT0000000002").update(active=False)
    response = wallet.get("/api/v1/services?limit=200")
    assert response.status == 200
    assert response.signature_valid
    body = response.json()
    assert set(body) == {"results", "next_cursor"}
    assert body["next_cursor"] is None
    codes = [item["code"] for item in body["results"]]
    assert codes == sorted(ServiceItem.objects.filter(active=True).values_list("code", flat=True))
    assert "OT0000000002" not in codes
    assert all(set(item) == SERVICE_FIELDS for item in body["results"])
    cbc = next(item for item in body["results"] if item["code"] == "250101015")
    assert cbc == {
        "code": "250101015",
        "name_zh": "血细胞分析（血常规）",
        "name_en": "Complete blood count",
        "category": "lab_test",
        "unit": "次",
        "max_unit_price_fen": 2000,
    }
    assert {item["category"] for item in body["results"]} == set(ServiceCategory.values)


def test_the_catalogue_pages_by_cursor_without_gaps_or_repeats(wallet):
    everything = wallet.get("/api/v1/services?limit=200").json()["results"]
    assert read_all(wallet, "/api/v1/services", limit=7) == everything
    assert read_all(wallet, "/api/v1/services", limit=1) == everything


def test_the_default_page_holds_fifty(wallet, system_actor):
    for n in range(60):
        catalogue.service_create(
            actor=system_actor,
            code=f"ZZ{n:04d}",
            name_zh="测试",
            name_en="Test",
            category="other",
            unit="次",
            max_unit_price_fen=1,
        )
    page = wallet.get("/api/v1/services").json()
    assert len(page["results"]) == 50
    assert page["next_cursor"] is not None


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "limit=",
        "limit=1.5",
        "limit=" + quote("²"),
        "limit=" + quote("１２"),
    ],
)
def test_a_bad_limit_is_a_validation_error(wallet, query):
    response = wallet.get(f"/api/v1/services?{query}")
    assert response.status == 400
    assert response.code == "validation_error"
    assert "limit" in response.json()["errors"]
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.signature_valid


@pytest.mark.parametrize("cursor", ["not*valid", "", "AAAA", "bm90LWEtY3Vyc29y", "x" * 300])
def test_a_bad_cursor_is_a_validation_error(wallet, cursor):
    for target in ("/api/v1/services", "/api/v1/facilities"):
        response = wallet.get(f"{target}?cursor={cursor}")
        assert response.status == 400, (target, cursor, response.body)
        assert response.code == "validation_error"
        assert "cursor" in response.json()["errors"]


# --- /facilities -----------------------------------------------------------------------------


def test_facilities_of_a_region_are_listed_in_the_contract_shape(wallet):
    response = wallet.get("/api/v1/facilities?region_code=310000")
    assert response.status == 200
    assert response.signature_valid
    results = response.json()["results"]
    assert [f["code"] for f in results] == ["C310000001", "H310000001", "P310000001"]
    assert all(set(f) == FACILITY_FIELDS and f["region_code"] == "310000" for f in results)
    assert {f["kind"] for f in results} == {"hospital", "clinic", "pharmacy"}
    assert results[1]["name_zh"] == "上海市第一人民医院"


def test_all_facilities_are_listed_by_code_across_pages_without_a_region(wallet):
    Facility.objects.filter(code="P440000001").update(active=False)
    items = read_all(wallet, "/api/v1/facilities", limit=4)
    codes = [f["code"] for f in items]
    assert codes == sorted(Facility.objects.filter(active=True).values_list("code", flat=True))
    assert len(codes) == 7 * 3 - 1
    assert len({f["region_code"] for f in items}) == 7


def test_the_cursor_keeps_the_region_filter(wallet):
    items = read_all(wallet, "/api/v1/facilities?region_code=440000", limit=1)
    assert [f["code"] for f in items] == ["C440000001", "H440000001", "P440000001"]


@pytest.mark.parametrize("region_code", ["999999", "110000", "31000", "abcdef", "", "310000x"])
def test_a_region_code_that_is_not_a_pilot_region_is_a_validation_error(wallet, region_code):
    response = wallet.get(f"/api/v1/facilities?region_code={region_code}")
    assert response.status == 400
    assert response.code == "validation_error"
    assert "region_code" in response.json()["errors"]


def test_unknown_query_parameters_are_ignored(wallet):
    response = wallet.get("/api/v1/facilities?region_code=350000&colour=blue&page=3")
    assert response.status == 200
    assert len(response.json()["results"]) == 3
    assert wallet.get("/api/v1/services?sort=-code").status == 200


# --- /policies --------------------------------------------------------------------------------


def test_the_policy_in_force_is_returned_in_the_contract_shape(wallet):
    year = catalogue.shanghai_today().year
    response = wallet.get(f"/api/v1/policies?region_code=310000&scheme=resident&year={year}")
    assert response.status == 200, response.body
    assert response.signature_valid
    body = response.json()
    assert set(body) == POLICY_FIELDS
    assert body == {
        "region_code": "310000",
        "scheme": "resident",
        "year": year,
        "version": 1,
        "effective_from": f"{year}-01-01",
        "deductible_fen": 50000,
        "ratio": "0.65",
        "annual_cap_fen": 30_000_000,
        "personal_account_allowed": False,
        "eligible_shares": {
            "registration": "1.00",
            "consultation": "1.00",
            "lab_test": "1.00",
            "imaging": "1.00",
            "drug_a": "1.00",
            "drug_b": "0.90",
            "non_catalogue": "0.00",
            "other": "0.00",
        },
        "premium_fen": 42000,
    }


def test_an_employee_policy_has_no_premium_and_ratios_are_decimal_strings(wallet):
    year = catalogue.shanghai_today().year
    body = wallet.get(f"/api/v1/policies?region_code=370000&scheme=employee&year={year}").json()
    assert body["premium_fen"] is None
    assert body["personal_account_allowed"] is True
    assert body["ratio"] == "0.75"
    assert body["eligible_shares"]["drug_b"] == "0.85"
    assert all(DECIMAL_STRING.match(share) for share in body["eligible_shares"].values())


def test_a_version_taking_effect_today_replaces_the_one_before(wallet, system_actor, regions):
    today = catalogue.shanghai_today()
    catalogue.policy_create_version(
        actor=system_actor,
        region=regions["440000"],
        scheme="employee",
        year=today.year,
        effective_from=today,
        deductible_fen=100,
        ratio="0.7125",
        annual_cap_fen=1000,
        personal_account_allowed=False,
    )
    body = wallet.get(f"/api/v1/policies?region_code=440000&scheme=employee&year={today.year}").json()
    assert (body["version"], body["ratio"], body["deductible_fen"]) == (2, "0.7125", 100)


def test_a_future_year_keeps_answering_its_first_version_after_an_edit(wallet, system_actor, regions):
    year = catalogue.shanghai_today().year + 1
    catalogue.policy_create_version(
        actor=system_actor,
        region=regions["440000"],
        scheme="employee",
        year=year,
        effective_from=catalogue.shanghai_today().replace(year=year, month=1, day=1),
        deductible_fen=100,
        ratio="0.90",
        annual_cap_fen=1000,
        personal_account_allowed=False,
    )
    body = wallet.get(f"/api/v1/policies?region_code=440000&scheme=employee&year={year}").json()
    assert (body["version"], body["ratio"]) == (1, "0.80")


def test_next_year_answers_its_first_published_version(wallet):
    year = catalogue.shanghai_today().year + 1
    body = wallet.get(f"/api/v1/policies?region_code=130000&scheme=resident&year={year}").json()
    assert (body["year"], body["version"], body["premium_fen"]) == (year, 1, 40000)


def test_a_year_without_a_policy_is_not_found(wallet):
    response = wallet.get("/api/v1/policies?region_code=310000&scheme=employee&year=2035")
    assert response.status == 404
    assert response.code == "not_found"
    assert response.signature_valid


def test_every_policy_parameter_is_required(wallet):
    response = wallet.get("/api/v1/policies")
    assert response.status == 400
    assert response.code == "validation_error"
    assert set(response.json()["errors"]) == {"region_code", "scheme", "year"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("region_code=999999&scheme=employee&year=2026", "region_code"),
        ("region_code=310000&scheme=civil_servant&year=2026", "scheme"),
        ("region_code=310000&scheme=employee&year=26", "year"),
        ("region_code=310000&scheme=employee&year=" + quote("二〇二六"), "year"),  # percent-encoded, as sent
        ("region_code=310000&scheme=employee&year=1999", "year"),
        ("region_code=310000&scheme=employee&year=", "year"),
    ],
)
def test_a_bad_policy_parameter_is_a_validation_error(wallet, query, field):
    response = wallet.get(f"/api/v1/policies?{query}")
    assert response.status == 400
    assert response.code == "validation_error"
    assert list(response.json()["errors"]) == [field]


# --- Authentication, partner kinds, signatures ------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["/api/v1/services", "/api/v1/facilities", "/api/v1/policies?region_code=310000&scheme=employee&year=2026"],
)
def test_an_unsigned_request_is_refused_with_a_signed_401(wallet, target):
    response = wallet.get(target, sign=False)
    assert response.status == 401
    assert response.code == "authentication_required"
    assert response.signature_valid


def test_a_timestamp_of_non_ascii_digits_is_an_unparsable_header_not_a_500(wallet):
    # "²" passes str.isdigit() but not int(): correctly signed, it must still be refused as unparsable.
    response = wallet.get("/api/v1/services", timestamp="\u00b2")
    assert response.status == 401
    assert response.code == "authentication_required"


def test_a_request_signed_with_another_key_is_refused(wallet):
    impostor = PartnerClient(key_id=wallet.key_id, private_key=new_key_pair()[0], django_client=Client())
    response = impostor.get("/api/v1/services")
    assert response.status == 401
    assert response.code == "invalid_signature"


def test_a_suspended_partner_cannot_read_the_catalogue(wallet):
    Partner.objects.filter(keys__key_id=wallet.key_id).update(state=PartnerState.SUSPENDED)
    response = wallet.get("/api/v1/services")
    assert response.status == 403
    assert response.code == "forbidden"


def test_a_service_platform_may_read_the_catalogue_facilities_and_policies(portal_key, catalogue_data):
    platform = make_client(PartnerKind.SERVICE_PLATFORM)
    year = catalogue.shanghai_today().year
    for target in (
        "/api/v1/services",
        "/api/v1/facilities?region_code=220000",
        f"/api/v1/policies?region_code=220000&scheme=employee&year={year}",
    ):
        response = platform.get(target)
        assert response.status == 200, (target, response.body)
        assert response.signature_valid


def test_a_response_signature_is_bound_to_the_request_nonce(wallet):
    from testkit.partner_client import verify_response

    response = wallet.get("/api/v1/services?limit=1")
    assert response.signature_valid
    assert not verify_response(
        wallet.portal_keys, response.status, "another-nonce-0123456789", response.headers, response.body
    )


def test_writing_to_a_catalogue_endpoint_is_method_not_allowed(wallet):
    response = wallet.post("/api/v1/services", {})
    assert response.status == 405
    assert response.code == "method_not_allowed"


# --- The schema says what the contract says ------------------------------------------------------------------


def _schema() -> dict:
    from payments.catalogue import api as api_catalogue

    patterns = [
        path(
            "api/v1/",
            include(
                [
                    path("services", api_catalogue.ServiceListApi.as_view()),
                    path("facilities", api_catalogue.FacilityListApi.as_view()),
                    path("policies", api_catalogue.PolicyInForceApi.as_view()),
                ]
            ),
        )
    ]
    return SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)


def test_the_schema_declares_the_contract_shapes(db):
    schema = _schema()
    components = schema["components"]["schemas"]
    assert set(components["ServiceOutput"]["properties"]) == SERVICE_FIELDS
    assert set(components["FacilityOutput"]["properties"]) == FACILITY_FIELDS
    assert set(components["PolicyOutput"]["properties"]) == POLICY_FIELDS
    assert set(components["EligibleSharesOutput"]["properties"]) == set(ServiceCategory.values)
    assert components["PolicyOutput"]["properties"]["ratio"]["type"] == "string"
    assert components["PolicyOutput"]["properties"]["premium_fen"].get("nullable") is True
    assert components["ServiceListOutput"]["properties"]["next_cursor"].get("nullable") is True
    policies = schema["paths"]["/api/v1/policies"]["get"]
    assert {p["name"] for p in policies["parameters"] if p["required"]} == {"region_code", "scheme", "year"}
    assert {"200", "400", "401", "404"} <= set(policies["responses"])
    facilities = schema["paths"]["/api/v1/facilities"]["get"]
    assert {p["name"] for p in facilities["parameters"]} == {"region_code", "cursor", "limit"}


@pytest.mark.django_db(transaction=True)
def test_the_catalogue_reads_over_real_http(live_server, regions):
    keys._forget_cached_key()
    try:
        keys.portal_key_create(actor=Actor.system("tests"))
        seed_catalogue()
        client = make_client()
        client.django_client = None
        client.base_url = live_server.url
        response = client.get("/api/v1/facilities?region_code=310000&limit=2")
        assert response.status == 200
        assert response.signature_valid
        page = response.json()
        assert [f["code"] for f in page["results"]] == ["C310000001", "H310000001"]
        following = client.get(f"/api/v1/facilities?region_code=310000&limit=2&cursor={page['next_cursor']}")
        assert [f["code"] for f in following.json()["results"]] == ["P310000001"]
        assert following.json()["next_cursor"] is None
    finally:
        keys._forget_cached_key()
