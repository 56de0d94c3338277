"""The demo's sandbox webhook receiver: the sandbox partners (WeChat Pay, Alipay) post to the portal itself.

It checks each webhook as a partner would, against the portal's published
keys, and keeps what it got so that the demo can show it.
"""

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments import keys, signing
from payments.models import SandboxReceipt


def webhook_signature_valid(
    *, key_id: str, timestamp: str, nonce: str, signature: str, event_id: str, body: bytes
) -> bool:
    public_key = keys.public_key_for(key_id) if key_id else None
    if public_key is None or not timestamp.isdigit() or not signing.NONCE_RE.match(nonce):
        return False
    return signing.verify(public_key, signing.webhook_string_to_sign(event_id, timestamp, nonce, body), signature)


@csrf_exempt
@require_POST
def sandbox_webhook(request: HttpRequest, partner_code: str) -> HttpResponse:
    if not settings.ECARD_SANDBOX_ENABLED:  # an open receiver has no place in production
        raise Http404
    body = request.body
    event_id = request.headers.get("Ecard-Event-Id", "")
    valid = webhook_signature_valid(
        key_id=request.headers.get(signing.HEADER_KEY_ID, ""),
        timestamp=request.headers.get(signing.HEADER_TIMESTAMP, ""),
        nonce=request.headers.get(signing.HEADER_NONCE, ""),
        signature=request.headers.get(signing.HEADER_SIGNATURE, ""),
        event_id=event_id,
        body=body,
    )
    SandboxReceipt.objects.create(
        partner_code=partner_code[:32],
        event_id=event_id[:40],
        event_type=request.headers.get("Ecard-Event-Type", "")[:48],
        body=body.decode("utf-8", errors="replace"),
        signature_valid=valid,
    )
    return HttpResponse(status=204)
