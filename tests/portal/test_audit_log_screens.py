"""The audit log viewer: region scope (another region's event answers 404), roles,
filters, pagination newest first, and the detail of one event."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from portal.actors import Actor
from portal.models import AuditEvent, Role
from testkit.audit import record
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

HERE, THERE = "310000", "130000"


@pytest.fixture(autouse=True)
def english(client):
    client.cookies["django_language"] = "en"


@pytest.fixture
def events(regions):
    clerk = Actor(type="user", id="7", label="clerk_sh", ip="10.0.0.7", user_id=7)
    return {
        "here": record(
            region=HERE,
            action="certificate.revoke",
            object_type="certificate",
            object_id="C310-1",
            actor=clerk,
            reason="lost card",
            after={"state": "revoked", "citizen": "310***********123X"},
        ),
        "here_citizen": record(region=HERE, action="citizen.register", object_type="citizen", object_id="41"),
        "there": record(
            region=THERE,
            action="certificate.revoke",
            object_type="certificate",
            object_id="C130-1",
            reason="there-only",
        ),
        "national": record(
            region="", action="partner.create", object_type="partner", object_id="wechat", reason="national-only"
        ),
    }


def listed(client, **params) -> str:
    response = client.get(reverse("audit_list"), params)
    assert response.status_code == 200
    return response.content.decode()


def seqs_on(page: str, events: dict) -> set[str]:
    return {name for name, event in events.items() if reverse("audit_detail", args=[event.seq]) in page}


def test_a_region_administrator_sees_the_events_of_their_regions_only(client, make_user, events):
    sign_in(client, make_user(Role.REGION_ADMIN, (HERE,)))
    assert seqs_on(listed(client), events) == {"here", "here_citizen"}


def test_an_auditor_sees_their_regions_and_a_national_operator_everything(client, make_user, events):
    sign_in(client, make_user(Role.AUDITOR, (HERE, THERE)))
    assert seqs_on(listed(client), events) == {"here", "here_citizen", "there"}
    client.logout()
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    assert seqs_on(listed(client), events) == {"here", "here_citizen", "there", "national"}


def test_another_regions_event_and_a_national_one_answer_404(client, make_user, events):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    assert client.get(reverse("audit_detail", args=[events["here"].seq])).status_code == 200
    assert client.get(reverse("audit_detail", args=[events["there"].seq])).status_code == 404
    assert client.get(reverse("audit_detail", args=[events["national"].seq])).status_code == 404
    assert client.get(reverse("audit_detail", args=[999_999])).status_code == 404


def test_clerks_cannot_open_the_audit_log_of_any_region(client, make_user, events):
    sign_in(client, make_user(Role.CLERK, (HERE,)))
    assert client.get(reverse("audit_list")).status_code == 403
    assert client.post(reverse("audit_list"), {"format": "csv"}).status_code == 403
    assert client.get(reverse("audit_detail", args=[events["here"].seq])).status_code == 403
    assert client.get(reverse("audit_detail", args=[events["there"].seq])).status_code == 403
    assert reverse("audit_list") not in client.get(reverse("settlement_list")).content.decode()


def test_the_menu_shows_the_audit_log_to_auditors(client, make_user, events):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    assert f'href="{reverse("audit_list")}"' in client.get(reverse("settlement_list")).content.decode()


def test_the_detail_shows_who_what_why_and_the_snapshots(client, make_user, events):
    sign_in(client, make_user(Role.REGION_ADMIN, (HERE,)))
    event = events["here"]
    page = client.get(reverse("audit_detail", args=[event.seq])).content.decode()
    for text in (
        "clerk_sh",
        "certificate.revoke",
        "C310-1",
        "lost card",
        "10.0.0.7",
        "310***********123X",
        "&quot;state&quot;: &quot;revoked&quot;",
    ):
        assert text in page, text


def test_the_filters_narrow_the_list(client, make_user, events):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    assert seqs_on(listed(client, action="certificate.revoke"), events) == {"here", "there"}
    assert seqs_on(listed(client, action="certificate."), events) == {"here", "there"}
    assert seqs_on(listed(client, action="citizen.register"), events) == {"here_citizen"}
    assert seqs_on(listed(client, actor="clerk_sh"), events) == {"here"}
    assert seqs_on(listed(client, object_type="partner"), events) == {"national"}
    assert seqs_on(listed(client, object_type="certificate", object_id="C130-1"), events) == {"there"}
    assert seqs_on(listed(client, region=THERE), events) == {"there"}


def test_the_date_range_is_of_days_in_shanghai(client, make_user, events):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    today = timezone.localdate()
    day = dt.timedelta(days=1)
    everything = {"here", "here_citizen", "there", "national"}
    assert seqs_on(listed(client, date_from=today.isoformat(), date_to=today.isoformat()), events) == everything
    assert seqs_on(listed(client, date_from=(today + day).isoformat()), events) == set()
    assert seqs_on(listed(client, date_to=(today - day).isoformat()), events) == set()


def test_a_bad_filter_is_a_form_error_not_a_500(client, make_user, events):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    page = listed(client, date_from="2026-02-01", date_to="2026-01-01")
    assert "The end date is before the start date." in page
    assert seqs_on(page, events) == set()
    page = listed(client, date_from="not-a-date", region=THERE, object_type="nonsense")
    assert seqs_on(page, events) == set()


def test_a_region_filter_outside_the_scope_is_refused(client, make_user, events):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    assert seqs_on(listed(client, region=THERE), events) == set()
    assert "there-only" not in listed(client, region=THERE)


def test_the_list_paginates_newest_first_in_a_fixed_number_of_queries(client, make_user, regions):
    made = [record(region=HERE, object_id=str(n), reason=f"row-{n:03d}") for n in range(60)]
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    first = listed(client)
    assert "Page 1 of 2" in first
    assert first.index("row-059") < first.index("row-058")
    assert "row-010" in first and "row-009" not in first
    second = listed(client, page=2)
    assert "row-009" in second and "row-000" in second and "row-059" not in second
    assert f'href="{reverse("audit_detail", args=[made[-1].seq])}"' in first
    with CaptureQueriesContext(connection) as few:
        listed(client, page=2)
    record(region=HERE, object_id="extra")
    with CaptureQueriesContext(connection) as more:
        listed(client, page=2)
    assert len(more) == len(few)


def test_the_audit_log_exports_within_the_scope_and_filters(client, make_user, events):
    import csv
    import io

    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    body = b"".join(
        client.post(reverse("audit_list") + "?action=certificate.", {"format": "csv"}).streaming_content
    ).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][0] == "Sequence"
    assert [row[0] for row in rows[1:]] == [str(events["here"].seq)]
    export_event = AuditEvent.objects.filter(action="list.export").latest("seq")
    assert export_event.object_id == "audit-log"
    assert export_event.after == {
        "list": "audit-log",
        "format": "csv",
        "filters": {"action": "certificate."},
        "rows": 1,
        "truncated": False,
    }
    assert export_event.region_code == HERE
