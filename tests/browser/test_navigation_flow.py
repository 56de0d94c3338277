"""The main menu at 1366 x 768: four groups on one row in Chinese and in English, each opened by
a click (and closed by Escape), with the count of pending family bindings on the group and its
link."""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from portal.models import Role
from testkit.bindings import bind, link, make_wallet, register
from testkit.browser import PASSWORD, menu_link, sign_in_with_password

pytestmark = [pytest.mark.browser]


def menu_rows(page) -> int:
    """How many rows the menu's group titles sit on (a title's row: its vertical middle)."""
    return page.evaluate(
        """new Set([...document.querySelectorAll('.mainnav summary')].map((s) => {
            const box = s.getBoundingClientRect();
            return Math.round((box.top + box.bottom) / 2 / 20);
        })).size"""
    )


def test_operator_menu_is_four_groups_on_one_row_with_what_waits(page, url, screen, make_user, regions, totp):
    operator = make_user(Role.NATIONAL_OPERATOR, (), username="operator-menu", password=PASSWORD)
    secret = generate_totp_secret()
    TOTP.activate(operator, secret)
    partner = make_wallet("wechat")
    holder, _ = register(regions, "310000", name="王小明")
    _, beneficiary_id = register(regions, "440000", name="李四")
    bind(partner, link(partner, holder), beneficiary_id)

    sign_in_with_password(page, url, screen, "operator-menu", "operator")
    page.fill("input[name=code]", totp.code(secret))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()
    page.goto(url("/citizens/"))
    summaries = page.locator(".mainnav summary")
    assert [s.split(" ")[0] for s in summaries.all_inner_texts()] == [
        "参保人与电子凭证",
        "结算与基金",
        "合作方",
        "系统管理",
    ]
    assert menu_rows(page) == 1
    assert page.evaluate("document.querySelector('.topbar').getBoundingClientRect().height") < 60
    assert summaries.first.locator(".count").inner_text() == "1"
    bindings = menu_link(page, "亲情账户")
    assert bindings.is_visible() and bindings.locator(".count").inner_text() == "1"
    assert page.locator(".mainnav details[open]").count() == 1
    screen("menu-open-zh")
    menu_link(page, "投递监控")
    assert page.locator(".mainnav details[open]").count() == 1, "opening one menu closes the other"
    page.keyboard.press("Escape")
    assert page.locator(".mainnav details[open]").count() == 0

    with page.expect_navigation():
        page.select_option("#language-select", label="English")
    page.wait_for_load_state()
    assert menu_rows(page) == 1
    assert page.evaluate("document.querySelector('.topbar').getBoundingClientRect().height") < 60
    menu_link(page, "Family bindings").click()
    page.wait_for_url("**/partners/family-bindings/")
    screen("bindings-en")


STYLE = "(el) => { const s = getComputedStyle(el); return [s.borderTopWidth, s.borderTopColor, s.paddingLeft, s.borderRadius]; }"


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_badges_and_dates_stay_on_one_line_and_number_inputs_look_like_the_others(
    page, url, screen, make_user, make_citizen, language
):
    make_user(Role.CLERK, ("310000",), username="clerk-layout", password=PASSWORD)
    make_citizen("310000", with_card=True)
    sign_in_with_password(page, url, screen, "clerk-layout", "clerk", language)
    page.goto(url("/citizens/?q=&region=310000"))
    badge = page.locator("td .badge").first
    badge.wait_for()
    assert badge.evaluate("(el) => getComputedStyle(el).whiteSpace") == "nowrap"
    # Even squeezed into a column far too narrow for it, a badge keeps one line.
    badge.evaluate("(el) => { el.parentElement.style.width = '1px'; }")
    assert badge.evaluate("(el) => el.getBoundingClientRect().height") < 30
    screen("citizens")

    page.goto(url("/catalogue/policies/"))
    year = page.locator("form.filters input[type=number]").first
    other = page.locator("form.filters select").first
    assert year.evaluate(STYLE) == other.evaluate(STYLE)
    screen("policies")
