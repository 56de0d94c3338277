"""RFC 9457 problem+json for every error of the partner API.

One exception handler (DRF's `EXCEPTION_HANDLER`) and one Django-level view
for what never reaches DRF (unknown URLs and oversize bodies under /api/),
so that every error carries a stable `code` and nothing answers a 5xx, but
503 `service_unavailable` while the database or Redis cannot be reached
(portal/unavailable.py).
"""

import json
import logging
from enum import StrEnum

from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from portal import unavailable
from portal.errors import DomainError
from portal.observability import metrics

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://ecard.example.gov.cn/problems/"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class ProblemCode(StrEnum):
    """The partner API's generic problem codes, whatever the endpoint.

    A stable contract, like the subjects' `*ErrorCode` (which the API renders the
    same way): a new problem adds a member; an existing value never changes.
    """

    # The request (400, 413, 415, 405).
    VALIDATION_ERROR = "validation_error"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # Authentication (401): the `Authorization` header and its signature.
    AUTHENTICATION_REQUIRED = "authentication_required"
    UNKNOWN_KEY = "unknown_key"
    INVALID_SIGNATURE = "invalid_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    REPLAYED_REQUEST = "replayed_request"
    # Authorisation and reach (403, 404).
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    # Limits (429).
    RATE_LIMITED = "rate_limited"
    # `Idempotency-Key` (400, 409, 422).
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    # The database or Redis cannot be reached for now (a failover, a restart): 503 with Retry-After,
    # never stored for an Idempotency-Key.
    SERVICE_UNAVAILABLE = "service_unavailable"
    # Any other error DRF raises that is not a 400.
    ERROR = "error"


class ApiError(exceptions.APIException):
    """An API error with a contract code (raised by authentication, idempotency, views).

    `code` is a `ProblemCode`, a subject's `*ErrorCode` or a plain string; it is kept as its plain value.
    """

    def __init__(self, status: int, code: str, detail: str, *, headers: dict | None = None, **extra: object):
        code = str(code)
        super().__init__(detail=detail, code=code)
        self.status_code = status
        self.problem_code = code
        self.headers = headers or {}
        self.extra = extra


def problem_body(status: int, code: str, detail: str, **extra: object) -> dict:
    code = str(code)
    body = {
        "type": TYPE_BASE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return body


def problem_response(status: int, code: str, detail: str, *, headers: dict | None = None, **extra: object) -> Response:
    return Response(
        problem_body(status, code, detail, **extra), status=status, headers=headers, content_type=PROBLEM_CONTENT_TYPE
    )


def _flatten(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for field, messages in detail.items():
            if isinstance(messages, dict):
                for sub, sub_messages in _flatten(messages).items():
                    out[f"{field}.{sub}"] = sub_messages
            elif isinstance(messages, list):
                flat: list[str] = []
                for index, item in enumerate(messages):
                    if isinstance(item, dict):
                        for sub, sub_messages in _flatten(item).items():
                            out[f"{field}[{index}].{sub}"] = sub_messages
                    else:
                        flat.append(str(item))
                if flat:
                    out[field] = flat
            else:
                out[field] = [str(messages)]
        return out
    if isinstance(detail, list):
        return {"non_field_errors": [str(item) for item in detail]}
    return {"non_field_errors": [str(detail)]}


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every error becomes problem+json with a contract code."""
    set_rollback()
    if isinstance(exc, ApiError):
        return problem_response(exc.status_code, exc.problem_code, str(exc.detail), headers=exc.headers, **exc.extra)
    if isinstance(exc, DomainError):
        extra = {k: v for k, v in exc.extra.items() if k != "field"}
        if exc.code == ProblemCode.VALIDATION_ERROR and "field" in exc.extra:
            extra["errors"] = {str(exc.extra["field"]): [exc.message]}
        return problem_response(exc.status, exc.code, exc.message, **extra)
    if isinstance(exc, exceptions.ValidationError):
        return problem_response(
            400, ProblemCode.VALIDATION_ERROR, "The request is not valid.", errors=_flatten(exc.detail)
        )
    if isinstance(exc, exceptions.ParseError):
        return problem_response(
            400,
            ProblemCode.VALIDATION_ERROR,
            "The body is not valid JSON.",
            errors={"non_field_errors": [str(exc.detail)]},
        )
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return problem_response(415, ProblemCode.UNSUPPORTED_MEDIA_TYPE, "The body must be application/json.")
    if isinstance(exc, exceptions.MethodNotAllowed):
        return problem_response(405, ProblemCode.METHOD_NOT_ALLOWED, str(exc.detail))
    if isinstance(exc, exceptions.NotAcceptable):
        return problem_response(400, ProblemCode.VALIDATION_ERROR, str(exc.detail))
    if isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        return problem_response(
            429, ProblemCode.RATE_LIMITED, "Too many requests.", headers={"Retry-After": str(max(wait, 1))}
        )
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return problem_response(401, ProblemCode.AUTHENTICATION_REQUIRED, str(exc.detail))
    if isinstance(exc, exceptions.PermissionDenied):
        return problem_response(403, ProblemCode.FORBIDDEN, str(exc.detail))
    if isinstance(exc, exceptions.NotFound):
        return problem_response(404, ProblemCode.NOT_FOUND, "Not found.")
    from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
    from django.core.exceptions import RequestDataTooBig
    from django.http import Http404

    if isinstance(exc, Http404):
        return problem_response(404, ProblemCode.NOT_FOUND, "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return problem_response(403, ProblemCode.FORBIDDEN, "Forbidden.")
    if isinstance(exc, RequestDataTooBig):
        return problem_response(413, ProblemCode.PAYLOAD_TOO_LARGE, "The body is larger than 1 MB.")
    if isinstance(exc, exceptions.APIException):
        return problem_response(
            exc.status_code,
            ProblemCode.VALIDATION_ERROR if exc.status_code == 400 else ProblemCode.ERROR,
            str(exc.detail),
        )
    backend = unavailable.unreachable_backend(exc)
    if backend is not None:  # DRF would re-raise it: a 500 without the metrics' signal
        metrics.count_error(backend)
        return unavailable_response(exc, backend)
    return None


def unavailable_response(exc: BaseException, backend: str) -> Response:
    """503 `service_unavailable` with Retry-After for a database or Redis that cannot be reached."""
    response = problem_response(
        503, ProblemCode.SERVICE_UNAVAILABLE, "The service is briefly unavailable: retry in a moment."
    )
    unavailable.answered_unavailable(exc, backend, response)
    return response


def django_problem(request: HttpRequest, status: int, code: str, detail: str) -> HttpResponse:
    """A problem+json response outside DRF (404 for unknown API URLs, 500 handler)."""
    return HttpResponse(
        json.dumps(problem_body(status, code, detail)), status=status, content_type=PROBLEM_CONTENT_TYPE
    )
