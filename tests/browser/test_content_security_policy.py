"""The main screens in Chromium under the portal's Content-Security-Policy: not one violation
(an inline script, style or handler the policy would block, or an asset from elsewhere), and an
export is a form's POST that downloads its file."""

from __future__ import annotations

import csv
import io

import pytest

from portal.models import AuditEvent, Role
from testkit.browser import PASSWORD, sign_in_with_password

pytestmark = [pytest.mark.browser]

# Chromium reports each blocked resource twice: as a `securitypolicyviolation` event in the page
# (kept by this script, which Playwright adds before any of the page's own) and on the console.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " blocked " + (event.blockedURI || "inline"));
  document.documentElement.setAttribute("data-csp-violation", event.violatedDirective);
});
"""


def _watch(page) -> list[str]:
    console: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda message: console.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return console


def _violations(page, console: list[str]) -> list[str]:
    return console + page.evaluate("window.__cspViolations || []")


def _reach_totp_setup(page, url, path: str) -> None:
    """A role that needs TOTP is sent to set it up (after its password again) from any screen."""
    page.goto(url(path))
    if "/accounts/reauthenticate/" in page.url:
        page.fill("input[name=password]", PASSWORD)
        page.locator("input[name=password]").press("Enter")
        page.wait_for_load_state()
    assert "/accounts/2fa/totp/activate/" in page.url, page.url


def _set_up_totp(page, totp) -> None:
    page.fill("input[name=code]", totp.code(page.locator("#authenticator_secret").input_value().strip()))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()


def test_the_main_screens_run_under_the_policy_without_a_violation(page, url, screen, make_user, make_citizen, totp):
    console = _watch(page)
    make_user(Role.REGION_ADMIN, ("310000",), username="admin-csp", password=PASSWORD)
    citizen = make_citizen("310000", name="王小明", with_card=True)
    seen: dict[str, list[str]] = {}

    sign_in_with_password(page, url, screen, "admin-csp", "csp")
    seen["sign-in"] = _violations(page, console)
    _reach_totp_setup(page, url, "/dashboard/")
    screen("totp-setup")
    assert page.locator("main img").first.evaluate("img => img.complete && img.naturalWidth > 0"), "the QR code shows"
    seen["totp-setup"] = _violations(page, console)
    _set_up_totp(page, totp)

    for name, path in (
        ("dashboard", "/dashboard/"),
        ("citizen-list", "/citizens/"),
        ("citizen-detail", f"/citizens/{citizen.pk}/"),
        ("imports", "/citizens/imports/"),
        ("import-upload", "/citizens/imports/new/"),
        ("not-found", "/no-such-screen/"),
    ):
        console.clear()
        page.goto(url(path))
        page.wait_for_load_state("networkidle")
        screen(name)
        seen[name] = _violations(page, console)
        # The stylesheet applied: the top bar is not the browser's default transparent block.
        assert page.locator("header.topbar").evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"

    assert {name: found for name, found in seen.items() if found} == {}

    # The policy is in force and this test would see a violation: an injected handler is blocked.
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', '<img src=\"/static/none.png\" onerror=\"window.__ran = 1\">')"
    )
    # (A selector, not wait_for_function: its predicate is evaluated with eval(), which the CSP forbids.)
    page.wait_for_selector("html[data-csp-violation]", state="attached")
    assert page.evaluate("window.__ran === undefined")


def test_an_export_is_a_posted_form_that_downloads_the_list(page, url, screen, make_user, make_citizen, totp):
    make_user(Role.AUDITOR, ("310000",), username="auditor-csp", password=PASSWORD)
    citizen = make_citizen("310000", name="王小明")
    sign_in_with_password(page, url, screen, "auditor-csp", "export")
    _reach_totp_setup(page, url, "/citizens/")
    _set_up_totp(page, totp)
    page.goto(url("/citizens/?region=310000"))
    before = AuditEvent.objects.filter(action="list.export").count()
    screen("citizen-list")
    with page.expect_download() as download_info:
        page.locator("form.export-buttons button[value=csv]").click()
    rows = list(csv.reader(io.StringIO(open(download_info.value.path(), encoding="utf-8-sig").read())))
    assert citizen.id_number_masked in {value for row in rows[1:] for value in row}
    assert AuditEvent.objects.filter(action="list.export").count() == before + 1
