"""Liveness of Celery workers and beat: a real worker with its embedded beat touches both files
while it runs, `manage.py celery_alive` (the probe) says alive, and says not alive once the
worker is killed and the files grow old, or when a file is missing."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from testkit.processes import BASE_DIR, CeleryWorker, database_url_for_current_connection, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "celery_alive", *args],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    return tmp_path / "worker.alive", tmp_path / "beat.alive"


@pytest.fixture
def worker(files):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    worker_file, beat_file = files
    started = CeleryWorker(
        env={
            "DATABASE_URL": database_url_for_current_connection(),
            "REDIS_URL": settings.REDIS_URL,
            "ECARD_WORKER_LIVENESS_FILE": str(worker_file),
            "ECARD_BEAT_LIVENESS_FILE": str(beat_file),
            "ECARD_LIVENESS_INTERVAL_SECONDS": "1",
        },
        name="alive",
    ).start()
    yield started
    started.stop()
    started.dump_log()


def test_a_running_worker_and_beat_are_alive_and_a_killed_one_is_not(worker, files):
    worker_file, beat_file = files
    wait_until(lambda: worker_file.exists() and beat_file.exists(), timeout=20, what="both liveness files")
    first = worker_file.stat().st_mtime, beat_file.stat().st_mtime
    wait_until(
        lambda: worker_file.stat().st_mtime > first[0] and beat_file.stat().st_mtime > first[1],
        timeout=10,
        what="the files touched again",
    )
    alive = probe("--file", str(worker_file), "--max-age", "5")
    assert alive.returncode == 0, alive.stderr
    assert alive.stdout.startswith("alive:")
    assert probe("--beat", "--file", str(beat_file), "--max-age", "5").returncode == 0

    worker.kill()
    time.sleep(3.5)
    for args in (["--file", str(worker_file)], ["--beat", "--file", str(beat_file)]):
        dead = probe(*args, "--max-age", "3")
        assert dead.returncode == 1, dead.stdout
        assert "not alive" in dead.stderr and "last touched" in dead.stderr
        assert probe(*args, "--max-age", "60").returncode == 0  # the age is what decides


def test_the_probe_fails_when_there_is_no_liveness_file(tmp_path):
    missing = probe("--file", str(tmp_path / "never-written"), "--max-age", "60")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


def test_the_probe_refuses_a_max_age_that_is_not_positive(tmp_path):
    result = probe("--file", str(tmp_path / "x"), "--max-age", "0")
    assert result.returncode != 0
    assert "--max-age must be more than 0" in result.stderr
