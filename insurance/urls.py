from django.urls import path

from insurance import views, views_imports

urlpatterns = [
    path("", views.citizen_search, name="citizen_search"),
    path("new/", views.citizen_register, name="citizen_register"),
    path("<int:pk>/", views.citizen_detail, name="citizen_detail"),
    path("<int:pk>/edit/", views.citizen_edit, name="citizen_edit"),
    path("<int:pk>/status/", views.citizen_status, name="citizen_status"),
    path("<int:pk>/issue/", views.certificate_issue, name="certificate_issue"),
    path("cards/<int:pk>/<slug:action>/", views.certificate_action, name="certificate_action"),
    path("imports/", views_imports.import_list, name="import_list"),
    path("imports/new/", views_imports.import_upload, name="import_upload"),
    path("imports/template.csv", views_imports.import_template, {"fmt": "csv"}, name="import_template_csv"),
    path("imports/template.xlsx", views_imports.import_template, {"fmt": "xlsx"}, name="import_template_xlsx"),
    path("imports/<int:pk>/", views_imports.import_detail, name="import_detail"),
    path("imports/<int:pk>/status/", views_imports.import_status, name="import_status"),
    path("imports/<int:pk>/errors.csv", views_imports.import_errors_csv, name="import_errors_csv"),
]
