from django.urls import path, re_path

from payments.api import openapi
from payments.api import signed as api
from payments.api.base import ApiNotFoundView
from payments.bindings import api as api_bindings
from payments.catalogue import api as api_catalogue
from payments.delivery import api as api_events
from payments.linkages import api as api_linkages
from payments.premiums import api as api_premiums
from payments.settlements import api as api_settlements
from payments.tokens import api as api_tokens

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

# Keep this last: any other path under /api/v1/ answers a signed 404 problem+json.
urlpatterns.append(re_path(r"^.*$", ApiNotFoundView.as_view(), name="api-not-found"))
