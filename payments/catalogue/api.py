"""Read-only partner endpoints: the insured-service catalogue, facilities and
the policy in force (PARTNER_API.md "Objects" Service, Facility, Policy).

Every partner kind may read them. Query parameters other than the
documented ones are ignored.
"""

import re
from typing import cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from insurance.catalogue import decimal_string, facilities_listed, policy_in_force, services_listed
from insurance.models import Facility, FacilityKind, ReimbursementPolicy, Scheme, ServiceCategory, ServiceItem
from payments.api.base import PartnerApiView, paginate
from payments.api.lists import page_of
from payments.api.problems import ApiError, ProblemCode
from portal.models import Region

_REGION_CODE_RE = re.compile(r"^[0-9]{6}$")
_YEAR_RE = re.compile(r"^[0-9]{4}$")

# --- Output shapes (for the schema; the views build the same dicts) ----------


class ServiceOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name_zh = serializers.CharField()
    name_en = serializers.CharField()
    category = serializers.ChoiceField(choices=ServiceCategory.values)
    unit = serializers.CharField()
    max_unit_price_fen = serializers.IntegerField()


ServiceListOutputSerializer = page_of(ServiceOutputSerializer, "ServiceListOutputSerializer")


class FacilityOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name_zh = serializers.CharField()
    name_en = serializers.CharField()
    kind = serializers.ChoiceField(choices=FacilityKind.values)
    region_code = serializers.CharField()


FacilityListOutputSerializer = page_of(FacilityOutputSerializer, "FacilityListOutputSerializer")


class EligibleSharesOutputSerializer(serializers.Serializer):
    """Every category, each a decimal string such as "0.90"."""

    registration = serializers.CharField()
    consultation = serializers.CharField()
    lab_test = serializers.CharField()
    imaging = serializers.CharField()
    drug_a = serializers.CharField()
    drug_b = serializers.CharField()
    non_catalogue = serializers.CharField()
    other = serializers.CharField()


class PolicyOutputSerializer(serializers.Serializer):
    region_code = serializers.CharField()
    scheme = serializers.ChoiceField(choices=Scheme.values)
    year = serializers.IntegerField()
    version = serializers.IntegerField()
    effective_from = serializers.DateField()
    deductible_fen = serializers.IntegerField()
    ratio = serializers.CharField(help_text='A decimal string such as "0.70".')
    annual_cap_fen = serializers.IntegerField()
    personal_account_allowed = serializers.BooleanField()
    eligible_shares = EligibleSharesOutputSerializer()
    premium_fen = serializers.IntegerField(
        allow_null=True, help_text="The resident scheme's yearly premium; null for employee."
    )


# --- Representations ---------------------------------------------------------------


def service_representation(item: ServiceItem) -> dict:
    return {
        "code": item.code,
        "name_zh": item.name_zh,
        "name_en": item.name_en,
        "category": item.category,
        "unit": item.unit,
        "max_unit_price_fen": item.max_unit_price_fen,
    }


def facility_representation(facility: Facility) -> dict:
    return {
        "code": facility.code,
        "name_zh": facility.name_zh,
        "name_en": facility.name_en,
        "kind": facility.kind,
        "region_code": facility.region_id,
    }


def policy_representation(policy: ReimbursementPolicy) -> dict:
    return {
        "region_code": policy.region_id,
        "scheme": policy.scheme,
        "year": policy.year,
        "version": policy.version,
        "effective_from": policy.effective_from.isoformat(),
        "deductible_fen": policy.deductible_fen,
        "ratio": decimal_string(policy.ratio),
        "annual_cap_fen": policy.annual_cap_fen,
        "personal_account_allowed": policy.personal_account_allowed,
        "eligible_shares": {
            category: decimal_string(policy.eligible_shares[category]) for category in ServiceCategory.values
        },
        "premium_fen": policy.premium_fen,
    }


# --- Input checks ----------------------------------------------------------------------


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(400, ProblemCode.VALIDATION_ERROR, message, errors={field: [message]})


