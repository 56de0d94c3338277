from django.urls import path

from payments import api

urlpatterns = [
    path("keys", api.KeysListApi.as_view(), name="api-keys"),
]
