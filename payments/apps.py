from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payments import panels
        from payments.api import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from payments.delivery import outbox
        from payments.ledger import services as ledger

        outbox.register_handlers()
        panels.register_panels()
        ledger.register_handlers()
        self._announce_key_changes()

    @staticmethod
    def _announce_key_changes() -> None:
        """Every save or delete of a partner or a partner key invalidates the web processes' cached
        key rows (payments/api/auth.py); no code path changes them with queryset `update()`."""
        from django.db.models.signals import post_delete, post_save

        from payments.api.auth import partner_keys_changed
        from payments.models import Partner, PartnerKey

        def changed(sender, **kwargs) -> None:
            partner_keys_changed()

        for model in (Partner, PartnerKey):
            post_save.connect(changed, sender=model, weak=False, dispatch_uid=f"key-cache-{model.__name__}-save")
            post_delete.connect(changed, sender=model, weak=False, dispatch_uid=f"key-cache-{model.__name__}-delete")
