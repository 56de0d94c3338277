"""CSV and XLSX exports of every list: the list's own scope and filters, personal data
masked, one audit event per export, spreadsheet formulas neutralised, a row cap. An export is a
POST carrying the CSRF token (the list's filters stay in its URL); a GET never exports."""

import csv
import datetime as dt
import io
from dataclasses import dataclass
from urllib.parse import urlencode

import openpyxl
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insurance import catalogue
from insurance import services as insurance_services
from insurance.models import ImportJob, ServiceCategory
from payments.models import OutboxEvent, SandboxReceipt
from payments.risk import services as risk
from portal import exports
from portal.models import AuditEvent, Role
from testkit.bindings import bind, register
from testkit.citizens import new_id_number
from testkit.screens import sign_in
from testkit.settlements import SYSTEM, lines, linked, make_wallet, publish_policies, token

pytestmark = pytest.mark.django_db

HERE, THERE = "310000", "130000"
EN: dict = {}  # English comes from the cookie set by the `english` fixture


def settle(partner, linkage, facility_code: str):
    from payments.settlements import services

    return services.settlement_create(
        actor=SYSTEM,
        partner=partner,
        token=token(linkage),
        facility_code=facility_code,
        lines=lines(("REG", 1, 2000)),
        use_personal_account=False,
    )


def flag_for(citizen, subject: str):
    finding = risk.Finding(
        rule="large_settlement",
        subject_type="settlement",
        subject_id=subject,
        region_code=citizen.region_id,
        citizen_id=citizen.pk,
        evidence={"total_fen": 1},
    )
    return risk.risk_flag_raise(actor=SYSTEM, finding=finding, day=dt.date(2026, 1, 5))


@dataclass
class Both:
    """What each list shows of this region (`here`) and of another (`there`)."""

    here: dict
    there: dict


def populate(wallet, regions, make_user, code: str, facility: str, n: int = 0) -> dict:
    """One of everything each list shows, in region `code` (`n` tells repeated batches apart)."""
    holder = linked(wallet, regions, region_code=code, name="王小明" if code == HERE else "赵大海")
    beneficiary, beneficiary_number = register(regions, code, name="李四光", birth=dt.date(1950, 3, 3 + n))
    binding = bind(wallet, holder, beneficiary_number, name="李四光")
    settlement = settle(wallet, holder, facility)
    flag = flag_for(holder.citizen, f"risk-{code}-{n}" if n else f"risk-{code}")
    staff = make_user(Role.CLERK, (code,), username=f"clerk-{code}-{n}" if n else f"clerk-{code}")
    receipt_id = f"evt_sandbox_{code}_{n}" if n else f"evt_sandbox_{code}"
    SandboxReceipt.objects.create(
        partner_code=wallet.code, event_id=receipt_id, event_type="linkage.created", body="{}", signature_valid=True
    )
    citizen = insurance_services.citizen_register(
        actor=SYSTEM,
        id_number=new_id_number(code),
        name="钱多多",
        phone="13912345678",
        region=regions[code],
        scheme="resident",
    )
    insurance_services.certificate_issue(actor=SYSTEM, citizen=citizen, reason=f"audit-marker-{code}")
    import_job = ImportJob.objects.create(
        uploaded_by=staff, region=regions[code], original_name="张三.csv", file="imports/x.csv", file_size=10
    )
    if n:
        catalogue.facility_create(
            actor=SYSTEM,
            code=f"{facility}-{n}",
            name_zh="又一家医院",
            name_en="Another hospital",
            kind="hospital",
            region=regions[code],
        )
    return {
        "import_job": import_job,
        "wallet": wallet,
        "holder": holder,
        "binding": binding,
        "settlement": settlement,
        "flag": flag,
        "staff": staff,
        "receipt": receipt_id,
        "citizen": citizen,
        "facility": facility,
        "event": OutboxEvent.objects.get(partner=wallet, object_id=holder.public_id, type="linkage.created"),
    }


