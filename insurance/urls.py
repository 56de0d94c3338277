from django.urls import path

from insurance import views

urlpatterns = [
    path("", views.citizen_search, name="citizen_search"),
    path("new/", views.citizen_register, name="citizen_register"),
    path("<int:pk>/", views.citizen_detail, name="citizen_detail"),
    path("<int:pk>/edit/", views.citizen_edit, name="citizen_edit"),
    path("<int:pk>/status/", views.citizen_status, name="citizen_status"),
    path("<int:pk>/issue/", views.certificate_issue, name="certificate_issue"),
    path("cards/<int:pk>/<slug:action>/", views.certificate_action, name="certificate_action"),
]
