"""The portal in a real browser: staff sign in, set up TOTP, and change an e-card's state."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.models import Authenticator

from insurance.models import Certificate, CertificateState
from portal.audit import verify_chain
from portal.models import AuditEvent, Role
from testkit.browser import PASSWORD, sign_in_with_password, sign_out

pytestmark = [pytest.mark.browser]


def test_region_administrator_sets_up_totp_on_first_sign_in_and_then_signs_in_with_a_code(
    page,
    url,
    screen,
    make_user,
    totp,
):
    admin = make_user(Role.REGION_ADMIN, username="admin-browser", password=PASSWORD)

    sign_in_with_password(page, url, screen, "admin-browser", "first")
    page.goto(url("/citizens/"))
    # No screen opens before TOTP is set up; allauth first asks for the password again.
    if "/accounts/reauthenticate/" in page.url:
        screen("reauthenticate")
        page.fill("input[name=password]", PASSWORD)
        page.locator("input[name=password]").press("Enter")
        page.wait_for_load_state()
    assert "/accounts/2fa/totp/activate/" in page.url, page.url
    screen("totp-setup")

    secret = page.locator("#authenticator_secret").input_value().strip()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), "the page shows the base32 secret to type into an app"
    page.fill("input[name=code]", totp.code(secret))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()
    screen("totp-activated")
    assert Authenticator.objects.filter(user=admin, type=Authenticator.Type.TOTP).exists()

    page.goto(url("/citizens/"))
    assert page.url.endswith("/citizens/"), page.url
    page.get_by_role("heading", name="参保人").wait_for()
    screen("portal")

    sign_out(page, screen, "first")
    page.goto(url("/citizens/"))
    assert "/accounts/login/" in page.url, "signed out: the portal asks to sign in"

    totp.next_period()  # the activation's code is used: the second sign-in types the next one
    sign_in_with_password(page, url, screen, "admin-browser", "second")
    assert "/accounts/2fa/authenticate/" in page.url, "the password alone does not sign in"
    screen("second-totp-code")
    page.fill("input[name=code]", totp.code(secret))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()
    page.goto(url("/citizens/"))
    assert page.url.endswith("/citizens/"), page.url
    page.get_by_role("heading", name="参保人").wait_for()
    screen("second-portal")


def test_clerk_finds_a_citizen_by_identity_number_issues_an_e_card_and_revokes_it(
    page,
    url,
    screen,
    make_user,
    make_citizen,
):
    make_user(Role.CLERK, username="clerk-browser", password=PASSWORD)
    citizen = make_citizen("310000", name="王小明")
    make_citizen("310000", name="王小红")  # another citizen the exact search must not show

    sign_in_with_password(page, url, screen, "clerk-browser", "clerk")
    assert page.url.endswith("/citizens/"), "a clerk needs no TOTP and lands on the citizen search"
    screen("citizens")

    page.fill("input[name=q]", citizen.id_number)
    page.get_by_role("button", name="查询").click()
    page.wait_for_load_state()
    screen("search-result")
    rows = page.locator("table tbody tr")
    assert rows.count() == 1
    assert citizen.id_number not in page.content(), "the list masks the identity number"
    rows.first.get_by_role("link", name="查看").click()
    page.wait_for_url(re.compile(rf"/citizens/{citizen.pk}/$"))
    screen("citizen")
    page.get_by_text("尚未签发电子凭证。").wait_for()

    page.get_by_role("link", name="签发电子凭证").click()
    page.wait_for_url(re.compile(rf"/citizens/{citizen.pk}/issue/$"))
    screen("issue")
    page.fill("input[name=reason]", "首次申领")
    page.get_by_role("button", name="继续").click()
    page.get_by_text("请确认。").wait_for()
    screen("issue-confirm")
    assert not Certificate.objects.filter(citizen=citizen).exists(), "nothing happens before confirming"
    page.get_by_role("button", name="确认").click()
    page.wait_for_url(re.compile(rf"/citizens/{citizen.pk}/$"))
    screen("issued")

    card = Certificate.objects.get(citizen=citizen)
    assert card.state == CertificateState.PENDING_ACTIVATION
    card_panel = page.locator("section.panel", has=page.locator("strong", has_text=card.number))
    assert card_panel.locator(".badge").inner_text() == "待激活"

    card_panel.get_by_role("link", name="注销").click()
    page.wait_for_url(re.compile(rf"/citizens/cards/{card.pk}/revoke/$"))
    screen("revoke")
    page.fill("input[name=reason]", "本人申请注销")
    page.get_by_role("button", name="继续").click()
    page.get_by_text("请确认。").wait_for()
    screen("revoke-confirm")
    card.refresh_from_db()
    assert card.state == CertificateState.PENDING_ACTIVATION, "nothing happens before confirming"
    page.get_by_role("button", name="确认").click()
    page.wait_for_url(re.compile(rf"/citizens/{citizen.pk}/$"))
    screen("revoked")

    card_panel = page.locator("section.panel", has=page.locator("strong", has_text=card.number))
    assert card_panel.locator(".badge").inner_text() == "已注销"
    assert card_panel.get_by_role("link", name="注销").count() == 0, "a revoked card offers no revoke"
    card.refresh_from_db()
    assert card.state == CertificateState.REVOKED
    reasons = list(card.transitions.order_by("at").values_list("to_state", "reason"))
    assert reasons == [(CertificateState.PENDING_ACTIVATION, "首次申领"), (CertificateState.REVOKED, "本人申请注销")]
    revoked = AuditEvent.objects.get(action="certificate.revoke", object_id=card.number)
    assert (revoked.actor_label, revoked.reason) == ("clerk-browser", "本人申请注销")
    assert verify_chain() == []
