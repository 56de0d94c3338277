# Citizen import jobs (insurance.importing, insurance.tasks.run_import).

import django.db.models.deletion
import insurance.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('insurance', '0004_policy_versions_immutable'),
        ('portal', '0002_regions_chain_head_append_only'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ImportJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('file', models.FileField(max_length=200, upload_to=insurance.models.import_file_path)),
                ('original_name', models.CharField(max_length=255, verbose_name='file name')),
                ('file_size', models.PositiveBigIntegerField(verbose_name='size (bytes)')),
                ('state', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='queued', max_length=16, verbose_name='state')),
                ('rows_total', models.PositiveIntegerField(blank=True, null=True, verbose_name='rows in the file')),
                ('rows_done', models.PositiveIntegerField(default=0, verbose_name='rows done')),
                ('created', models.PositiveIntegerField(default=0, verbose_name='created')),
                ('updated', models.PositiveIntegerField(default=0, verbose_name='updated')),
                ('failed', models.PositiveIntegerField(default=0, verbose_name='failed')),
                ('checkpoint_row', models.PositiveIntegerField(default=1)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('error', models.CharField(blank=True, max_length=500, verbose_name='error')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='uploaded at')),
                ('started_at', models.DateTimeField(blank=True, null=True, verbose_name='started at')),
                ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished at')),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                ('requeued_at', models.DateTimeField(blank=True, null=True)),
                ('region', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='import_jobs', to='portal.region', verbose_name='region')),
                ('uploaded_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='import_jobs', to=settings.AUTH_USER_MODEL, verbose_name='uploaded by')),
            ],
            options={
                'verbose_name': 'citizen import',
                'verbose_name_plural': 'citizen imports',
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='ImportRowError',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('row', models.PositiveIntegerField(verbose_name='row')),
                ('column', models.CharField(blank=True, max_length=64, verbose_name='column')),
                ('message', models.CharField(max_length=500, verbose_name='message')),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='row_errors', to='insurance.importjob')),
            ],
            options={
                'ordering': ['row', 'id'],
            },
        ),
        migrations.AddIndex(
            model_name='importjob',
            index=models.Index(fields=['state', 'heartbeat_at'], name='import_job_state_heartbeat'),
        ),
        migrations.AddIndex(
            model_name='importrowerror',
            index=models.Index(fields=['job', 'row'], name='import_error_job_row'),
        ),
    ]
