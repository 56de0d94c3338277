"""Outbox delivery benchmark: throughput of a backlog, then commit-to-receipt latency when idle.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ecard REDIS_URL=redis://127.0.0.1:6379/12 \
        .venv/bin/python bench/outbox_bench.py [--events 10000] [--changes 50] [--workers 2]

It creates (and drops first) its own database `<name of DATABASE_URL>_outbox_bench`,
migrates it, FLUSHES the Redis db of REDIS_URL, starts a loopback webhook
receiver and real Celery worker processes (threads pool; the first one runs
the beat sweep), and prints its figures. Not a test: nothing asserts a time.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import bench_database_url, recreate_database  # noqa: E402


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return f"nproc {os.cpu_count()}, {mem_kb / 1024 / 1024:.1f} GiB RAM, CPU {cpu}, Python {platform.python_version()}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker process")
    args = parser.parse_args()

    db_url, admin_url, db_name = bench_database_url("_outbox_bench")
    recreate_database(admin_url, db_name)
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()

    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from insurance import services as insurance_services
    from payments.api.representations import linkage_repr
    from payments.linkages.services import linkage_create
    from payments.models import OutboxEvent, OutboxState, Partner, PartnerKind
    from payments.tasks import deliver_due_events
    from portal.actors import Actor
    from testkit.citizens import ensure_pilot_regions, new_id_number
    from testkit.processes import CeleryWorker, WebhookReceiver, wait_until

    print(f"machine: {machine()}")
    print(
        f"database {db_name}, {args.workers} worker processes x {args.concurrency} threads, "
        f"batch {settings.ECARD_DELIVERY_BATCH_SIZE}"
    )
    call_command("migrate", verbosity=0)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    call_command("rotate_portal_key", stdout=open(os.devnull, "w"))  # noqa: SIM115
    regions = ensure_pilot_regions()

    receiver = WebhookReceiver().start()
    partner = Partner.objects.create(
        code="bench", name="Bench wallet", kind=PartnerKind.WALLET, webhook_url=receiver.url
    )
    actor = Actor.system("bench")
    citizen = insurance_services.citizen_register(
        actor=actor,
        id_number=new_id_number("310000"),
        name="张三明",
        phone="13812345678",
        region=regions["310000"],
        scheme="resident",
    )
    insurance_services.certificate_issue(actor=actor, citizen=citizen, reason="bench")
    linkage = linkage_create(actor=actor, partner=partner, citizen=citizen, partner_user_ref="bench-user")
    obj = linkage_repr(linkage)

    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": settings.REDIS_URL,
        "ECARD_DELIVERY_SWEEP_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    workers = [
        CeleryWorker(env=env, name=f"bench{i}", concurrency=args.concurrency, beat=(i == 0))
        for i in range(args.workers)
    ]
    try:
        for worker in workers:
            worker.start()
        wait_until(lambda: OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count() == 1, what="warm-up")
        connection.close()

        # --- 1. Throughput: a backlog of N events written at once ------------------
        now = timezone.now()
        rows = []
        for i in range(args.events):
            event = OutboxEvent(
                partner=partner, type="certificate.suspended", object_id=obj["id"], created_at=now, next_attempt_at=now
            )
            event.body = json.dumps(
                {
                    "id": event.public_id,
                    "type": event.type,
                    "created_at": obj["created_at"],
                    "data": {"object": {**obj, "version": i + 2}},
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            rows.append(event)
        OutboxEvent.objects.bulk_create(rows, batch_size=2000)
        with connection.cursor() as cursor:  # fresh statistics, as autovacuum would have soon
            cursor.execute(f"ANALYZE {OutboxEvent._meta.db_table}")
        cpu_before = [cpu_seconds(w.proc.pid) for w in workers]
        bench_cpu_before = time.process_time()
        load_before = os.getloadavg()[0]
        start = time.monotonic()
        deliver_due_events.delay()  # do not wait for the next beat tick
        target = args.events + 1
        last_report = start
        while True:
            delivered = OutboxEvent.objects.filter(state=OutboxState.DELIVERED).count()
            elapsed = time.monotonic() - start
            if delivered >= target:
                break
            if elapsed > 600:
                raise SystemExit(f"only {delivered - 1} of {args.events} delivered after 600 s")
            if time.monotonic() - last_report >= 1:
                print(f"  {elapsed:6.1f} s  {delivered - 1:6d} delivered  {(delivered - 1) / elapsed:7.0f} events/s")
                last_report = time.monotonic()
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        worker_cpu = sum(cpu_seconds(w.proc.pid) for w in workers) - sum(cpu_before)
        receiver_cpu = time.process_time() - bench_cpu_before
        failed = OutboxEvent.objects.exclude(attempts=1).count()
        print(
            f"throughput: {args.events} events in {elapsed:.2f} s = {args.events / elapsed:.0f} events/s "
            f"({failed} needed more than one attempt; {len(receiver.received)} requests received)"
        )
        print(
            f"  CPU per event: workers {worker_cpu / args.events * 1000:.2f} ms, receiver and bench "
            f"{receiver_cpu / args.events * 1000:.2f} ms; load average {load_before:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after (other processes share the {os.cpu_count()} CPUs)"
        )

        # --- 2. Latency when idle: service call commit -> receiver receipt ----------
        time.sleep(2)
        certificate = linkage.certificate
        latencies = []
        for i in range(args.changes):
            change = insurance_services.certificate_suspend if i % 2 == 0 else insurance_services.certificate_reinstate
            certificate = change(actor=actor, certificate=certificate, reason="bench")
            committed = time.time()  # the service's transaction has committed when it returns
            event = OutboxEvent.objects.order_by("-id").first()  # the one event this change wrote
            got = receiver.wait_for(
                lambda received, event_id=event.public_id: any(
                    r.headers["ecard-event-id"] == event_id for r in received
                ),
                timeout=30,
            )
            receipt = next(r for r in got if r.headers["ecard-event-id"] == event.public_id)
            latencies.append((receipt.at - committed) * 1000)
            time.sleep(0.2)
        latencies.sort()
        p95 = latencies[max(0, int(round(0.95 * len(latencies))) - 1)]
        print(
            f"latency over {len(latencies)} changes, commit to receipt: median {statistics.median(latencies):.1f} ms, "
            f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms"
        )
    except BaseException:
        for worker in workers:
            worker.dump_log()
        raise
    finally:
        for worker in workers:
            worker.stop()
        receiver.stop()
        connection.close()


if __name__ == "__main__":
    main()
