"""Dashboard rollups (backoffice/dashboards/rollups.py): per-object facts, current counts,
daily flows and the audit watermark the rollup tick resumes from."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("portal", "0002_regions_chain_head_append_only")]

    operations = [
        migrations.CreateModel(
            name="RollupWatermark",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("last_seq", models.BigIntegerField(default=0)),
                ("gaps", models.JSONField(blank=True, default=dict)),
                ("ticked_at", models.DateTimeField(blank=True, null=True)),
                ("rebuilt_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="RollupCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("region_code", models.CharField(max_length=6)),
                ("metric", models.CharField(max_length=24)),
                ("dim", models.CharField(blank=True, max_length=32)),
                ("value", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("region_code", "metric", "dim"), name="one_rollup_count_per_key"),
                ],
            },
        ),
        migrations.CreateModel(
            name="RollupDaily",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("region_code", models.CharField(max_length=6)),
                ("day", models.DateField()),
                ("metric", models.CharField(max_length=24)),
                ("dim", models.CharField(blank=True, max_length=32)),
                ("value", models.BigIntegerField(default=0)),
            ],
            options={
                "indexes": [models.Index(fields=["day", "region_code"], name="rollup_daily_day")],
                "constraints": [
                    models.UniqueConstraint(fields=("region_code", "day", "metric", "dim"), name="one_rollup_daily_per_key"),
                ],
            },
        ),
        migrations.CreateModel(
            name="RollupFact",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(max_length=16)),
                ("object_id", models.BigIntegerField()),
                ("region_code", models.CharField(max_length=6)),
                ("partner_id", models.IntegerField(blank=True, null=True)),
                ("state", models.CharField(blank=True, max_length=24)),
                ("month", models.DateField(blank=True, null=True)),
                ("day1", models.DateField(blank=True, null=True)),
                ("day2", models.DateField(blank=True, null=True)),
                ("amount_fen", models.BigIntegerField(default=0)),
                ("total_fen", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("kind", "object_id"), name="one_rollup_fact_per_object")],
            },
        ),
    ]
