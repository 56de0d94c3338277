"""Production settings refuse insecure defaults and pass Django's deploy checks."""

import base64
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _key(byte: int) -> str:
    return "1:" + base64.b64encode(bytes([byte]) * 32).decode()


def _production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECARD_", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"))}
    env.update(
        ECARD_PRODUCTION="1",
        SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-0123456789",
        ALLOWED_HOSTS="ecard.example.gov.cn",
        ECARD_FIELD_ENCRYPTION_KEYS=_key(1),
        ECARD_BLIND_INDEX_KEYS=_key(2),
        ECARD_AUDIT_HMAC_KEY=_key(3),
        ECARD_SIGNING_KEY_ENCRYPTION_KEYS=_key(4),
        ECARD_VAR_DIR=str(ROOT / "var" / "test-production"),
    )
    env.update(overrides)
    return env


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_production_settings_pass_the_deploy_checks():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = _production_env()
    del env["SECRET_KEY"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_debug():
    result = _manage("check", env=_production_env(DEBUG="1"))
    assert result.returncode != 0
    assert "DEBUG" in result.stderr


def test_production_refuses_derived_personal_data_keys():
    env = _production_env()
    del env["ECARD_FIELD_ENCRYPTION_KEYS"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "ECARD_FIELD_ENCRYPTION_KEYS" in result.stderr


def test_a_malformed_boolean_fails_loudly():
    result = _manage("check", env=_production_env(DEBUG="maybe"))
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr
