"""URLs of the catalogue, facility and policy screens (mounted at /catalogue/)."""

from django.urls import path

from insurance import views_catalogue as views
from insurance import views_policies

urlpatterns = [
    path("services/", views.service_list, name="catalogue_list"),
    path("services/new/", views.service_create, name="catalogue_create"),
    path("services/<int:pk>/edit/", views.service_edit, name="catalogue_edit"),
    path("services/<int:pk>/toggle/", views.service_toggle, name="catalogue_toggle"),
    path("services/import/", views.service_import, name="catalogue_import"),
    path("facilities/", views.facility_list, name="facility_list"),
    path("facilities/new/", views.facility_create, name="facility_create"),
    path("facilities/<int:pk>/edit/", views.facility_edit, name="facility_edit"),
    path("facilities/<int:pk>/toggle/", views.facility_toggle, name="facility_toggle"),
    path("facilities/import/", views.facility_import, name="facility_import"),
    path("imports/<str:token>/errors.csv", views.import_error_report, name="catalogue_import_errors"),
    path("policies/", views_policies.policy_index, name="policy_index"),
    path("policies/<str:region>/<str:scheme>/<int:year>/", views_policies.policy_versions, name="policy_versions"),
    path(
        "policies/<str:region>/<str:scheme>/<int:year>/new/",
        views_policies.policy_new_version,
        name="policy_new_version",
    ),
]
