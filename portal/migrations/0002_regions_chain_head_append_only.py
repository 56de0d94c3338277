import csv
import datetime as dt
from pathlib import Path

from django.db import migrations

APPEND_ONLY_SQL = """
CREATE OR REPLACE FUNCTION portal_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER portal_auditevent_append_only
    BEFORE UPDATE OR DELETE ON portal_auditevent
    FOR EACH ROW EXECUTE FUNCTION portal_auditevent_append_only();
"""
DROP_SQL = """
DROP TRIGGER IF EXISTS portal_auditevent_append_only ON portal_auditevent;
DROP FUNCTION IF EXISTS portal_auditevent_append_only();
"""


def load_regions(apps, schema_editor):
    Region = apps.get_model("portal", "Region")
    path = Path(__file__).resolve().parent.parent / "data" / "pilot_regions.csv"
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            Region.objects.update_or_create(
                code=row["code"],
                defaults={
                    "name_zh": row["name_zh"],
                    "name_en": row["name_en"],
                    "pilot_start": dt.date.fromisoformat(row["pilot_start"]),
                },
            )
    apps.get_model("portal", "AuditChainHead").objects.get_or_create(id=1)


def append_only(apps, schema_editor):
    schema_editor.execute(APPEND_ONLY_SQL)


def drop_append_only(apps, schema_editor):
    schema_editor.execute(DROP_SQL)


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_initial")]

    operations = [
        migrations.RunPython(load_regions, migrations.RunPython.noop),
        migrations.RunPython(append_only, drop_append_only),
    ]
