"""The screens carry a Content-Security-Policy with no inline script, a Referrer-Policy and a
Permissions-Policy; the partner API's answers do not need them and stay as they were."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from portal.models import Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {part.split()[0]: " ".join(part.split()[1:]) for part in policy.split(";") if part.strip()}


def test_the_sign_in_page_forbids_inline_script_and_framing(client):
    response = client.get(reverse("account_login"))
    assert response.status_code == 200
    policy = _directives(response)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'self'"
    assert policy["form-action"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "same-origin"
    permissions = response.headers["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment"):
        assert f"{feature}=()" in permissions


@pytest.mark.parametrize("role", [Role.CLERK, Role.REGION_ADMIN])
def test_signed_in_screens_and_the_not_found_page_carry_the_policy(client, make_user, make_citizen, role):
    citizen = make_citizen("310000")
    sign_in(client, make_user(role, ("310000",)))
    for path in (
        reverse("home"),
        reverse("citizen_search"),
        reverse("citizen_detail", args=[citizen.pk]),
        reverse("import_list"),
        "/no-such-screen/",
    ):
        response = client.get(path, follow=True)
        assert "script-src 'self'" in response.headers["Content-Security-Policy"], path
        assert response.headers["Referrer-Policy"] == "same-origin", path


def test_partner_api_answers_carry_no_screen_policy_and_still_work(portal_key):
    client = Client()
    problem = client.get("/api/v1/no-such-endpoint")
    assert problem.status_code in (401, 404)
    assert problem.headers["Content-Type"].startswith("application/problem+json")
    assert "Content-Security-Policy" not in problem.headers
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert "Content-Security-Policy" not in docs.headers


INLINE = [
    (re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"<style[\s>]", re.I), "<style> element"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_no_template_holds_inline_script_or_style():
    """What the policy forbids is kept out of the templates in the first place."""
    offenders = [
        f"{path.relative_to(TEMPLATES)}: {what}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for pattern, what in INLINE
        if pattern.search(path.read_text())
    ]
    assert not offenders, "\n".join(offenders)
