"""Sign-in failures lock the account, not the shared address; the client address comes from the
configured trusted proxy; administrators unlock their staff."""

import datetime as dt

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from portal.models import AuditEvent, Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
PROXY = "10.0.0.2"  # the deployment's reverse proxy: every request arrives from it
OFFICE = "203.0.113.50"  # one office's public address, shared by its staff


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def behind_proxy(settings):
    settings.ECARD_TRUSTED_PROXY_COUNT = 1


def via_proxy(forwarded_for: str) -> Client:
    """A browser whose requests reach the portal through the proxy, which appends the address it
    saw to X-Forwarded-For (anything to its left came from the browser itself)."""
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for)


def attempt(client, login: str, password: str):
    return client.post(reverse("account_login"), {"login": login, "password": password})


def lock_state(user):
    from portal.models import SignInState  # the model this control added

    return SignInState.objects.get(user=user)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_typos_of_one_person_do_not_lock_out_a_colleague_at_the_same_office(behind_proxy, make_user):
    make_user(username="clerk-office", password=PASSWORD)
    typist = via_proxy(OFFICE)
    for _ in range(5):
        assert attempt(typist, "no-such-user", "wrong-password-123").status_code == 200
    colleague = via_proxy(OFFICE)
    response = attempt(colleague, "clerk-office", PASSWORD)
    assert response.status_code == 302
    assert signed_in(colleague)


def test_failures_from_the_same_proxy_address_without_a_trusted_proxy_do_not_lock_others(make_user):
    # Without ECARD_TRUSTED_PROXY_COUNT every request has the proxy's REMOTE_ADDR: the per-address
    # limit must still be high enough for one office's typos.
    make_user(username="clerk-direct", password=PASSWORD)
    typist = Client(REMOTE_ADDR=PROXY)
    for _ in range(5):
        attempt(typist, "nobody-here", "wrong-password-123")
    colleague = Client(REMOTE_ADDR=PROXY)
    assert attempt(colleague, "clerk-direct", PASSWORD).status_code == 302


def test_five_failures_lock_the_account_and_the_sign_in_page_says_how_long(behind_proxy, make_user):
    user = make_user(username="clerk-locked", password=PASSWORD)
    client = via_proxy(OFFICE)
    for _ in range(4):
        response = attempt(client, "clerk-locked", "wrong-password-123")
        assert "账户已锁定" not in response.content.decode()
    response = attempt(client, "clerk-locked", "wrong-password-123")
    assert "账户已锁定，请在 15 分钟后重试" in response.content.decode()

    # From anywhere, even with the right password.
    elsewhere = via_proxy("198.51.100.20")
    response = attempt(elsewhere, "clerk-locked", PASSWORD)
    assert response.status_code == 200
    assert not signed_in(elsewhere)
    assert "账户已锁定，请在 15 分钟后重试" in response.content.decode()
    elsewhere.cookies["django_language"] = "en"
    response = attempt(elsewhere, user.email, PASSWORD)
    assert "This account is locked. Try again in 15 minutes." in response.content.decode()

    event = AuditEvent.objects.get(action="staff.lock", object_id=str(user.pk))
    assert event.source_ip == OFFICE
    assert event.after["locked_until"]


def test_the_lock_ends_after_its_period(behind_proxy, make_user):
    user = make_user(username="clerk-waits", password=PASSWORD)
    client = via_proxy(OFFICE)
    for _ in range(5):
        attempt(client, "clerk-waits", "wrong-password-123")
    state = lock_state(user)
    assert state.locked_until is not None
    state.locked_until = timezone.now() - dt.timedelta(seconds=1)
    state.save(update_fields=["locked_until"])
    assert attempt(client, "clerk-waits", PASSWORD).status_code == 302


def test_the_lock_threshold_and_period_are_settings(behind_proxy, settings, make_user):
    settings.ECARD_SIGN_IN_MAX_FAILURES = 3
    settings.ECARD_SIGN_IN_LOCK_MINUTES = 40
    make_user(username="clerk-three", password=PASSWORD)
    client = via_proxy(OFFICE)
    for _ in range(2):
        attempt(client, "clerk-three", "wrong-password-123")
    response = attempt(client, "clerk-three", "wrong-password-123")
    assert "账户已锁定，请在 40 分钟后重试" in response.content.decode()


def test_a_successful_sign_in_starts_the_count_again(behind_proxy, make_user):
    make_user(username="clerk-counts", password=PASSWORD)
    client = via_proxy(OFFICE)
    for _ in range(4):
        attempt(client, "clerk-counts", "wrong-password-123")
    assert attempt(client, "clerk-counts", PASSWORD).status_code == 302
    client.post(reverse("account_logout"))
    for _ in range(4):
        attempt(client, "clerk-counts", "wrong-password-123")
    assert attempt(client, "clerk-counts", PASSWORD).status_code == 302


def test_an_unknown_name_answers_like_a_known_one(behind_proxy, make_user):
    """The lock message does not tell which names exist."""
    client = via_proxy(OFFICE)
    for _ in range(5):
        response = attempt(client, "ghost-user", "wrong-password-123")
    assert "账户已锁定，请在 15 分钟后重试" in response.content.decode()


