"""`GET /api/v1/events`: every event addressed to the partner, oldest first (PARTNER_API.md "Endpoints").

A poller keeps `next_cursor` (never null) and asks again; it must never miss an
event, even one whose transaction committed after later ones.
`OutboxEvent.txid` is the writing transaction's id (set by a trigger), and the
feed lists only rows whose `txid` is below the xmin of the current snapshot:
every transaction older than that has finished, so nothing can later appear
before the cursor. The order is (`txid`, `id`); an event held back by a
long-running transaction (and everything after it) shows up once it ends.
"""

import base64
import binascii
import json
import re
from typing import cast

from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from payments.api.base import PartnerApiView, page_limit
from payments.api.problems import ApiError, ProblemCode
from payments.models import OutboxEvent, Partner

_CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_CURSOR_PREFIX = "e1."
# Before every event: rows written before the txid trigger existed carry txid 0.
START = (-1, 0)


def encode_cursor(txid: int, event_id: int) -> str:
    raw = f"{_CURSOR_PREFIX}{txid}.{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The (txid, id) of a cursor; ValueError for anything this portal did not issue."""
    if not _CURSOR_RE.match(cursor):
        raise ValueError("bad characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if not raw.startswith(_CURSOR_PREFIX):
        raise ValueError("unknown cursor version")
    parts = raw[len(_CURSOR_PREFIX) :].split(".")
    if len(parts) != 2 or not all(re.fullmatch(r"-?[0-9]{1,19}", part) for part in parts):
        raise ValueError("malformed")
    txid, event_id = int(parts[0]), int(parts[1])
    if txid < START[0] or event_id < 0 or txid > 2**63 - 1 or event_id > 2**63 - 1:
        raise ValueError("out of range")
    return txid, event_id


def events_after(partner: Partner, after: tuple[int, int], limit: int) -> list[OutboxEvent]:
    """Up to `limit` of the partner's finished events after the cursor position, in feed order."""
    queryset: QuerySet[OutboxEvent] = OutboxEvent.objects.filter(partner=partner).only("id", "txid", "body")
    txid, event_id = after
    # Evaluated in the statement's own snapshot: the rows it can see are exactly those it lists.
    horizon = RawSQL("pg_snapshot_xmin(pg_current_snapshot())::text::bigint", [])
    queryset = queryset.filter(txid__lt=horizon).filter(Q(txid__gt=txid) | Q(txid=txid, id__gt=event_id))
    return list(queryset.order_by("txid", "id")[:limit])


class EventDataSerializer(serializers.Serializer):
    object = serializers.DictField(
        help_text="The object (Linkage, Family binding, Settlement...) as it was when the change committed."
    )
    previous_number = serializers.CharField(required=False, help_text="`certificate.reissued` only.")


class EventSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`evt_...`; partners deduplicate on it.")
    type = serializers.CharField(help_text="For example `linkage.created`; ignore unknown types.")
    created_at = serializers.DateTimeField()
    data = EventDataSerializer()  # type: ignore[assignment]  # the contract's field shadows Serializer.data


class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    next_cursor = serializers.CharField(
        help_text="Never null: keep it and ask again; empty results mean nothing newer."
    )


class EventListApi(PartnerApiView):
    """`GET /api/v1/events?cursor=&limit=`: exactly the webhook bodies, oldest first."""

    @extend_schema(
        operation_id="events_list",
        summary="Events addressed to this partner",
        description=(
            "Every event addressed to this partner, oldest first; the items are exactly the webhook bodies. "
            "`next_cursor` is never null: keep it and ask again; an empty `results` means nothing newer. "
            "A poller resuming from its last cursor never misses an event, even one whose transaction committed late."
        ),
        parameters=[
            OpenApiParameter(
                "cursor", OpenApiTypes.STR, description="`next_cursor` of the previous page; omit for the first."
            ),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 200, default 50."),
        ],
        responses={
            200: EventPageSerializer,
            400: OpenApiResponse(description="validation_error: a bad cursor or limit"),
            401: OpenApiResponse(description="Authentication failed"),
            403: OpenApiResponse(description="forbidden: key revoked or partner suspended"),
            429: OpenApiResponse(description="rate_limited"),
        },
        tags=["events"],
    )
    def get(self, request: Request) -> Response:
        limit = page_limit(request)
        cursor = request.query_params.get("cursor")
        after = START
        if cursor is not None:
            try:
                after = decode_cursor(cursor)
            except ValueError:
                message = "The cursor is not valid."
                raise ApiError(400, ProblemCode.VALIDATION_ERROR, message, errors={"cursor": [message]}) from None
        rows = events_after(self.partner, after, limit)
        if rows:
            last = rows[-1]
            after = (cast(int, last.txid), last.id)  # never NULL: `events_after` lists rows below the horizon only
        return Response({"results": [json.loads(row.body) for row in rows], "next_cursor": encode_cursor(*after)})
