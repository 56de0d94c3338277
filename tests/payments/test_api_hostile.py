"""Hostile request bodies on every POST of the partner API, sent with the real signed client.

Each is answered with a signed problem+json carrying the code PARTNER_API.md names, never a 5xx,
and leaves nothing half-written: every row of the tables a POST may touch is compared before and
after. A refused (400) request does not use up its `Idempotency-Key`; only 2xx, 409 and 422 are
stored (PARTNER_API.md "Idempotency")."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import pytest
from django.core.cache import cache
from django.db import connection

from insurance.catalogue import shanghai_today
from insurance.models import Certificate, CertificateTransition, Citizen
from payments.models import (
    AccountEntry,
    CitizenYearAccumulator,
    FamilyBinding,
    IdempotencyRecord,
    OutboxEvent,
    PersonalAccount,
    PremiumPayment,
    QrToken,
    RiskFlag,
    Settlement,
    SettlementLine,
    WalletLinkage,
)
from portal.models import AuditEvent, DomainEvent
from testkit.api import BILL, confirm, idem_key, link, make_partner_client, mint, problem, settled
from testkit.bindings import bind, register
from testkit.partner_client import PartnerClient, PartnerResponse
from testkit.settlements import PREMIUM, insured

pytestmark = pytest.mark.django_db

# Every table a partner POST writes, whole rows: any change to any of them is seen.
WATCHED = (
    WalletLinkage,
    FamilyBinding,
    QrToken,
    Settlement,
    SettlementLine,
    PersonalAccount,
    AccountEntry,
    CitizenYearAccumulator,
    PremiumPayment,
    OutboxEvent,
    RiskFlag,
    Citizen,
    Certificate,
    CertificateTransition,
    AuditEvent,
    DomainEvent,
)


# One statement: a digest of every row of every watched table (the test runs it twice per request).
_SNAPSHOT_SQL = "SELECT " + ", ".join(
    f"(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{model._meta.db_table}\" t)"
    for model in WATCHED
)


def snapshot() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_SQL)
        return dict(zip([model.__name__ for model in WATCHED], cursor.fetchone(), strict=True))


class Scene:
    """What the endpoints need, built on first use: a wallet, a linked resident, a beneficiary..."""

    def __init__(self, regions) -> None:
        self.regions = regions
        self.client: PartnerClient = make_partner_client()

    @cached_property
    def holder(self) -> tuple[dict, str]:
        citizen, id_number = insured(self.regions, scheme="resident", balance=3000, name="王小明")
        return link(self.client, citizen), id_number

    @property
    def linkage_id(self) -> str:
        return self.holder[0]["id"]

    @cached_property
    def beneficiary(self) -> tuple[Citizen, str]:
        return register(self.regions, name="李四")

    @cached_property
    def binding_id(self) -> str:
        linkage = WalletLinkage.objects.get(public_id=self.linkage_id)
        citizen, id_number = register(self.regions, name="赵五")
        return bind(linkage.partner, linkage, id_number, name="赵五").public_id

    @cached_property
    def token(self) -> str:
        return mint(self.client, self.linkage_id)

    @cached_property
    def pending_settlement_id(self) -> str:
        return settled(self.client, mint(self.client, self.linkage_id))["id"]

    @cached_property
    def paid_settlement_id(self) -> str:
        settlement = settled(self.client, mint(self.client, self.linkage_id))
        assert confirm(self.client, settlement).status == 200
        return settlement["id"]

    @cached_property
    def premium_payer(self) -> tuple[Citizen, str]:
        return insured(self.regions, scheme="resident", name="钱六")


# Field kinds: how the contract answers a hostile string in each.
IDENTITY = "identity"  # a number or a name: anything unknown is 422 identity_mismatch
TOKEN = "token"  # any string; anything not authentic is 422 invalid_token
FACILITY = "facility"  # 422 unknown_facility
OBJECT_ID = "object_id"  # an id that names nothing: 404 not_found
CHOICE = "choice"  # one of a few values: 400 validation_error
TEXT = "text"  # a partner's own reference or reason, stored and shown: 400 validation_error
WHOLE = "whole"  # integers (money in fen, quantities, years)


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: Callable[[Scene], str]
    body: Callable[[Scene], dict]
    idempotent: bool
    fields: dict[str, tuple[str, int | None]]  # field -> (kind, documented or enforced maximum length)
    created: int = 201

    def __str__(self) -> str:
        return self.name


THIS_YEAR = shanghai_today().year
ENDPOINTS = [
    Endpoint(
        "linkages",
        lambda s: "/api/v1/linkages",
        lambda s: {
            "id_number": s.beneficiary[1],
            "name": "李四",
            "partner_user_ref": "user-hostile-1",
            "verification_reference": "face-1",
        },
        True,
        {
            "id_number": (IDENTITY, 64),
            "name": (IDENTITY, 64),
            "partner_user_ref": (TEXT, 128),
            "verification_reference": (TEXT, 128),
        },
    ),
    Endpoint(
        "linkage-unlink",
        lambda s: f"/api/v1/linkages/{s.linkage_id}/unlink",
        lambda s: {"reason": "citizen_request"},
        False,
        {"reason": (CHOICE, None)},
        created=200,
    ),
    Endpoint(
        "qr-tokens",
        lambda s: f"/api/v1/linkages/{s.linkage_id}/qr-tokens",
        lambda s: {"family_binding_id": None},
        False,
        {"family_binding_id": (OBJECT_ID, 40)},
    ),
    Endpoint(
        "verify",
        lambda s: "/api/v1/certificates/verify",
        lambda s: {"token": s.token},
        False,
        {"token": (TOKEN, None)},
        created=200,
    ),
    Endpoint(
        "family-bindings",
        lambda s: "/api/v1/family-bindings",
        lambda s: {
            "holder_linkage_id": s.linkage_id,
            "beneficiary_id_number": s.beneficiary[1],
            "beneficiary_name": "李四",
            "relationship": "parent",
            "consent_reference": "consent-1",
        },
        True,
        {
            "holder_linkage_id": (OBJECT_ID, 40),
            "beneficiary_id_number": (IDENTITY, 64),
            "beneficiary_name": (IDENTITY, 64),
            "relationship": (CHOICE, None),
            "consent_reference": (TEXT, 128),
        },
    ),
    Endpoint(
        "family-binding-revoke",
        lambda s: f"/api/v1/family-bindings/{s.binding_id}/revoke",
        lambda s: {"reason": "partner_request"},
        False,
        {"reason": (CHOICE, None)},
        created=200,
    ),
    Endpoint(
        "settlements",
        lambda s: "/api/v1/settlements",
        lambda s: {"token": s.token, "facility_code": "H310-1", "lines": [dict(line) for line in BILL]},
        True,
        {
            "token": (TOKEN, None),
            "facility_code": (FACILITY, 32),
            "lines[0].service_code": ("service", 32),
            "lines[0].quantity": (WHOLE, None),
            "lines[0].unit_price_fen": (WHOLE, None),
            "use_personal_account": ("bool", None),
        },
    ),
    Endpoint(
        "settlement-confirm",
        lambda s: f"/api/v1/settlements/{s.pending_settlement_id}/confirm",
        lambda s: {
            "partner_transaction_id": "wx-hostile-1",
            "self_pay_fen": Settlement.objects.get(public_id=s.pending_settlement_id).self_pay_fen,
        },
        True,
        {"partner_transaction_id": (TEXT, 128), "self_pay_fen": (WHOLE, None)},
        created=200,
    ),
    Endpoint(
        "settlement-cancel",
        lambda s: f"/api/v1/settlements/{s.pending_settlement_id}/cancel",
        lambda s: {},
        False,
        {},
        created=200,
    ),
    Endpoint(
        "settlement-refund",
        lambda s: f"/api/v1/settlements/{s.paid_settlement_id}/refund",
        lambda s: {"reason": "returned"},
        True,
        {"reason": (TEXT, 128)},
        created=200,
    ),
    Endpoint(
        "premiums",
        lambda s: "/api/v1/premiums",
        lambda s: {
            "id_number": s.premium_payer[1],
            "name": "钱六",
            "year": THIS_YEAR,
            "amount_fen": PREMIUM,
            "partner_transaction_id": "wx-prm-hostile",
        },
        True,
        {
            "id_number": (IDENTITY, 64),
            "name": (IDENTITY, 64),
            "year": (WHOLE, None),
            "amount_fen": (WHOLE, None),
            "partner_transaction_id": (TEXT, 128),
        },
    ),
]
BY_NAME = {endpoint.name: endpoint for endpoint in ENDPOINTS}
STRING_KINDS = {IDENTITY, TOKEN, FACILITY, OBJECT_ID, CHOICE, TEXT, "service"}


@pytest.fixture
def scene(world, regions, fresh_cache) -> Scene:
    return Scene(regions)


def set_field(body: dict, field: str, value) -> dict:
    """`body` with `field` (a name, or a path such as `lines[0].quantity`) set to `value`."""
    body = json.loads(json.dumps(body))
    if field.startswith("lines[0]."):
        body["lines"][0][field.removeprefix("lines[0].")] = value
    else:
        body[field] = value
    return body


def without_field(body: dict, field: str) -> dict:
    body = json.loads(json.dumps(body))
    if field.startswith("lines[0]."):
        del body["lines"][0][field.removeprefix("lines[0].")]
    else:
        del body[field]
    return body


def send(scene: Scene, endpoint: Endpoint, raw: bytes, *, content_type: str = "application/json", key=None):
    """The hostile body, signed as sent, with a fresh key on an idempotent endpoint."""
    path = endpoint.path(scene)
    if endpoint.idempotent and key is None:
        key = idem_key()
    return scene.client.post(path, raw_body=raw, content_type=content_type, idempotency_key=key)


def refused(
    scene: Scene, endpoint: Endpoint, raw: bytes, status: int, code: str, **kwargs
) -> tuple[PartnerResponse, dict]:
    """Send `raw` and check the answer, and that nothing was written."""
    endpoint.path(scene), endpoint.body(scene)  # build what the endpoint needs before counting
    stored_before = IdempotencyRecord.objects.count()
    before = snapshot()
    response = send(scene, endpoint, raw, **kwargs)
    assert response.status < 500, response.body
    body = problem(response, status, code)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert snapshot() == before, "rows were written"
    # The contract stores 409 and 422 answers of idempotent requests, nothing else that is refused.
    stored = 1 if endpoint.idempotent and status in (409, 422) else 0
    assert IdempotencyRecord.objects.count() == stored_before + stored
    return response, body


def all_refused(cases: dict[str, Callable[[], dict]]) -> None:
    """Run every case (each checks its own answer); fail once, naming every case that failed. A
    refused request writes nothing, so one scene serves them all."""
    failures = []
    for name, case in cases.items():
        cache.clear()  # no identity mismatch counted yet: ten would turn the next into 429
        try:
            case()
        except AssertionError as exc:
            failures.append(f"{name}: {str(exc)[:300]}")
    assert not failures, "\n".join(failures)


def wire(body) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


# --- Bodies that are not one JSON object in UTF-8 -----------------------------------------------


def _gbk(scene, endpoint) -> bytes:
    body = {**endpoint.body(scene), "name": "张三明"}  # GBK bytes of Chinese are not UTF-8
    return json.dumps(body, ensure_ascii=False).encode("gbk")


def _duplicate(scene, endpoint) -> bytes:
    body = endpoint.body(scene)
    if not body:
        return b'{"a": 1, "a": 2}'
    # The same member twice: which one counts depends on the reader, so neither does.
    text = wire(body).decode()
    return ("{" + json.dumps(next(iter(body))) + ': "first", ' + text[1:]).encode()


MALFORMED: dict[str, Callable[[Scene, Endpoint], bytes]] = {
    "not JSON": lambda s, e: b"id_number=1&name=x",
    "truncated JSON": lambda s, e: wire(e.body(s))[:-1],
    "JSON with a UTF-8 BOM": lambda s, e: b"\xef\xbb\xbf" + wire(e.body(s)),
    "UTF-16": lambda s, e: json.dumps(e.body(s), ensure_ascii=False).encode("utf-16"),
    "UTF-16 without a BOM": lambda s, e: json.dumps(e.body(s), ensure_ascii=False).encode("utf-16-le"),
    "GBK": _gbk,
    "invalid UTF-8": lambda s, e: b'{"reason": "\xff\xfe\xc0\xaf"}',
    "nested 100,000 deep": lambda s, e: b"[" * 100_000 + b"]" * 100_000,
    "nested 5,000 deep in a member": lambda s, e: b'{"reason": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "an array": lambda s, e: b"[]",
    "a string": lambda s, e: b'"x"',
    "a number": lambda s, e: b"1",
    "null": lambda s, e: b"null",
    "NaN": lambda s, e: b'{"reason": NaN}',
    "a duplicate member": _duplicate,
    "an unknown member": lambda s, e: wire({**e.body(s), "admin": True}),
    "a NUL in a member name": lambda s, e: wire({**e.body(s), "reason\x00": "x"}),
    "a lone surrogate": lambda s, e: b'{"reason": "\\udc00"}',
    "a 5,000-digit number": lambda s, e: b'{"reason": 1' + b"0" * 5000 + b"}",
}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_body_that_is_not_one_json_object_in_utf8_is_a_validation_error(scene, endpoint):
    cases = {
        name: lambda make=make: refused(scene, endpoint, make(scene, endpoint), 400, "validation_error")
        for name, make in MALFORMED.items()
    }
    # JSON is UTF-8 (PARTNER_API.md "Conventions"; RFC 8259 defines no charset parameter): a label changes nothing.
    for charset in ("utf-16", "utf-16-le", "gbk"):
        cases[f"{charset}, labelled so"] = lambda charset=charset: refused(
            scene,
            endpoint,
            json.dumps({**endpoint.body(scene), "name": "张三明"}, ensure_ascii=False).encode(charset),
            400,
            "validation_error",
            content_type=f"application/json; charset={charset}",
        )
    all_refused(cases)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_body_too_large_or_not_json_is_refused_as_such(scene, endpoint):
    body = endpoint.body(scene)
    cases = {
        "over 1 MB": lambda: refused(
            scene, endpoint, wire({**body, "x": "x" * (1024 * 1024)}), 413, "payload_too_large"
        )
    }
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data"):
        cases[content_type] = lambda content_type=content_type: refused(
            scene, endpoint, wire(body), 415, "unsupported_media_type", content_type=content_type
        )
    all_refused(cases)


# --- Members: missing, of the wrong type, out of range ---------------------------------------------

OPTIONAL = {
    ("qr-tokens", "family_binding_id"),
    ("settlements", "use_personal_account"),
    ("family-binding-revoke", "reason"),
}
WRONG_TYPES = {"a number": 12345, "a list": ["x"], "an object": {"x": 1}, "true": True, "null": None}
NOT_WHOLE = {
    "a float": b"100.5",
    "a whole float": b"100.0",
    "an exponent": b"1e3",
    "a huge exponent": b"1e400",
    "a string": b'"100"',
    "negative": b"-1",
    "huge": b"1" + b"0" * 30,
    "Infinity": b"Infinity",  # not JSON: the body is refused as a whole
    "-Infinity": b"-Infinity",
}
MARK = 7_777_777_777_777


def _in_errors(field: str, check: Callable[[], tuple[PartnerResponse, dict]]) -> Callable[[], None]:
    def run() -> None:
        _, body = check()
        assert field in body["errors"], body

    return run


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.fields], ids=str)
def test_a_member_missing_or_of_the_wrong_type_is_a_validation_error_naming_it(scene, endpoint):
    cases = {}
    for field, (kind, _) in endpoint.fields.items():
        if (endpoint.name, field) not in OPTIONAL:
            cases[f"{field} missing"] = _in_errors(
                field,
                lambda field=field: refused(
                    scene, endpoint, wire(without_field(endpoint.body(scene), field)), 400, "validation_error"
                ),
            )
        for name, value in WRONG_TYPES.items():
            if (name == "a number" and kind == WHOLE) or (name == "true" and kind == "bool"):
                continue  # the right type
            if name == "null" and (endpoint.name, field) in OPTIONAL:
                continue  # null is the member's absence there
            cases[f"{field} {name}"] = _in_errors(
                field,
                lambda field=field, value=value: refused(
                    scene, endpoint, wire(set_field(endpoint.body(scene), field, value)), 400, "validation_error"
                ),
            )
    all_refused(cases)


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if WHOLE in {k for k, _ in e.fields.values()}], ids=str)
def test_money_and_counts_are_whole_json_numbers_in_range_or_a_validation_error(scene, endpoint):
    cases = {}
    for field, (kind, _) in endpoint.fields.items():
        if kind != WHOLE:
            continue
        for name, number in NOT_WHOLE.items():
            if field == "year" and name == "negative":
                continue  # a whole number: a year other than this or the next is refused after the identity checks
            # The number as sent, not as Python would write it again: `1e3` stays `1e3`.
            raw = wire(set_field(endpoint.body(scene), field, MARK)).replace(str(MARK).encode(), number)
            check = lambda raw=raw: refused(scene, endpoint, raw, 400, "validation_error")  # noqa: E731
            cases[f"{field} {name}"] = check if "Infinity" in name else _in_errors(field, check)
    all_refused(cases)


# --- Hostile text in string members -----------------------------------------------------------------

HOSTILE_TEXT = {
    "a NUL": "ab\x00cd",
    "an escape sequence": "ab\x1b[2Jcd",
    "a newline": "ab\ncd",
    "a C1 control": "ab\x85cd",
    "DEL": "ab\x7fcd",
    "a bidi override": "ab\u202ecd",
    "a bidi isolate": "ab\u2066cd\u2069",
    "a formula": "=cmd|' /C calc'!A0",
    "past the length limit": None,  # the member's documented or enforced maximum, plus one
    "a huge string": "x" * 200_000,
}


def expected(kind: str, case: str) -> tuple[int, str] | None:
    """The contract's answer to hostile text of `case` in a member of `kind` (None: accepted)."""
    if case == "a NUL":
        return 400, "validation_error"  # PARTNER_API.md "Details"
    if kind == TOKEN:
        return 422, "invalid_token"  # "any string; ... malformed included, is invalid_token"
    if case in ("past the length limit", "a huge string") or kind in (CHOICE, "bool"):
        return 400, "validation_error"
    if kind == IDENTITY:
        return 422, "identity_mismatch"  # one code for an unknown number and a name that differs
    if kind == FACILITY:
        return 422, "unknown_facility"
    if kind == "service":
        return 422, "unknown_service"
    if kind == OBJECT_ID:
        return 404, "not_found"
    if case == "a formula":
        return None  # a reference may start with = + - @: see test_a_formula_like_reference_is_kept_verbatim
    return 400, "validation_error"  # control and bidi characters in a partner's reference or reason


