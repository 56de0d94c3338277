from django.urls import path

from payments.delivery import sandbox

urlpatterns = [
    path("webhooks/<slug:partner_code>", sandbox.sandbox_webhook, name="sandbox-webhook"),
]
