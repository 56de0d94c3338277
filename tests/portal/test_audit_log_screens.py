"""The audit log viewer: region scope (another region's event answers 404), roles
(auditors; a national operator only where the deployment allows it, separation of
duties), the national auditor (an auditor of every region, who also reads the events
recorded without a region: the system administrator's and the security officer's),
filters, pagination newest first, and the detail of one event."""

import datetime as dt
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from payments import keys
from payments.models import PartnerKind
from payments.partners import services as partner_services
from portal.actors import Actor
from portal.models import AuditEvent, Region, Role
from portal.selectors_audit import audit_events_visible_to
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


@pytest.fixture
def operator_auditor(make_user, settings):
    """A national operator also made an auditor, in a deployment that allows one account both."""
    settings.ECARD_ALLOW_OPERATOR_AUDITOR = True
    user = make_user(Role.NATIONAL_OPERATOR, ())
    user.also_auditor = True
    user.save(update_fields=["also_auditor"])
    return user


@pytest.fixture
def national_events(make_user, regions):
    """What only a national auditor (or an operator-auditor) reads: a security officer's key
    rotation and activation, and a national operator's new partner, through the services."""
    officer = make_user(Role.SECURITY_OFFICER, ())
    operator = make_user(Role.NATIONAL_OPERATOR, ())
    keys._forget_cached_key()
    keys.portal_key_create(actor=Actor.system("tests"))
    rotation = keys.portal_key_create(actor=Actor.for_user(officer, "10.0.0.9"))
    keys.portal_key_activate_next(actor=Actor.for_user(officer, "10.0.0.9"))
    partner_services.partner_create(
        actor=Actor.for_user(operator), code="alipay", name="Alipay", kind=PartnerKind.WALLET
    )
    yield {
        "rotation": AuditEvent.objects.get(action="portal_key.create", object_id=rotation.key_id),
        "activation": AuditEvent.objects.get(action="portal_key.activate", actor_label=officer.username),
        "partner": AuditEvent.objects.get(action="partner.create", object_id="alipay"),
    }
    keys._forget_cached_key()


@pytest.fixture
def national_auditor(make_user, regions):
    """An auditor assigned to every pilot region: a national auditor."""
    return make_user(Role.AUDITOR, tuple(Region.objects.values_list("code", flat=True)))


def exported_seqs(client, **params) -> set[str]:
    import csv
    import io

    response = client.post(reverse("audit_list") + "?" + urlencode(params), {"format": "csv"})  # exports are POSTs
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    return {row[0] for row in rows[1:]}


def listed(client, **params) -> str:
    response = client.get(reverse("audit_list"), params)
    assert response.status_code == 200
    return response.content.decode()


def seqs_on(page: str, events: dict) -> set[str]:
    return {name for name, event in events.items() if reverse("audit_detail", args=[event.seq]) in page}


def test_an_auditor_sees_the_events_of_their_regions_only(client, make_user, events):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    assert seqs_on(listed(client), events) == {"here", "here_citizen"}


@pytest.mark.parametrize("role", [Role.REGION_ADMIN, Role.NATIONAL_OPERATOR, Role.SECURITY_OFFICER])
def test_administrators_and_security_officers_do_not_read_the_audit_log(client, make_user, events, role):
    """The region's audit log is read by auditors (DESIGN §2), not by those it records."""
    sign_in(client, make_user(role, () if role != Role.REGION_ADMIN else (HERE,)))
    assert client.get(reverse("audit_list")).status_code == 403
    assert client.get(reverse("audit_list"), {"format": "csv"}).status_code == 403
    assert client.get(reverse("audit_detail", args=[events["here"].seq])).status_code == 403
    assert reverse("audit_list") not in client.get(reverse("mfa_index")).content.decode()


def test_an_auditor_sees_their_regions_and_an_operator_auditor_everything(client, make_user, events, operator_auditor):
    sign_in(client, make_user(Role.AUDITOR, (HERE, THERE)))
    assert seqs_on(listed(client), events) == {"here", "here_citizen", "there"}
    client.logout()
    sign_in(client, operator_auditor)
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
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
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


def test_the_filters_narrow_the_list(client, operator_auditor, events):
    sign_in(client, operator_auditor)
    assert seqs_on(listed(client, action="certificate.revoke"), events) == {"here", "there"}
    assert seqs_on(listed(client, action="certificate."), events) == {"here", "there"}
    assert seqs_on(listed(client, action="citizen.register"), events) == {"here_citizen"}
    assert seqs_on(listed(client, actor="clerk_sh"), events) == {"here"}
    assert seqs_on(listed(client, object_type="partner"), events) == {"national"}
    assert seqs_on(listed(client, object_type="certificate", object_id="C130-1"), events) == {"there"}
    assert seqs_on(listed(client, region=THERE), events) == {"there"}


def test_the_date_range_is_of_days_in_shanghai(client, operator_auditor, events):
    sign_in(client, operator_auditor)
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


# --- The national auditor: who audits the system administrator and the security officer ---


