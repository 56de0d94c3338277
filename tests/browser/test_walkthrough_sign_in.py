"""Issue 16, finding 6: signing in the first time as a role that needs TOTP, in a real browser, in
Simplified Chinese and in English. No sign-up link leads to 注册关闭; the password asked again says
why; the secret is shown whole; after set-up the recovery codes lead on to the page first asked for."""

from __future__ import annotations

import re

import pytest

from portal.models import Role
from testkit.browser import HTML_LANG, LANGUAGES, PASSWORD, use_language

pytestmark = [pytest.mark.browser]


def submit(page, selector: str) -> None:
    page.locator(selector).press("Enter")
    page.wait_for_load_state()


# What each language says: the sign-up link that is gone, why the password is asked again, the way on.
WORDS = {
    "zh-hans": {"sign_up": "注册", "why": ("双重验证", "必须"), "continue": "继续"},
    "en": {"sign_up": "Sign up", "why": ("two-factor authentication", "must"), "continue": "Continue"},
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_region_administrators_first_sign_in_explains_each_step_and_leads_on(
    page, url, screen, make_user, totp, language
):
    words = WORDS[language]
    make_user(Role.REGION_ADMIN, ("310000",), username="admin-first", password=PASSWORD)

    use_language(page, url, language)
    page.goto(url("/accounts/login/?next=/staff/"))
    assert page.locator("html").get_attribute("lang") == HTML_LANG[language]
    screen("sign-in")
    sign_up = page.get_by_role("link", name=re.compile(words["sign_up"], re.IGNORECASE))
    assert sign_up.count() == 0, "sign-up is closed: no link to it"
    page.fill("input[name=login]", "admin-first")
    page.fill("input[name=password]", PASSWORD)
    submit(page, "form input[name=password]")

    assert "/accounts/reauthenticate/" in page.url, page.url
    screen("reauthenticate")
    main = page.locator("main").inner_text()
    assert all(word in main for word in words["why"]), main
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
    page.get_by_role("link", name=words["continue"], exact=True).click()
    page.wait_for_load_state()
    assert page.url.endswith("/staff/"), page.url
