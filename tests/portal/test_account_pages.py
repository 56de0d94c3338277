"""The account pages under the TOTP requirement (finding 7): only what an unenrolled person needs
stays open, e-mail management is not offered, password reset never answers 500, and neither a
favicon request nor a second look at the set-up page changes the secret being scanned."""

import re
import socket

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY
from django.core import mail
from django.core.cache import cache
from django.urls import reverse

from portal.models import Role

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
# What Chromium sends for the favicon it fetches on its own.
FAVICON_HEADERS = {
    "HTTP_ACCEPT": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "HTTP_SEC_FETCH_DEST": "image",
    "HTTP_SEC_FETCH_MODE": "no-cors",
}


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def unenrolled(client, make_user):
    """A region administrator signed in with the password, TOTP not yet set up."""
    user = make_user(Role.REGION_ADMIN, username="admin-unenrolled")
    assert client.post(reverse("account_login"), {"login": user.username, "password": PASSWORD}).status_code == 302
    return user


def reauthenticate(client) -> None:
    page = client.get(reverse("mfa_activate_totp"))
    assert page["Location"].startswith(reverse("account_reauthenticate"))
    assert client.post(page["Location"], {"password": PASSWORD}).status_code == 302


def test_the_e_mail_page_cannot_add_an_address_that_blocks_totp_enrolment(client, unenrolled, totp):
    # The trap: an unverified address added here made allauth refuse TOTP activation for good.
    assert client.get("/accounts/email/").status_code in (302, 404)  # to the set-up, or not there at all
    response = client.post("/accounts/email/", {"action_add": "", "email": "other@example.cn"})
    assert response.status_code in (403, 404)
    assert not EmailAddress.objects.filter(user=unenrolled).exists()

    reauthenticate(client)
    assert client.get(reverse("mfa_activate_totp")).status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    assert client.post(reverse("mfa_activate_totp"), {"code": totp.code(secret)}).status_code == 302
    assert Authenticator.objects.filter(user=unenrolled, type=Authenticator.Type.TOTP).exists()


def test_the_e_mail_page_is_not_offered_to_enrolled_staff_either(client, make_user):
    from testkit.screens import sign_in

    sign_in(client, make_user(Role.CLERK))
    assert client.get("/accounts/email/").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/accounts/2fa/", "/accounts/2fa/recovery-codes/generate/", "/accounts/2fa/webauthn/", "/accounts/email/x"],
)
def test_other_account_pages_wait_for_totp_enrolment(client, unenrolled, path):
    response = client.get(path)
    assert response.status_code in (302, 404), path
    if response.status_code == 302:
        assert response["Location"].startswith(reverse("mfa_activate_totp"))


@pytest.mark.parametrize(
    "name", ["account_change_password", "account_reset_password", "mfa_activate_totp", "account_logout"]
)
def test_the_pages_an_unenrolled_person_needs_stay_open(client, unenrolled, name):
    response = client.get(reverse(name))
    location = response.get("Location", "")
    assert not location.startswith(reverse("mfa_activate_totp")), name


def test_a_favicon_request_is_served_and_never_sent_to_the_totp_set_up(client, unenrolled):
    response = client.get("/favicon.ico", **FAVICON_HEADERS)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"
    assert SECRET_SESSION_KEY not in client.session


def test_the_layout_links_its_own_icon(client):
    body = client.get(reverse("account_login")).content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in body
    assert client.get("/static/favicon.svg").status_code == 200


def test_requests_that_are_not_pages_are_refused_not_redirected_to_the_set_up(client, unenrolled):
    image = client.get(reverse("citizen_search"), **FAVICON_HEADERS)
    assert image.status_code == 403
    poll = client.get(reverse("citizen_search"), HTTP_ACCEPT="application/json")
    assert poll.status_code == 403
    assert client.post(reverse("citizen_register"), {}).status_code == 403
    assert SECRET_SESSION_KEY not in client.session
    page = client.get(reverse("citizen_search"), HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert page["Location"].startswith(reverse("mfa_activate_totp"))


def test_the_code_of_the_first_set_up_page_still_works_after_a_favicon_and_a_reload(client, unenrolled, totp):
    reauthenticate(client)
    first = client.get(reverse("mfa_activate_totp"))
    assert first.status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    assert secret in first.context["totp_url"]

    client.get("/favicon.ico", **FAVICON_HEADERS)
    client.get(reverse("citizen_search"), **FAVICON_HEADERS)  # any stray sub-request
    again = client.get(reverse("mfa_activate_totp"))
    assert again.context["form"].secret == secret

    response = client.post(reverse("mfa_activate_totp"), {"code": totp.code(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=unenrolled, type=Authenticator.Type.TOTP).exists()
    assert SECRET_SESSION_KEY not in client.session


# --- Password reset by e-mail ----------------------------------------------------------------


def page_text(response, email: str) -> str:
    """The page without what differs between any two answers (the address typed, the CSRF token)."""
    return re.sub(r'value="[^"]*"', "", response.content.decode().replace(email, "X"))


def reset(client, email: str):
    return client.post(reverse("account_reset_password"), {"email": email}, follow=True)


def test_a_reset_for_a_known_and_an_unknown_address_answers_the_same_page(client, make_user):
    user = make_user(Role.CLERK)
    known = reset(client, user.email)
    unknown = reset(client, "nobody@example.cn")
    assert known.status_code == unknown.status_code == 200
    assert known.redirect_chain == unknown.redirect_chain == [(reverse("account_reset_password_done"), 302)]
    assert page_text(known, user.email) == page_text(unknown, "nobody@example.cn")
    assert [m.to for m in mail.outbox] == [[user.email]]  # nothing is sent to an unknown address


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_reset_while_the_mail_relay_is_down_answers_the_same_page_not_500(client, make_user, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = closed_port()  # nothing listens there: the connection is refused
    settings.EMAIL_USE_SSL = settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 2
    user = make_user(Role.CLERK)
    known = reset(client, user.email)
    unknown = reset(client, "nobody@example.cn")
    assert known.status_code == unknown.status_code == 200
    assert known.redirect_chain == unknown.redirect_chain == [(reverse("account_reset_password_done"), 302)]


def test_production_reads_the_mail_relay_settings():
    from portal import settings as portal_settings

    source = open(portal_settings.__file__, encoding="utf-8").read()
    for name in ("EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "DEFAULT_FROM_EMAIL"):
        assert f'"{name}"' in source, name
