from django.urls import include, path

from backoffice import metrics
from backoffice import views as views_dashboard
from portal import views
from portal.observability import health

urlpatterns = [
    path("api/v1/", include("payments.api.urls")),  # first: the partners' API is the busiest path
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("accounts/email/", views.account_email, name="account_email"),  # before allauth's: not offered
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("staff/", include("portal.staff_urls")),
    path("audit/", include("portal.audit_urls")),
    path("dashboard/", views_dashboard.dashboard, name="dashboard"),
    path("dashboard/<str:region_code>/", views_dashboard.dashboard_region, name="dashboard_region"),
    path("citizens/", include("insurance.urls")),
    path("catalogue/", include("insurance.urls_catalogue")),
    path("partners/", include("payments.urls")),
    path("sandbox/", include("payments.delivery.sandbox_urls")),
]

# A database or Redis that cannot be reached for now: the 503 page with Retry-After (portal/unavailable.py).
handler500 = "portal.unavailable.server_error"
