from django.urls import path

from portal import views

urlpatterns = [
    path("", views.staff_list, name="staff_list"),
    path("new/", views.staff_create, name="staff_create"),
    path("<int:pk>/deactivate/", views.staff_deactivate, name="staff_deactivate"),
    path("<int:pk>/reactivate/", views.staff_reactivate, name="staff_reactivate"),
    path("<int:pk>/unlock/", views.staff_unlock, name="staff_unlock"),
    path("<int:pk>/reset-password/", views.staff_password_reset, name="staff_password_reset"),
]
