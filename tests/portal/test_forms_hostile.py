"""Hostile input on the staff forms: oversize values, control and invisible characters, formula-like
values, bodies in the wrong encoding, missing fields. Each is answered with a form error (200 with
the form again) or 400, never a 500, and nothing is half-written: no audit event, no row changed.
A formula-like value is text: refused, or stored exactly as typed (exports neutralise it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from django.urls import reverse

from insurance import catalogue
from insurance.models import Citizen, FacilityKind, ReimbursementPolicy, ServiceCategory, ServiceItem
from payments.models import FamilyBinding, Partner
from portal.models import AuditEvent, Role, User
from testkit.bindings import bind, link, make_wallet, register
from testkit.citizens import new_id_number
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
HERE = "310000"

# Text that a form must refuse wherever it is typed.
REFUSED_TEXT = {
    "nul": "张\x00三",
    "escape": "张\x1b[31m三",
    "bell": "张\x07三",
    "newline": "张\n三",
    "c1-control": "张\x85三",
    "bidi-override": "张\u202e三",
    "bidi-isolate": "张\u2066三",
    "zero-width": "张\u200b三",
    "bom": "\ufeff张三",
    "replacement-character": "张\ufffd三",
    "oversize": "名" * 100_000,
}
FORMULAS = ["=1+1", "@SUM(A1:A9)", "+86-21-1", "-2+3", '=HYPERLINK("http://x","y")']


@dataclass
class Case:
    """One staff form: its URL, a valid submission, the text fields to attack, and what it writes."""

    url: str
    valid: dict[str, str]
    fields: list[str]
    state: Callable[[], object]  # what the form writes, read back: must not change on a refusal
    stored: Callable[[str], str | None] | None = None  # a field's stored value after an accepted submission
    optional: tuple[str, ...] = ()  # fields that may be left out


def _post(client, url: str, body: bytes | str, content_type: str = FORM):
    return client.post(url, body, content_type=content_type)


def _form_body(data: dict[str, str]) -> str:
    return urlencode(data, doseq=True)


def _multipart(data: dict[str, str], field: str, raw: bytes) -> tuple[bytes, str]:
    """A multipart body as a browser builds it, with `raw` as the bytes of one field."""
    boundary = b"hostile-boundary-7d1f"
    parts = [
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="'
        + name.encode()
        + b'"\r\n\r\n'
        + value
        + b"\r\n"
        for name, value in [*((k, v.encode()) for k, v in data.items() if k != field), (field, raw)]
    ]
    return b"".join(parts) + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


def _refused(response) -> bool:
    """A form error (the form again) or a plain 400."""
    if response.status_code == 400:
        return True
    return response.status_code == 200 and response.context is not None and bool(response.context["form"].errors)


def _check_refusals(client, case: Case) -> list[str]:
    problems: list[str] = []

    def expect_refusal(what: str, send: Callable[[], object]) -> None:
        audit, state = AuditEvent.objects.count(), case.state()
        response = send()
        if not _refused(response):
            problems.append(f"{what}: answered {response.status_code} without a form error")
        if AuditEvent.objects.count() != audit or case.state() != state:
            problems.append(f"{what}: something was written")

    for field in case.fields:
        for name, value in REFUSED_TEXT.items():
            body = _form_body({**case.valid, field: value})
            expect_refusal(f"{field}={name}", lambda body=body: _post(client, case.url, body))
        if field not in case.optional:
            missing = {k: v for k, v in case.valid.items() if k != field}
            expect_refusal(f"{field} missing", lambda missing=missing: _post(client, case.url, _form_body(missing)))
        rest = _form_body({k: v for k, v in case.valid.items() if k != field})
        for name, raw in (("raw GBK", "张三".encode("gbk")), ("raw invalid UTF-8", b"\xff\xfe\xc3(")):
            body = rest.encode() + b"&" + field.encode() + b"=" + raw
            expect_refusal(f"{field}={name}", lambda body=body: _post(client, case.url, body))
        body = f"{rest}&{field}={quote('张三'.encode('gbk'))}"
        expect_refusal(f"{field}=percent-encoded GBK", lambda body=body: _post(client, case.url, body))
        multipart = _multipart(case.valid, field, "张三".encode("gbk"))
        expect_refusal(
            f"{field}=GBK in a multipart body", lambda multipart=multipart: _post(client, case.url, *multipart)
        )
    expect_refusal("body over the limit", lambda: _post(client, case.url, "name=" + "x" * 1_100_000))
    # An empty POST is an unbound form: shown again, blank.
    audit, state = AuditEvent.objects.count(), case.state()
    if _post(client, case.url, "").status_code not in (200, 400) or (AuditEvent.objects.count(), case.state()) != (
        audit,
        state,
    ):
        problems.append("empty body: not the form again, or something was written")
    return problems


def _check_formulas(client, case: Case, field: str, fresh: Callable[[], dict[str, str]]) -> list[str]:
    problems: list[str] = []
    for value in FORMULAS:
        audit = AuditEvent.objects.count()
        response = _post(client, case.url, _form_body({**fresh(), field: value}))
        if response.status_code >= 500:
            problems.append(f"{field}={value!r}: {response.status_code}")
        elif AuditEvent.objects.count() != audit and case.stored is not None and case.stored(field) != value:
            problems.append(f"{field}={value!r}: stored as {case.stored(field)!r}")
    return problems


# --- The forms ---------------------------------------------------------------------------------


@pytest.fixture
def clerk(client, make_user):
    sign_in(client, make_user(Role.CLERK, (HERE,)))


@pytest.fixture
def region_admin(client, make_user):
    sign_in(client, make_user(Role.REGION_ADMIN, (HERE,)))


@pytest.fixture
def national_operator(client, make_user):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))


def _register_case() -> Case:
    valid = {"id_number": new_id_number(HERE), "name": "王小明", "phone": "13812345678", "region": HERE}
    valid["scheme"] = "resident"
    return Case(
        url=reverse("citizen_register"),
        valid=valid,
        fields=["name", "phone", "id_number"],
        optional=("phone",),
        state=lambda: Citizen.objects.count(),
        stored=lambda field: Citizen.objects.order_by("-pk").values_list(field, flat=True).first(),
    )


def test_the_citizen_register_form_refuses_hostile_input(client, clerk, regions):
    problems = _check_refusals(client, _register_case())
    assert not problems, "\n".join(problems)


def test_the_citizen_register_form_keeps_a_formula_like_name_as_text(client, clerk, regions):
    case = _register_case()
    problems = _check_formulas(client, case, "name", lambda: {**case.valid, "id_number": new_id_number(HERE)})
    assert not problems, "\n".join(problems)


def test_the_citizen_edit_form_refuses_hostile_input(client, clerk, make_citizen):
    citizen = make_citizen(HERE, name="王小明")

    def state():
        row = Citizen.objects.get(pk=citizen.pk)
        return row.name, row.phone_masked, row.scheme, row.updated_at

    case = Case(
        url=reverse("citizen_edit", args=[citizen.pk]),
        valid={"name": "王小明", "phone": "13812345678", "scheme": "employee"},
        fields=["name", "phone"],
        optional=("phone",),
        state=state,
        stored=lambda field: getattr(Citizen.objects.get(pk=citizen.pk), field),
    )
    problems = _check_refusals(client, case) + _check_formulas(client, case, "name", lambda: case.valid)
    assert not problems, "\n".join(problems)


def test_the_citizen_status_reason_refuses_hostile_input(client, clerk, make_citizen):
    citizen = make_citizen(HERE)
    case = Case(
        url=reverse("citizen_status", args=[citizen.pk]),
        valid={"status": "deceased", "reason": "家属来电", "confirmed": "yes"},
        fields=["reason"],
        state=lambda: Citizen.objects.get(pk=citizen.pk).status,
    )
    problems = _check_refusals(client, case)
    assert not problems, "\n".join(problems)


def test_the_staff_create_form_refuses_hostile_input(client, region_admin):
    case = Case(
        url=reverse("staff_create"),
        valid={
            "username": "new-clerk",
            "email": "new-clerk@example.cn",
            "role": Role.CLERK,
            "regions": HERE,
            "password": "Another-strong-passw0rd",
        },
        fields=["username", "email"],
        optional=("email",),
        state=lambda: User.objects.count(),
    )
    problems = _check_refusals(client, case)
    assert not problems, "\n".join(problems)


def test_the_service_catalogue_form_refuses_hostile_input(client, national_operator):
    case = Case(
        url=reverse("catalogue_create"),
        valid={
            "code": "HOSTILE-1",
            "name_zh": "挂号费",
            "name_en": "Registration",
            "category": ServiceCategory.values[0],
            "unit": "次",
            "max_unit_price_fen": "12.50",
        },
        fields=["code", "name_zh", "name_en", "unit", "max_unit_price_fen"],
        state=lambda: ServiceItem.objects.count(),
        stored=lambda field: getattr(ServiceItem.objects.order_by("-pk").first(), field),
    )
    serial = iter(range(1, 100))
    problems = _check_refusals(client, case) + _check_formulas(
        client, case, "name_en", lambda: {**case.valid, "code": f"HOSTILE-F{next(serial)}"}
    )
    assert not problems, "\n".join(problems)


def test_the_facility_form_refuses_hostile_input(client, region_admin, regions):
    from insurance.models import Facility

    case = Case(
        url=reverse("facility_create"),
        valid={
            "code": "H310-HOSTILE",
            "name_zh": "第一人民医院",
            "name_en": "First People's Hospital",
            "kind": FacilityKind.values[0],
            "region": HERE,
        },
        fields=["code", "name_zh", "name_en"],
        state=lambda: Facility.objects.count(),
    )
    problems = _check_refusals(client, case)
    assert not problems, "\n".join(problems)


def test_the_policy_form_refuses_hostile_input(client, region_admin, regions):
    year = catalogue.shanghai_today().year
    valid = {
        "effective_from": (catalogue.shanghai_today() + dt.timedelta(days=1)).isoformat(),
        "deductible_fen": "100",
        "ratio": "70",
        "annual_cap_fen": "100000",
        "premium_fen": "380",
        "confirmed": "yes",
        **{f"share_{value}": "100" for value in ServiceCategory.values},
    }
    case = Case(
        url=reverse("policy_new_version", args=[HERE, "resident", year]),
        valid=valid,
        fields=["effective_from", "deductible_fen", "ratio", "annual_cap_fen", f"share_{ServiceCategory.values[0]}"],
        state=lambda: ReimbursementPolicy.objects.count(),
    )
    problems = _check_refusals(client, case)
    assert not problems, "\n".join(problems)


def test_the_family_binding_decision_refuses_hostile_input(client, clerk, regions):
    wallet = make_wallet("hostile-wallet")
    holder, _ = register(regions, HERE)
    _, beneficiary_number = register(regions, HERE, name="李四", birth=dt.date(1950, 3, 3))
    binding = bind(wallet, link(wallet, holder), beneficiary_number, name="李四")
    case = Case(
        url=reverse("binding_action", args=[binding.public_id, "reject"]),
        valid={"note": "资料不符", "confirmed": "yes"},
        fields=["note"],
        state=lambda: FamilyBinding.objects.get(pk=binding.pk).state,
    )
    problems = _check_refusals(client, case)
    assert not problems, "\n".join(problems)


def test_the_partner_forms_refuse_hostile_input(client, national_operator):
    create = Case(
        url=reverse("partner_create"),
        valid={"code": "hostilepay", "name": "Hostile Pay", "kind": "wallet", "webhook_url": "", "public_key": ""},
        fields=["code", "name", "webhook_url"],
        optional=("webhook_url",),
        state=lambda: Partner.objects.count(),
    )
    partner = Partner.objects.create(code="steady", name="Steady", kind="wallet")
    webhook = Case(
        url=reverse("partner_webhook", args=[partner.code]),
        valid={"webhook_url": "http://127.0.0.1:9/hook", "confirmed": "yes"},
        fields=["webhook_url"],
        optional=("webhook_url",),
        state=lambda: Partner.objects.get(pk=partner.pk).webhook_url,
    )
    rate = Case(
        url=reverse("partner_rate_limit", args=[partner.code]),
        valid={"rate_limit_per_second": "50", "confirmed": "yes"},
        fields=["rate_limit_per_second"],
        state=lambda: Partner.objects.get(pk=partner.pk).rate_limit_per_second,
    )
    problems = _check_refusals(client, create) + _check_refusals(client, webhook) + _check_refusals(client, rate)
    assert not problems, "\n".join(problems)


def test_a_valid_submission_still_goes_through_each_way_it_can_be_encoded(client, clerk, regions):
    """The refusals above are not a form that refuses everything: UTF-8 in either body type passes."""
    for send in (
        lambda data: _post(client, reverse("citizen_register"), _form_body(data)),
        lambda data: client.post(reverse("citizen_register"), data),
    ):
        data = {**_register_case().valid, "name": "欧阳·娜娜 O'Neil-Smith"}
        response = send(data)
        assert response.status_code == 302, response.content.decode()[:2000]
        assert Citizen.objects.order_by("-pk").first().name == "欧阳·娜娜 O'Neil-Smith"


def test_a_body_declared_as_gbk_is_refused_whole(client, clerk, regions):
    """A form body is UTF-8 (Django's rule for urlencoded bodies): GBK, even declared, gets the 400 page."""
    body = urlencode({**_register_case().valid, "name": "张三"}, encoding="gbk").encode("ascii")
    response = _post(client, reverse("citizen_register"), body, content_type=f"{FORM}; charset=gbk")
    assert response.status_code == 400
    assert "请求无效" in response.content.decode()
    client.cookies["django_language"] = "en"
    raw = _form_body({**_register_case().valid, "name": "x"}).encode() + b"&note=" + "张三".encode("gbk")
    assert "Bad request" in _post(client, reverse("citizen_register"), raw).content.decode()
    assert not Citizen.objects.exists()
