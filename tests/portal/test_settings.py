"""Settings are production settings unless told otherwise: they refuse insecure defaults and pass
Django's deploy checks."""

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
        SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-0123456789",
        ALLOWED_HOSTS="ecard.example.gov.cn",
        ECARD_FIELD_ENCRYPTION_KEYS=_key(1),
        ECARD_BLIND_INDEX_KEYS=_key(2),
        ECARD_AUDIT_HMAC_KEY=_key(3),
        ECARD_SIGNING_KEY_ENCRYPTION_KEYS=_key(4),
        ECARD_AUDIT_CHECKPOINT_KEYS=_key(5),
        ECARD_VAR_DIR=str(ROOT / "var" / "test-production"),
        EMAIL_HOST="smtp.ecard.example.gov.cn",
        DEFAULT_FROM_EMAIL="e-card portal <noreply@ecard.example.gov.cn>",
    )
    env.update(overrides)
    return env


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


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


def test_without_a_mode_the_settings_are_production_and_name_every_missing_variable():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "ECARD_",
                "SECRET_KEY",
                "DEBUG",
                "ALLOWED_HOSTS",
                "DATABASE_URL",
                "REDIS_URL",
                "EMAIL_",
                "DEFAULT_FROM_EMAIL",
            )
        )
    }
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "cannot start in production mode" in result.stderr
    for name in (
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
        "ECARD_FIELD_ENCRYPTION_KEYS",
        "ECARD_BLIND_INDEX_KEYS",
        "ECARD_AUDIT_HMAC_KEY",
        "ECARD_SIGNING_KEY_ENCRYPTION_KEYS",
        "ECARD_AUDIT_CHECKPOINT_KEYS",
        "EMAIL_HOST",
        "DEFAULT_FROM_EMAIL",
    ):
        assert f"{name} is not set" in result.stderr, name


def test_the_demo_mode_still_needs_postgresql_and_redis():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["ECARD_MODE"] = "demo"
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr and "REDIS_URL is not set" in result.stderr
    assert "SECRET_KEY" not in result.stderr


def test_an_unknown_mode_is_refused():
    result = _manage("check", env={**os.environ, "ECARD_MODE": "staging"})
    assert result.returncode != 0
    assert "ECARD_MODE must be one of production, demo, test" in result.stderr


def test_a_short_secret_key_is_refused():
    result = _manage("check", env=_production_env(SECRET_KEY="too-short"))
    assert result.returncode != 0
    assert "SECRET_KEY must be a random value of at least 50 characters" in result.stderr


def test_a_replica_url_adds_a_read_only_replica_alias_and_the_router():
    show = (
        "from django.conf import settings as s; r = s.DATABASES['replica']; "
        "print(r['HOST'], r['PORT'], r['NAME'], r['OPTIONS'], r['TEST']['MIRROR'], s.DATABASE_ROUTERS, "
        "s.ECARD_REPLICA_MAX_LAG_SECONDS, s.ECARD_READ_YOUR_WRITES_SECONDS)"
    )
    env = _production_env(DATABASE_REPLICA_URL="postgres://reader@10.0.0.2:5432/ecard")
    result = _manage("shell", "--no-imports", "-c", show, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "10.0.0.2",
        "5432",
        "ecard",
        "{'connect_timeout':",
        "2}",
        "default",
        "['portal.replica.ReplicaRouter']",
        "5",
        "10",
    ]
    assert _manage("check", "--deploy", "--fail-level", "WARNING", env=env).returncode == 0


def test_without_a_replica_url_there_is_no_replica_alias_nor_router():
    show = "from django.conf import settings as s; print(sorted(s.DATABASES), s.DATABASE_ROUTERS)"
    env = _production_env()
    env.pop("DATABASE_REPLICA_URL", None)
    result = _manage("shell", "--no-imports", "-c", show, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['default'] []"


def test_bad_replica_settings_fail_loudly():
    bad = _manage("check", env=_production_env(DATABASE_REPLICA_URL="mysql://reader@10.0.0.2/ecard"))
    assert bad.returncode != 0 and "DATABASE_REPLICA_URL must name a PostgreSQL server" in bad.stderr
    bad = _manage("check", env=_production_env(ECARD_REPLICA_MAX_LAG_SECONDS="soon"))
    assert bad.returncode != 0 and "ECARD_REPLICA_MAX_LAG_SECONDS must be an integer" in bad.stderr
    bad = _manage("check", env=_production_env(ECARD_READ_YOUR_WRITES_SECONDS="0"))
    assert bad.returncode != 0 and "ECARD_READ_YOUR_WRITES_SECONDS must be at least 1" in bad.stderr
