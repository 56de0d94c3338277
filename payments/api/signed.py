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
from portal.errors import DomainError

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
        return HttpResponse(
            json.dumps(
                {
                    "type": "about:blank",
                    "title": "Service unavailable",
                    "status": 503,
                    "detail": exc.message,
                    "code": exc.code,
                }
            ),
            status=503,
            content_type="application/problem+json",
        )
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
