"""Dashboard server time with 1,000,000 citizens and 5,000,000 settlements.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ecard REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/dashboard_bench.py [--citizens 1000000] [--settlements 5000000] [--requests 50]

Drops and recreates `<name of DATABASE_URL>_dashboard_bench`, migrates it and
fills it straight with SQL (`INSERT ... SELECT FROM generate_series`): the
citizens with one e-card each in every state, wallet linkages, family
bindings, QR tokens and settlements (paid, refunded, cancelled, expired) over
the last 400 days, and outbox rows in every delivery state. Personal data is
a placeholder: the dashboard never reads it. Then it times the full rollup
rebuild, one incremental tick after a few hundred changes made through the
services, and the dashboard's server time through Django's test client
(in-process: URL routing, middleware, session, view, template), for a
national operator (7 regions side by side) and a region administrator.
"""

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_database_url, recreate_database  # noqa: E402


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "0")  # the query log would distort the timings
    import django

    django.setup()


def machine() -> str:
    from django.db import connection

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
        cursor.execute("SHOW shared_buffers")
        shared_buffers = cursor.fetchone()[0]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"nproc={len(os.sched_getaffinity(0))}, memory={memory_kb / 1024 / 1024:.1f} GiB, cpu={cpu}, "
        f"load average {load}; python {platform.python_version()}; {version}; shared_buffers={shared_buffers}"
    )


