"""Family-binding endpoints (PARTNER_API.md "Family binding" and the family-bindings rows).

Wallet partners only. A binding, or a holder linkage, of another partner answers
404 `not_found`, the same as one that does not exist.
"""

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
    identity_checked,
    paginate,
    parse_input,
)
from payments.api.lists import filter_by_state, page_of
from payments.api.problems import ApiError, ProblemCode
from payments.api.representations import family_binding_repr
from payments.api.shapes import CertificateOutputSerializer, CitizenOutputSerializer
from payments.bindings import services as bindings
from payments.models import BindingEndReason, BindingState, FamilyBinding, Relationship, WalletLinkage
from portal.actors import Actor, client_ip

# --- Shapes -------------------------------------------------------------------------------


class FamilyBindingOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    holder_linkage_id = serializers.CharField()
    beneficiary = CitizenOutputSerializer()
    beneficiary_certificate = CertificateOutputSerializer(allow_null=True)
    relationship = serializers.ChoiceField(choices=Relationship.values)
    consent_reference = serializers.CharField()
    state = serializers.ChoiceField(choices=BindingState.values)
    end_reason = serializers.ChoiceField(choices=BindingEndReason.values, allow_null=True)
    created_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField()


FamilyBindingListOutputSerializer = page_of(FamilyBindingOutputSerializer, "FamilyBindingListOutputSerializer")


class FamilyBindingCreateInputSerializer(StrictSerializer):
    holder_linkage_id = StrictCharField(max_length=40)
    # Any string: a number that is unknown (malformed included) is `identity_mismatch`.
    beneficiary_id_number = StrictCharField(max_length=64)
    beneficiary_name = StrictCharField(max_length=64)
    relationship = serializers.ChoiceField(choices=Relationship.values)
    consent_reference = ReferenceField(max_length=128)


class FamilyBindingRevokeInputSerializer(StrictSerializer):
    reason = serializers.ChoiceField(choices=[BindingEndReason.PARTNER_REQUEST.value], required=False)


_PROBLEM = "application/problem+json"


def _problem(text: str) -> OpenApiResponse:
    return OpenApiResponse(description=f"{text} ({_PROBLEM})")


_NOT_FOUND = _problem("not_found")
_COMMON = {
    400: _problem("validation_error"),
    401: _problem("Authentication failed"),
    403: _problem("forbidden: not a wallet partner"),
}


# --- Views ----------------------------------------------------------------------------------


class _BindingApiView(PartnerApiView):
    wallet_only = True

    def actor(self) -> Actor:
        return Actor.for_partner(self.partner.code, client_ip(self.request))

    def own_bindings(self):
        return FamilyBinding.objects.filter(partner=self.partner).select_related(
            "beneficiary", "holder_linkage", "partner"
        )

    def get_binding(self, public_id: str) -> FamilyBinding:
        binding = self.own_bindings().filter(public_id=public_id).first()
        if binding is None:
            raise ApiError(404, ProblemCode.NOT_FOUND, "Not found.")
        return binding

    def get_holder_linkage(self, public_id: str) -> WalletLinkage:
        linkage = WalletLinkage.objects.filter(partner=self.partner, public_id=public_id).first()
        if linkage is None:
            raise ApiError(404, ProblemCode.NOT_FOUND, "Not found.")
        return linkage


class FamilyBindingListCreateApi(_BindingApiView):
    """`POST /family-bindings` (idempotent) and `GET /family-bindings?holder_linkage_id=&state=`."""

    idempotent = True  # takes effect through the shared idempotency layer of PartnerApiView

    @extend_schema(
        operation_id="family_bindings_create",
        request=FamilyBindingCreateInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                location=OpenApiParameter.HEADER,
                required=True,
                description="1 to 255 printable ASCII characters.",
            )
        ],
        responses={
            201: FamilyBindingOutputSerializer,
            **_COMMON,
            404: _NOT_FOUND,
            409: _problem("certificate_unavailable, binding_exists, binding_limit_reached, linkage_inactive"),
            422: _problem("identity_mismatch"),
            429: _problem("rate_limited: ten identity mismatches within a minute (with /linkages and /premiums)"),
        },
    )
    def post(self, request: Request) -> Response:
        data = parse_input(FamilyBindingCreateInputSerializer, request)
        linkage = self.get_holder_linkage(data["holder_linkage_id"])
        with identity_checked(self.partner):  # one limit with /linkages and /premiums
            binding = bindings.family_binding_create(
                actor=self.actor(),
                partner=self.partner,
                holder_linkage=linkage,
                beneficiary_id_number=data["beneficiary_id_number"],
                beneficiary_name=data["beneficiary_name"],
                relationship=data["relationship"],
                consent_reference=data["consent_reference"],
            )
        binding = self.get_binding(binding.public_id)
        return Response(family_binding_repr(binding), status=201)

    @extend_schema(
        operation_id="family_bindings_list",
        parameters=[
            OpenApiParameter("holder_linkage_id", OpenApiTypes.STR, required=False),
            OpenApiParameter("state", OpenApiTypes.STR, required=False, enum=BindingState.values),
            OpenApiParameter("cursor", OpenApiTypes.STR, required=False),
            OpenApiParameter("limit", OpenApiTypes.INT, required=False, description="1 to 200, default 50."),
        ],
        responses={200: FamilyBindingListOutputSerializer, **_COMMON, 404: _NOT_FOUND},
    )
    def get(self, request: Request) -> Response:
        queryset = self.own_bindings()
        holder_linkage_id = request.query_params.get("holder_linkage_id")
        if holder_linkage_id is not None:
            queryset = queryset.filter(holder_linkage=self.get_holder_linkage(holder_linkage_id))
        queryset = filter_by_state(request, queryset, BindingState.values)
        return Response(paginate(request, queryset, serialize=family_binding_repr))


class FamilyBindingDetailApi(_BindingApiView):
    """`GET /family-bindings/{id}`."""

    @extend_schema(
        operation_id="family_bindings_retrieve",
        responses={200: FamilyBindingOutputSerializer, **_COMMON, 404: _NOT_FOUND},
    )
    def get(self, request: Request, public_id: str) -> Response:
        return Response(family_binding_repr(self.get_binding(public_id)))


class FamilyBindingRevokeApi(_BindingApiView):
    """`POST /family-bindings/{id}/revoke`: end it (`partner_request`); an ended binding is returned unchanged."""

    @extend_schema(
        operation_id="family_bindings_revoke",
        request=FamilyBindingRevokeInputSerializer,
        responses={200: FamilyBindingOutputSerializer, **_COMMON, 404: _NOT_FOUND},
    )
    def post(self, request: Request, public_id: str) -> Response:
        if request.body.strip():
            parse_input(FamilyBindingRevokeInputSerializer, request)
        binding = self.get_binding(public_id)
        bindings.family_binding_revoke(actor=self.actor(), binding=binding, reason=BindingEndReason.PARTNER_REQUEST)
        return Response(family_binding_repr(self.get_binding(public_id)))