def test_the_per_address_limit_uses_the_real_client_and_ignores_spoofed_entries(behind_proxy, make_user):
    make_user(username="clerk-spray", password=PASSWORD)
    attacker = "192.0.2.66"
    for number in range(30):
        # Each request claims another address on the left; the proxy's entry is the attacker's.
        attempt(via_proxy(f"198.18.0.{number}, {attacker}"), f"spray-{number}", "wrong-password-123")
    refused = via_proxy(f"198.18.1.1, {attacker}")
    response = attempt(refused, "clerk-spray", PASSWORD)
    assert not signed_in(refused)
    assert "登录失败次数过多" in response.content.decode()
    office = via_proxy(OFFICE)
    assert attempt(office, "clerk-spray", PASSWORD).status_code == 302


def test_audit_rows_carry_the_client_address_from_the_trusted_proxy(behind_proxy, make_user):
    admin = make_user(Role.REGION_ADMIN, username="admin-proxy")
    client = via_proxy("6.6.6.6, " + OFFICE)  # the left entry is the browser's own claim
    sign_in(client, admin)
    response = client.post(
        reverse("staff_create"),
        {"username": "via-proxy", "role": "clerk", "regions": ["310000"], "password": "A-long-enough-pass-7"},
    )
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="staff.create", actor_id=str(admin.pk)).source_ip == OFFICE


@pytest.mark.parametrize(
    ("count", "remote", "forwarded", "expected"),
    [
        (0, "10.0.0.2", "198.51.100.7", "10.0.0.2"),  # no trusted proxy: the header is the client's word
        (1, "10.0.0.2", "198.51.100.7", "198.51.100.7"),
        (1, "10.0.0.2", "1.1.1.1, 198.51.100.7", "198.51.100.7"),
        (2, "10.0.0.3", "1.1.1.1, 198.51.100.7, 10.0.0.2", "198.51.100.7"),
        (2, "10.0.0.3", "198.51.100.7", "198.51.100.7"),  # fewer entries than proxies: the first
        (1, "10.0.0.2", "", "10.0.0.2"),  # a request that did not come through the proxy
        (1, "10.0.0.2", "not-an-address", "10.0.0.2"),
        (1, "10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
        (1, "10.0.0.2", "198.51.100.7:5123", "198.51.100.7"),
    ],
)
def test_client_ip_takes_the_entry_the_trusted_proxy_wrote(settings, rf, count, remote, forwarded, expected):
    from portal.actors import client_ip

    settings.ECARD_TRUSTED_PROXY_COUNT = count
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


# --- Unlock by an administrator -------------------------------------------------------------


def lock(client, username: str) -> None:
    for _ in range(5):
        attempt(client, username, "wrong-password-123")


def test_an_administrator_unlocks_a_locked_clerk_in_two_steps(behind_proxy, make_user):
    clerk = make_user(Role.CLERK, ("310000",), username="clerk-unlock", password=PASSWORD)
    lock(via_proxy(OFFICE), "clerk-unlock")
    admin = make_user(Role.REGION_ADMIN, ("310000",), username="admin-unlock")
    client = via_proxy("198.51.100.9")
    sign_in(client, admin)

    listing = client.get(reverse("staff_list")).content.decode()
    assert reverse("staff_unlock", args=[clerk.pk]) in listing
    assert "已锁定" in listing

    url = reverse("staff_unlock", args=[clerk.pk])
    first = client.post(url, {"reason": "called the help desk"})
    assert first.status_code == 200
    assert first.context["step"] == "confirm"
    assert lock_state(clerk).locked_until is not None
    done = client.post(url, {"reason": "called the help desk", "confirmed": "yes"})
    assert done.status_code == 302
    assert lock_state(clerk).locked_until is None
    event = AuditEvent.objects.get(action="staff.unlock", object_id=str(clerk.pk))
    assert event.reason == "called the help desk"
    assert event.source_ip == "198.51.100.9"
    assert attempt(via_proxy(OFFICE), "clerk-unlock", PASSWORD).status_code == 302


@pytest.mark.parametrize(("role", "codes"), [(Role.CLERK, ("440000",)), (Role.REGION_ADMIN, ("310000",))])
def test_an_administrator_cannot_unlock_staff_they_do_not_manage(behind_proxy, make_user, role, codes):
    other = make_user(role, codes, username=f"other-{role}", password=PASSWORD)
    lock(via_proxy(OFFICE), other.username)
    client = Client()
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    url = reverse("staff_unlock", args=[other.pk])
    assert client.post(url, {"reason": "x", "confirmed": "yes"}).status_code == 404
    assert lock_state(other).locked_until is not None


def test_a_clerk_cannot_unlock_anyone(make_user):
    other = make_user(Role.CLERK, username="other-clerk")
    client = Client()
    sign_in(client, make_user(Role.CLERK))
    assert client.post(reverse("staff_unlock", args=[other.pk]), {"reason": "x", "confirmed": "yes"}).status_code == 403


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ECARD_IDLE_TIMEOUT_MINUTES", "0"),
        ("ECARD_SIGN_IN_MAX_FAILURES", "0"),
        ("ECARD_SIGN_IN_LOCK_MINUTES", "-5"),
        ("ECARD_TRUSTED_PROXY_COUNT", "-1"),
        ("ECARD_SIGN_IN_FAILURES_PER_IP", "many"),
    ],
)
def test_a_sign_in_setting_out_of_range_refuses_to_start(name, value):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ECARD_MODE": "test", name: value}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert name in result.stderr
