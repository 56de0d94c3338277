"""Linkage endpoints (PARTNER_API.md "Linkage" and the linkage rows).

Wallet partners only. A linkage of another partner answers 404 `not_found`,
the same as one that does not exist. The services emit the partner's own
events (`linkage.created`, `linkage.unlinked`).
"""

import unicodedata

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from insurance.models import Citizen
from insurance.services import find_citizen_id_by_id_number
from payments.api.base import (
    PartnerApiView,
    ReferenceField,
    StrictCharField,
    StrictSerializer,
    identity_checked,
    paginate,
    parse_input,
    partner_actor,
)
from payments.api.lists import filter_by_state, page_of
from payments.api.problems import ApiError, ProblemCode
from payments.api.representations import linkage_repr
from payments.api.shapes import CertificateOutputSerializer, CitizenOutputSerializer
from payments.linkages import services
from payments.linkages.errors import LinkageErrorCode
from payments.models import LinkageEndReason, LinkageState, Partner, WalletLinkage
from portal.errors import DomainError

# --- Shapes -------------------------------------------------------------------------------


class LinkageOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    partner_user_ref = serializers.CharField()
    state = serializers.ChoiceField(choices=LinkageState.values)
    end_reason = serializers.ChoiceField(choices=LinkageEndReason.values, allow_null=True)
    certificate = CertificateOutputSerializer()
    citizen = CitizenOutputSerializer()
    created_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField()


LinkageListOutputSerializer = page_of(LinkageOutputSerializer, "LinkageListOutputSerializer")


class LinkageCreateInputSerializer(StrictSerializer):
    # Any string: a number that is unknown (malformed included) is `identity_mismatch`.
    id_number = StrictCharField(max_length=64)
    name = StrictCharField(max_length=64)
    partner_user_ref = ReferenceField(max_length=128)
    verification_reference = ReferenceField(max_length=128)


class LinkageUnlinkInputSerializer(StrictSerializer):
    reason = serializers.ChoiceField(choices=[LinkageEndReason.CITIZEN_REQUEST.value])


_LINKAGE_ERRORS = {
    404: OpenApiResponse(OpenApiTypes.OBJECT, description="not_found (problem+json)"),
}


# --- Helpers ------------------------------------------------------------------------------


def _same_name(given: str, registered: str) -> bool:
    return unicodedata.normalize("NFKC", given).strip() == unicodedata.normalize("NFKC", registered).strip()


def identified_citizen(partner: Partner, id_number: str, name: str) -> Citizen:
    """The citizen with this number and name, else 422 `identity_mismatch` (one code for both),
    under the partner's mismatch limit."""
    with identity_checked(partner):
        citizen_id = find_citizen_id_by_id_number(id_number)
        citizen = Citizen.objects.filter(pk=citizen_id).first() if citizen_id is not None else None
        if citizen is None or not _same_name(name, citizen.name):
            raise ApiError(
                422, LinkageErrorCode.IDENTITY_MISMATCH, "The identity number and name do not match an insured citizen."
            )
    return citizen


def linkage_for_partner(partner: Partner, public_id: str) -> WalletLinkage:
    """This partner's linkage, or 404 `not_found` (another partner's included)."""
    linkage = (
        WalletLinkage.objects.select_related("certificate", "citizen")
        .filter(partner=partner, public_id=public_id)
        .first()
    )
    if linkage is None:
        raise ApiError(404, ProblemCode.NOT_FOUND, "Not found.")
    return linkage


def _existing_linkage_id(partner: Partner, citizen: Citizen, partner_user_ref: str) -> str | None:
    existing = (
        WalletLinkage.objects.filter(partner=partner, state=LinkageState.ACTIVE, citizen=citizen).first()
        or WalletLinkage.objects.filter(
            partner=partner, state=LinkageState.ACTIVE, partner_user_ref=partner_user_ref.strip()
        ).first()
    )
    return existing.public_id if existing is not None else None


# --- Views --------------------------------------------------------------------------------


class LinkageListCreateApi(PartnerApiView):
    """`GET /linkages` (this partner's, filtered) and `POST /linkages` (idempotent)."""

    wallet_only = True
    idempotent = True

    @extend_schema(
        operation_id="linkages_list",
        parameters=[
            OpenApiParameter("partner_user_ref", str, required=False),
            OpenApiParameter("state", str, enum=LinkageState.values, required=False),
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter("limit", int, required=False),
        ],
        responses=LinkageListOutputSerializer,
    )
    def get(self, request: Request) -> Response:
        rows = WalletLinkage.objects.select_related("certificate", "citizen").filter(partner=self.partner)
        ref = request.query_params.get("partner_user_ref")
        if ref is not None:
            rows = rows.filter(partner_user_ref=ref)
        rows = filter_by_state(request, rows, LinkageState.values)
        return Response(paginate(request, rows, serialize=linkage_repr))

    @extend_schema(
        operation_id="linkages_create",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)],
        request=LinkageCreateInputSerializer,
        responses={
            201: LinkageOutputSerializer,
            409: OpenApiResponse(
                OpenApiTypes.OBJECT, description="certificate_unavailable, linkage_exists (with linkage_id)"
            ),
            422: OpenApiResponse(OpenApiTypes.OBJECT, description="identity_mismatch"),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="rate_limited"),
        },
    )
    def post(self, request: Request) -> Response:
        data = parse_input(LinkageCreateInputSerializer, request)
        partner = self.partner
        citizen = identified_citizen(partner, data["id_number"], data["name"])
        try:
            linkage = services.linkage_create(
                actor=partner_actor(request, partner),
                partner=partner,
                citizen=citizen,
                partner_user_ref=data["partner_user_ref"],
                verification_reference=data["verification_reference"],
            )
        except DomainError as exc:
            if exc.code == LinkageErrorCode.LINKAGE_EXISTS and "linkage_id" not in exc.extra:
                # A concurrent request won the race: name the linkage it made.
                raise DomainError(
                    exc.code,
                    exc.message,
                    status=exc.status,
                    linkage_id=_existing_linkage_id(partner, citizen, data["partner_user_ref"]),
                ) from exc
            raise
        return Response(linkage_repr(linkage), status=201)


class LinkageDetailApi(PartnerApiView):
    """`GET /linkages/{id}`."""

    wallet_only = True

    @extend_schema(operation_id="linkages_retrieve", responses={200: LinkageOutputSerializer, **_LINKAGE_ERRORS})
    def get(self, request: Request, public_id: str) -> Response:
        return Response(linkage_repr(linkage_for_partner(self.partner, public_id)))


class LinkageUnlinkApi(PartnerApiView):
    """`POST /linkages/{id}/unlink`: ends it and the bindings made through it; an ended one is returned unchanged."""

    wallet_only = True

    @extend_schema(
        operation_id="linkages_unlink",
        request=LinkageUnlinkInputSerializer,
        responses={200: LinkageOutputSerializer, **_LINKAGE_ERRORS},
    )
    def post(self, request: Request, public_id: str) -> Response:
        linkage = linkage_for_partner(self.partner, public_id)
        data = parse_input(LinkageUnlinkInputSerializer, request)
        linkage = services.linkage_unlink(
            actor=partner_actor(request, self.partner), linkage=linkage, reason=data["reason"]
        )
        return Response(linkage_repr(linkage))
