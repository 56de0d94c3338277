"""The hot path's Redis markers (portal/fastcache.py): Redis or a configuration error, never a stand-in."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import fastcache


def test_a_default_cache_other_than_redis_is_a_configuration_error(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with pytest.raises(ImproperlyConfigured, match="Redis"):
        fastcache.add_once("fastcache-test", timeout=1)
