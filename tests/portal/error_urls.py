"""The portal's URLs plus one view that fails, mounted only by the error page tests."""

from django.urls import path

from backoffice.urls import handler500  # noqa: F401 (the portal's, for these URLs too)
from backoffice.urls import urlpatterns as portal_urlpatterns


def fails(request):
    raise RuntimeError("a bug in a view")


urlpatterns = [path("tests/fails/", fails), *portal_urlpatterns]
