"""Steps the browser tests share: choosing the language, signing in and out through the screens,
and TOTP codes from a frozen clock; axe-core on every screen, and the contrast of a control."""

import re
from pathlib import Path

from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.conf import settings

PASSWORD = "correct-horse-battery-9"  # the test users' password (tests/conftest.py make_user)

# The portal's two languages, as the language cookie holds them, and as <html lang> says them.
LANGUAGES = ("zh-hans", "en")
HTML_LANG = {"zh-hans": "zh-Hans", "en": "en"}


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


def use_language(page, url, language: str) -> None:
    """The language a person chose earlier (the switch in the top bar sets this cookie; its own
    test is tests/browser/test_language.py), for every page the browser opens next."""
    page.context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": url("/")}])


def sign_in_with_password(page, url, screen, username: str, step: str, language: str = "zh-hans") -> None:
    """Signs in on the sign-in page in `language` (the portal's default, Simplified Chinese, unless
    told otherwise); a role that needs TOTP is then on the code page (`sign_in_with_totp`)."""
    if language != "zh-hans":
        use_language(page, url, language)
    page.goto(url("/accounts/login/"))
    assert page.locator("html").get_attribute("lang") == HTML_LANG[language]
    screen(f"{step}-sign-in")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form input[name=password]").press("Enter")
    page.wait_for_load_state()


def activate_totp(user) -> str:
    """Sets up an authenticator for the user, as the first sign-in would; returns its secret."""
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def enter_totp_code(page, code: str) -> None:
    page.fill("input[name=code]", code)
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()


def sign_in_with_totp(page, url, screen, totp, user, step: str, language: str = "zh-hans") -> None:
    """Signs in a user whose role needs TOTP and who has none yet: an authenticator is set up for
    them, then the password and the code of the `totp` fixture's frozen clock are typed."""
    secret = activate_totp(user)
    sign_in_with_password(page, url, screen, user.username, step, language)
    page.locator("input[name=code]").wait_for()
    screen(f"{step}-totp-code")
    enter_totp_code(page, totp.code(secret))


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


# The WCAG contrast ratio of an element's text against the first opaque background behind it.
CONTRAST = """(element) => {
  const rgb = (value) => value.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const [R, G, B] = [r, g, b].map((c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  let node = element, background = null;
  while (node) {
    const colour = rgb(getComputedStyle(node).backgroundColor);
    if (colour.length < 4 || colour[3] > 0) { background = colour; break; }
    node = node.parentElement;
  }
  background = background || [255, 255, 255];
  const [a, b] = [luminance(rgb(getComputedStyle(element).color)), luminance(background)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def contrast_ratio(locator) -> float:
    """The WCAG contrast ratio of the element's text (4.5:1 at least for normal text, WCAG 1.4.3)."""
    return locator.evaluate(CONTRAST)


def menu_link(page, name: str, exact: bool = False):
    """The main menu's link `name`, its menu opened first (the links sit in closed <details>)."""
    nav = page.get_by_role("navigation", name=re.compile("主菜单|Main menu"))
    menu = nav.locator("details").filter(has=page.get_by_role("link", name=name, exact=exact, include_hidden=True))
    if menu.get_attribute("open") is None:
        menu.locator("summary").click()
    return nav.get_by_role("link", name=name, exact=exact)
