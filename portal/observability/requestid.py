"""The request id: one per HTTP request, carried into the Celery tasks it causes and the webhooks
it produces, and printed on every log line written on its behalf.

A client's `X-Request-Id` is kept when it is well formed, otherwise a new one is made; the
response returns it. Behind nginx (deploy/nginx/ecard-proxy.conf) the header is nginx's own
`$request_id`, whatever the client sent, so a partner's value never travels into the webhooks
other partners receive. Tasks carry it in a message header
(`before_task_publish`), and a task started without one takes its own task id, so that what a
beat task causes can be followed too. The outbox stores it with each event (payments), and the
webhook sends it back as `X-Request-Id`.

The id lives in a ContextVar. The house style keeps ContextVars off the fast paths' data (a
store's results are passed explicitly); this one is for logging only, where nothing can pass it
explicitly: the logging `Filter` below reads it for every record, whichever library logs, and
Celery's threads pool runs each task in a context the task signals set and reset.
"""

import logging
import os
import re
from contextvars import ContextVar

from celery import signals
from django.core.signals import request_finished
from django.dispatch import receiver

HEADER = "X-Request-Id"
TASK_HEADER = "ecard_request_id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{8,64}")
_current: ContextVar[str] = ContextVar("ecard_request_id", default="")


def current() -> str:
    """The id of the request or task this code runs for; "" outside both."""
    return _current.get()


def well_formed(value: str | None) -> bool:
    return bool(value) and _WELL_FORMED.fullmatch(value or "") is not None


def new_id() -> str:
    """32 random hex digits (as uuid4().hex, without building a UUID object on every request)."""
    return os.urandom(16).hex()


class RequestIdMiddleware:
    """First in MIDDLEWARE: every request, partner API included, has its id before anything logs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.META.get("HTTP_X_REQUEST_ID")
        request_id = given if well_formed(given) else new_id()
        request.request_id = request_id
        # Not reset on the way out: Django logs a 4xx or 5xx answer after the middleware has
        # returned. `request_finished` (the response closed) resets it.
        _current.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


@receiver(request_finished, weak=False, dispatch_uid="ecard-request-id-finished")
def _request_finished(**kwargs) -> None:
    _current.set("")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record ("-" outside a request or task); a record given one
    explicitly (`extra={"request_id": ...}`) keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _current.get() or "-"
        return True


@signals.before_task_publish.connect(weak=False, dispatch_uid="ecard-request-id-publish")
def _add_header(headers=None, **kwargs) -> None:
    request_id = _current.get()
    if request_id and headers is not None and TASK_HEADER not in headers:
        headers[TASK_HEADER] = request_id


@signals.task_prerun.connect(weak=False, dispatch_uid="ecard-request-id-prerun")
def _task_started(task_id=None, task=None, **kwargs) -> None:
    carried = getattr(task.request, TASK_HEADER, None) if task is not None else None
    _current.set(carried if well_formed(carried) else (task_id or new_id()))


@signals.task_postrun.connect(weak=False, dispatch_uid="ecard-request-id-postrun")
def _task_finished(**kwargs) -> None:
    _current.set("")
