"""Sign-in through allauth in the portal layout, and TOTP for the roles that need it."""

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY
from allauth.mfa.utils import decrypt
from django.core.cache import cache
from django.urls import reverse

from portal.models import Role

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(autouse=True)
def _clean_cache():
    # Rate limits and used TOTP codes live in the cache (this test run's own Redis db).
    cache.clear()
    yield
    cache.clear()


def sign_in_with_password(client, login: str, password: str = PASSWORD):
    return client.post(reverse("account_login"), {"login": login, "password": password})


@pytest.mark.django_db
def test_sign_in_page_uses_the_portal_layout_in_simplified_chinese(client):
    response = client.get(reverse("account_login"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "/static/css/portal.css" in body
    assert "医保电子凭证管理平台" in body
    assert 'lang="zh-Hans"' in body


@pytest.mark.django_db
def test_clerk_signs_in_with_username_or_email_and_needs_no_totp(client, make_user):
    clerk = make_user(Role.CLERK, username="clerk-a")
    response = sign_in_with_password(client, "clerk-a")
    assert response.status_code == 302
    assert client.get(reverse("citizen_search")).status_code == 200
    client.post(reverse("account_logout"))
    response = sign_in_with_password(client, clerk.email)
    assert response.status_code == 302
    assert client.get(reverse("citizen_search")).status_code == 200


@pytest.mark.django_db
def test_wrong_password_does_not_sign_in(client, make_user):
    make_user(Role.CLERK, username="clerk-b")
    response = sign_in_with_password(client, "clerk-b", "not-the-password")
    assert response.status_code == 200
    assert client.get(reverse("citizen_search")).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.AUDITOR])
def test_role_requiring_mfa_cannot_open_any_screen_until_totp_is_set_up(client, make_user, role, totp):
    user = make_user(role, username=f"mfa-{role}")
    assert sign_in_with_password(client, user.username).status_code == 302
    for name in ("citizen_search", "citizen_register", "staff_list", "sandbox_receipts"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("mfa_activate_totp"))

    # allauth asks for the password again before an authenticator is added.
    page = client.get(reverse("mfa_activate_totp"))
    assert page["Location"].startswith(reverse("account_reauthenticate"))
    reauth = client.get(page["Location"])
    assert "/static/css/portal.css" in reauth.content.decode()  # our layout
    assert client.post(page["Location"], {"password": PASSWORD}).status_code == 302

    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    assert "/static/css/portal.css" in page.content.decode()  # our layout
    secret = client.session[SECRET_SESSION_KEY]
    bad = client.post(reverse("mfa_activate_totp"), {"code": "000000" if totp.code(secret) != "000000" else "111111"})
    assert bad.status_code == 200
    assert not Authenticator.objects.filter(user=user).exists()

    response = client.post(reverse("mfa_activate_totp"), {"code": totp.code(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    assert client.get(reverse("citizen_search")).status_code == 200


@pytest.mark.django_db
def test_once_totp_is_set_up_sign_in_asks_for_the_code(client, make_user, totp):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    admin = make_user(Role.REGION_ADMIN, username="admin-totp")
    TOTP.activate(admin, generate_totp_secret())
    secret = decrypt(Authenticator.objects.get(user=admin, type=Authenticator.Type.TOTP).data["secret"])

    response = sign_in_with_password(client, "admin-totp")
    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_authenticate")
    # Password alone does not sign in.
    assert client.get(reverse("citizen_search"))["Location"].startswith(reverse("account_login"))
    page = client.get(reverse("mfa_authenticate"))
    assert "/static/css/portal.css" in page.content.decode()

    wrong = client.post(reverse("mfa_authenticate"), {"code": "12345"})
    assert wrong.status_code == 200
    assert client.get(reverse("citizen_search")).status_code == 302

    response = client.post(reverse("mfa_authenticate"), {"code": totp.code(secret)})
    assert response.status_code == 302
    assert client.get(reverse("citizen_search")).status_code == 200


@pytest.mark.django_db
def test_language_switch_to_english_is_remembered_by_cookie(client, make_user):
    clerk = make_user(Role.CLERK)
    client.force_login(clerk)
    assert (
        "公民" in client.get(reverse("citizen_search")).content.decode()
        or "参保人" in client.get(reverse("citizen_search")).content.decode()
    )
    response = client.post(reverse("set_language"), {"language": "en", "next": reverse("citizen_search")})
    assert response.status_code == 302
    assert response.cookies["django_language"].value == "en"
    body = client.get(reverse("citizen_search")).content.decode()
    assert "Citizens" in body
    assert 'lang="en"' in body


def test_screens_stay_in_chinese_whatever_the_browser_asks_until_english_is_chosen(client, make_user):
    client.force_login(make_user(role="clerk"))
    body = client.get("/citizens/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert 'lang="zh-Hans"' in body
    client.cookies["django_language"] = "en"
    body = client.get("/citizens/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert 'lang="en"' in body