def _hostile_text(scene: Scene, endpoint: Endpoint, field: str, value: str, status: int, code: str, case: str):
    def run() -> None:
        raw = wire(set_field(endpoint.body(scene), field, value))
        _, body = refused(scene, endpoint, raw, status, code)
        if status == 400 and case != "a NUL":  # a NUL refuses the body as a whole ("Details")
            assert field in body["errors"], body
        if code == "unknown_service":
            assert body["line"] == 0, body

    return run


@pytest.mark.parametrize(
    "endpoint", [e for e in ENDPOINTS if set(k for k, _ in e.fields.values()) & STRING_KINDS], ids=str
)
def test_hostile_text_in_a_string_member_gets_the_contracts_answer(scene, endpoint):
    cases = {}
    for field, (kind, limit) in endpoint.fields.items():
        if kind not in STRING_KINDS:
            continue
        for case, value in HOSTILE_TEXT.items():
            answer = expected(kind, case)
            if answer is None or (value is None and limit is None):
                continue  # accepted; or no length limit (a token is any string, a choice one of a few)
            value = value if value is not None else "x" * (limit + 1)
            cases[f"{field} {case}"] = _hostile_text(scene, endpoint, field, value, *answer, case)
    all_refused(cases)


TEXT_FIELDS = [(e, f) for e in ENDPOINTS for f, (kind, _) in e.fields.items() if kind == TEXT]