@pytest.fixture
def both(world, regions, make_user):
    publish_policies(regions, THERE)
    catalogue.facility_create(
        actor=SYSTEM,
        code="H130-1",
        name_zh="河北医院",
        name_en="Hebei hospital",
        kind="hospital",
        region=regions[THERE],
    )
    wallet = make_wallet()
    out = {
        code: populate(wallet, regions, make_user, code, facility)
        for code, facility in ((HERE, "H310-1"), (THERE, "H130-1"))
    }
    return Both(here=out[HERE], there=out[THERE])


@pytest.fixture(autouse=True)
def english(client):
    client.cookies["django_language"] = "en"


def parse(response, fmt: str) -> list[list[str]]:
    """The file's rows as text (numbers and dates as their text), header first."""
    body = b"".join(response.streaming_content)
    if fmt == "csv":
        assert body.startswith("\ufeff".encode()), "UTF-8 byte order mark for Excel"
        return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    sheet = openpyxl.load_workbook(io.BytesIO(body), read_only=True).worksheets[0]
    return [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]


def cells(rows: list[list[str]]) -> set[str]:
    return {value for row in rows[1:] for value in row}


# (list, url name, url args from the world, role that exports it, marker of a row of this region,
#  marker of another region's row or None when the list is national)
LISTS = {
    "staff": ("staff_list", None, Role.REGION_ADMIN, lambda w: w["staff"].username),
    "citizens": ("citizen_search", None, Role.AUDITOR, lambda w: w["citizen"].id_number_masked),
    "services": ("catalogue_list", None, Role.AUDITOR, None),
    "facilities": ("facility_list", None, Role.AUDITOR, lambda w: w["facility"]),
    "policies": ("policy_index", None, Role.AUDITOR, lambda w: w["citizen"].region.name_en),  # exports in English
    "partners": ("partner_list", None, Role.NATIONAL_OPERATOR, None),
    "monitor": ("monitor_index", None, Role.REGION_ADMIN, None),
    "events": ("monitor_partner", lambda w: [w["wallet"].code], Role.REGION_ADMIN, lambda w: w["event"].public_id),
    "bindings": ("binding_queue", None, Role.AUDITOR, lambda w: w["binding"].public_id),
    "settlements": ("settlement_list", None, Role.AUDITOR, lambda w: w["settlement"].public_id),
    "risk": ("risk_queue", None, Role.AUDITOR, lambda w: w["flag"].subject_id),
    "sandbox": ("sandbox_receipts", None, Role.REGION_ADMIN, None),
    "audit": ("audit_list", None, Role.AUDITOR, lambda w: f"audit-marker-{w['citizen'].region_id}"),
    "imports": ("import_list", None, Role.REGION_ADMIN, lambda w: w["import_job"].uploaded_by.username),
}


def list_url(name: str, both: Both, **params) -> str:
    url_name, args, _role, _marker = LISTS[name]
    url = reverse(url_name, args=args(both.here) if args else None)
    return f"{url}?{urlencode(params)}" if params else url


def export(client, name: str, both: Both, fmt: str, **params):
    """As the export buttons do: a POST of the format to the list's URL, which carries its filters."""
    return client.post(list_url(name, both, **params), {"format": fmt}, **EN)


def export_count() -> int:
    return AuditEvent.objects.filter(action="list.export").count()


@pytest.mark.parametrize("name", list(LISTS))
def test_a_get_asking_for_a_file_shows_the_list_and_records_nothing(client, make_user, both, name):
    """An export is a POST: a link or an image on another site cannot make a browser export."""
    _url, _args, role, _marker = LISTS[name]
    sign_in(client, make_user(role, () if role == Role.NATIONAL_OPERATOR else (HERE,)))
    before = export_count()
    for fmt in ("csv", "xlsx"):
        for key in ("format", "export"):
            response = client.get(list_url(name, both, **{key: fmt}), **EN)
            assert response.status_code == 200
            assert response["Content-Type"].startswith("text/html")
            assert not response.has_header("Content-Disposition")
    assert export_count() == before


