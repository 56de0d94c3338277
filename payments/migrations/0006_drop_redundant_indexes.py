"""Drop indexes that no query uses, on the tables every settlement writes (issue 4, throughput).

Each index is maintained on every insert, and on every update that is not HOT (a
settlement"s confirm changes its indexed `state`):

- The `varchar_pattern_ops` `_like` indexes that Django adds to every unique
  CharField: public ids and QR token `jti` are only ever looked up by equality
  (the code was searched for `__startswith`, `__contains`, `__icontains` and raw
  `LIKE` on them); their unique index serves that. (Django keeps no state for
  `_like` indexes, hence RunSQL, as in insurance 0006.)
- Foreign keys whose column leads a composite index already: settlement
  `partner` (settlement_partner_feed) and `citizen` (settlement_citizen_year),
  outbox `partner` (outbox_partner_state) and `domain_event`
  (one_outbox_event_per_domain_event_partner_object), idempotency `partner`
  (one_idempotency_record_per_partner_key).

With a lone `partner_id` index in place, PostgreSQL"s generic plan for "this
partner"s settlement with this public id" chose it and filtered every one of the
partner"s settlements (0.4 ms at 800 rows, linear in the table); the lookups now
go by the unique public id (payments/settlements.py, payments/qr.py).
"""

import django.db.models.deletion
from django.db import migrations, models

_LIKE_INDEXES = {
    # name: (table, column), as Django created them in 0001-0004
    "payments_settlement_public_id_dbf72a90_like": ("payments_settlement", "public_id"),
    "payments_outboxevent_public_id_012ef0b2_like": ("payments_outboxevent", "public_id"),
    "payments_qrtoken_jti_8a80b363_like": ("payments_qrtoken", "jti"),
    "payments_walletlinkage_public_id_10483d72_like": ("payments_walletlinkage", "public_id"),
    "payments_familybinding_public_id_945baf6d_like": ("payments_familybinding", "public_id"),
    "payments_premiumpayment_public_id_53521bf0_like": ("payments_premiumpayment", "public_id"),
}


def _drop_like_indexes(apps, schema_editor):
    for name in _LIKE_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def _create_like_indexes(apps, schema_editor):
    for name, (table, column) in _LIKE_INDEXES.items():
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}" varchar_pattern_ops)')


class Migration(migrations.Migration):

    dependencies = [
        ("insurance", "0007_import_job_language"),
        ("payments", "0005_risk_flags"),
        ("portal", "0004_audit_chain_async"),
    ]

    operations = [
        migrations.RunPython(_drop_like_indexes, _create_like_indexes, elidable=False),
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="partner",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="idempotency_records", to="payments.partner"),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="domain_event",
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, to="portal.domainevent"),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="partner",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="events", to="payments.partner"),
        ),
        migrations.AlterField(
            model_name="settlement",
            name="citizen",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="settlements", to="insurance.citizen"),
        ),
        migrations.AlterField(
            model_name="settlement",
            name="partner",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="settlements", to="payments.partner"),
        ),
    ]
