from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """The top layer: the dashboards, the demo data and the root URL conf, above every app."""

    name = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from backoffice import audit_links

        audit_links.register()
