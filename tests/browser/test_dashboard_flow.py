"""An administrator signs in with a TOTP code and reads the region dashboard at 1366 x 768."""

from __future__ import annotations

import datetime as dt

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from backoffice.dashboards.rollups import rollups_rebuild
from insurance import services as insurance_services
from portal.models import Role
from testkit.browser import PASSWORD, sign_in_with_password
from testkit.screens import make_partner

pytestmark = [pytest.mark.browser]


def test_region_administrator_signs_in_with_totp_and_reads_the_dashboard(
    page,
    url,
    screen,
    make_user,
    make_citizen,
    system_actor,
    totp,
):
    admin = make_user(Role.REGION_ADMIN, ("310000",), username="admin-dashboard", password=PASSWORD)
    secret = generate_totp_secret()
    TOTP.activate(admin, secret)
    make_partner()
    for birth_year in (1930, 1950, 1990):
        make_citizen("310000", with_card=True, birth=dt.date(birth_year, 6, 1))
    revoked = make_citizen("310000", with_card=True)
    insurance_services.certificate_revoke(actor=system_actor, certificate=revoked.current_certificate(), reason="test")
    make_citizen("440000", with_card=True)  # another region: not on this administrator's dashboard
    rollups_rebuild()

    sign_in_with_password(page, url, screen, "admin-dashboard", "admin")
    assert "/accounts/2fa/authenticate/" in page.url, "an administrator needs the TOTP code too"
    page.fill("input[name=code]", totp.code(secret))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()
    page.goto(url("/"))
    assert page.url.endswith("/dashboard/"), "administrators start on the dashboard"
    page.locator("[data-metric=active-citizens]").wait_for()
    assert page.locator("[data-metric=active-citizens]").inner_text() == "4"
    assert page.locator("[data-card-state=revoked]").inner_text() == "1"
    assert page.locator("svg.chart").count() >= 4
    # At 1366 px the page does not scroll sideways: the charts fit their columns.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screen("dashboard")

    page.goto(url("/dashboard/440000/"))
    assert page.locator("[data-metric=active-citizens]").count() == 0, "another region answers 404"
    page.goto(url("/dashboard/310000/"))
    page.locator("[data-metric=active-citizens]").wait_for()
    screen("dashboard-region")
