"""Fixtures of the insurance tests."""

import pytest


@pytest.fixture
def media(settings, tmp_path):
    """A media folder of the test's own, for this process and (through ECARD_VAR_DIR) for the worker."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return tmp_path