def timed(label: str, sql: str, params: dict) -> None:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.rowcount
    print(f"  {label}: {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)


def generate(citizens: int, settlements: int) -> None:
    """Everything the rollups read, by SQL. Ids of citizens, cards and linkages coincide (i)."""
    from django.db import connection, transaction

    from backoffice.demo import ensure_regions
    from insurance.models import Facility, ReimbursementPolicy
    from payments.models import Partner, PartnerKind

    regions = sorted(ensure_regions())
    partners = [
        Partner.objects.create(code=code, name=name, kind=PartnerKind.WALLET).pk
        for code, name in (("wechat", "WeChat Pay"), ("alipay", "Alipay"))
    ]
    today = dt.date.today()
    facilities, policies = [], []
    for code in regions:
        facilities.append(
            Facility.objects.create(
                code=f"H{code}", name_zh="医院", name_en="Hospital", kind="hospital", region_id=code
            ).pk
        )
        policies.append(
            ReimbursementPolicy.objects.create(
                region_id=code,
                scheme="employee",
                year=today.year,
                version=1,
                effective_from=dt.date(today.year, 1, 1),
                deductible_fen=0,
                ratio="0.7",
                annual_cap_fen=10**9,
                personal_account_allowed=True,
                created_by="bench",
            ).pk
        )
    params = {
        "n": citizens,
        "s": settlements,
        "regions": regions,
        "facilities": facilities,
        "policies": policies,
        "p1": partners[0],
        "p2": partners[1],
    }
    started = time.perf_counter()
    with transaction.atomic():
        # Consistent by construction: skip the per-row foreign-key triggers (superuser only), as a restore does.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
        # Residue r = (i - 1) % 20 decides a citizen's card: 0-13 active, 14-16 pending, 17 suspended,
        # 18 revoked, 19 expired; 0-13 and 17 have a wallet linkage (odd with WeChat, even with Alipay).
        timed(
            "citizens",
            """
            INSERT INTO insurance_citizen (id, region_id, id_number_enc, id_number_bidx, id_number_masked, name,
                phone_enc, phone_bidx, phone_masked, birth_date, sex, scheme, status, created_at, updated_at)
            SELECT i, (%(regions)s::text[])[1 + i %% 7], '\\x00'::bytea, 'bench-' || i, '000***********0000', '张*明',
                NULL, '', '', DATE '1925-01-01' + ((i::bigint * 7919) %% 36500)::int, CASE WHEN i %% 2 = 0 THEN 'F' ELSE 'M' END,
                CASE WHEN i %% 3 = 0 THEN 'resident' ELSE 'employee' END,
                CASE WHEN i %% 100 = 98 THEN 'moved_out' WHEN i %% 100 = 99 THEN 'deceased' ELSE 'active' END,
                now() - ((i %% 400) || ' days')::interval, now()
            FROM generate_series(1, %(n)s) AS i""",
            params,
        )
        timed(
            "e-cards",
            """
            INSERT INTO insurance_certificate (id, number, citizen_id, state, issued_at, activated_at, expires_at,
                ended_at, end_reason)
            SELECT i, 'EC' || i, i,
                CASE WHEN r < 14 THEN 'active' WHEN r < 17 THEN 'pending_activation' WHEN r = 17 THEN 'suspended'
                     WHEN r = 18 THEN 'revoked' ELSE 'expired' END,
                now() - ((i %% 400) || ' days')::interval,
                CASE WHEN r < 14 OR r = 17 THEN now() - ((i %% 400) || ' days')::interval + interval '1 day' END,
                now() + interval '3 years', CASE WHEN r >= 18 THEN now() END,
                CASE WHEN r = 18 THEN 'revoked' WHEN r = 19 THEN 'expired' ELSE '' END
            FROM (SELECT i, (i - 1) %% 20 AS r FROM generate_series(1, %(n)s) AS i) AS g""",
            params,
        )
        timed(
            "wallet linkages",
            """
            INSERT INTO payments_walletlinkage (id, public_id, partner_id, citizen_id, certificate_id, partner_user_ref,
                verification_reference, state, end_reason, ended_by, created_at, version)
            SELECT i, 'lnk_' || i, CASE WHEN i %% 2 = 1 THEN %(p1)s ELSE %(p2)s END, i, i, 'u' || i, '',
                'active', '', '', now() - ((i %% 400) || ' days')::interval + interval '1 day', 1
            FROM (SELECT i, (i - 1) %% 20 AS r FROM generate_series(1, %(n)s) AS i) AS g
            WHERE r < 14 OR r = 17""",
            params,
        )
        timed(
            "family bindings",
            """
            INSERT INTO payments_familybinding (public_id, partner_id, holder_linkage_id, holder_citizen_id,
                beneficiary_id, relationship, consent_reference, state, end_reason, decided_by, decision_note,
                created_at, version)
            SELECT 'fbd_' || k, CASE WHEN h %% 2 = 1 THEN %(p1)s ELSE %(p2)s END, h, h, h + 1, 'parent', 'c',
                CASE WHEN k %% 10 = 0 THEN 'pending' WHEN k %% 10 = 1 THEN 'revoked' ELSE 'active' END, '', '', '',
                now() - ((k %% 300) || ' days')::interval, 1
            FROM (SELECT k, 20 * k + 1 AS h FROM generate_series(1, %(n)s / 50) AS k) AS g""",
            params,
        )
        # Settlement k belongs to citizen 20 * ((k * 7919) % (n / 20)) + (k % 14) + 1: always a linked one.
        timed(
            "QR tokens",
            """
            INSERT INTO payments_qrtoken (id, jti, certificate_id, linkage_id, issued_at, expires_at, used_at)
            SELECT k, 'jti' || k, c, c, now(), now(), now()
            FROM (SELECT k, 20 * ((k::bigint * 7919) %% (%(n)s / 20)) + (k %% 14) + 1 AS c
                  FROM generate_series(1, %(s)s) AS k) AS g""",
            params,
        )
        timed(
            "settlements",
            """
            INSERT INTO payments_settlement (id, public_id, partner_id, certificate_id, citizen_id, qr_token_id,
                facility_id, policy_id, state, year, total_fen, eligible_fen, deductible_fen, fund_fen, account_fen,
                self_pay_fen, use_personal_account, partner_transaction_id, refund_reason, expires_at, created_at,
                paid_at, refunded_at, released_at, version)
            SELECT k, 'stl_' || k, CASE WHEN c %% 2 = 1 THEN %(p1)s ELSE %(p2)s END, c, c, k,
                (%(facilities)s::int[])[1 + c %% 7], (%(policies)s::int[])[1 + c %% 7],
                st, extract(year FROM created)::int, total, total, 0, total * 7 / 10, 0, total - total * 7 / 10, false,
                CASE WHEN st IN ('paid', 'refunded') THEN 'tx' || k END, '', created + interval '15 minutes', created,
                CASE WHEN st IN ('paid', 'refunded') THEN created + interval '1 minute' END,
                CASE WHEN st = 'refunded' THEN created + interval '2 minutes' END,
                CASE WHEN st IN ('cancelled', 'expired') THEN created + interval '15 minutes' END, 2
            FROM (SELECT k, c, 1000 + (k * 31) %% 50000 AS total,
                         now() - ((k::bigint * 6911) %% (400 * 86400) || ' seconds')::interval AS created,
                         CASE WHEN k %% 100 < 90 THEN 'paid' WHEN k %% 100 < 93 THEN 'refunded'
                              WHEN k %% 100 < 97 THEN 'expired' ELSE 'cancelled' END AS st
                  FROM (SELECT k, 20 * ((k::bigint * 7919) %% (%(n)s / 20)) + (k %% 14) + 1 AS c
                        FROM generate_series(1, %(s)s) AS k) AS g0) AS g""",
            params,
        )
        timed(
            "outbox events",
            """
            INSERT INTO payments_outboxevent (public_id, partner_id, type, object_id, body, created_at, state, attempts,
                next_attempt_at, last_error, delivered_at)
            SELECT 'evt_' || k, CASE WHEN k %% 2 = 1 THEN %(p1)s ELSE %(p2)s END, 'settlement.paid', 'stl_' || k, '{}',
                now(), CASE WHEN k <= 400 THEN 'pending' WHEN k <= 420 THEN 'dead' ELSE 'delivered' END,
                CASE WHEN k <= 150 THEN 3 ELSE 1 END, now(), '', CASE WHEN k > 420 THEN now() END
            FROM generate_series(1, 200000) AS k""",
            params,
        )
        with connection.cursor() as cursor:
            for table in (
                "insurance_citizen",
                "insurance_certificate",
                "payments_walletlinkage",
                "payments_familybinding",
                "payments_qrtoken",
                "payments_settlement",
            ):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)


