"""The access log of gunicorn.conf.py, from a real gunicorn: the format's fields, and no query string
(a citizen search puts an identity number in it; personal data never goes to logs)."""

import re
import runpy
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from testkit.processes import free_port, start_gunicorn

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.mark.django_db(transaction=True)
def test_the_access_log_has_the_formats_fields_and_no_query_string(tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    server = start_gunicorn(port, GUNICORN_ACCESS_LOG=str(log))
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz?id_number=11010119900307851X", timeout=2
                ) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        deadline = time.time() + 10
        while not (log.exists() and log.read_text()) and time.time() < deadline:
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    line = log.read_text().splitlines()[-1]
    assert re.fullmatch(r'127\.0\.0\.1 \[[^\]]+\] "GET /healthz" 200 \d+ \d+ms', line), line
    assert "11010119900307851X" not in log.read_text()


def test_the_atoms_built_are_gunicorns_own_for_the_format_and_another_format_gets_gunicorns():
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    conf = runpy.run_path(str(BASE_DIR / "gunicorn.conf.py"))
    cfg = Config()
    cfg.set("access_log_format", conf["access_log_format"])
    logger = conf["AccessLogger"](cfg)
    response = SimpleNamespace(status="201 Created", sent=123, headers=[("Content-Type", "application/json")])
    request = SimpleNamespace(headers=[("HOST", "portal"), ("USER-AGENT", "partner")])
    environ = {
        "REMOTE_ADDR": "10.0.0.7",
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/settlements",
        "RAW_URI": "/api/v1/settlements?x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "QUERY_STRING": "x=1",
    }
    took = timedelta(seconds=1, microseconds=234_567)
    own = logger.atoms(response, request, environ, took)
    full = Logger.atoms(logger, response, request, environ, took)
    assert set(own) == set("htmUsbM")
    assert {k: v for k, v in own.items() if k != "t"} == {k: full[k] for k in own if k != "t"}
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", own["t"])
    cfg.set("access_log_format", '%(h)s "%(r)s"')  # an atom not built here: gunicorn's whole set
    assert logger.atoms(response, request, environ, took)["r"] == "POST /api/v1/settlements?x=1 HTTP/1.1"
