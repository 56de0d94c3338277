"""Issue 16, finding 6: signing in the first time as a role that needs TOTP, in a real browser.
No sign-up link leads to 注册关闭; the password asked again says why; the secret is shown whole;
after set-up the recovery codes lead on to the page first asked for."""

from __future__ import annotations

import re

import pytest

from portal.models import Role
from testkit.browser import PASSWORD

pytestmark = [pytest.mark.browser]


def submit(page, selector: str) -> None:
    page.locator(selector).press("Enter")
    page.wait_for_load_state()


def test_a_region_administrators_first_sign_in_explains_each_step_and_leads_on(page, url, screen, make_user, totp):
    make_user(Role.REGION_ADMIN, ("310000",), username="admin-first", password=PASSWORD)

    page.goto(url("/accounts/login/?next=/staff/"))
    screen("sign-in")
    assert page.get_by_role("link", name=re.compile("注册")).count() == 0, "sign-up is closed: no link to it"
    page.fill("input[name=login]", "admin-first")
    page.fill("input[name=password]", PASSWORD)
    submit(page, "form input[name=password]")

    assert "/accounts/reauthenticate/" in page.url, page.url
    screen("reauthenticate")
    main = page.locator("main").inner_text()
    assert "双重验证" in main and "必须" in main, main
    page.fill("input[name=password]", PASSWORD)
    submit(page, "input[name=password]")

    assert "/accounts/2fa/totp/activate/" in page.url, page.url
    screen("totp-setup")
    box = page.locator("#authenticator_secret")
    secret = box.input_value().strip()
    assert box.evaluate("(e) => e.scrollWidth <= e.clientWidth"), "the whole secret is visible"

    page.fill("input[name=code]", totp.code(secret))
    submit(page, "input[name=code]")
    screen("recovery-codes")
    page.get_by_role("link", name="继续").click()
    page.wait_for_load_state()
    assert page.url.endswith("/staff/"), page.url
