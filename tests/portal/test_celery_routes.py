"""Each kind of task goes to its own queue (CELERY_TASK_ROUTES), and a worker started without `-Q`
consumes them all (the demo's, the tests')."""

from django.conf import settings

from portal.celery import app

# The import tasks are routed to `imports` by the import queue's own change.
IMPORT_TASKS = {"insurance.tasks.run_import", "insurance.tasks.requeue_stale_imports"}


def _queue(task: str) -> str:
    return app.amqp.router.route({}, task)["queue"].name


def test_partner_deliveries_go_to_the_deliveries_queue():
    assert _queue("payments.tasks.deliver_event") == "deliveries"
    assert _queue("payments.tasks.deliver_due_events") == "deliveries"


def test_every_task_beat_schedules_leaves_the_default_queue():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if entry["task"] in IMPORT_TASKS:
            continue
        expected = "deliveries" if entry["task"] == "payments.tasks.deliver_due_events" else "periodic"
        assert _queue(entry["task"]) == expected, entry["task"]


def test_a_task_routed_nowhere_goes_to_the_default_queue_every_worker_consumes():
    assert _queue("portal.tasks.no_such_task") == "celery"


def test_a_worker_without_q_consumes_every_queue():
    assert set(app.amqp.queues) == {"celery", "deliveries", "imports", "periodic"}
    for name, queue in app.amqp.queues.items():  # declared as Celery declares a queue it creates
        assert (queue.exchange.name, queue.routing_key) == (name, name)
