"""Premium endpoints (PARTNER_API.md `POST /premiums`, `GET /premiums/{id}`): wallet partners only;
another partner's premium answers 404 `not_found`."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from payments.api.base import (
    PartnerApiView,
    ReferenceField,
    StrictCharField,
    StrictSerializer,
    parse_input,
    partner_actor,
)
from payments.api.fastinput import MAX_FEN
from payments.api.problems import ApiError, ProblemCode
from payments.api.representations import premium_repr
from payments.linkages.api import identified_citizen
from payments.models import PremiumState
from payments.premiums import services as premiums
from payments.settlements.api import StrictIntegerField


class PremiumCreateInputSerializer(StrictSerializer):
    # Any string: an unknown number (malformed included) is `identity_mismatch`.
    id_number = StrictCharField(max_length=64)
    name = StrictCharField(max_length=64)
    # Any whole number here: a year other than the current or next is refused after the identity checks.
    year = StrictIntegerField()
    amount_fen = StrictIntegerField(min_value=0, max_value=MAX_FEN)
    partner_transaction_id = ReferenceField(max_length=128)


class _PremiumCitizenOutput(serializers.Serializer):
    name_masked = serializers.CharField()
    id_number_masked = serializers.CharField()
    region_code = serializers.CharField()
    scheme = serializers.ChoiceField(choices=["employee", "resident"])


class PremiumOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    state = serializers.ChoiceField(choices=PremiumState.values)
    year = serializers.IntegerField()
    amount_fen = serializers.IntegerField()
    partner_transaction_id = serializers.CharField()
    citizen = _PremiumCitizenOutput()
    created_at = serializers.DateTimeField()
    version = serializers.IntegerField()


class PremiumCreateApi(PartnerApiView):
    """`POST /premiums` (idempotent): a resident's premium for the current or the next year."""

    wallet_only = True
    idempotent = True

    @extend_schema(
        operation_id="premiums_create",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)],
        request=PremiumCreateInputSerializer,
        responses={
            201: PremiumOutputSerializer,
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="not_resident_scheme, premium_already_paid"),
            422: OpenApiResponse(OpenApiTypes.OBJECT, description="identity_mismatch, amount_mismatch"),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="rate_limited"),
        },
    )
    def post(self, request: Request) -> Response:
        data = parse_input(PremiumCreateInputSerializer, request)
        citizen = identified_citizen(self.partner, data["id_number"], data["name"])
        premium = premiums.premium_pay(
            actor=partner_actor(request, self.partner),
            partner=self.partner,
            citizen=citizen,
            year=data["year"],
            amount_fen=data["amount_fen"],
            partner_transaction_id=data["partner_transaction_id"],
        )
        return Response(premium_repr(premium), status=201)


class PremiumDetailApi(PartnerApiView):
    """`GET /premiums/{id}`."""

    wallet_only = True

    @extend_schema(
        operation_id="premiums_retrieve",
        responses={200: PremiumOutputSerializer, 404: OpenApiResponse(OpenApiTypes.OBJECT, description="not_found")},
    )
    def get(self, request: Request, public_id: str) -> Response:
        premium = premiums.premiums_of_partner(self.partner).filter(public_id=public_id).first()
        if premium is None:
            raise ApiError(404, ProblemCode.NOT_FOUND, "Not found.")
        return Response(premium_repr(premium))
