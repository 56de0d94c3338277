"""A security officer (with TOTP) signs in, lands on the portal's signing keys, sees a menu
without citizens or the audit log, rotates the key and activates it after confirming each step;
partners' API then publishes the new key as active (separation of duties, DESIGN §2)."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from payments import keys
from payments.models import PortalKey, PortalKeyState
from portal.actors import Actor
from portal.audit import verify_chain
from portal.models import AuditEvent, Role
from testkit.browser import PASSWORD, sign_in_with_password

pytestmark = [pytest.mark.browser]


@pytest.fixture
def first_key(transactional_db):
    keys._forget_cached_key()
    key = keys.portal_key_create(actor=Actor.system("tests"))
    yield key
    keys._forget_cached_key()


def test_security_officer_rotates_the_signing_key_on_the_screen(page, url, screen, make_user, first_key, totp):
    officer = make_user(Role.SECURITY_OFFICER, (), username="security-browser", password=PASSWORD)
    secret = generate_totp_secret()
    TOTP.activate(officer, secret)

    sign_in_with_password(page, url, screen, "security-browser", "officer")
    assert "/accounts/2fa/authenticate/" in page.url, "a security officer needs the TOTP code"
    page.fill("input[name=code]", totp.code(secret))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_url(re.compile(r"/partners/signing-keys/$"))
    screen("keys")
    menu = page.get_by_role("navigation").text_content() or ""
    assert "平台签名密钥" in menu and "合作方" in menu
    for not_theirs in ("参保人", "审计日志", "工作人员", "数据看板", "结算"):
        assert not_theirs not in menu, not_theirs
    assert first_key.key_id in page.locator("table").inner_text()

    page.get_by_role("link", name="轮换", exact=True).click()
    page.wait_for_url(re.compile(r"/signing-keys/rotate/$"))
    page.get_by_role("button", name="继续").click()
    page.get_by_text("请确认。").wait_for()
    screen("rotate-confirm")
    assert PortalKey.objects.count() == 1, "nothing happens before confirming"
    page.get_by_role("button", name="确认").click()
    page.wait_for_url(re.compile(r"/partners/signing-keys/$"))
    nxt = PortalKey.objects.get(state=PortalKeyState.NEXT)
    assert nxt.key_id in page.locator("table").inner_text()
    screen("rotated")

    page.get_by_role("link", name="启用下一把密钥").click()
    page.get_by_role("button", name="继续").click()
    page.get_by_text("请确认。").wait_for()
    page.get_by_role("button", name="确认").click()
    page.wait_for_url(re.compile(r"/partners/signing-keys/$"))
    screen("activated")
    assert PortalKey.objects.get(pk=nxt.pk).state == PortalKeyState.ACTIVE
    assert PortalKey.objects.get(pk=first_key.pk).state == PortalKeyState.RETIRED
    actions = set(AuditEvent.objects.filter(actor_label="security-browser").values_list("action", flat=True))
    assert {"portal_key.create", "portal_key.activate", "portal_key.retire"} <= actions

    published = page.request.get(url("/api/v1/keys")).json()
    assert {k["key_id"]: k["state"] for k in published["keys"]}[nxt.key_id] == "active"
    assert page.goto(url("/audit/")).status == 403
    assert page.goto(url("/citizens/")).status == 403
    assert verify_chain() == []
