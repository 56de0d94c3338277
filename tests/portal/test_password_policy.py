"""Passwords as MLPS level 3 asks: complexity, no reuse of the last five, and a password set by an
administrator (a new account, a reset) changed by the person before anything else, TOTP enrolment
included."""

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from portal.models import AuditEvent, Role, User
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

INITIAL = "Initial-pass-2026"


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


def change_password(client, old: str, new: str):
    cache.clear()  # allauth allows 5 changes a minute; the tests change more often
    return client.post(reverse("account_change_password"), {"oldpassword": old, "password1": new, "password2": new})


def sign_in_with_password(client, username: str, password: str):
    return client.post(reverse("account_login"), {"login": username, "password": password})


@pytest.mark.parametrize(
    "password",
    ["alllowercaseletters", "ALLUPPERCASE1", "lowercase123456", "Abcdefghijkl", "lower-case-words"],
)
def test_a_password_with_fewer_than_three_kinds_of_characters_is_refused(password, make_user):
    user = make_user()
    with pytest.raises(ValidationError) as error:
        validate_password(password, user)
    assert any(e.code == "password_too_simple" for e in error.value.error_list)


@pytest.mark.parametrize(
    "password", ["Lower-and-digit-9", "UPPER-lower-case", "Mixed1Case2Digits", "長い密碼Abcd1234!"]
)
def test_a_password_with_three_kinds_of_characters_is_accepted(password, make_user):
    validate_password(password, make_user())


def test_none_of_the_last_five_passwords_may_be_chosen_again(client, make_user):
    user = make_user(username="clerk-history", password="First-pass-0001")
    sign_in(client, user)
    passwords = ["First-pass-0001", *(f"Next-pass-000{n}" for n in range(2, 7))]
    for old, new in zip(passwords, passwords[1:], strict=False):
        assert change_password(client, old, new).status_code == 302, new
    current = passwords[-1]
    for reused in passwords[-5:]:  # the current one and the four before it
        response = change_password(client, current, reused)
        assert response.status_code == 200, reused
        assert "最近 5 次使用的密码" in response.content.decode()
    # The sixth-last is out of the history again.
    assert change_password(client, current, passwords[0]).status_code == 302
    assert user.password_history.count() == 5


def create_account(admin_client, username: str, role: str = "clerk") -> User:
    response = admin_client.post(
        reverse("staff_create"),
        {"username": username, "role": role, "regions": ["310000"], "password": INITIAL},
    )
    assert response.status_code == 302
    return User.objects.get(username=username)


@pytest.fixture
def national(make_user):
    client = Client()
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ("310000",)))
    return client


def test_an_initial_password_must_be_changed_before_any_screen_opens(national):
    create_account(national, "new-clerk")
    client = Client()
    assert sign_in_with_password(client, "new-clerk", INITIAL).status_code == 302
    for name in ("home", "citizen_search", "citizen_register", "mfa_activate_totp", "mfa_index"):
        response = client.get(reverse(name))
        assert response.status_code == 302, name
        assert response["Location"] == reverse("account_change_password"), name
    page = client.get(reverse("account_change_password"))
    assert page.status_code == 200
    assert "请先设置您自己的密码" in page.content.decode()
    # A form posted elsewhere is refused, not redirected.
    assert client.post(reverse("citizen_register"), {}).status_code == 403
    assert change_password(client, INITIAL, INITIAL).status_code == 200  # not the one it was given
    assert change_password(client, INITIAL, "Own-choice-2026").status_code == 302
    assert client.get(reverse("citizen_search")).status_code == 200
    assert AuditEvent.objects.filter(action="staff.password_change").exists()


def test_the_totp_enrolment_comes_after_the_forced_change(national, totp):
    admin = create_account(national, "new-admin", role="auditor")
    client = Client()
    assert sign_in_with_password(client, "new-admin", INITIAL).status_code == 302
    assert client.get(reverse("mfa_activate_totp"))["Location"] == reverse("account_change_password")
    response = change_password(client, INITIAL, "Own-choice-2026")
    assert response.status_code == 302
    # Then TOTP: the set-up asks for the password the person chose.
    response = client.get(response["Location"])
    assert response["Location"].startswith(reverse("mfa_activate_totp"))
    reauth = client.get(reverse("mfa_activate_totp"))["Location"]
    assert client.post(reauth, {"password": INITIAL}).status_code == 200  # the administrator's no longer works
    assert client.post(reauth, {"password": "Own-choice-2026"}).status_code == 302
    client.get(reverse("mfa_activate_totp"))
    secret = client.session[SECRET_SESSION_KEY]
    assert client.post(reverse("mfa_activate_totp"), {"code": totp.code(secret)}).status_code == 302
    assert Authenticator.objects.filter(user=admin, type=Authenticator.Type.TOTP).exists()
    assert client.get(reverse("audit_list")).status_code == 200


def test_fixture_and_demo_accounts_are_not_forced_to_change(client, make_user):
    make_user(username="fixture-clerk")
    assert sign_in_with_password(client, "fixture-clerk", "correct-horse-battery-9").status_code == 302
    assert client.get(reverse("citizen_search")).status_code == 200


def test_an_administrator_resets_a_password_in_two_steps_and_sees_it_once(national, make_user):
    clerk = make_user(Role.CLERK, username="forgetful")
    session = Client()
    assert sign_in_with_password(session, "forgetful", "correct-horse-battery-9").status_code == 302

    url = reverse("staff_password_reset", args=[clerk.pk])
    assert reverse("staff_password_reset", args=[clerk.pk]) in national.get(reverse("staff_list")).content.decode()
    first = national.post(url, {"reason": "forgot it"})
    assert first.context["step"] == "confirm"
    clerk.refresh_from_db()
    assert clerk.check_password("correct-horse-battery-9")
    done = national.post(url, {"reason": "forgot it", "confirmed": "yes"})
    assert done.status_code == 200
    assert done["Cache-Control"] == "no-store"
    temporary = done.context["password"]
    assert temporary in done.content.decode()
    validate_password(temporary)  # it meets the rules it imposes
    event = AuditEvent.objects.get(action="staff.password_reset", object_id=str(clerk.pk))
    assert event.reason == "forgot it"
    assert temporary not in str(event.after)

    # The clerk's open session has ended; the temporary password must be changed at once.
    assert session.get(reverse("citizen_search")).status_code == 302
    client = Client()
    assert sign_in_with_password(client, "forgetful", "correct-horse-battery-9").status_code == 200
    assert sign_in_with_password(client, "forgetful", temporary).status_code == 302
    assert client.get(reverse("citizen_search"))["Location"] == reverse("account_change_password")
    assert change_password(client, temporary, "Brand-new-2026").status_code == 302
    assert client.get(reverse("citizen_search")).status_code == 200


@pytest.mark.parametrize(("role", "codes"), [(Role.CLERK, ("440000",)), (Role.REGION_ADMIN, ("310000",))])
def test_a_region_admin_cannot_reset_passwords_of_staff_they_do_not_manage(make_user, role, codes):
    other = make_user(role, codes)
    client = Client()
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    response = client.post(reverse("staff_password_reset", args=[other.pk]), {"reason": "x", "confirmed": "yes"})
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.check_password("correct-horse-battery-9")