def changes(count: int) -> None:
    """Changes through the services, for the incremental tick to fold in."""
    from insurance import services
    from insurance.identity import make_identity_number
    from insurance.models import Certificate
    from portal.actors import Actor
    from portal.models import Region

    actor = Actor.system("bench")
    region = Region.objects.get(code="310000")
    for n in range(min(count // 2, 999)):
        services.citizen_register(
            actor=actor,
            id_number=make_identity_number("310101", dt.date(1950, 1, 1), n),
            name="王小明",
            phone="13800000000",
            region=region,
            scheme="employee",
        )
    for card in Certificate.objects.filter(state="active").order_by("id")[: count // 2]:
        services.certificate_suspend(actor=actor, certificate=card, reason="bench")


def measure(client, url: str, requests: int) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(5):
        assert client.get(url).status_code == 200
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)], len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--settlements", type=int, default=5_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--changes", type=int, default=400)
    parser.add_argument(
        "--reuse", action="store_true", help="keep the database of a previous run: only time the dashboard again"
    )
    args = parser.parse_args()
    url, admin_url, name = bench_database_url("_dashboard_bench")
    if not args.reuse:
        recreate_database(admin_url, name)
    setup_django(url)

    from django.core.management import call_command
    from django.db import connection

    from backoffice.dashboards.rollups import rollups_rebuild, rollups_tick
    from portal.models import RollupCount, RollupDaily, RollupFact

    call_command("migrate", verbosity=0)
    print(f"machine: {machine()}", flush=True)
    print(f"database {name}: {args.citizens:,} citizens, {args.settlements:,} settlements", flush=True)
    if args.reuse:
        measure_all(args)
        return
    generate(args.citizens, args.settlements)

    started = time.perf_counter()
    facts = rollups_rebuild()
    print(
        f"rollup rebuild: {facts:,} facts in {time.perf_counter() - started:.1f} s; "
        f"{RollupCount.objects.count():,} count rows, {RollupDaily.objects.count():,} daily rows",
        flush=True,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE portal_rollupcount, portal_rollupdaily, portal_rollupfact")

    changes(args.changes)
    started = time.perf_counter()
    events = rollups_tick()
    print(
        f"incremental tick: {events} audit events ({args.changes} changes) in "
        f"{(time.perf_counter() - started) * 1000:.0f} ms",
        flush=True,
    )
    started = time.perf_counter()
    rollups_tick()
    print(f"idle tick: {(time.perf_counter() - started) * 1000:.1f} ms; facts now {RollupFact.objects.count():,}")
    measure_all(args)


def measure_all(args) -> None:
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.test import Client

    from portal.models import Role, User

    for label, role, codes, path in (
        ("national operator, 7 regions side by side", Role.NATIONAL_OPERATOR, [], "/dashboard/"),
        ("region administrator, one region", Role.REGION_ADMIN, ["310000"], "/dashboard/310000/"),
    ):
        user = User.objects.filter(username=f"bench-{role}").first() or User.objects.create_user(
            username=f"bench-{role}", password="bench-password-1", role=role
        )
        user.regions.set(codes)
        if not Authenticator.objects.filter(user=user).exists():
            TOTP.activate(user, generate_totp_secret())
        client = Client()
        client.force_login(user)
        median, p95, queries = measure(client, path, args.requests)
        print(
            f"{label}: median {median:.1f} ms, p95 {p95:.1f} ms over {args.requests} requests, {queries} queries",
            flush=True,
        )


if __name__ == "__main__":
    main()
