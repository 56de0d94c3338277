"""gunicorn settings shared by `make run`, production and the benchmarks.

The access log leaves out query strings and referrers: a citizen search puts
an identity number or phone in the query string, and personal data never
goes to logs.
"""

import contextlib
import datetime as dt
import glob
import json
import os
import re
from pathlib import Path

from gunicorn.glogging import Logger

# Prometheus metrics of every worker process, summed at each scrape (portal/observability/metrics.py):
# each process writes its own files here. Set before any worker imports prometheus_client.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(os.environ.get("ECARD_VAR_DIR", Path(__file__).resolve().parent / "var")) / "prometheus"),
)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:" + os.environ.get("PORT", "8000"))
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
access_log_format = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
# A keep-alive connection is answered `Connection: close` at its 100th request, as nginx's
# `keepalive_requests` does: a connection stays with the worker that accepted it, and one worker
# uses one core at most, so a few long-lived partner connections could pile onto one worker while
# the others idle (seen under bench/settlement_bench.py). The client reconnects, and the worker
# with a free moment accepts. 0 keeps connections open.
keepalive_requests = int(os.environ.get("GUNICORN_KEEPALIVE_REQUESTS", "100"))
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# LOG_FORMAT as portal/settings.py reads it: JSON access lines (with the request id) in production.
json_access_log = (
    os.environ.get("LOG_FORMAT") or ("json" if os.environ.get("ECARD_MODE", "production") == "production" else "plain")
) == "json"
timeout = 60


class AccessLogger(Logger):
    """gunicorn's logger, building only the atoms the access log format names.

    gunicorn's own `atoms` makes one for every request header, response header and environ
    variable of every request, work the format never prints, paid on every partner API request.
    Each atom here is computed as gunicorn computes it; a format naming any other atom gets
    gunicorn's `atoms`.
    """

    _OWN = frozenset("htmUsbM")
    _names: dict[str, bool] = {}

    def access(self, resp, req, environ, request_time):
        """With LOG_FORMAT=json, one JSON object per request (the request id included) instead of
        `access_log_format`; still no query string."""
        if not json_access_log or not self.cfg.accesslog:
            return super().access(resp, req, environ, request_time)
        atoms = self.atoms(resp, req, environ, request_time)
        request_id = next((value for name, value in resp.headers if name.lower() == "x-request-id"), "-")
        entry = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "gunicorn.access",
            "remote": atoms["h"],
            "method": atoms["m"],
            "path": atoms["U"],
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["b"],
            "ms": atoms["M"],
            "request_id": request_id,
        }
        try:
            self.access_log.info(json.dumps(entry, ensure_ascii=False))
        except Exception:
            self.error("could not write an access log line")

    def atoms(self, resp, req, environ, request_time):
        log_format = self.cfg.access_log_format
        own = self._names.get(log_format)
        if own is None:
            own = self._names[log_format] = set(re.findall(r"%\((\w+)\)", log_format)) <= self._OWN
        if not own:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "t": self.now(),
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "s": status,
            "b": sent is not None and str(sent) or "-",
            "M": request_time.seconds * 1000 + int(request_time.microseconds / 1000),
        }


logger_class = AccessLogger


def pre_request(worker, req):
    """gunicorn's hook before each request: the `keepalive_requests`-th request of a connection
    is its last (its response says `Connection: close`; the worker then closes the connection)."""
    if keepalive_requests and req.req_number % keepalive_requests == 0:
        req.must_close = True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_starting(server):
    """gunicorn's hook as the master starts: the metrics directory exists, without the files of
    processes that have ended (an earlier run's workers; prometheus-client requires that they go).
    Files of processes still running, a Celery worker's sharing the directory, are kept."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        pid = os.path.basename(path).rsplit("_", 1)[-1].removesuffix(".db")
        if not pid.isdigit() or not _process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):  # another master's start took it
                os.remove(path)


def child_exit(server, worker):
    """gunicorn's hook when a worker exits: its live gauges leave the sums (prometheus-client)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
