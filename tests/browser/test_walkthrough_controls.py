"""Issue 16, finding 1: the 筛选 button of the settlement list and the risk queue is readable
(it was white on white, the sign-out button's style of the top bar)."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from portal.models import Role
from testkit.browser import PASSWORD, sign_in_with_password

pytestmark = [pytest.mark.browser]

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


def test_the_filter_button_of_settlements_and_risk_reads_against_its_background(page, url, screen, make_user, totp):
    admin = make_user(Role.REGION_ADMIN, ("310000",), username="filter-browser", password=PASSWORD)
    secret = generate_totp_secret()
    TOTP.activate(admin, secret)
    sign_in_with_password(page, url, screen, "filter-browser", "filter")
    page.fill("input[name=code]", totp.code(secret))
    page.locator("input[name=code]").press("Enter")
    page.wait_for_load_state()
    for path, step in (("/partners/settlements/", "settlements"), ("/partners/risk/", "risk")):
        page.goto(url(path))
        screen(step)
        button = page.get_by_role("button", name=re.compile("^筛选$"))
        ratio = button.evaluate(CONTRAST)
        assert ratio >= 4.5, f"{path}: the 筛选 button's contrast is {ratio:.2f}:1"
