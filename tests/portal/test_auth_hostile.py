"""Hostile input to the sign-in and account forms: oversize values, control characters, NUL bytes,
bodies that are not UTF-8, missing CSRF tokens. Each gets a form error, 400 or 403, never a 500,
and nothing is written."""

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from portal.models import AuditEvent, PasswordHistory, Role, SignInState, User
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
BIG = 200_000  # well under the 1 MiB body limit, far over any field

# Names, addresses and choices: none of these is a valid one.
HOSTILE_TEXT = [
    pytest.param("x" * BIG, id="oversize"),
    pytest.param("clerk\x00admin", id="nul"),
    pytest.param("\x01\x02\x1b[31m\x7f", id="control-characters"),
    pytest.param("\u202eadmin", id="bidi-override"),
    pytest.param("' OR 1=1 --", id="sql"),
    pytest.param("<script>alert(1)</script>", id="markup"),
    pytest.param("", id="empty"),
]
# New passwords that must be refused (symbols and markup are fine in a password).
BAD_PASSWORDS = [
    pytest.param("Aa1-" * (BIG // 4), id="oversize"),
    pytest.param("Aa1-bcdefgh\x00ij", id="nul"),
    pytest.param("Aa1-bcdefgh\x01\x1b[31m", id="control-characters"),
    pytest.param("Aa1-bcdefgh\u202e", id="bidi-override"),
    pytest.param("", id="empty"),
]
# Reasons recorded in the audit log that must be refused.
BAD_REASONS = [
    pytest.param("x" * BIG, id="oversize"),
    pytest.param("forgot\x00it", id="nul"),
    pytest.param("forgot \x1b[31mit", id="control-characters"),
    pytest.param("forgot \u202eti", id="bidi-override"),
    pytest.param("   ", id="blank"),
]


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


class Snapshot:
    """What a rejected request must leave as it was."""

    def __init__(self) -> None:
        self.counts = self.take()

    @staticmethod
    def take() -> dict:
        return {
            model.__name__: model.objects.count()
            for model in (AuditEvent, User, SignInState, PasswordHistory, EmailAddress, Authenticator)
        }

    def unchanged(self) -> bool:
        return self.take() == self.counts


def refused(response) -> bool:
    """A clear refusal: the form again with an error (200), or 400 / 403."""
    return response.status_code in (200, 400, 403)


def post_raw(client: Client, url: str, body: bytes, content_type: str):
    return client.generic("POST", url, body, content_type=content_type)


# --- Sign-in -------------------------------------------------------------------------------------


@pytest.fixture
def clerk(make_user):
    return make_user(Role.CLERK, username="clerk-hostile")


@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_hostile_names_at_sign_in_get_a_form_error(client, clerk, value):
    before = Snapshot()
    response = client.post(reverse("account_login"), {"login": value, "password": PASSWORD})
    assert refused(response)
    assert "_auth_user_id" not in client.session
    assert before.unchanged()


@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_hostile_passwords_at_sign_in_get_a_form_error(client, clerk, value):
    before = Snapshot()
    response = client.post(reverse("account_login"), {"login": clerk.username, "password": value})
    assert refused(response)
    assert "_auth_user_id" not in client.session
    # A wrong password is a failed attempt (counted on the account), nothing else.
    assert before.take()["AuditEvent"] == before.counts["AuditEvent"]
    assert User.objects.get(pk=clerk.pk).password == clerk.password


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"login=\xff\xfe\xfd&password=\xc3\x28", "application/x-www-form-urlencoded", id="not-utf8"),
        pytest.param(
            "login=张三&password=密码".encode("gbk"), "application/x-www-form-urlencoded; charset=gbk", id="gbk"
        ),
        pytest.param(b"login=a&password=b", "application/x-www-form-urlencoded; charset=no-such", id="bad-charset"),
        pytest.param(b"login=%ED%A0%80&password=%ED%A0%80", "application/x-www-form-urlencoded", id="lone-surrogate"),
        pytest.param("login=张三".encode("utf-16"), "application/x-www-form-urlencoded; charset=utf-16", id="utf16"),
        pytest.param(b'{"login": "clerk-hostile", "password": 1}', "application/json", id="json"),
        pytest.param(
            b"--x\r\nContent-Disposition: form-data; name=login\r\n\r\n",
            "multipart/form-data; boundary=x",
            id="truncated-multipart",
        ),
        pytest.param(
            b"login=a&" + b"&".join(b"f%d=1" % n for n in range(1500)),
            "application/x-www-form-urlencoded",
            id="too-many-fields",
        ),
        pytest.param(b"login=" + b"a" * (2 * 1024 * 1024), "application/x-www-form-urlencoded", id="over-body-limit"),
    ],
)
def test_malformed_sign_in_bodies_are_refused_without_500(client, clerk, body, content_type):
    before = Snapshot()
    response = post_raw(client, reverse("account_login"), body, content_type)
    assert refused(response), response.status_code
    assert "_auth_user_id" not in client.session
    assert before.unchanged()


