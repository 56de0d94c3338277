"""Settings of a benchmark's server that measures the ceiling: the project's settings in test mode,
with bench/urls.py as the URL conf (the project's URLs and `/api/v1/bench/ceiling`).

A benchmark selects them with `DJANGO_SETTINGS_MODULE=bench.settings` in its server's environment
(`CEILING_ENVIRON` in bench/common.py).
"""

from django.core.exceptions import ImproperlyConfigured

from portal.settings import *  # noqa: F403 - the project's settings, one setting changed
from portal.settings import MODE

if MODE != "test":
    raise ImproperlyConfigured(f"bench.settings runs only with ECARD_MODE=test, not {MODE!r}")

ROOT_URLCONF = "bench.urls"
