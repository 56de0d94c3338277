"""Staff management: region administrators manage their regions' clerks (the auditors
who read their actions are the national operators' to create: separation of duties)."""

import pytest
from django.urls import reverse

from portal.models import AuditEvent, Role, User
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-passphrase-7"


@pytest.fixture
def admin(client, make_user):
    user = make_user(Role.REGION_ADMIN, ("310000",))
    sign_in(client, user)
    return user


def create(client, **data):
    payload = {
        "username": "new-clerk",
        "email": "new@example.cn",
        "role": "clerk",
        "regions": ["310000"],
        "password": PASSWORD,
        **data,
    }
    return client.post(reverse("staff_create"), payload)


def test_region_admin_creates_a_clerk_of_their_region(client, admin):
    response = create(client)
    assert response.status_code == 302
    user = User.objects.get(username="new-clerk")
    assert user.role == Role.CLERK
    assert list(user.regions.values_list("code", flat=True)) == ["310000"]
    assert user.check_password(PASSWORD)
    event = AuditEvent.objects.get(action="staff.create", object_id=str(user.pk))
    assert PASSWORD not in str(event.after)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"role": "region_admin"}, "role"),
        ({"role": "national_operator"}, "role"),
        ({"role": "auditor"}, "role"),
        ({"role": "security_officer"}, "role"),
        ({"regions": ["440000"]}, "regions"),
        ({"regions": []}, "regions"),
        ({"password": "short"}, "password"),
        ({"username": ""}, "username"),
        ({"email": "not-an-email"}, "email"),
    ],
)
def test_region_admin_cannot_create_outside_their_powers(client, admin, data, field):
    response = create(client, **data)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not User.objects.filter(username="new-clerk").exists()


def test_a_taken_username_is_a_form_error(client, admin, make_user):
    make_user(Role.CLERK, username="taken")
    response = create(client, username="TAKEN")
    assert "username" in response.context["form"].errors


def test_national_operator_creates_a_region_admin_of_any_region(client, make_user):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    assert create(client, username="gd-admin", role="region_admin", regions=["440000"]).status_code == 302
    assert User.objects.get(username="gd-admin").role == Role.REGION_ADMIN


NATIONAL_AUDITOR_HINT = "An auditor of every region is a national auditor"


def test_national_operator_creates_a_national_auditor_who_reads_national_events(client, make_user, regions):
    from portal.selectors_audit import audit_events_visible_to

    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    client.cookies["django_language"] = "en"
    assert NATIONAL_AUDITOR_HINT in client.get(reverse("staff_create")).content.decode()
    every_region = sorted(regions)
    assert create(client, username="national-auditor", role="auditor", regions=every_region).status_code == 302
    auditor = User.objects.get(username="national-auditor")
    assert sorted(auditor.regions.values_list("code", flat=True)) == every_region
    created = AuditEvent.objects.get(action="staff.create", object_id=str(auditor.pk))
    assert created.region_code == ""  # a national event: only a national auditor reads it
    assert audit_events_visible_to(auditor).filter(seq=created.seq).exists()


def test_region_admin_is_not_offered_the_national_auditor(client, admin):
    client.cookies["django_language"] = "en"
    assert NATIONAL_AUDITOR_HINT not in client.get(reverse("staff_create")).content.decode()


def test_staff_list_shows_only_the_admins_clerks(client, admin, make_user):
    own = make_user(Role.CLERK, ("310000",))
    other = make_user(Role.CLERK, ("440000",))
    both = make_user(Role.AUDITOR, ("310000", "440000"))
    own_auditor = make_user(Role.AUDITOR, ("310000",))
    peer = make_user(Role.REGION_ADMIN, ("310000",))
    listed = set(client.get(reverse("staff_list")).context["page"])
    assert own in listed
    assert not {other, both, own_auditor, peer} & listed


