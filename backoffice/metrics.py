"""/metrics: every process's metrics (portal/observability/metrics.py) and the business figures,
read from the database at scrape time with one cheap aggregate query per family.

Families (all gauges, computed now; the per-process counters come from the processes):
- `ecard_outbox_due_events{partner}`, `ecard_outbox_oldest_due_age_seconds{partner}`: events due
  and not yet claimed, for partners whose deliveries are pushed (a webhook URL, not paused; the
  others read `GET /events`, their events wait there by design), and how long the oldest has been due;
- `ecard_outbox_dead_events{partner}`: dead events, until replayed;
- `ecard_import_jobs{state}`: citizen imports by state;
- `ecard_audit_unchained_rows`, `ecard_audit_oldest_unchained_age_seconds`: audit rows the
  chainer has not sealed yet (chain lag);
- `ecard_settlements_recent{state}`: settlements created in the last 24 hours, by their state now
  (the whole table would be a full scan at every scrape);
- `ecard_replica_lag_seconds`, `ecard_replica_lag_max_seconds`: only with a `replica` database;
- `ecard_redis_replicas`, `ecard_redis_sentinels`: only with `REDIS_URL=redis+sentinel://`: the
  replicas in sync with the Redis master and the Sentinels watching it (a failover needs both);
- `ecard_readiness_check{check}`: 1 when /readyz's check passes, else 0.
A family whose query fails is left out of that scrape and counts a database error.
"""

import logging
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from insurance.models import ImportJob, ImportJobState
from payments.models import OutboxEvent, OutboxState, Partner, Settlement, SettlementState
from portal import redisconn, replica
from portal.models import AuditEvent
from portal.observability import health
from portal.observability import metrics as process_metrics

logger = logging.getLogger(__name__)

# The whole scrape's queries together may take this long (a slow database must not pile up scrapes).
STATEMENT_TIMEOUT_MS = 5000

_OUTBOX_SQL = """
SELECT p.code,
       (SELECT count(*) FROM {events} e
         WHERE e.partner_id = p.id AND e.state = %(pending)s AND e.next_attempt_at <= %(now)s),
       (SELECT min(e.next_attempt_at) FROM {events} e
         WHERE e.partner_id = p.id AND e.state = %(pending)s AND e.next_attempt_at <= %(now)s),
       (SELECT count(*) FROM {events} e WHERE e.partner_id = p.id AND e.state = %(dead)s),
       NOT p.deliveries_paused AND p.webhook_url <> ''
FROM {partners} p
ORDER BY p.code
"""  # each subquery reads the index outbox_partner_state (partner, state, id)


def _outbox(now) -> Iterator[GaugeMetricFamily]:
    due = GaugeMetricFamily("ecard_outbox_due_events", "Outbox events due and not yet claimed.", labels=["partner"])
    age = GaugeMetricFamily(
        "ecard_outbox_oldest_due_age_seconds", "Seconds the oldest due event has waited.", labels=["partner"]
    )
    dead = GaugeMetricFamily("ecard_outbox_dead_events", "Dead outbox events (until replayed).", labels=["partner"])
    sql = _OUTBOX_SQL.format(events=OutboxEvent._meta.db_table, partners=Partner._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, {"pending": OutboxState.PENDING, "dead": OutboxState.DEAD, "now": now})
        rows = cursor.fetchall()
    for code, due_count, oldest, dead_count, pushed in rows:
        dead.add_metric([code], dead_count)
        if pushed:
            due.add_metric([code], due_count)
            age.add_metric([code], (now - oldest).total_seconds() if oldest else 0)
    yield from (due, age, dead)


def _imports(now) -> Iterator[GaugeMetricFamily]:
    counts = dict.fromkeys(ImportJobState.values, 0)
    for row in ImportJob.objects.order_by().values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    family = GaugeMetricFamily("ecard_import_jobs", "Citizen import jobs by state.", labels=["state"])
    for state, n in counts.items():
        family.add_metric([state], n)
    yield family


def _audit(now) -> Iterator[GaugeMetricFamily]:
    row = AuditEvent.objects.filter(chain_seq__isnull=True).aggregate(n=Count("seq"), oldest=Min("created_at"))
    yield GaugeMetricFamily("ecard_audit_unchained_rows", "Audit rows not yet chained.", value=row["n"])
    oldest = row["oldest"]
    yield GaugeMetricFamily(
        "ecard_audit_oldest_unchained_age_seconds",
        "Seconds the oldest unchained audit row has waited for the chainer (0 when none).",
        value=(now - oldest).total_seconds() if oldest else 0,
    )


def _settlements(now) -> Iterator[GaugeMetricFamily]:
    counts = dict.fromkeys(SettlementState.values, 0)
    recent = Settlement.objects.filter(created_at__gte=now - timedelta(hours=24)).order_by()
    for row in recent.values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    family = GaugeMetricFamily(
        "ecard_settlements_recent", "Settlements created in the last 24 hours, by state now.", labels=["state"]
    )
    for state, n in counts.items():
        family.add_metric([state], n)
    yield family


def _replica(now) -> Iterator[GaugeMetricFamily]:
    if not replica.replica_configured():
        return
    lag = replica.replica_lag()  # None: the replica cannot be read (the readiness check says so)
    if lag is not None:
        yield GaugeMetricFamily("ecard_replica_lag_seconds", "Seconds the read replica's replay is behind.", value=lag)
    yield GaugeMetricFamily(
        "ecard_replica_lag_max_seconds",
        "The replica lag allowed (setting).",
        value=settings.ECARD_REPLICA_MAX_LAG_SECONDS,
    )


def _redis(now) -> Iterator[GaugeMetricFamily]:
    view = redisconn.sentinel_view(settings.REDIS_URL)
    if view is None:  # one Redis server, no Sentinel
        return
    replicas, sentinels = view
    yield GaugeMetricFamily(
        "ecard_redis_replicas", "Redis replicas in sync with the master, as the Sentinels see them.", value=replicas
    )
    yield GaugeMetricFamily("ecard_redis_sentinels", "Sentinels watching the Redis master.", value=sentinels)


_FAMILIES = (_outbox, _imports, _audit, _settlements, _replica, _redis)


class BusinessCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        for family in _FAMILIES:
            try:
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                    collected = list(family(now))
            except Exception as exc:
                logger.warning("metrics: %s failed: %s", family.__name__.strip("_"), type(exc).__name__)
                process_metrics.count_exception(exc)
                continue
            yield from collected
        _, results = health.run_checks()
        ready = GaugeMetricFamily("ecard_readiness_check", "1 when the /readyz check passes.", labels=["check"])
        for name, result in results.items():
            ready.add_metric([name], 0 if result.startswith("failing") else 1)
        yield ready


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not process_metrics.scrape_allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    registry = process_metrics.process_registry()
    registry.register(BusinessCollector())
    response = process_metrics.exposition(registry)
    response["Cache-Control"] = "no-store"
    return response
