"""CSV import of services and facilities: good rows in, bad rows reported by row and
column, existing codes updated, a downloadable error report, roles and region scope."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from insurance import catalogue, catalogue_import
from insurance.models import Facility, ServiceItem
from portal.models import AuditEvent, Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

SERVICES_CSV = """code,name_zh,name_en,category,unit,max_unit_price_fen
REG001,普通挂号,Registration,registration,次,1000
LAB001,血常规,Blood count,lab_test,次,-5
DRG001,阿莫西林,Amoxicillin,drug_a,盒,2350
IMG001,CT,CT scan,x_ray,次,30000
,无代码,No code,other,次,1
DRG002,布洛芬,Ibuprofen,drug_b,盒,12.5
"""


def upload(name: str, text: str | bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode() if isinstance(text, str) else text, content_type="text/csv")


@pytest.fixture
def national(client, make_user):
    user = make_user(Role.NATIONAL_OPERATOR, ())
    sign_in(client, user)
    return user


def test_importing_services_imports_good_rows_and_reports_each_bad_row(system_actor, regions):
    catalogue.service_create(
        actor=system_actor,
        code="REG001",
        name_zh="旧",
        name_en="Old",
        category="other",
        unit="次",
        max_unit_price_fen=1,
    )
    result = catalogue_import.import_services(actor=system_actor, lines=io.StringIO(SERVICES_CSV))
    assert (result.created, result.updated) == (1, 1)
    assert [(e.row, e.column) for e in result.errors] == [
        (3, "max_unit_price_fen"),
        (5, "category"),
        (6, "code"),
        (7, "max_unit_price_fen"),
    ]
    updated = ServiceItem.objects.get(code="REG001")
    assert (updated.name_en, updated.category, updated.max_unit_price_fen) == ("Registration", "registration", 1000)
    assert ServiceItem.objects.get(code="DRG001").max_unit_price_fen == 2350
    assert not ServiceItem.objects.filter(code__in=["LAB001", "IMG001", "DRG002"]).exists()
    assert AuditEvent.objects.filter(action="service.updated").count() == 1


def test_importing_the_same_file_twice_changes_nothing_the_second_time(system_actor, regions):
    catalogue_import.import_services(actor=system_actor, lines=io.StringIO(SERVICES_CSV))
    events = AuditEvent.objects.count()
    again = catalogue_import.import_services(actor=system_actor, lines=io.StringIO(SERVICES_CSV))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert AuditEvent.objects.count() == events


def test_a_file_without_the_required_columns_is_refused_whole(system_actor, regions):
    with pytest.raises(catalogue_import.ImportFileError):
        catalogue_import.import_services(actor=system_actor, lines=io.StringIO("code,name\nA,B\n"))
    assert not ServiceItem.objects.exists()


def test_the_service_import_screen_shows_the_errors_and_offers_the_report_as_csv(client, national):
    response = client.post(reverse("catalogue_import"), {"file": upload("services.csv", "\ufeff" + SERVICES_CSV)})
    assert response.status_code == 200
    result = response.context["result"]
    assert result.created == 2 and len(result.errors) == 4
    token = response.context["report_token"]
    report = client.get(reverse("catalogue_import_errors", args=[token]))
    assert report.status_code == 200
    assert report["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(report.content.decode())))
    assert rows[0] == ["row", "column", "reason"]
    assert [r[:2] for r in rows[1:]] == [
        ["3", "max_unit_price_fen"],
        ["5", "category"],
        ["6", "code"],
        ["7", "max_unit_price_fen"],
    ]


def test_an_error_report_belongs_to_the_session_that_made_it(client, national, make_user):
    response = client.post(reverse("catalogue_import"), {"file": upload("services.csv", SERVICES_CSV)})
    token = response.context["report_token"]
    client.logout()
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    assert client.get(reverse("catalogue_import_errors", args=[token])).status_code == 404


def test_a_file_that_is_not_utf8_is_a_form_error(client, national):
    response = client.post(
        reverse("catalogue_import"), {"file": upload("services.csv", SERVICES_CSV.encode("gb18030"))}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["file"]
    assert not ServiceItem.objects.exists()


def test_a_file_with_a_wrong_header_is_a_form_error(client, national):
    response = client.post(reverse("catalogue_import"), {"file": upload("services.csv", "a,b\n1,2\n")})
    assert response.status_code == 200
    assert "max_unit_price_fen" in str(response.context["form"].errors["file"])


FACILITIES_CSV = """code,name_zh,name_en,kind,region_code
SH-H1,瑞金医院,Ruijin Hospital,hospital,310000
SH-C1,社区诊所,Community Clinic,clinic,310000
GD-H1,中山医院,Zhongshan Hospital,hospital,440000
SH-X1,未知,Unknown,spa,310000
SH-P1,药房,,pharmacy,310000
"""


def test_a_region_admin_imports_facilities_of_their_region_only(client, make_user, system_actor, regions):
    catalogue.facility_create(
        actor=system_actor, code="SH-H1", name_zh="旧名", name_en="Old", kind="clinic", region=regions["310000"]
    )
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    response = client.post(reverse("facility_import"), {"file": upload("facilities.csv", FACILITIES_CSV)})
    result = response.context["result"]
    assert (result.created, result.updated) == (1, 1)
    assert [(e.row, e.column) for e in result.errors] == [(4, "region_code"), (5, "kind"), (6, "name_en")]
    assert Facility.objects.get(code="SH-H1").kind == "hospital"
    assert Facility.objects.get(code="SH-C1").region_id == "310000"
    assert not Facility.objects.filter(code="GD-H1").exists()


def test_a_facility_import_cannot_move_a_facility_to_another_region(system_actor, regions):
    catalogue.facility_create(
        actor=system_actor,
        code="GD-H1",
        name_zh="中山医院",
        name_en="Zhongshan",
        kind="hospital",
        region=regions["440000"],
    )
    result = catalogue_import.import_facilities(
        actor=system_actor,
        lines=io.StringIO("code,name_zh,name_en,kind,region_code\nGD-H1,a,b,clinic,310000\n"),
        region_codes=["310000"],
    )
    assert [(e.row, e.column) for e in result.errors] == [(2, "code")]
    facility = Facility.objects.get(code="GD-H1")
    assert (facility.region_id, facility.kind) == ("440000", "hospital")


def test_error_report_cells_cannot_become_spreadsheet_formulas():
    text = catalogue_import.error_report_csv([catalogue_import.RowError(2, "code", "=HYPERLINK(1)")])
    assert "'=HYPERLINK(1)" in text
