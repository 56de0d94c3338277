from django.urls import path

from portal import views_audit

urlpatterns = [
    path("", views_audit.audit_list, name="audit_list"),
    path("<int:seq>/", views_audit.audit_detail, name="audit_detail"),
]
