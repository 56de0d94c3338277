import os

from celery import Celery, signals

from portal.observability import liveness, logjson, metrics, requestid  # noqa: F401 (connect their Celery signals)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The worker's liveness file (portal/observability/liveness.py).
app.steps["consumer"].add(liveness.WorkerLiveness)
# Workers and beat log as the web does (LOG_FORMAT, LOG_LEVEL), request ids included.
signals.setup_logging.connect(logjson.use_django_logging, weak=False, dispatch_uid="ecard-logging")
