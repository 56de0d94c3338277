"""The partner API (DRF). Every response is signed by the portal (PARTNER_API.md "The portal signs too").

`SignedApiView` is the one place that signs: every API view derives from it,
so that success and error responses alike carry the `Ecard-*` headers.
"""

import json
import re
import time

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import keys, signing
from payments.api.problems import ProblemCode
from portal import unavailable
from portal.errors import DomainError
from portal.observability import metrics

_AUTH_NONCE_RE = re.compile(r'nonce="([A-Za-z0-9_-]{16,64})"')


def request_nonce(request: HttpRequest | Request) -> str:
    """The nonce of the request's `Authorization` header, or "" if it had none usable."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("ECARD-ED25519 "):
        return ""
    match = _AUTH_NONCE_RE.search(header)
    return match.group(1) if match else ""


def sign_response(response: HttpResponseBase, *, request_nonce: str) -> HttpResponseBase:
    """Add the portal's response signature headers over the rendered body."""
    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
        response.render()
    body = b"" if getattr(response, "streaming", False) else getattr(response, "content", b"")
    try:
        key = keys.current_signing_key()
    except DomainError as exc:  # no active key yet: say so rather than answer unsigned or 500
        return _unsigned_503(exc.code, exc.message)
    except Exception as exc:
        backend = unavailable.unreachable_backend(exc)
        if backend is None:
            raise
        # The database is unreachable and no key was read yet (keys.current_signing_key keeps the
        # last one otherwise): whatever the answer was, it cannot be signed; the partner retries.
        if response.status_code == 503:  # the 503 of this outage, logged and counted already
            return response
        metrics.count_error(backend)
        response = _unsigned_503(
            ProblemCode.SERVICE_UNAVAILABLE, "The service is briefly unavailable: retry in a moment."
        )
        return unavailable.answered_unavailable(exc, backend, response)
    headers = signing.response_headers(
        key_id=key.key_id,
        private_key=key.private_key,
        status=response.status_code,
        request_nonce=request_nonce,
        body=body,
        timestamp=int(time.time()),
    )
    for name, value in headers.as_dict().items():
        response[name] = value
    return response


def _unsigned_503(code: str, detail: str) -> HttpResponse:
    return HttpResponse(
        json.dumps(
            {"type": "about:blank", "title": "Service unavailable", "status": 503, "detail": detail, "code": code}
        ),
        status=503,
        content_type="application/problem+json",
    )


class SignedApiView(APIView):
    """Base of every partner API view: renders, then signs, whatever the outcome."""

    response: HttpResponseBase  # type: ignore[assignment]  # finalize_response also returns plain Django responses

    def finalize_response(self, request: Request, response: HttpResponseBase, *args, **kwargs) -> HttpResponseBase:  # type: ignore[override]  # also plain Django responses
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]
        return sign_response(response, request_nonce=request_nonce(request))


class PortalKeyOutputSerializer(serializers.Serializer):
    key_id = serializers.CharField()
    algorithm = serializers.CharField()
    public_key = serializers.CharField()
    state = serializers.ChoiceField(choices=["next", "active", "retired"])


class KeysOutputSerializer(serializers.Serializer):
    keys = PortalKeyOutputSerializer(many=True)


class KeysListApi(SignedApiView):
    """`GET /api/v1/keys`: the portal's public keys (no authentication, not paginated)."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(responses=KeysOutputSerializer, auth=[])
    def get(self, request: Request) -> Response:
        data = {
            "keys": [
                {"key_id": k.key_id, "algorithm": signing.ALGORITHM, "public_key": k.public_key, "state": k.state}
                for k in keys.published_keys()
            ]
        }
        return Response(KeysOutputSerializer(data).data)
