"""The portal's URLs plus views whose database or Redis call fails, mounted only by the metrics tests."""

import redis
from django.db import connection
from django.urls import path

from backoffice.urls import handler500  # noqa: F401 (the portal's, for these URLs too)
from backoffice.urls import urlpatterns as portal_urlpatterns
from testkit.processes import free_port


def database_fails(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")


def redis_fails(request):
    redis.Redis(port=free_port(), socket_connect_timeout=1).ping()  # nothing listens there


urlpatterns = [
    path("tests/database-fails/", database_fails),
    path("tests/redis-fails/", redis_fails),
    *portal_urlpatterns,
]
