from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from payments import ledger, outbox, schema  # noqa: F401  (schema registers the OpenAPI auth extension)

        outbox.register_handlers()
        ledger.register_handlers()
