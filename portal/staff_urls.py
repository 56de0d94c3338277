from django.urls import path

from portal import views

urlpatterns = [
    path("", views.staff_list, name="staff_list"),
    path("new/", views.staff_create, name="staff_create"),
    path("<int:pk>/deactivate/", views.staff_deactivate, name="staff_deactivate"),
]
