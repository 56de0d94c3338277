"""Steps the browser tests share: signing in and out through the screens, and TOTP codes from a
frozen clock; axe-core on every screen."""

import re
from pathlib import Path

from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.conf import settings

PASSWORD = "correct-horse-battery-9"  # the test users' password (tests/conftest.py make_user)
HTML_LANG = {"zh-hans": "zh-Hans", "en": "en"}  # <html lang> of each of settings.LANGUAGES


class TotpClock:
    """The clock allauth's TOTP check reads (`time.time()` in allauth.mfa.totp.internal.auth), frozen.

    The browser tests' `totp` fixture puts it in place of that module's `time` for the live
    server, which runs in a thread of the test process. A code is then valid for as long as the
    test needs it, and `next_period()` moves on as an authenticator app does after a period: a
    second sign-in types another code, while allauth's refusal of a used code stays as it is.
    """

    def __init__(self, now: float) -> None:
        self.now = float(now)

    def time(self) -> float:
        return self.now

    def next_period(self) -> None:
        self.now += mfa_settings.TOTP_PERIOD

    def code(self, secret: str) -> str:
        """The code an authenticator app shows for this secret at the frozen time (RFC 6238,
        allauth's helpers)."""
        return format_hotp_value(hotp_value(secret, int(self.now) // mfa_settings.TOTP_PERIOD))


def sign_in_with_password(page, url, screen, username: str, step: str, language: str = "zh-hans") -> None:
    """Signs in on the sign-in page in `language` (a code of settings.LANGUAGES), chosen as the
    language switch does: by the language cookie."""
    page.context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": url("/")}])
    page.goto(url("/accounts/login/"))
    assert page.locator("html").get_attribute("lang") == HTML_LANG[language]
    screen(f"{step}-sign-in")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form input[name=password]").press("Enter")
    page.wait_for_load_state()


def enter_totp_code(page, screen, code: str, step: str) -> None:
    """The second step of an administrator's sign-in: the authenticator app's code."""
    page.locator("input[name=code]").wait_for()
    screen(f"{step}-totp-code")
    page.fill("input[name=code]", code)
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()


def sign_out(page, screen, step: str) -> None:
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_load_state()
    if "/accounts/logout/" in page.url:  # allauth asks for confirmation when signing out by GET
        screen(f"{step}-sign-out")
        page.locator("main form button[type=submit], form[action$='/accounts/logout/'] button").first.click()
        page.wait_for_load_state()
    screen(f"{step}-signed-out")


AXE_SCRIPT = Path(__file__).resolve().parents[1] / "node_modules" / "axe-core" / "axe.min.js"
AXE_MISSING_REASON = (
    "axe-core is not installed: run `npm ci --no-audit --no-fund` at the repository root (bin/test does)"
)
BLOCKING_IMPACTS = ("serious", "critical")


def check_accessibility(page, where: str = "") -> None:
    """Runs axe-core (node_modules/axe-core, pinned in package-lock.json) on the page and fails on
    any serious or critical violation, listing each rule and the elements it found.

    The script is evaluated through the DevTools protocol rather than added as a <script> element:
    the portal's Content-Security-Policy (script-src 'self') would block an inline element and
    report a violation that tests/browser/test_content_security_policy.py counts, and a context
    with bypass_csp would stop those tests from seeing the real policy.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8") + "\n;undefined")
    results = page.evaluate(
        """async () => {
            const result = await window.axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.target.join(" ") + " — " + n.failureSummary.replace(/\\s+/g, " ")),
            }));
        }"""
    )
    blocking = [v for v in results if v["impact"] in BLOCKING_IMPACTS]
    if blocking:
        lines = [f"axe-core: {len(blocking)} serious or critical violation(s) on {where or page.url}:"]
        for violation in blocking:
            lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
            lines.extend(f"    {node}" for node in violation["nodes"][:10])
        raise AssertionError("\n".join(lines))


def menu_link(page, name: str, exact: bool = False):
    """The main menu's link `name`, its menu opened first (the links sit in closed <details>)."""
    nav = page.get_by_role("navigation", name=re.compile("主菜单|Main menu"))
    menu = nav.locator("details").filter(has=page.get_by_role("link", name=name, exact=exact, include_hidden=True))
    if menu.get_attribute("open") is None:
        menu.locator("summary").click()
    return nav.get_by_role("link", name=name, exact=exact)
