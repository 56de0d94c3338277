"""The language switch in a real browser: English chosen from the menu changes the screens and
their date formats, is remembered across page loads, new tabs and signing out and in again,
and 简体中文 can be chosen back."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.conf import settings

from testkit.browser import PASSWORD, menu_link

pytestmark = [pytest.mark.browser]

BIRTH = dt.date(1986, 3, 7)


def html_lang(page) -> str:
    return page.locator("html").get_attribute("lang")


def choose_language(page, label: str) -> None:
    """Picks the language in the top bar's select; the page's script submits the form on change."""
    with page.expect_navigation():
        page.select_option("#language-select", label=label)
    page.wait_for_load_state()


def sign_in(page, url, username: str) -> None:
    page.goto(url("/accounts/login/"))
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form input[name=password]").press("Enter")
    page.wait_for_load_state()


def sign_out(page, button: str) -> None:
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()


def birth_date_shown(page) -> str:
    return (
        page.locator("dl.facts dt", has_text=re.compile("Birth date|出生日期"))
        .locator("xpath=following-sibling::dd[1]")
        .inner_text()
        .strip()
    )


def test_english_chosen_from_the_menu_is_remembered_and_simplified_chinese_can_be_chosen_back(
    page,
    url,
    screen,
    make_user,
    make_citizen,
):
    make_user(username="clerk-language", password=PASSWORD)
    citizen = make_citizen("310000", name="王小明", birth=BIRTH, with_card=True)

    page.goto(url("/accounts/login/"))
    assert html_lang(page) == "zh-Hans", "Chinese first, although the browser is Chinese anyway"
    assert page.locator("#language-select").input_value() == "zh-hans"
    screen("sign-in-zh")

    # The switch is on the sign-in page too, and brings the person back to the page they were on.
    choose_language(page, "English")
    assert page.url.endswith("/accounts/login/"), page.url
    assert html_lang(page) == "en"
    screen("sign-in-en")
    cookie = next(c for c in page.context.cookies() if c["name"] == settings.LANGUAGE_COOKIE_NAME)
    assert cookie["value"] == "en"
    assert cookie["expires"] > time.time() + 360 * 24 * 3600, "remembered for a year, not for the session"

    sign_in(page, url, "clerk-language")
    assert page.url.endswith("/citizens/"), page.url
    page.get_by_role("heading", name="Citizens").wait_for()
    assert menu_link(page, "Family bindings", exact=True).count() == 1
    screen("citizens-en")

    page.goto(url(f"/citizens/{citizen.pk}/"))
    assert html_lang(page) == "en"
    assert birth_date_shown(page) == "7 Mar 1986"
    screen("citizen-en")

    second_tab = page.context.new_page()
    try:
        second_tab.goto(url("/catalogue/services/"))
        assert html_lang(second_tab) == "en", "a new tab of the same browser is in English too"
    finally:
        second_tab.close()

    sign_out(page, "Sign out")
    assert "/accounts/login/" in page.url, page.url
    assert html_lang(page) == "en", "signing out keeps the language"
    screen("signed-out-en")
    sign_in(page, url, "clerk-language")
    page.get_by_role("heading", name="Citizens").wait_for()
    screen("signed-in-again-en")

    page.goto(url(f"/citizens/{citizen.pk}/"))
    choose_language(page, "简体中文")
    assert page.url.endswith(f"/citizens/{citizen.pk}/"), "the switch returns to the same screen"
    assert html_lang(page) == "zh-Hans"
    assert birth_date_shown(page) == "1986-03-07"
    assert menu_link(page, "参保人", exact=True).count() == 1
    screen("citizen-zh")

    page.goto(url("/citizens/"))
    page.get_by_role("heading", name="参保人").wait_for()
    assert page.get_by_role("button", name="退出登录").count() == 1
    screen("citizens-zh")