@pytest.mark.parametrize("name", ["citizens", "audit", "settlements"])
def test_an_export_without_the_csrf_token_is_refused_and_records_nothing(make_user, both, name):
    _url, _args, role, _marker = LISTS[name]
    browser = Client(enforce_csrf_checks=True)
    sign_in(browser, make_user(role, (HERE,)))
    before = export_count()
    response = browser.post(list_url(name, both), {"format": "csv"})
    assert response.status_code == 403
    assert not response.has_header("Content-Disposition")
    assert export_count() == before


def test_the_export_buttons_post_the_format_with_a_csrf_token_and_export_once(make_user, both):
    browser = Client(enforce_csrf_checks=True)
    browser.cookies["django_language"] = "en"
    sign_in(browser, make_user(Role.AUDITOR, (HERE,)))
    page = browser.get(list_url("facilities", both, region=HERE)).content.decode()
    assert 'name="format" value="csv"' in page and "format=csv" not in page
    token = browser.cookies["csrftoken"].value
    before = export_count()
    response = browser.post(list_url("facilities", both, region=HERE), {"format": "csv", "csrfmiddlewaretoken": token})
    assert response.status_code == 200
    assert [row[0] for row in parse(response, "csv")[1:]] == ["H310-1"]
    assert export_count() == before + 1
    event = AuditEvent.objects.filter(action="list.export").latest("seq")
    assert event.after["filters"] == {"region": HERE}


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("name", list(LISTS))
def test_every_list_exports_its_own_rows_and_never_another_regions(client, make_user, both, name, fmt):
    _url, _args, role, marker = LISTS[name]
    regions = () if role == Role.NATIONAL_OPERATOR else (HERE,)
    sign_in(client, make_user(role, regions))
    before = AuditEvent.objects.filter(action="list.export").count()
    response = export(client, name, both, fmt)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Content-Disposition"].rstrip('"').endswith(f".{fmt}")
    rows = parse(response, fmt)
    assert len(rows) >= 2, "a header and at least one row"
    assert int(response["X-Export-Rows"]) == len(rows) - 1
    values = cells(rows)
    if marker is not None:
        assert marker(both.here) in values
        assert marker(both.there) not in values
    elif name == "partners" or name == "monitor":
        assert both.here["wallet"].code in values
    elif name == "sandbox":
        assert both.here["receipt"] in values
    elif name == "services":
        assert "REG" in values
    event = AuditEvent.objects.filter(action="list.export").order_by("-seq").first()
    assert AuditEvent.objects.filter(action="list.export").count() == before + 1
    assert event.after["format"] == fmt
    assert event.after["rows"] == len(rows) - 1
    assert event.object_type == "export"


@pytest.mark.parametrize("name", ["citizens", "bindings", "settlements", "risk"])
def test_exports_mask_identity_numbers_names_and_phones_for_every_role(client, make_user, both, name):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    for fmt in ("csv", "xlsx"):
        values = cells(parse(export(client, name, both, fmt), fmt))
        text = "\n".join(values)
        for code in (HERE, THERE):
            world = both.here if code == HERE else both.there
            for citizen in (world["holder"].citizen, world["citizen"], world["binding"].beneficiary):
                assert citizen.id_number not in text
                assert citizen.phone not in text
                assert citizen.name not in text
        masked = {
            c.id_number_masked
            for c in (both.here["holder"].citizen, both.here["binding"].beneficiary, both.here["citizen"])
        }
        assert masked & values, "masked identity numbers are exported"


def test_the_citizen_export_follows_a_posted_search_without_the_number_in_any_url(client, make_user, both):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    target = both.here["citizen"]
    response = client.post(reverse("citizen_search"), {"q": target.id_number}, **EN)
    assert response.status_code == 302
    search_url = response["Location"]
    assert target.id_number not in search_url
    page = client.get(search_url, **EN).content.decode()
    assert 'value="csv"' in page and target.id_number not in page
    rows = parse(client.post(search_url, {"format": "csv"}, **EN), "csv")
    assert [row[0] for row in rows[1:]] == [target.id_number_masked]
    event = AuditEvent.objects.filter(action="list.export").latest("seq")
    assert event.after["filters"] == {"search": "id_number"}
    assert target.id_number not in str(event.after) and target.id_number[-4:] not in str(event.after)


