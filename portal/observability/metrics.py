"""Prometheus metrics of every process, in prometheus-client's multiprocess mode.

gunicorn runs several worker processes, each counting its own requests: with
PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it), each process writes its counters and
histograms to files there, and a scrape of any worker sums every process's files. Celery
workers on the same host with the same directory are summed in as well; a worker host of its
own serves its metrics on ECARD_WORKER_METRICS_PORT instead.

Here: the request latency histogram (by route pattern and status, never the raw path, which
carries ids), the database and Redis error counters, the exposition with its access check
(ECARD_METRICS_ALLOWED_CIDRS, ECARD_METRICS_TOKEN). The business figures (outbox, imports,
audit chain, settlements) are read from the database at scrape time by backoffice/metrics.py.
"""

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Iterable

from celery import signals as celery_signals
from django.conf import settings
from django.core.signals import got_request_exception
from django.db import DatabaseError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus-client writes there from the first metric on
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

REQUEST_SECONDS = Histogram(
    "ecard_http_request_duration_seconds",
    "Time to answer an HTTP request, by route pattern, method and status.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BACKEND_ERRORS = Counter(
    "ecard_backend_errors_total",
    "Errors talking to the database or Redis (requests, tasks and readiness checks).",
    ["backend"],
)
for _backend in ("database", "redis"):
    BACKEND_ERRORS.labels(_backend)  # present at 0, so that rate() sees the first error


def count_error(backend: str) -> None:
    BACKEND_ERRORS.labels(backend).inc()


def backend_of(exc: BaseException) -> str | None:
    """ "database" or "redis" for an exception from either, else None."""
    import kombu.exceptions
    import redis.exceptions

    if isinstance(exc, DatabaseError):
        return "database"
    if isinstance(exc, redis.exceptions.RedisError | kombu.exceptions.OperationalError):
        return "redis"
    return None


def count_exception(exc: BaseException | None) -> None:
    backend = backend_of(exc) if exc is not None else None
    if backend:
        count_error(backend)


@receiver(got_request_exception, weak=False, dispatch_uid="ecard-metrics-request-exception")
def _request_exception(sender=None, request=None, **kwargs) -> None:
    import sys

    count_exception(sys.exc_info()[1])


@celery_signals.task_failure.connect(weak=False, dispatch_uid="ecard-metrics-task-failure")
def _task_failure(exception=None, **kwargs) -> None:
    count_exception(exception)


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return match.route
    if request.path.startswith(settings.STATIC_URL):
        return "static"
    return "unmatched"


class RequestMetricsMiddleware:
    """Right after the request id, before everything else: times every request, partner API too."""

    def __init__(self, get_response):
        self.get_response = get_response
        # The histogram's child per label values: `labels()` validates and locks on every call.
        self._children: dict[tuple[str, str, int], Histogram] = {}

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        key = (_route(request), request.method, response.status_code)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = REQUEST_SECONDS.labels(key[0], key[1], str(key[2]))
        child.observe(time.perf_counter() - started)
        return response


# --- Exposition --------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Default(Collector):
    """The process's own registry, as one collector of a scrape's registry (single-process mode)."""

    def collect(self) -> Iterable:
        return REGISTRY.collect()


def process_registry() -> CollectorRegistry:
    """Every process's metrics in multiprocess mode, else this process's."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Default())
    return registry


def exposition(registry: CollectorRegistry) -> HttpResponse:
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item, strict=False) for item in settings.ECARD_METRICS_ALLOWED_CIDRS]


def scrape_allowed(request: HttpRequest) -> bool:
    """From an allowed network (the client address as portal.actors.client_ip reads it, behind
    the deployment's own proxies), or with `Authorization: Bearer <ECARD_METRICS_TOKEN>`."""
    from portal.actors import client_ip

    token = settings.ECARD_METRICS_TOKEN
    given = request.META.get("HTTP_AUTHORIZATION", "")
    if token and given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
        return True
    address = client_ip(request)
    if not address:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in _networks())


# --- Celery workers ----------------------------------------------------------------------------

_exporter_started = False


@celery_signals.worker_init.connect(weak=False, dispatch_uid="ecard-metrics-worker-exporter")
def _start_worker_exporter(**kwargs) -> None:
    """A worker on a host without the web's PROMETHEUS_MULTIPROC_DIR serves its own metrics on
    ECARD_WORKER_METRICS_PORT (off by default); the business figures stay the web's /metrics."""
    global _exporter_started
    port = getattr(settings, "ECARD_WORKER_METRICS_PORT", 0)
    if not port or _exporter_started:
        return
    from prometheus_client import start_http_server

    start_http_server(port, addr=settings.ECARD_WORKER_METRICS_ADDR, registry=process_registry())
    _exporter_started = True
    logger.info("worker metrics on %s:%s", settings.ECARD_WORKER_METRICS_ADDR, port)
