"""The pilot regions, read from the one list the migration loads (portal/data/pilot_regions.csv)."""

import csv
import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PILOT_REGIONS_CSV = Path(__file__).resolve().parent / "data" / "pilot_regions.csv"


@dataclass(frozen=True)
class PilotRegion:
    code: str
    name_zh: str
    name_en: str
    pilot_start: dt.date


@cache
def pilot_regions() -> tuple[PilotRegion, ...]:
    """The pilot regions in the file's order (by code)."""
    with PILOT_REGIONS_CSV.open(encoding="utf-8") as handle:
        return tuple(
            PilotRegion(
                code=row["code"],
                name_zh=row["name_zh"],
                name_en=row["name_en"],
                pilot_start=dt.date.fromisoformat(row["pilot_start"]),
            )
            for row in csv.DictReader(handle)
        )
