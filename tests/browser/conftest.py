"""Real-browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

Chromium cannot be downloaded here, so Playwright launches the system browser at
/usr/bin/chromium; without it the tests marked `browser` are skipped with the way
to install it. Every screen a test visits is saved to `screenshots/<test>-<step>.png`
at the repository root and checked by axe-core (testkit.browser.check_accessibility): a serious or
critical violation fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.core.cache import cache

from testkit.browser import AXE_MISSING_REASON, AXE_SCRIPT, check_accessibility
from testkit.processes import CeleryWorker, database_url_for_current_connection

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1366, "height": 768}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
MISSING_REASON = f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium fonts-noto-cjk`"

_PLAYWRIGHT_REASON = (
    "" if importlib.util.find_spec("playwright") else ("Playwright is not installed: `pip install -r requirements.txt`")
)


def _skip_reason() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return MISSING_REASON
    if not AXE_SCRIPT.is_file():
        return AXE_MISSING_REASON
    return _PLAYWRIGHT_REASON


def pytest_report_header(config) -> str | None:
    reason = _skip_reason()
    return f"browser tests: skipped ({reason})" if reason else None


def pytest_collection_modifyitems(config, items) -> None:
    """Browser tests run last (see `browser`), or are skipped when Chromium is missing."""
    reason = _skip_reason()
    in_browser = [item for item in items if item.get_closest_marker("browser")]
    if reason:
        for item in in_browser:
            item.add_marker(pytest.mark.skip(reason=reason))
        return
    items[:] = [item for item in items if not item.get_closest_marker("browser")] + in_browser


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test, so that `page` can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser(django_db_setup):
    """One headless Chromium for the session.

    Playwright's sync API keeps an asyncio loop running in the main thread while it is
    started, and Django then refuses ORM calls from that thread ("async-unsafe") although
    the tests are plain synchronous code. So the test database is created first, the guard
    is lifted only while Playwright runs, and the browser tests run last (see
    `pytest_collection_modifyitems`) so that no other test runs beside that loop.
    """
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server, request) -> Iterator:
    """A fresh browser context (no cookies) with a 1366x768 page; the language is the
    portal's default (Simplified Chinese) whatever the browser asks for. When the test
    fails, the screen it was on is saved as `<test>-failed.png`."""
    cache.clear()  # sign-in rate limits and used TOTP codes live in the cache
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    context.set_default_timeout(10_000)
    new_page = context.new_page()
    try:
        yield new_page
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            SCREENSHOTS.mkdir(exist_ok=True)
            new_page.screenshot(path=str(SCREENSHOTS / f"{safe_name(request.node.name)}-failed.png"), full_page=True)
    finally:
        context.close()
        cache.clear()


def safe_name(test_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name)


class Screens:
    """Saves `screenshots/<test>-<step>.png` (steps numbered in visiting order), then runs
    axe-core on the screen."""

    def __init__(self, page, test_name: str) -> None:
        self.page = page
        self.test_name = safe_name(test_name)
        self.count = 0
        self.saved: list[Path] = []

    def __call__(self, step: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.test_name}-{self.count:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.saved.append(path)
        check_accessibility(self.page, where=f"{path.name} ({self.page.url})")
        return path


@pytest.fixture
def screen(page, request) -> Screens:
    """`screen("step")` after each navigation saves the screen the test is looking at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for old in SCREENSHOTS.glob(f"{safe_name(request.node.name)}-*.png"):
        old.unlink()
    return Screens(page, request.node.name)


@pytest.fixture
def url(live_server):
    def build(path: str) -> str:
        return f"{live_server.url}{path}"

    return build


@pytest.fixture
def import_worker(live_server, settings, tmp_path) -> Iterator[Callable[..., CeleryWorker]]:
    """`import_worker(name, concurrency=1, **env)` starts a real Celery worker (no beat) that runs
    the import jobs the live server queues; `env` adds settings. The live server and the worker
    share a media folder of this test's own."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    started: list[CeleryWorker] = []

    def start(name: str, *, concurrency: int = 1, **env: str) -> CeleryWorker:
        worker = CeleryWorker(
            env={
                "DATABASE_URL": database_url_for_current_connection(),
                "REDIS_URL": settings.REDIS_URL,
                "ECARD_VAR_DIR": str(tmp_path),
                "DB_CONN_MAX_AGE": "0",
                **env,
            },
            name=name,
            concurrency=concurrency,
            beat=False,
        )
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop()
        worker.dump_log()
