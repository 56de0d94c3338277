"""A reimbursement policy version never changes once made: PostgreSQL refuses
UPDATE on its rows, so that no code path (admin, shell, a future bug) can
alter the numbers a settlement was split with."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION insurance_policy_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'reimbursement policy versions are immutable: create a new version'
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER insurance_policy_immutable
    BEFORE UPDATE ON insurance_reimbursementpolicy
    FOR EACH ROW EXECUTE FUNCTION insurance_policy_immutable();
"""

DROP = """
DROP TRIGGER IF EXISTS insurance_policy_immutable ON insurance_reimbursementpolicy;
DROP FUNCTION IF EXISTS insurance_policy_immutable();
"""


def _create(apps, schema_editor):
    schema_editor.execute(CREATE)


def _drop(apps, schema_editor):
    schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("insurance", "0003_catalogue_facilities_policies")]

    operations = [migrations.RunPython(_create, _drop)]
