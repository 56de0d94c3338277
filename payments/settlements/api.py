"""Settlement endpoints (PARTNER_API.md "Settlement" and the settlements rows).

Any active partner, wallet or service platform, may settle a token; a
settlement belongs to the partner that created it, which alone reads,
confirms, cancels or refunds it: another partner's answers 404 `not_found`.
"""

from django.http import HttpResponse
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
    json_response,
    paginate,
    parse_input,
    partner_actor,
)
from payments.api.fastinput import (
    FACILITY_CODE_MAX_LENGTH,
    PARTNER_TRANSACTION_ID_MAX_LENGTH,
    QUANTITY_RANGE,
    SELF_PAY_FEN_RANGE,
    SERVICE_CODE_MAX_LENGTH,
    UNIT_PRICE_FEN_RANGE,
    settlement_confirm_input,
    settlement_create_input,
)
from payments.api.idempotency import Claim
from payments.api.lists import filter_by_state, page_of
from payments.api.problems import ApiError, ProblemCode
from payments.api.representations import settlement_repr
from payments.models import Partner, Settlement, SettlementState
from payments.settlements import selectors, services


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, and only that: no strings, booleans or floats (money is never a float)."""

    default_error_messages = {"invalid": "A whole number is required."}

    def to_internal_value(self, data) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


# --- Shapes -------------------------------------------------------------------------------


class SettlementLineInputSerializer(serializers.Serializer):
    # The bounds are the fast path's (payments/api/fastinput.py), which must accept nothing more.
    service_code = StrictCharField(max_length=SERVICE_CODE_MAX_LENGTH)
    quantity = StrictIntegerField(min_value=QUANTITY_RANGE[0], max_value=QUANTITY_RANGE[1])
    unit_price_fen = StrictIntegerField(min_value=UNIT_PRICE_FEN_RANGE[0], max_value=UNIT_PRICE_FEN_RANGE[1])

    def to_internal_value(self, data) -> dict:
        # Nested, so StrictSerializer's check (on `initial_data`) does not apply: unknown fields refused here.
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class SettlementCreateInputSerializer(StrictSerializer):
    token = StrictCharField(allow_blank=True, trim_whitespace=False)
    facility_code = StrictCharField(max_length=FACILITY_CODE_MAX_LENGTH)
    # many=True: DRF passes max_length on to the ListSerializer; the stubs' __init__ lacks it.
    lines = SettlementLineInputSerializer(many=True, allow_empty=False, max_length=services.MAX_LINES)  # type: ignore[call-arg]
    use_personal_account = StrictBooleanField(required=False, default=False)


class SettlementConfirmInputSerializer(StrictSerializer):
    partner_transaction_id = ReferenceField(max_length=PARTNER_TRANSACTION_ID_MAX_LENGTH)
    self_pay_fen = StrictIntegerField(min_value=SELF_PAY_FEN_RANGE[0], max_value=SELF_PAY_FEN_RANGE[1])


class SettlementCancelInputSerializer(StrictSerializer):
    """No fields: `{}` or an empty body."""


class SettlementRefundInputSerializer(StrictSerializer):
    reason = ReferenceField(max_length=128)


class _PolicyRefOutput(serializers.Serializer):
    region_code = serializers.CharField()
    scheme = serializers.ChoiceField(choices=["employee", "resident"])
    year = serializers.IntegerField()
    version = serializers.IntegerField()


class _SettlementLineOutput(serializers.Serializer):
    service_code = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price_fen = serializers.IntegerField()
    line_total_fen = serializers.IntegerField()
    eligible_fen = serializers.IntegerField()


class SettlementOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    state = serializers.ChoiceField(choices=SettlementState.values)
    certificate_number = serializers.CharField()
    family_binding_id = serializers.CharField(allow_null=True)
    facility_code = serializers.CharField()
    policy = _PolicyRefOutput()
    lines = _SettlementLineOutput(many=True)
    total_fen = serializers.IntegerField()
    eligible_fen = serializers.IntegerField()
    deductible_fen = serializers.IntegerField()
    fund_fen = serializers.IntegerField()
    account_fen = serializers.IntegerField()
    self_pay_fen = serializers.IntegerField()
    use_personal_account = serializers.BooleanField()
    partner_transaction_id = serializers.CharField(allow_null=True)
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    version = serializers.IntegerField()


SettlementListOutputSerializer = page_of(SettlementOutputSerializer, "SettlementListOutputSerializer")


_IDEMPOTENCY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)
_NOT_FOUND = {404: OpenApiResponse(OpenApiTypes.OBJECT, description="not_found")}


def settlement_for_partner(partner: Partner, public_id: str, *, full: bool = True) -> Settlement:
    """This partner's settlement, or 404 `not_found` (another partner's included).

    `full=False` checks ownership only: for a write, whose service locks and reads the row itself.
    """
    if full:
        settlement = selectors.settlements_of_partner(partner).filter(public_id=public_id).first()
    else:
        settlement = selectors.settlement_owned(partner, public_id)
    if settlement is None:
        raise ApiError(404, ProblemCode.NOT_FOUND, "Not found.")
    return settlement


def _fresh(settlement: Settlement) -> dict:
    return settlement_repr(selectors.settlements_of_partner(settlement.partner).get(pk=settlement.pk))


# --- Views --------------------------------------------------------------------------------


class SettlementListCreateApi(PartnerApiView):
    """`GET /settlements?state=` (this partner's) and `POST /settlements` (idempotent)."""

    idempotent = True
    claim_carried = True  # passed to the create's read (payments/settlements/store.py `create_context`)

    @extend_schema(
        operation_id="settlements_list",
        parameters=[
            OpenApiParameter("state", str, enum=SettlementState.values, required=False),
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter("limit", int, required=False),
        ],
        responses=SettlementListOutputSerializer,
    )
    def get(self, request: Request) -> Response:
        rows = selectors.settlements_of_partner(self.partner)
        rows = filter_by_state(request, rows, SettlementState.values)
        return Response(paginate(request, rows, serialize=settlement_repr))

    @extend_schema(
        operation_id="settlements_create",
        parameters=[_IDEMPOTENCY],
        request=SettlementCreateInputSerializer,
        responses={
            201: SettlementOutputSerializer,
            409: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description=(
                    "certificate_not_active, token_used, linkage_inactive, binding_inactive, policy_unavailable"
                ),
            ),
            422: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description=("invalid_token, token_expired, unknown_service, unknown_facility, price_above_maximum"),
            ),
        },
    )
    def post(self, request: Request, *, claim: Claim) -> HttpResponse | Response:
        data = settlement_create_input(request.data)  # the serializer's result, far cheaper
        if data is None:  # anything unusual: the serializer decides, and words any refusal
            data = parse_input(SettlementCreateInputSerializer, request)
        settlement = services.settlement_create(
            actor=partner_actor(request, self.partner),
            partner=self.partner,
            token=data["token"],
            facility_code=data["facility_code"],
            lines=[
                services.LineInput(line["service_code"], line["quantity"], line["unit_price_fen"])
                for line in data["lines"]
            ],
            use_personal_account=data["use_personal_account"],
            claim=claim,
        )
        return json_response(request, settlement_repr(settlement), status=201)  # lines and relations are in memory