def test_a_national_auditor_reads_key_rotations_and_partner_changes_in_list_detail_and_export(
    client, national_auditor, events, national_events
):
    sign_in(client, national_auditor)
    everything = {**events, **national_events}
    page = listed(client)
    assert seqs_on(page, everything) == set(everything)
    assert "Every change recorded by the portal" in page
    for name, event in everything.items():
        assert client.get(reverse("audit_detail", args=[event.seq])).status_code == 200, name
    rotation = client.get(reverse("audit_detail", args=[national_events["rotation"].seq])).content.decode()
    assert national_events["rotation"].actor_label in rotation and "10.0.0.9" in rotation
    before_export = {str(seq) for seq in AuditEvent.objects.values_list("seq", flat=True)}
    assert exported_seqs(client) == before_export
    key_events = exported_seqs(client, object_type="portal_key")
    assert {str(national_events["rotation"].seq), str(national_events["activation"].seq)} <= key_events


def test_a_national_auditor_filters_the_security_officers_actions(client, national_auditor, national_events):
    sign_in(client, national_auditor)
    officer = national_events["rotation"].actor_label
    assert seqs_on(listed(client, actor=officer), national_events) == {"rotation", "activation"}
    assert seqs_on(listed(client, object_type="partner"), national_events) == {"partner"}


def test_an_auditor_of_one_region_neither_lists_nor_opens_national_events(client, make_user, events, national_events):
    sign_in(client, make_user(Role.AUDITOR, (HERE,)))
    everything = {**events, **national_events}
    page = listed(client)
    assert seqs_on(page, everything) == {"here", "here_citizen"}
    assert "Changes recorded for your regions" in page
    for name in ("national", "rotation", "activation", "partner"):
        assert client.get(reverse("audit_detail", args=[everything[name].seq])).status_code == 404, name
    assert seqs_on(listed(client, object_type="portal_key"), everything) == set()
    exported = exported_seqs(client)
    assert exported == {str(events["here"].seq), str(events["here_citizen"].seq)}


def test_an_auditor_of_every_region_but_one_reads_no_national_event(client, make_user, events, national_events):
    all_but_there = tuple(code for code in Region.objects.values_list("code", flat=True) if code != THERE)
    sign_in(client, make_user(Role.AUDITOR, all_but_there))
    everything = {**events, **national_events}
    assert seqs_on(listed(client), everything) == {"here", "here_citizen"}
    for name in ("there", "national", "rotation", "partner"):
        assert client.get(reverse("audit_detail", args=[everything[name].seq])).status_code == 404, name


def test_a_national_auditor_reads_national_events_only_while_assigned_every_region(
    client, national_auditor, events, national_events
):
    sign_in(client, national_auditor)
    partner_event = national_events["partner"]
    assert client.get(reverse("audit_detail", args=[partner_event.seq])).status_code == 200
    Region.objects.create(code="500000", name_zh="重庆市", name_en="Chongqing", pilot_start=dt.date(2026, 1, 1))
    assert client.get(reverse("audit_detail", args=[partner_event.seq])).status_code == 404
    assert client.get(reverse("audit_detail", args=[events["there"].seq])).status_code == 200
    national_auditor.regions.add(Region.objects.get(code="500000"))
    assert client.get(reverse("audit_detail", args=[partner_event.seq])).status_code == 200


@pytest.mark.parametrize("role", [Role.CLERK, Role.SECURITY_OFFICER, Role.REGION_ADMIN])
def test_other_roles_get_403_on_national_events_even_assigned_every_region(client, make_user, national_events, role):
    every_region = () if role == Role.SECURITY_OFFICER else tuple(Region.objects.values_list("code", flat=True))
    sign_in(client, make_user(role, every_region))
    assert client.get(reverse("audit_list")).status_code == 403
    assert client.get(reverse("audit_list"), {"format": "csv"}).status_code == 403
    for name, event in national_events.items():
        assert client.get(reverse("audit_detail", args=[event.seq])).status_code == 403, name


def test_the_audit_scope_is_every_event_for_a_national_auditor_and_none_for_non_auditors(
    make_user, national_auditor, events, national_events
):
    assert audit_events_visible_to(national_auditor).count() == AuditEvent.objects.count()
    every_region = tuple(Region.objects.values_list("code", flat=True))
    for role in (Role.CLERK, Role.REGION_ADMIN, Role.NATIONAL_OPERATOR, Role.SECURITY_OFFICER):
        assert not audit_events_visible_to(make_user(role, every_region)).exists(), role
    national_auditor.is_active = False
    assert not audit_events_visible_to(national_auditor).exists()


def test_a_national_auditors_list_costs_a_fixed_number_of_queries(client, national_auditor, national_events):
    # The objects' links cost one query per kind of object on the page, not per row.
    record(region=THERE, object_id="first")
    sign_in(client, national_auditor)
    listed(client)
    with CaptureQueriesContext(connection) as few:
        listed(client)
    record(region="", action="partner.update", object_type="partner", object_id="alipay")
    record(region=THERE, object_id="extra")
    with CaptureQueriesContext(connection) as more:
        listed(client)
    assert len(more) == len(few)
