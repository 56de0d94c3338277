"""A new auditor's first sign-in in a real browser: the administrator's initial password is changed
first, then the person who chose the new one enrols TOTP. The browser fetches its favicon and the
set-up page is reloaded on the way; the code from the first QR code still works."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator

from portal import services
from portal.actors import Actor
from portal.models import AuditEvent, Role, User

pytestmark = [pytest.mark.browser]

INITIAL = "Initial-pass-2026"
CHOSEN = "Chosen-by-me-2026"


def submit(page, selector: str) -> None:
    page.locator(selector).press("Enter")
    page.wait_for_load_state()


def test_a_new_auditor_changes_the_initial_password_then_enrols_totp(page, url, screen, regions, make_user, totp):
    operator = make_user(Role.NATIONAL_OPERATOR, ("310000",), username="operator-first")
    auditor = services.staff_create(
        actor=Actor.for_user(operator),
        manager=operator,
        username="auditor-first",
        email="auditor-first@example.cn",
        role=Role.AUDITOR,
        regions=[regions["310000"]],
        password=INITIAL,
    )
    favicon_requests: list[int] = []
    page.on("response", lambda r: favicon_requests.append(r.status) if r.url.endswith("/favicon.svg") else None)

    page.goto(url("/accounts/login/"))
    page.fill("input[name=login]", "auditor-first")
    page.fill("input[name=password]", INITIAL)
    submit(page, "form input[name=password]")
    page.goto(url("/audit/"))
    assert "/accounts/password/change/" in page.url, "the initial password is changed before anything else"
    assert page.locator(".messages").inner_text().strip() == "请先设置您自己的密码，然后继续。"
    screen("forced-change")

    page.fill("input[name=oldpassword]", INITIAL)
    page.fill("input[name=password1]", CHOSEN)
    page.fill("input[name=password2]", CHOSEN)
    submit(page, "input[name=password2]")
    # Then TOTP: allauth asks for the password again, the one the person just chose.
    assert "/accounts/reauthenticate/" in page.url, page.url
    screen("reauthenticate")
    page.fill("input[name=password]", CHOSEN)
    submit(page, "input[name=password]")
    assert "/accounts/2fa/totp/activate/" in page.url, page.url
    screen("totp-setup")
    secret = page.locator("#authenticator_secret").input_value().strip()

    page.reload()  # a reload, or a second tab, keeps the secret being scanned
    page.wait_for_load_state()
    assert page.locator("#authenticator_secret").input_value().strip() == secret
    assert favicon_requests and all(status == 200 for status in favicon_requests), favicon_requests

    page.fill("input[name=code]", totp.code(secret))
    submit(page, "input[name=code]")
    screen("totp-activated")
    assert Authenticator.objects.filter(user=auditor, type=Authenticator.Type.TOTP).exists()

    page.goto(url("/audit/"))
    assert page.url.endswith("/audit/"), page.url
    screen("audit-log")
    assert User.objects.get(pk=auditor.pk).check_password(CHOSEN)
    assert AuditEvent.objects.filter(action="staff.password_change", object_id=str(auditor.pk)).exists()
