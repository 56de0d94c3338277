"""The project's URLs and the benchmarks' ceiling, `/api/v1/bench/ceiling` (bench/ceiling.py).

Only bench/settings.py names this URL conf, and only the benchmarks that measure the ceiling run
their server with those settings: the application's own URL conf never mounts the ceiling.
"""

from django.urls import path

from backoffice.urls import urlpatterns as portal_urlpatterns
from bench.ceiling import BenchCeilingApi

urlpatterns = [
    # Before the project's `api/v1/`, whose last pattern answers every other path with a 404.
    path("api/v1/bench/ceiling", BenchCeilingApi.as_view(), name="api-bench-ceiling"),
    *portal_urlpatterns,
]