def test_sign_in_without_a_csrf_token_is_refused(clerk):
    client = Client(enforce_csrf_checks=True)
    before = Snapshot()
    response = client.post(reverse("account_login"), {"login": clerk.username, "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
    assert before.unchanged()


# --- Signed in: password change, TOTP set-up, staff forms ----------------------------------------


@pytest.mark.parametrize("value", BAD_PASSWORDS)
def test_hostile_new_passwords_are_refused_and_the_old_one_stays(client, clerk, value):
    sign_in(client, clerk)
    before = Snapshot()
    response = client.post(
        reverse("account_change_password"), {"oldpassword": PASSWORD, "password1": value, "password2": value}
    )
    assert response.status_code == 200
    assert response.context["form"].errors
    assert User.objects.get(pk=clerk.pk).check_password(PASSWORD)
    assert before.unchanged()


@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_hostile_old_passwords_are_refused(client, clerk, value):
    sign_in(client, clerk)
    before = Snapshot()
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": value, "password1": "Fresh-pass-2026", "password2": "Fresh-pass-2026"},
    )
    assert response.status_code == 200
    assert User.objects.get(pk=clerk.pk).check_password(PASSWORD)
    assert before.unchanged()


def test_password_change_without_a_csrf_token_is_refused(clerk):
    client = Client(enforce_csrf_checks=True)
    sign_in(client, clerk)
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": "Fresh-pass-2026", "password2": "Fresh-pass-2026"},
    )
    assert response.status_code == 403
    assert User.objects.get(pk=clerk.pk).check_password(PASSWORD)


@pytest.mark.parametrize(
    "value",
    [*HOSTILE_TEXT, pytest.param("1" * 7, id="seven-digits"), pytest.param("１２３４５６", id="fullwidth-digits")],
)
def test_hostile_totp_codes_are_refused(client, make_user, value):
    admin = make_user(Role.REGION_ADMIN, username="admin-hostile")
    assert client.post(reverse("account_login"), {"login": admin.username, "password": PASSWORD}).status_code == 302
    reauth = client.get(reverse("mfa_activate_totp"))["Location"]
    assert client.post(reauth, {"password": PASSWORD}).status_code == 302
    client.get(reverse("mfa_activate_totp"))
    before = Snapshot()
    response = client.post(reverse("mfa_activate_totp"), {"code": value})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert before.unchanged()


@pytest.mark.parametrize("value", BAD_REASONS)
def test_hostile_reasons_are_refused(client, make_user, value):
    clerk = make_user(Role.CLERK)
    admin = make_user(Role.REGION_ADMIN)
    sign_in(client, admin)
    before = Snapshot()
    for name in ("staff_unlock", "staff_password_reset", "staff_deactivate"):
        response = client.post(reverse(name, args=[clerk.pk]), {"reason": value, "confirmed": "yes"})
        assert response.status_code == 200, name
        assert "reason" in response.context["form"].errors, name
    clerk.refresh_from_db()
    assert clerk.is_active and clerk.check_password(PASSWORD)
    assert before.unchanged()


@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_hostile_addresses_for_a_password_reset_are_refused(client, value):
    from django.core import mail

    before = Snapshot()
    response = client.post(reverse("account_reset_password"), {"email": value})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert mail.outbox == []
    assert before.unchanged()


def new_account_cases():
    for field in ("username", "email", "role", "regions"):
        for case in HOSTILE_TEXT:
            if not (field == "email" and case.id == "empty"):  # the address is optional
                yield pytest.param(field, *case.values, id=f"{field}-{case.id}")
    for case in BAD_PASSWORDS:
        yield pytest.param("password", *case.values, id=f"password-{case.id}")


@pytest.mark.parametrize(("field", "value"), list(new_account_cases()))
def test_hostile_values_in_the_new_account_form_are_refused(client, make_user, field, value):
    sign_in(client, make_user(Role.REGION_ADMIN))
    data = {"username": "new-clerk", "email": "", "role": "clerk", "regions": ["310000"], "password": "Initial-2026-x"}
    data[field] = value
    before = Snapshot()
    response = client.post(reverse("staff_create"), data)
    assert response.status_code == 200
    assert response.context["form"].errors
    assert before.unchanged()