def _pilot_region_code(raw: str | None, *, required: bool) -> str | None:
    if raw is None:
        if required:
            raise _invalid("region_code", "region_code is required.")
        return None
    if not _REGION_CODE_RE.match(raw) or not Region.objects.filter(code=raw).exists():
        raise _invalid("region_code", "region_code must be the six-digit code of a pilot region.")
    return raw


_PAGE_PARAMETERS = [
    OpenApiParameter(
        "cursor",
        OpenApiTypes.STR,
        required=False,
        description="The next_cursor of the previous page (opaque, [A-Za-z0-9_-]).",
    ),
    OpenApiParameter("limit", OpenApiTypes.INT, required=False, description="1 to 200, default 50."),
]
_PROBLEM_400 = OpenApiResponse(description="validation_error (application/problem+json)")
_PROBLEM_401 = OpenApiResponse(description="Authentication failed (application/problem+json)")


# --- Views --------------------------------------------------------------------------------


class ServiceListApi(PartnerApiView):
    """`GET /api/v1/services`: the national insured-service catalogue, ordered by code."""

    @extend_schema(
        operation_id="services_list",
        parameters=_PAGE_PARAMETERS,
        responses={200: ServiceListOutputSerializer, 400: _PROBLEM_400, 401: _PROBLEM_401},
    )
    def get(self, request: Request) -> Response:
        page = paginate(request, services_listed(), order=("code", "id"), serialize=service_representation)
        return Response(page)


class FacilityListApi(PartnerApiView):
    """`GET /api/v1/facilities?region_code=`: facilities, optionally of one pilot region, ordered by code."""

    @extend_schema(
        operation_id="facilities_list",
        parameters=[
            OpenApiParameter(
                "region_code",
                OpenApiTypes.STR,
                required=False,
                description="Only the facilities of this pilot region (six digits).",
            ),
            *_PAGE_PARAMETERS,
        ],
        responses={200: FacilityListOutputSerializer, 400: _PROBLEM_400, 401: _PROBLEM_401},
    )
    def get(self, request: Request) -> Response:
        region_code = _pilot_region_code(request.query_params.get("region_code"), required=False)
        page = paginate(
            request, facilities_listed(region_code), order=("code", "id"), serialize=facility_representation
        )
        return Response(page)


class PolicyInForceApi(PartnerApiView):
    """`GET /api/v1/policies?region_code=&scheme=&year=`: the one policy version in force now."""

    @extend_schema(
        operation_id="policies_retrieve",
        parameters=[
            OpenApiParameter("region_code", OpenApiTypes.STR, required=True, description="A pilot region's code."),
            OpenApiParameter("scheme", OpenApiTypes.STR, required=True, enum=Scheme.values),
            OpenApiParameter("year", OpenApiTypes.INT, required=True, description="A four-digit year."),
        ],
        responses={
            200: PolicyOutputSerializer,
            400: _PROBLEM_400,
            401: _PROBLEM_401,
            404: OpenApiResponse(description="not_found: no policy version in force (application/problem+json)"),
        },
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        errors: dict[str, list[str]] = {}
        try:
            region_code = _pilot_region_code(params.get("region_code"), required=True)
        except ApiError as exc:
            errors.update(cast(dict[str, list[str]], exc.extra["errors"]))
        scheme = params.get("scheme")
        if scheme is None:
            errors["scheme"] = ["scheme is required."]
        elif scheme not in Scheme.values:
            errors["scheme"] = ["scheme is employee or resident."]
        year = params.get("year")
        if year is None:
            errors["year"] = ["year is required."]
        elif not _YEAR_RE.match(year) or not 2000 <= int(year) <= 2099:
            errors["year"] = ["year is a four-digit year from 2000 to 2099."]
        if errors or region_code is None or scheme is None or year is None:
            raise ApiError(400, ProblemCode.VALIDATION_ERROR, "The query is not valid.", errors=errors)
        policy = policy_in_force(region_code, scheme, int(year))
        if policy is None:
            raise ApiError(404, ProblemCode.NOT_FOUND, "No policy is in force for this region, scheme and year.")
        return Response(policy_representation(policy))
