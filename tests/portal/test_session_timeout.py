"""An idle session is signed out (30 minutes by default) beside the absolute limit of
SESSION_COOKIE_AGE; the sign-in page says why. Time passes by moving the session's timestamps back."""

import time

import pytest
from django.urls import reverse

from portal.middleware import SessionTimeoutMiddleware
from portal.models import Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


def age(client, key: str, seconds: float) -> None:
    session = client.session
    session[key] = time.time() - seconds
    session.save()


@pytest.fixture
def clerk_client(client, make_user):
    sign_in(client, make_user(Role.CLERK))
    assert client.get(reverse("citizen_search")).status_code == 200
    return client


def test_a_session_idle_longer_than_the_limit_is_signed_out_with_a_message(clerk_client):
    age(clerk_client, SessionTimeoutMiddleware.LAST_ACTIVITY, 31 * 60)
    response = clerk_client.get(reverse("citizen_search"), follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("account_login"))
    assert "您已 30 分钟无操作，已自动退出登录。" in response.content.decode()
    assert "_auth_user_id" not in clerk_client.session


def test_activity_within_the_limit_keeps_the_session(clerk_client):
    age(clerk_client, SessionTimeoutMiddleware.LAST_ACTIVITY, 29 * 60)
    assert clerk_client.get(reverse("citizen_search")).status_code == 200
    # The page counted as activity: another 29 minutes later the session is still there.
    assert time.time() - clerk_client.session[SessionTimeoutMiddleware.LAST_ACTIVITY] < 60
    age(clerk_client, SessionTimeoutMiddleware.LAST_ACTIVITY, 29 * 60)
    assert clerk_client.get(reverse("citizen_search")).status_code == 200


def test_a_script_polling_json_is_not_activity(clerk_client):
    age(clerk_client, SessionTimeoutMiddleware.LAST_ACTIVITY, 10 * 60)
    clerk_client.get(reverse("citizen_search"), HTTP_ACCEPT="application/json")
    assert time.time() - clerk_client.session[SessionTimeoutMiddleware.LAST_ACTIVITY] >= 10 * 60 - 1


def test_the_idle_limit_is_a_setting(clerk_client, settings):
    settings.ECARD_IDLE_TIMEOUT_MINUTES = 5
    age(clerk_client, SessionTimeoutMiddleware.LAST_ACTIVITY, 6 * 60)
    response = clerk_client.get(reverse("citizen_search"), follow=True)
    assert "您已 5 分钟无操作，已自动退出登录。" in response.content.decode()


def test_an_active_session_still_ends_at_the_absolute_limit(clerk_client, settings):
    age(clerk_client, SessionTimeoutMiddleware.SIGNED_IN_AT, settings.SESSION_COOKIE_AGE + 60)
    response = clerk_client.get(reverse("citizen_search"), follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("account_login"))
    assert "每次登录最长 8 小时" in response.content.decode()
    assert "_auth_user_id" not in clerk_client.session


def test_the_idle_message_is_in_english_when_chosen(clerk_client):
    clerk_client.cookies["django_language"] = "en"
    age(clerk_client, SessionTimeoutMiddleware.LAST_ACTIVITY, 31 * 60)
    response = clerk_client.get(reverse("citizen_search"), follow=True)
    assert "You were signed out after 30 minutes without activity." in response.content.decode()
