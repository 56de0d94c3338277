"""The audit chain off the write path (portal/audit.py).

Writers insert unchained rows (content HMAC and transaction id, no shared
lock); the chainer assigns `chain_seq`, `prev_hash` and `hash` later. Rows
written before this migration keep their place: `chain_seq = seq`, and their
hash stays the one computed then (`row_hmac` empty marks that formula).
The append-only trigger now lets exactly one UPDATE through: the chainer's,
on an unchained row, changing nothing but the three chain columns.
"""

from django.db import migrations, models

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION portal_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.chain_seq IS NULL AND NEW.chain_seq IS NOT NULL
       AND (to_jsonb(NEW) - 'chain_seq' - 'prev_hash' - 'hash') = (to_jsonb(OLD) - 'chain_seq' - 'prev_hash' - 'hash')
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
UPDATE portal_auditevent SET chain_seq = seq WHERE chain_seq IS NULL;
CREATE INDEX portal_auditevent_unchained ON portal_auditevent (xid, seq) WHERE chain_seq IS NULL;
"""

REVERSE_SQL = """
DROP INDEX IF EXISTS portal_auditevent_unchained;
CREATE OR REPLACE FUNCTION portal_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    schema_editor.execute(TRIGGER_SQL)


def backwards(apps, schema_editor):
    schema_editor.execute(REVERSE_SQL)


class Migration(migrations.Migration):
    dependencies = [("portal", "0003_dashboard_rollups")]

    operations = [
        migrations.AlterField(model_name="auditevent", name="seq", field=models.BigAutoField(primary_key=True, serialize=False)),
        migrations.AddField(model_name="auditevent", name="xid", field=models.BigIntegerField(default=0)),
        migrations.AddField(model_name="auditevent", name="row_hmac",
                            field=models.CharField(blank=True, default="", max_length=64)),
        migrations.AddField(model_name="auditevent", name="chain_seq",
                            field=models.BigIntegerField(blank=True, null=True, unique=True)),
        migrations.AlterField(model_name="auditevent", name="prev_hash",
                              field=models.CharField(blank=True, default="", max_length=64)),
        migrations.AlterField(model_name="auditevent", name="hash",
                              field=models.CharField(blank=True, default="", max_length=64)),
        migrations.RunPython(forwards, backwards),
    ]
