"""`python manage.py celery_alive [--beat] [--max-age 60] [--file PATH]`: a liveness probe for a
Celery worker or beat (portal/observability/liveness.py), for systemd or Kubernetes.

Exit status 0 when the liveness file was touched within `--max-age` seconds, 1 (with a line on
stderr saying why) when it is older or missing. It reads a file only: no database, no broker.
"""

import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.observability.liveness import age_seconds


class Command(BaseCommand):
    help = "Exit 0 if the Celery worker's (or with --beat, beat's) liveness file is recent, else 1."
    requires_system_checks: list = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--beat", action="store_true", help="check beat's file, not the worker's")
        parser.add_argument(
            "--file", help="the liveness file (default: ECARD_WORKER_LIVENESS_FILE or ECARD_BEAT_LIVENESS_FILE)"
        )
        parser.add_argument("--max-age", type=float, default=60.0, help="seconds the file may be old (default 60)")

    def handle(self, *args, beat: bool, file: str | None, max_age: float, **options) -> None:
        if max_age <= 0:
            raise CommandError("--max-age must be more than 0 seconds")
        path = file or (settings.ECARD_BEAT_LIVENESS_FILE if beat else settings.ECARD_WORKER_LIVENESS_FILE)
        what = "beat" if beat else "worker"
        age = age_seconds(path)
        if age is None:
            self.stderr.write(f"not alive: {path} does not exist (has the {what} started?)")
            sys.exit(1)
        if age > max_age:
            self.stderr.write(f"not alive: {path} was last touched {age:.0f} s ago (more than {max_age:g} s)")
            sys.exit(1)
        self.stdout.write(f"alive: {path} touched {age:.0f} s ago")
