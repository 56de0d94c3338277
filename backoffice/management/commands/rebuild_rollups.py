"""`python manage.py rebuild_rollups`: recompute every dashboard rollup from the tables."""

import json
import time

from django.core.management.base import BaseCommand

from backoffice.dashboards.rollups import rollups_rebuild, rollups_tick


class Command(BaseCommand):
    help = "Recompute the dashboard rollups from scratch (the periodic tick keeps them up afterwards)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tick", action="store_true", help="Only fold in the changes since the last tick.")

    def handle(self, *args, **options) -> None:
        started = time.perf_counter()
        if options["tick"]:
            result = {"events": rollups_tick()}
        else:
            result = {"facts": rollups_rebuild()}
        result["seconds"] = round(time.perf_counter() - started, 2)
        self.stdout.write(json.dumps(result))