def test_an_export_applies_the_screens_filters(client, make_user, both):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    rows = parse(export(client, "facilities", both, "csv", region=THERE), "csv")
    assert [row[0] for row in rows[1:]] == ["H130-1"]
    event = AuditEvent.objects.filter(action="list.export").latest("seq")
    assert event.after["filters"] == {"region": THERE}
    assert event.region_code == THERE


def test_the_export_event_is_recorded_under_the_users_region(client, make_user, both):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    export(client, "settlements", both, "xlsx")
    event = AuditEvent.objects.filter(action="list.export").latest("seq")
    assert event.region_code == HERE
    assert event.object_id == "settlements"
    assert event.actor_type == "user"


def test_spreadsheet_formulas_are_neutralised_in_both_formats(client, make_user, both, regions):
    catalogue.facility_create(
        actor=SYSTEM,
        code="H310-9",
        name_zh='=HYPERLINK("http://x","y")',
        name_en="@SUM(1+1)",
        kind="clinic",
        region=regions[HERE],
    )
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    csv_rows = parse(export(client, "facilities", both, "csv", q="H310-9"), "csv")
    assert csv_rows[1][1] == '\'=HYPERLINK("http://x","y")'
    assert csv_rows[1][2] == "'@SUM(1+1)"
    body = b"".join(export(client, "facilities", both, "xlsx", q="H310-9").streaming_content)
    sheet = openpyxl.load_workbook(io.BytesIO(body)).worksheets[0]
    assert sheet.cell(row=2, column=2).value == '\'=HYPERLINK("http://x","y")'
    assert sheet.cell(row=2, column=2).data_type == "s"


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@A1", "\tx", "\rx"])
def test_every_formula_start_is_prefixed(value):
    assert exports.neutralise(value) == "'" + value
    assert exports.neutralise("a" + value) == "a" + value


def test_clerks_cannot_export_and_see_no_export_buttons(client, make_user, both):
    sign_in(client, make_user(Role.CLERK, (HERE,)))
    before = AuditEvent.objects.filter(action="list.export").count()
    for name in ("citizens", "settlements", "bindings", "facilities"):
        assert export(client, name, both, "csv").status_code == 403, name
    assert AuditEvent.objects.filter(action="list.export").count() == before
    page = client.get(reverse("settlement_list"), **EN).content.decode()
    assert 'value="csv"' not in page


def test_an_auditor_can_export_but_not_write(client, make_user, both, regions):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    assert export(client, "facilities", both, "xlsx").status_code == 200
    assert 'value="xlsx"' in client.get(reverse("facility_list"), **EN).content.decode()
    response = client.post(
        reverse("facility_create"), {"code": "H310-5", "name_zh": "x", "name_en": "x", "kind": "clinic", "region": HERE}
    )
    assert response.status_code == 403
    assert client.post(reverse("citizen_register"), {}).status_code == 403


def test_the_row_cap_cuts_the_file_and_says_so(client, make_user, both, settings):
    settings.ECARD_EXPORT_MAX_ROWS = 1
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    for fmt in ("csv", "xlsx"):
        response = export(client, "facilities", both, fmt)
        rows = parse(response, fmt)
        assert response["X-Export-Truncated"] == "1"
        assert len(rows) == 3  # header, one row, the note
        assert rows[2][0].startswith("Export cut at 1 of 2 rows")
        event = AuditEvent.objects.filter(action="list.export").latest("seq")
        assert event.after["rows"] == 1 and event.after["truncated"] is True


def test_an_unknown_format_shows_the_screen(client, make_user, both):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    before = export_count()
    response = client.post(reverse("facility_list"), {"format": "pdf"}, **EN)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert export_count() == before


def test_money_is_exported_as_exact_yuan(client, make_user, both):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    rows = parse(export(client, "settlements", both, "csv"), "csv")
    header = rows[0]
    row = rows[1]
    assert row[header.index("Total (yuan)")] == "20.00"
    body = b"".join(export(client, "settlements", both, "xlsx").streaming_content)
    sheet = openpyxl.load_workbook(io.BytesIO(body)).worksheets[0]
    column = [c.value for c in sheet[1]].index("Total (yuan)") + 1
    assert str(sheet.cell(row=2, column=column).value) == "20"


