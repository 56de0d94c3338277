# Imports in parallel (issue 17): the file is cut into chunks that any import worker claims.
# `checkpoint_row` becomes `split_row`: a job that was running when this is deployed is resumed
# by cutting the rest of its file, from that row on, into chunks.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("insurance", "0008_import_row_error_value"),
    ]

    operations = [
        migrations.RenameField(model_name="importjob", old_name="checkpoint_row", new_name="split_row"),
        migrations.AddField(
            model_name="importjob",
            name="chunks_total",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="ImportChunk",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("index", models.PositiveIntegerField()),
                ("first_row", models.PositiveIntegerField()),
                ("last_row", models.PositiveIntegerField()),
                ("rows", models.PositiveIntegerField()),
                ("payload", models.BinaryField()),
                (
                    "state",
                    models.CharField(
                        choices=[("pending", "Pending"), ("running", "Running"), ("done", "Done")],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("claimed_by", models.CharField(blank=True, max_length=200)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="chunks", to="insurance.importjob"
                    ),
                ),
            ],
            options={
                "ordering": ["job_id", "index"],
                "constraints": [models.UniqueConstraint(fields=("job", "index"), name="import_chunk_job_index")],
            },
        ),
    ]
