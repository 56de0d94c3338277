"""The published OpenAPI schema (`GET /api/v1/schema`) and browsable docs (`GET /api/v1/docs`).

Both answer without authentication (PARTNER_API.md "Authentication"); the docs
page loads Swagger UI from the portal's own static files (drf-spectacular-sidecar),
never from another host. Responses are signed like every API response when the
portal has a signing key; before the first key exists they are served unsigned,
so that a fresh installation can still be read.
"""

from django.http import HttpResponseBase
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework.request import Request

from payments import keys
from payments.api.signed import request_nonce, sign_response
from portal import unavailable
from portal.errors import DomainError

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details (`application/problem+json`). `code` is stable and machine-read.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "example": "validation_error"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Validation failures by field (`validation_error` only).",
        },
    },
    "additionalProperties": True,
}

SIGNATURE_HEADERS = {
    name: {"description": description, "schema": {"type": "string"}}
    for name, description in (
        ("Ecard-Key-Id", "The portal key that signed this response (see `GET /keys`)."),
        ("Ecard-Timestamp", "Unix seconds."),
        ("Ecard-Nonce", "The response's own nonce."),
        ("Ecard-Signature", "Standard base64 Ed25519 signature over status, request nonce, timestamp, nonce, body."),
    )
}


# The contract's Idempotency-Key: 1 to 255 printable ASCII characters. Declared once here for every
# endpoint that takes it (each view only names the header), without leading or trailing spaces,
# which HTTP strips from header values.
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"}
IDEMPOTENCY_KEY_DESCRIPTION = (
    "1 to 255 printable ASCII characters, scoped to the partner; a retry of the same request with the same "
    "key gets the first response again (`Idempotent-Replayed: true`). Missing or malformed: 400 "
    "`idempotency_key_required`."
)


def add_problem_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: a `Problem` component, every error
    response typed `application/problem+json`, the signature headers on every response,
    and the contract's shape of `Idempotency-Key` wherever an endpoint takes it."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "header" and parameter.get("name") == "Idempotency-Key":
                    parameter["schema"] = dict(IDEMPOTENCY_KEY_SCHEMA)
                    parameter["description"] = IDEMPOTENCY_KEY_DESCRIPTION
                    parameter["required"] = True
            responses = operation["responses"]
            for status, response in responses.items():
                if status.startswith(("4", "5")) or status == "default":
                    response["content"] = {"application/problem+json": {"schema": problem_ref}}
                response.setdefault("headers", {}).update(SIGNATURE_HEADERS)
            if "default" not in responses:
                responses["default"] = {
                    "description": (
                        "Any error (authentication, validation, limits): `application/problem+json`. "
                        "503 `service_unavailable` with `Retry-After` while the portal cannot reach its "
                        "database or Redis (a failover): retry, with the same `Idempotency-Key`."
                    ),
                    "content": {"application/problem+json": {"schema": problem_ref}},
                    "headers": dict(SIGNATURE_HEADERS),
                }
    return result


def _sign_if_possible(request: Request, response: HttpResponseBase) -> HttpResponseBase:
    try:
        keys.current_signing_key()
    except DomainError:
        return response
    except Exception as exc:  # the database cannot be reached: sign_response answers 503
        if unavailable.unreachable_backend(exc) is None:
            raise
    return sign_response(response, request_nonce=request_nonce(request))


class SchemaApi(SpectacularJSONAPIView):
    """`GET /api/v1/schema`: OpenAPI 3 in JSON, no authentication."""

    authentication_classes: list = []
    permission_classes: list = []

    def finalize_response(self, request: Request, response: HttpResponseBase, *args, **kwargs) -> HttpResponseBase:  # type: ignore[override]  # also plain Django responses
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]
        return _sign_if_possible(request, response)


class DocsPage(SpectacularSwaggerView):
    """`GET /api/v1/docs`: Swagger UI from the portal's static files, no authentication."""

    authentication_classes: list = []
    permission_classes: list = []
    url_name = "api-schema"
    title = "e-card portal partner API"

    def finalize_response(self, request: Request, response: HttpResponseBase, *args, **kwargs) -> HttpResponseBase:  # type: ignore[override]  # also plain Django responses
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]
        return _sign_if_possible(request, response)
