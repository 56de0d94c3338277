"""QR token endpoints (PARTNER_API.md "QR tokens"): minting (wallets) and verifying (any active partner)."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from insurance.models import Scheme, Sex
from payments.api.base import (
    PartnerApiView,
    StrictCharField,
    StrictSerializer,
    json_response,
    parse_input,
    partner_actor,
)
from payments.api.problems import ApiError, ProblemCode
from payments.api.representations import rfc3339
from payments.models import FamilyBinding, Relationship, WalletLinkage
from payments.tokens import services as qr
from portal.masking import mask_name

# --- Shapes -------------------------------------------------------------------------------


class QrTokenCreateInputSerializer(StrictSerializer):
    family_binding_id = StrictCharField(max_length=40, required=False, allow_null=True)


class QrTokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class VerifyInputSerializer(StrictSerializer):
    # Any string: whatever is not an authentic token is `invalid_token`, not a validation error.
    token = StrictCharField(allow_blank=True, trim_whitespace=False)


class _VerifiedCitizenOutput(serializers.Serializer):
    name = serializers.CharField()
    id_number_masked = serializers.CharField()
    sex = serializers.ChoiceField(choices=Sex.values)
    birth_date = serializers.DateField()
    region_code = serializers.CharField()
    scheme = serializers.ChoiceField(choices=Scheme.values)


class _PresentedByOutput(serializers.Serializer):
    relationship = serializers.ChoiceField(choices=Relationship.values)
    holder_name_masked = serializers.CharField()


class VerifyOutputSerializer(serializers.Serializer):
    certificate_number = serializers.CharField()
    state = serializers.ChoiceField(choices=["pending_activation", "active", "suspended", "revoked", "expired"])
    token_used = serializers.BooleanField()
    citizen = _VerifiedCitizenOutput()
    presented_by = _PresentedByOutput(allow_null=True)
    token_expires_at = serializers.DateTimeField()


# --- Views --------------------------------------------------------------------------------


class QrTokenCreateApi(PartnerApiView):
    """`POST /linkages/{id}/qr-tokens`: a 60-second token for the holder, or for a binding's beneficiary."""

    wallet_only = True

    @extend_schema(
        operation_id="qr_tokens_create",
        request=QrTokenCreateInputSerializer,
        responses={
            201: QrTokenOutputSerializer,
            404: OpenApiResponse(OpenApiTypes.OBJECT, description="not_found"),
            409: OpenApiResponse(
                OpenApiTypes.OBJECT, description="linkage_inactive, certificate_not_active, binding_inactive"
            ),
        },
    )
    def post(self, request: Request, public_id: str) -> HttpResponse | Response:
        # One prepared read of the linkage and its card (404 first, as before any validation).
        target = qr.mint_target_read(partner_id=self.partner.pk, linkage_public_id=public_id)
        if target is None:
            raise ApiError(404, ProblemCode.NOT_FOUND, "Not found.")
        data = request.data
        # The usual body, {}, is valid as it stands; anything else goes through the serializer.
        if not (type(data) is dict and not data):
            data = parse_input(QrTokenCreateInputSerializer, request)
        if data.get("family_binding_id"):
            linkage = WalletLinkage.objects.get(pk=target.linkage_id)
            # Only a binding made through this linkage may be presented; any other is not found here.
            binding = FamilyBinding.objects.filter(
                public_id=data["family_binding_id"], partner=self.partner, holder_linkage=linkage
            ).first()
            if binding is None:
                raise ApiError(404, ProblemCode.NOT_FOUND, "No such family binding was made through this linkage.")
            minted = qr.qr_token_mint(
                actor=partner_actor(request, self.partner), linkage=linkage, family_binding=binding
            )
        else:
            minted = qr.qr_token_mint_for_holder(actor=partner_actor(request, self.partner), target=target)
        return json_response(request, {"token": minted.token, "expires_at": rfc3339(minted.expires_at)}, status=201)


class CertificateVerifyApi(PartnerApiView):
    """`POST /certificates/verify`: any active partner; the card's current state, whatever it is."""

    @extend_schema(
        operation_id="certificates_verify",
        request=VerifyInputSerializer,
        responses={
            200: VerifyOutputSerializer,
            422: OpenApiResponse(OpenApiTypes.OBJECT, description="invalid_token, token_expired"),
        },
    )
    def post(self, request: Request) -> HttpResponse | Response:
        data = request.data
        # The usual body, {"token": "<string>"}, is valid as it stands (the parser already refused NUL
        # and lone surrogates); anything else goes through the serializer for its exact errors.
        if not (type(data) is dict and len(data) == 1 and type(data.get("token")) is str):
            data = parse_input(VerifyInputSerializer, request)
        found = qr.token_verify_read(data["token"])
        return json_response(
            request,
            {
                "certificate_number": found.certificate_number,
                "state": found.certificate_state,
                "token_used": found.used,
                "citizen": {
                    # The full name: the facility registers the patient by it.
                    "name": found.citizen_name,
                    "id_number_masked": found.citizen_id_number_masked,
                    "sex": found.citizen_sex,
                    "birth_date": found.citizen_birth_date.isoformat(),
                    "region_code": found.citizen_region_code,
                    "scheme": found.citizen_scheme,
                },
                "presented_by": None
                if found.binding_relationship is None
                else {
                    "relationship": found.binding_relationship,
                    "holder_name_masked": mask_name(found.binding_holder_name or ""),
                },
                "token_expires_at": rfc3339(found.expires_at),
            },
        )
