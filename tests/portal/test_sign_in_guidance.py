"""Issue 16, finding 6: the sign-in pages say where they lead (view tests; the whole first
sign-in runs in tests/browser/test_walkthrough_sign_in.py)."""

import pytest
from django.urls import reverse

from portal.models import Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

WHY = "您的角色必须使用双重验证登录"


def test_the_sign_in_page_has_no_link_to_the_closed_sign_up(client):
    html = client.get(reverse("account_login")).content.decode()
    assert reverse("account_signup") not in html
    assert "注册" not in html


def test_the_password_asked_again_on_the_way_to_totp_set_up_says_why(client, make_user):
    user = make_user(Role.REGION_ADMIN, ("310000",))
    client.force_login(user)
    setup = reverse("mfa_activate_totp") + "?next=/staff/"
    html = client.get(reverse("account_reauthenticate"), {"next": setup}).content.decode()
    assert WHY in html


def test_the_password_asked_again_elsewhere_does_not_speak_of_set_up(client, make_user):
    client.force_login(make_user(Role.REGION_ADMIN, ("310000",)))
    html = client.get(reverse("account_reauthenticate"), {"next": "/staff/"}).content.decode()
    assert WHY not in html


def test_the_page_first_asked_for_is_kept_for_after_the_set_up(client, make_user):
    sign_in(client, make_user(Role.CLERK, ("310000",)))  # a clerk needs no TOTP: nothing kept
    client.get("/citizens/", HTTP_ACCEPT="text/html")
    assert "ecard_next_after_mfa_setup" not in client.session
    client.force_login(make_user(Role.REGION_ADMIN, ("310000",)))
    response = client.get("/staff/?page=2", HTTP_ACCEPT="text/html")
    assert response.status_code == 302
    assert client.session["ecard_next_after_mfa_setup"] == "/staff/?page=2"
