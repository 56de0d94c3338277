from django.urls import path

from payments import api, api_catalogue

urlpatterns = [
    path("keys", api.KeysListApi.as_view(), name="api-keys"),
    path("services", api_catalogue.ServiceListApi.as_view(), name="api-services"),
    path("facilities", api_catalogue.FacilityListApi.as_view(), name="api-facilities"),
    path("policies", api_catalogue.PolicyInForceApi.as_view(), name="api-policies"),
]
