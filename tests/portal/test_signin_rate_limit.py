"""Sign-in is rate-limited (allauth's limits, counted in the shared Redis cache)."""

import pytest
from django.core.cache import cache
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


def _attempt(client, login: str, password: str):
    return client.post(reverse("account_login"), {"login": login, "password": password})


def test_after_five_failed_attempts_even_the_right_password_is_refused(client, make_user):
    user = make_user(username="clerk-limited", password="correct-horse-battery-9")
    for _ in range(5):
        response = _attempt(client, user.username, "wrong-password-123")
        assert response.status_code == 200
        assert "_auth_user_id" not in client.session
    response = _attempt(client, user.username, "correct-horse-battery-9")
    assert "_auth_user_id" not in client.session
    assert response.status_code == 200
    # The account is locked (tests/portal/test_sign_in_lockout.py), in the default language.
    assert "账户已锁定，请在 15 分钟后重试" in response.content.decode()


def test_the_limit_counts_per_account_so_another_account_can_still_sign_in(client, make_user):
    victim = make_user(username="clerk-victim", password="correct-horse-battery-9")
    other = make_user(username="clerk-other", password="correct-horse-battery-9")
    for _ in range(5):
        _attempt(client, victim.username, "wrong-password-123")
    fresh = client.__class__(REMOTE_ADDR="10.9.9.9")
    response = _attempt(fresh, other.username, "correct-horse-battery-9")
    assert response.status_code == 302
    assert "_auth_user_id" in fresh.session
