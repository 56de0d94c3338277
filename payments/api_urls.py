import os

from django.urls import path, re_path

from payments import (
    api,
    api_bindings,
    api_catalogue,
    api_events,
    api_linkages,
    api_premiums,
    api_tokens,
    openapi,
)
from payments.api_base import ApiNotFoundView
from payments.settlements import api as api_settlements

urlpatterns = [
    # The counter's path first (a QR token, its verification, settle, confirm): Django tries the
    # patterns in order, and none of these overlaps another.
    path("linkages/<str:public_id>/qr-tokens", api_tokens.QrTokenCreateApi.as_view(), name="api-qr-tokens"),
    path("certificates/verify", api_tokens.CertificateVerifyApi.as_view(), name="api-certificates-verify"),
    path("settlements", api_settlements.SettlementListCreateApi.as_view(), name="api-settlements"),
    path(
        "settlements/<str:public_id>/confirm",
        api_settlements.SettlementConfirmApi.as_view(),
        name="api-settlement-confirm",
    ),
    path("keys", api.KeysListApi.as_view(), name="api-keys"),
    path("events", api_events.EventListApi.as_view(), name="api-events"),
    path("schema", openapi.SchemaApi.as_view(), name="api-schema"),
    path("docs", openapi.DocsPage.as_view(), name="api-docs"),
    path("services", api_catalogue.ServiceListApi.as_view(), name="api-services"),
    path("facilities", api_catalogue.FacilityListApi.as_view(), name="api-facilities"),
    path("policies", api_catalogue.PolicyInForceApi.as_view(), name="api-policies"),
    path("family-bindings", api_bindings.FamilyBindingListCreateApi.as_view(), name="api-family-bindings"),
    path("family-bindings/<str:public_id>", api_bindings.FamilyBindingDetailApi.as_view(), name="api-family-binding"),
    path(
        "family-bindings/<str:public_id>/revoke",
        api_bindings.FamilyBindingRevokeApi.as_view(),
        name="api-family-binding-revoke",
    ),
    path("linkages", api_linkages.LinkageListCreateApi.as_view(), name="api-linkages"),
    path("linkages/<str:public_id>", api_linkages.LinkageDetailApi.as_view(), name="api-linkage"),
    path("linkages/<str:public_id>/unlink", api_linkages.LinkageUnlinkApi.as_view(), name="api-linkage-unlink"),
    path("settlements/<str:public_id>", api_settlements.SettlementDetailApi.as_view(), name="api-settlement"),
    path(
        "settlements/<str:public_id>/cancel",
        api_settlements.SettlementCancelApi.as_view(),
        name="api-settlement-cancel",
    ),
    path(
        "settlements/<str:public_id>/refund",
        api_settlements.SettlementRefundApi.as_view(),
        name="api-settlement-refund",
    ),
    path("premiums", api_premiums.PremiumCreateApi.as_view(), name="api-premiums"),
    path("premiums/<str:public_id>", api_premiums.PremiumDetailApi.as_view(), name="api-premium"),
]

# Benchmarks only (bench/verify_bench.py): a bare DRF view as the throughput ceiling, mounted
# when the process starts with ECARD_BENCH_CEILING=1 and never otherwise.
if os.environ.get("ECARD_BENCH_CEILING") == "1":
    from bench.ceiling import BenchCeilingApi

    urlpatterns.append(path("bench/ceiling", BenchCeilingApi.as_view(), name="api-bench-ceiling"))

# Keep this last: any other path under /api/v1/ answers a signed 404 problem+json.
urlpatterns.append(re_path(r"^.*$", ApiNotFoundView.as_view(), name="api-not-found"))
