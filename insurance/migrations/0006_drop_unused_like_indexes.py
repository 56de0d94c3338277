"""Drop the citizen and e-card indexes no query uses (issue 5, bulk import speed).

Each index is maintained on every insert: the import wrote 11 on
`insurance_citizen` and 7 on `insurance_certificate` per row. Before dropping,
the code was searched for pattern lookups (`__startswith`, `__contains`,
`__icontains`, `__like`, raw `LIKE`) on each column:

- `id_number_bidx`, `phone_bidx` (blind indexes) and the card `number` are
  only ever looked up by equality / `IN`: their `varchar_pattern_ops`
  `_like` indexes, which Django adds to every indexed or unique CharField,
  serve nothing. The unique and plain indexes stay. (Django keeps no state
  for `_like` indexes, hence RunSQL; should a later AlterField change one of
  these columns' type, Django would create its `_like` index again.)
- `region_id`: `(region_id, status)` leads with it, so the FK's own index and
  its `_like` index are redundant (`db_index=False`).
- `birth_date`: no query filters or sorts on it.
- `name`: only the search's `name__startswith`; one pattern-ops index
  (`citizen_name_prefix`, which also serves equality) replaces Django's
  plain + `_like` pair.
"""

import django.db.models.deletion
from django.db import migrations, models

_LIKE_INDEXES = {
    # name: (table, column), as Django created them in 0001/0002
    "insurance_citizen_id_number_bidx_71f94a74_like": ("insurance_citizen", "id_number_bidx"),
    "insurance_citizen_phone_bidx_9378c8b1_like": ("insurance_citizen", "phone_bidx"),
    "insurance_certificate_number_8a24f261_like": ("insurance_certificate", "number"),
}


def _drop_like_indexes(apps, schema_editor):
    for name in _LIKE_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def _create_like_indexes(apps, schema_editor):
    for name, (table, column) in _LIKE_INDEXES.items():
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}" varchar_pattern_ops)')


class Migration(migrations.Migration):

    dependencies = [
        ("insurance", "0005_import_jobs"),
        ("portal", "0002_regions_chain_head_append_only"),
    ]

    operations = [
        migrations.RunPython(_drop_like_indexes, _create_like_indexes, elidable=False),
        migrations.AlterField(
            model_name="citizen",
            name="birth_date",
            field=models.DateField(verbose_name="birth date"),
        ),
        migrations.AlterField(
            model_name="citizen",
            name="name",
            field=models.CharField(max_length=64, verbose_name="name"),
        ),
        migrations.AlterField(
            model_name="citizen",
            name="region",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="citizens", to="portal.region", verbose_name="insured region"),
        ),
        migrations.AddIndex(
            model_name="citizen",
            index=models.Index(fields=["name"], name="citizen_name_prefix", opclasses=["varchar_pattern_ops"]),
        ),
    ]
