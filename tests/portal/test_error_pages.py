"""400, 403, 404 and 500 are the portal's own pages, in the chosen language (Chinese first), with
a way back home; the 500 page renders with no context and no database. The demo never shows
Django's debug pages (they list every URL pattern)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from portal.models import Role
from testkit.screens import sign_in

ROOT = Path(__file__).resolve().parents[2]

# (status, Chinese title, English title)
TITLES = {
    400: ("请求无效", "Bad request"),
    403: ("无权访问", "Access denied"),
    404: ("页面不存在", "Page not found"),
    500: ("系统出错", "Something went wrong"),
}


def _check(response, status: int, language: str) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    zh, en = TITLES[status]
    assert (zh if language == "zh-hans" else en) in page
    assert (en if language == "zh-hans" else zh) not in page
    assert f'href="{reverse("home")}"' in page, "a way back home"
    assert 'class="topbar"' in page, "inside the portal's layout"
    for debug in ("Django", "URLconf", "Traceback", "urlpatterns"):
        assert debug not in page
    return page


def _client(language: str, **kwargs) -> Client:
    client = Client(**kwargs)
    if language == "en":
        client.cookies["django_language"] = "en"
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_an_unknown_address_answers_the_translated_404_page(make_user, language):
    client = _client(language)
    sign_in(client, make_user(Role.CLERK))
    _check(client.get("/citizens/no-such-page/"), 404, language)
    _check(_client(language).get("/no-such-page/"), 404, language)  # signed out too


@pytest.mark.django_db
def test_the_404_page_does_not_echo_markup_from_the_address(make_user):
    client = _client("en")
    response = client.get("/%3Cscript%3Ealert(1)%3C/script%3E/")
    page = _check(response, 404, "en")
    assert "<script>alert" not in page


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_a_refused_screen_answers_the_translated_403_page(make_user, language):
    client = _client(language)
    sign_in(client, make_user(Role.CLERK))
    _check(client.get(reverse("audit_list")), 403, language)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_a_form_without_its_csrf_token_answers_the_translated_403_page(make_user, language):
    client = _client(language, enforce_csrf_checks=True)
    sign_in(client, make_user(Role.CLERK))
    _check(client.post(reverse("citizen_register"), {"name": "x"}), 403, language)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_a_bad_request_answers_the_translated_400_page(language):
    _check(_client(language).get(reverse("account_login"), HTTP_HOST="portal.evil.example"), 400, language)


@pytest.mark.urls("tests.portal.error_urls")
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_a_failing_view_answers_the_translated_500_page_without_the_database(language):
    """No `db` fixture: pytest-django refuses any query, so the page (and the way to it) uses none."""
    _check(_client(language, raise_request_exception=False).get("/tests/fails/"), 500, language)


def test_the_demo_settings_have_debug_off():
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    env.update(ECARD_MODE="demo", DATABASE_URL="postgres://demo@127.0.0.1/ecard", REDIS_URL="redis://127.0.0.1/0")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; from django.conf import settings; django.setup(); print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "False", result.stderr
