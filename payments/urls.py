from django.urls import path

from payments import views

urlpatterns = [
    path("linkages/new/<int:citizen_pk>/", views.linkage_create, name="linkage_create"),
    path("linkages/<str:public_id>/unlink/", views.linkage_unlink, name="linkage_unlink"),
    path("sandbox/", views.sandbox_receipts, name="sandbox_receipts"),
]
