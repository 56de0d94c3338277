"""Steps the browser tests share: signing in and out through the screens, and TOTP codes from a
frozen clock."""

from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

PASSWORD = "correct-horse-battery-9"  # the test users' password (tests/conftest.py make_user)


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


def sign_in_with_password(page, url, screen, username: str, step: str) -> None:
    page.goto(url("/accounts/login/"))
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    screen(f"{step}-sign-in")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form input[name=password]").press("Enter")
    page.wait_for_load_state()


def sign_out(page, screen, step: str) -> None:
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_load_state()
    if "/accounts/logout/" in page.url:  # allauth asks for confirmation when signing out by GET
        screen(f"{step}-sign-out")
        page.locator("main form button[type=submit], form[action$='/accounts/logout/'] button").first.click()
        page.wait_for_load_state()
    screen(f"{step}-signed-out")