def test_region_admin_deactivates_a_clerk_after_confirmation(client, admin, make_user):
    clerk = make_user(Role.CLERK, ("310000",))
    url = reverse("staff_deactivate", args=[clerk.pk])
    assert client.post(url, {"reason": "离职"}).context["step"] == "confirm"
    clerk.refresh_from_db()
    assert clerk.is_active
    assert client.post(url, {"reason": "离职", "confirmed": "yes"}).status_code == 302
    clerk.refresh_from_db()
    assert not clerk.is_active
    assert AuditEvent.objects.filter(action="staff.deactivate", object_id=str(clerk.pk), reason="离职").exists()


def test_a_deactivated_clerk_can_no_longer_sign_in(client, admin, make_user):
    from django.test import Client

    clerk = make_user(Role.CLERK, ("310000",), username="leaving")
    client.post(reverse("staff_deactivate", args=[clerk.pk]), {"reason": "离职", "confirmed": "yes"})
    other = Client()
    other.post(reverse("account_login"), {"login": "leaving", "password": "correct-horse-battery-9"})
    assert other.get(reverse("citizen_search")).status_code == 302


@pytest.mark.parametrize(
    "role, codes",
    [
        (Role.CLERK, ("440000",)),  # another region
        (Role.AUDITOR, ("310000", "440000")),  # partly another region
        (Role.AUDITOR, ("310000",)),  # the region's auditor reads the admin's actions
        (Role.REGION_ADMIN, ("310000",)),  # a peer
    ],
)
def test_region_admin_cannot_deactivate_staff_outside_their_scope(client, admin, make_user, role, codes):
    target = make_user(role, codes)
    url = reverse("staff_deactivate", args=[target.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"reason": "x", "confirmed": "yes"}).status_code == 404
    target.refresh_from_db()
    assert target.is_active


@pytest.mark.parametrize("role", [Role.CLERK, Role.AUDITOR, Role.SECURITY_OFFICER])
def test_clerks_auditors_and_security_officers_cannot_manage_staff(client, make_user, role):
    victim = make_user(Role.CLERK, ("310000",))
    sign_in(client, make_user(role, ("310000",)))
    assert client.get(reverse("staff_list")).status_code == 403
    assert create(client).status_code == 403
    assert (
        client.post(reverse("staff_deactivate", args=[victim.pk]), {"reason": "x", "confirmed": "yes"}).status_code
        == 403
    )
    victim.refresh_from_db()
    assert victim.is_active
    assert not User.objects.filter(username="new-clerk").exists()


def test_region_admin_reactivates_a_deactivated_clerk_after_a_reason_and_confirmation(client, admin, make_user):
    clerk = make_user(Role.CLERK, ("310000",))
    client.post(reverse("staff_deactivate", args=[clerk.pk]), {"reason": "离职", "confirmed": "yes"})
    listing = client.get(reverse("staff_list")).content.decode()
    url = reverse("staff_reactivate", args=[clerk.pk])
    assert url in listing
    assert client.post(url, {"reason": " "}).context["form"].errors
    assert client.post(url, {"reason": "返岗"}).context["step"] == "confirm"
    clerk.refresh_from_db()
    assert not clerk.is_active
    done = client.post(url, {"reason": "返岗", "confirmed": "yes"})
    assert done["Location"] == reverse("staff_list")
    clerk.refresh_from_db()
    assert clerk.is_active
    event = AuditEvent.objects.get(action="staff.reactivate", object_id=str(clerk.pk))
    assert (event.reason, event.before["is_active"], event.after["is_active"]) == ("返岗", False, True)


def test_an_active_account_is_not_offered_reactivation(client, admin, make_user):
    clerk = make_user(Role.CLERK, ("310000",))
    assert reverse("staff_reactivate", args=[clerk.pk]) not in client.get(reverse("staff_list")).content.decode()
    response = client.post(reverse("staff_reactivate", args=[clerk.pk]), {"reason": "x", "confirmed": "yes"})
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action="staff.reactivate").exists()


def test_region_admin_cannot_reactivate_staff_outside_their_scope(client, admin, make_user):
    target = make_user(Role.CLERK, ("440000",))
    target.is_active = False
    target.save(update_fields=["is_active"])
    url = reverse("staff_reactivate", args=[target.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"reason": "x", "confirmed": "yes"}).status_code == 404
    target.refresh_from_db()
    assert not target.is_active