class SettlementDetailApi(PartnerApiView):
    """`GET /settlements/{id}`."""

    @extend_schema(operation_id="settlements_retrieve", responses={200: SettlementOutputSerializer, **_NOT_FOUND})
    def get(self, request: Request, public_id: str) -> Response:
        return Response(settlement_repr(settlement_for_partner(self.partner, public_id)))


class SettlementConfirmApi(PartnerApiView):
    """`POST /settlements/{id}/confirm` (idempotent): the wallet collected the self-pay."""

    idempotent = True
    claim_carried = True  # passed to the settlement's lock (payments/settlements/store.py)

    @extend_schema(
        operation_id="settlements_confirm",
        parameters=[_IDEMPOTENCY],
        request=SettlementConfirmInputSerializer,
        responses={
            200: SettlementOutputSerializer,
            **_NOT_FOUND,
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="settlement_expired, invalid_state"),
            422: OpenApiResponse(OpenApiTypes.OBJECT, description="amount_mismatch"),
        },
    )
    def post(self, request: Request, public_id: str, *, claim: Claim) -> HttpResponse | Response:
        try:
            data = settlement_confirm_input(request.data)  # the serializer's result, far cheaper
            if data is None:  # anything unusual: the serializer decides, and words any refusal
                data = parse_input(SettlementConfirmInputSerializer, request)
        except Exception:
            settlement_for_partner(self.partner, public_id, full=False)  # another's: 404 whatever the body
            raise
        # The service finds the partner's settlement and locks it (404 if the partner has none).
        settlement = services.settlement_confirm(
            actor=partner_actor(request, self.partner),
            partner=self.partner,
            public_id=public_id,
            partner_transaction_id=data["partner_transaction_id"],
            self_pay_fen=data["self_pay_fen"],
            claim=claim,
        )
        return json_response(request, settlement_repr(settlement))  # locked with its lines and relations


class SettlementCancelApi(PartnerApiView):
    """`POST /settlements/{id}/cancel`: releases what was reserved."""

    @extend_schema(
        operation_id="settlements_cancel",
        request=SettlementCancelInputSerializer,
        responses={
            200: SettlementOutputSerializer,
            **_NOT_FOUND,
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="invalid_state"),
        },
    )
    def post(self, request: Request, public_id: str) -> Response:
        settlement = settlement_for_partner(self.partner, public_id)
        if not isinstance(request.data, dict) or request.data:
            parse_input(SettlementCancelInputSerializer, request)  # `{}` or no body; anything else is refused
        settlement = services.settlement_cancel(actor=partner_actor(request, self.partner), settlement=settlement)
        return Response(_fresh(settlement))


class SettlementRefundApi(PartnerApiView):
    """`POST /settlements/{id}/refund` (idempotent): full refund of a paid settlement."""

    idempotent = True

    @extend_schema(
        operation_id="settlements_refund",
        parameters=[_IDEMPOTENCY],
        request=SettlementRefundInputSerializer,
        responses={
            200: SettlementOutputSerializer,
            **_NOT_FOUND,
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="invalid_state"),
        },
    )
    def post(self, request: Request, public_id: str) -> Response:
        settlement = settlement_for_partner(self.partner, public_id)
        data = parse_input(SettlementRefundInputSerializer, request)
        settlement = services.settlement_refund(
            actor=partner_actor(request, self.partner), settlement=settlement, reason=data["reason"]
        )
        return Response(_fresh(settlement))