def test_policy_versions_export_and_another_regions_answers_404(client, make_user, both):
    from insurance.catalogue import shanghai_today

    year = shanghai_today().year
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    for fmt in ("csv", "xlsx"):
        response = client.post(reverse("policy_versions", args=[HERE, "resident", year]), {"format": fmt})
        rows = parse(response, fmt)
        assert rows[0][0] == "Version" and len(rows) == 2
        assert f"Eligible share: {ServiceCategory.DRUG_B.label}" in rows[0]
    event = AuditEvent.objects.filter(action="list.export").latest("seq")
    assert event.region_code == HERE and event.after["filters"]["scheme"] == "resident"
    assert client.post(reverse("policy_versions", args=[THERE, "resident", year]), {"format": "csv"}).status_code == 404


def test_delivery_attempts_export_and_another_regions_event_answers_404(client, make_user, both):
    from django.utils import timezone

    from payments.models import DeliveryAttempt

    here, there = both.here["event"], both.there["event"]
    for event in (here, there):
        DeliveryAttempt.objects.create(
            event=event, number=1, started_at=timezone.now(), status_code=500, latency_ms=42, error="=cmd|' /C calc'!A0"
        )
    sign_in(client, make_user(Role.REGION_ADMIN, (HERE,)))
    code = both.here["wallet"].code
    for fmt in ("csv", "xlsx"):
        rows = parse(client.post(reverse("monitor_event", args=[code, here.public_id]), {"format": fmt}), fmt)
        assert len(rows) == 2
        assert rows[1][-1] == "'=cmd|' /C calc'!A0"
    response = client.post(reverse("monitor_event", args=[code, there.public_id]), {"format": "csv"})
    assert response.status_code == 404


def test_an_identity_number_typed_into_a_free_text_filter_is_masked_in_the_audit_event(client, make_user, both):
    number = both.here["citizen"].id_number
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    assert export(client, "facilities", both, "csv", q=number).status_code == 200
    event = AuditEvent.objects.filter(action="list.export").latest("seq")
    assert event.after["filters"] == {"q": both.here["citizen"].id_number_masked}
    assert number not in str(event.after)


def test_the_imports_export_leaves_out_the_uploaded_file_name(client, make_user, both):
    sign_in(client, make_user(Role.REGION_ADMIN, (HERE,)))
    for fmt in ("csv", "xlsx"):
        text = "\n".join(cells(parse(export(client, "imports", both, fmt), fmt)))
        assert both.here["import_job"].uploaded_by.username in text
        assert "张三" not in text


@pytest.mark.parametrize("name", list(LISTS))
def test_an_export_costs_the_same_queries_whatever_its_rows(client, make_user, both, regions, name):
    """The convention's fixed query count for lists, for their exports: no query per row."""
    _url, _args, role, _marker = LISTS[name]
    sign_in(client, make_user(role, () if role == Role.NATIONAL_OPERATOR else (HERE,)))

    def counted() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            response = export(client, name, both, "csv")
            rows = parse(response, "csv")
        return len(captured.captured_queries), len(rows) - 1

    export(client, name, both, "csv")  # warm: anything cached once per process is not the export's
    queries, rows = counted()
    for n in range(1, 4):
        populate(both.here["wallet"], regions, make_user, HERE, "H310-1", n)
    more_queries, more_rows = counted()
    if name not in ("services", "partners", "monitor", "policies"):  # the catalogue, partners and policies did not
        assert more_rows > rows, (rows, more_rows)
    assert more_queries == queries, f"{name}: {queries} queries for {rows} rows, {more_queries} for {more_rows}"


@pytest.mark.parametrize("language, shanghai", [("zh-hans", "上海市"), ("en", "Shanghai")])
def test_exports_name_regions_in_the_readers_language_not_by_code(client, make_user, both, language, shanghai):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    client.cookies["django_language"] = language
    for name in ("citizens", "facilities", "settlements", "risk", "bindings"):
        response = client.post(list_url(name, both), {"format": "csv"})
        values = cells(parse(response, "csv"))
        assert shanghai in values and HERE not in values, (name, values)