@pytest.mark.parametrize(("endpoint", "field"), TEXT_FIELDS, ids=lambda v: str(v))
def test_a_formula_like_reference_is_kept_verbatim(scene, endpoint, field):
    """Not an error: a reference may start with = + - @. Spreadsheets exported by the portal make
    such a cell text (portal/exports.py), so it never runs as a formula."""
    formula = HOSTILE_TEXT["a formula"]
    response = send(scene, endpoint, wire(set_field(endpoint.body(scene), field, formula)))
    assert response.status == endpoint.created, response.body
    if field in response.json():
        assert response.json()[field] == formula


# --- Idempotency keys and the charset parameter ------------------------------------------------------

IDEMPOTENT = [endpoint for endpoint in ENDPOINTS if endpoint.idempotent]


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=str)
def test_a_refused_body_does_not_use_up_its_idempotency_key(scene, endpoint):
    key = idem_key()
    refused(scene, endpoint, b"\xef\xbb\xbf{", 400, "validation_error", key=key)
    refused(scene, endpoint, wire({**endpoint.body(scene), "unknown": 1}), 400, "validation_error", key=key)

    before = snapshot()
    response = send(scene, endpoint, wire(endpoint.body(scene)), key=key)

    assert response.status == endpoint.created, response.body
    assert response.headers.get("Idempotent-Replayed") is None
    assert snapshot() != before  # what the refusals were checked against does see a write


def test_a_charset_parameter_never_changes_how_the_body_or_the_query_is_read(scene):
    body = wire({"token": scene.token})
    ref = WalletLinkage.objects.get(public_id=scene.linkage_id).partner_user_ref
    target = "/api/v1/linkages?partner_user_ref=" + "".join(f"%{b:02X}" for b in ref.encode())
    for charset in ("zlib", "rot13", "base64", "utf-7", "utf-16", "latin-1", "no-such-codec"):
        content_type = f"application/json; charset={charset}"
        verified = scene.client.post("/api/v1/certificates/verify", raw_body=body, content_type=content_type)
        assert verified.status == 200 and verified.signature_valid, (charset, verified.body)
        listed = scene.client.request("GET", target, raw_body=b"", extra_headers={"Content-Type": content_type})
        assert listed.status == 200, (charset, listed.body)
        assert [item["id"] for item in listed.json()["results"]] == [scene.linkage_id]
