"""Liveness of Celery workers and beat: each touches a file while it works, and
`manage.py celery_alive` (a systemd or Kubernetes probe) fails once the file is too old.

A worker touches ECARD_WORKER_LIVENESS_FILE every ECARD_LIVENESS_INTERVAL_SECONDS from a
consumer bootstep (Celery's documented way to add to a worker, "Extensions and Bootsteps"): the
step runs only while the consumer is connected to the broker and consuming, so a worker that has
lost its broker, or whose consumer has stopped, lets the file grow old although its process
lives. Beat touches ECARD_BEAT_LIVENESS_FILE from its scheduler's tick, the loop that sends the
periodic tasks (set as CELERY_BEAT_SCHEDULER, also used by a worker's embedded beat `-B`).
"""

import logging
import os
import time
from pathlib import Path

from celery import bootsteps
from celery.beat import PersistentScheduler
from django.conf import settings

logger = logging.getLogger(__name__)


def touch(path: str | os.PathLike) -> None:
    """Set the file's modification time to now, making it (and its directory) if missing."""
    file = Path(path)
    try:
        file.touch()
    except FileNotFoundError:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.touch()
    os.utime(file)


def age_seconds(path: str | os.PathLike) -> float | None:
    """Seconds since the file was last touched; None if there is no such file."""
    try:
        return max(0.0, time.time() - os.stat(path).st_mtime)
    except FileNotFoundError:
        return None


class WorkerLiveness(bootsteps.StartStopStep):
    """Consumer bootstep: touches the worker's liveness file while the consumer runs."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None

    def start(self, parent) -> None:
        path = settings.ECARD_WORKER_LIVENESS_FILE
        touch(path)
        self.tref = parent.timer.call_repeatedly(settings.ECARD_LIVENESS_INTERVAL_SECONDS, self._touch, (path,))

    @staticmethod
    def _touch(path: str) -> None:
        try:
            touch(path)
        except OSError as exc:  # a full disk must not stop the worker: the probe will say so
            logger.warning("could not touch the worker liveness file: %s", type(exc).__name__)

    def stop(self, parent) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


class BeatScheduler(PersistentScheduler):
    """Celery's default scheduler, touching the beat liveness file as it ticks."""

    _touched = 0.0

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now - self._touched >= settings.ECARD_LIVENESS_INTERVAL_SECONDS:
            try:
                touch(settings.ECARD_BEAT_LIVENESS_FILE)
                self._touched = now
            except OSError as exc:
                logger.warning("could not touch the beat liveness file: %s", type(exc).__name__)
        return super().tick(*args, **kwargs)
