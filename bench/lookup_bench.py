"""Citizen lookup by exact identity number, over a million citizens.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ecard .venv/bin/python bench/lookup_bench.py

DATABASE_URL names the PostgreSQL server; the benchmark creates and migrates
its own database there (`ecard_bench`, or --database), loads --citizens rows
with COPY unless they are already there, ANALYZEs, and then times the portal's
lookup path: `insurance.services.find_citizen_id_by_id_number` (the blind
index, one indexed query) and fetching the row, for random known numbers and
for unknown ones. The rows are built with the real `portal.crypto` and
`portal.masking` functions, so they are exactly what `citizen_register`
writes. Nothing here is a test: it prints figures.
"""

import argparse
import datetime as dt
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

FIRST_BIRTH = dt.date(1930, 1, 1)
BIRTH_DAYS = (dt.date(2020, 12, 31) - FIRST_BIRTH).days + 1
# A multiplier coprime with the size of the (area, birth date, sequence) space:
# index -> number is a bijection, so numbers are unique and look random.
_MULTIPLIER = 1_000_000_007
COPY_COLUMNS = (
    "region_id",
    "id_number_enc",
    "id_number_bidx",
    "id_number_masked",
    "name",
    "phone_enc",
    "phone_bidx",
    "phone_masked",
    "birth_date",
    "sex",
    "scheme",
    "status",
    "created_at",
    "updated_at",
)
COPY_TYPES = (
    "text",
    "bytea",
    "text",
    "text",
    "text",
    "bytea",
    "text",
    "text",
    "date",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
)


def _database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _libpq_dsn(url: str) -> str:
    # psycopg wants postgresql:// or postgres://; dj-database-url also accepts pgsql://.
    return url.replace("pgsql://", "postgresql://", 1)


def ensure_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_libpq_dsn(_database_url(server_url, "postgres")), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "0")  # the query log would distort the timings
    os.environ.setdefault("ECARD_MODE", "test")  # the tests' settings: derived keys on a throwaway database
    import django

    django.setup()


# --- Rows -----------------------------------------------------------------------


def _areas() -> list[str]:
    from backoffice.demo_plan import DISTRICTS

    return [code for codes in DISTRICTS.values() for code in codes]


def identity(index: int, areas: list[str]) -> tuple[str, dt.date, str]:
    """The index-th benchmark identity number (valid, unique for every index), its birth date and sex."""
    from insurance.identity import make_identity_number

    space = len(areas) * BIRTH_DAYS * 1000
    value = (index * _MULTIPLIER) % space
    area = areas[value % len(areas)]
    value //= len(areas)
    birth = FIRST_BIRTH + dt.timedelta(days=value % BIRTH_DAYS)
    sequence = value // BIRTH_DAYS
    return make_identity_number(area, birth, sequence), birth, "M" if sequence % 2 else "F"


def identity_number(index: int, areas: list[str]) -> str:
    return identity(index, areas)[0]


def _rows(start: int, stop: int, areas: list[str]):
    from backoffice.demo_plan import FEMALE_GIVEN, MALE_GIVEN, SURNAMES
    from insurance.models import ID_NUMBER_PURPOSE, PHONE_PURPOSE
    from portal.crypto import blind_index, encrypt_text
    from portal.masking import mask_id_number, mask_phone

    rng = random.Random(start)
    now = dt.datetime.now(dt.UTC)
    for index in range(start, stop):
        number, birth_date, sex = identity(index, areas)
        pool = MALE_GIVEN if sex == "M" else FEMALE_GIVEN
        name = rng.choice(SURNAMES) + rng.choice(pool) + rng.choice(pool)
        phone = "1" + rng.choice("3589") + f"{rng.randrange(10**9):09d}"
        yield (
            number[:2] + "0000",
            encrypt_text(number, purpose=ID_NUMBER_PURPOSE),
            blind_index(number, purpose=ID_NUMBER_PURPOSE),
            mask_id_number(number),
            name,
            encrypt_text(phone, purpose=PHONE_PURPOSE),
            blind_index(phone, purpose=PHONE_PURPOSE),
            mask_phone(phone),
            birth_date,
            sex,
            "employee" if index % 5 < 3 else "resident",
            "active",
            now,
            now,
        )


def _load_range(args: tuple[str, int, int, int]) -> int:
    """One worker: COPY rows [start, stop) in chunks, each chunk one transaction."""
    import psycopg

    dsn, start, stop, chunk = args
    areas = _areas()
    sql = f"COPY insurance_citizen ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with psycopg.connect(dsn) as conn:
        conn.execute("SET synchronous_commit = off")
        for chunk_start in range(start, stop, chunk):
            with conn.cursor() as cursor, cursor.copy(sql) as copy:
                copy.set_types(COPY_TYPES)
                for row in _rows(chunk_start, min(chunk_start + chunk, stop), areas):
                    copy.write_row(row)
            conn.commit()
    return stop - start


def load(url: str, count: int, workers: int) -> None:
    import multiprocessing

    from django.db import connection, connections

    from insurance.models import Citizen

    present = Citizen.objects.count()
    if present == count:
        print(f"{count} citizens already loaded; skipping the load")
        return
    if present:
        print(f"{present} citizens present, {count} wanted: emptying the table")
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE insurance_citizen CASCADE")
    connections.close_all()  # the children open their own connections
    per_worker = -(-count // workers)
    jobs = [(_libpq_dsn(url), start, min(start + per_worker, count), 20_000) for start in range(0, count, per_worker)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        loaded = sum(pool.map(_load_range, jobs))
    elapsed = time.perf_counter() - started
    print(f"loaded {loaded} citizens in {elapsed:.1f} s ({loaded / elapsed:,.0f} rows/s) with {len(jobs)} processes")


# --- Measuring ------------------------------------------------------------------------


def _percentile(sorted_values: list[float], fraction: float) -> float:
    position = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[position]


def _summary(label: str, samples: list[float]) -> str:
    values = sorted(samples)
    return (
        f"{label:<34} n={len(values):>5}  median={statistics.median(values):6.3f} ms  "
        f"p95={_percentile(values, 0.95):6.3f} ms  p99={_percentile(values, 0.99):6.3f} ms  max={values[-1]:6.3f} ms"
    )


def lookup(id_number: str):
    """The portal's path: blind-index lookup, then the row."""
    from insurance.models import Citizen
    from insurance.services import find_citizen_id_by_id_number

    citizen_id = find_citizen_id_by_id_number(id_number)
    if citizen_id is None:
        return None
    return Citizen.objects.select_related("region").get(pk=citizen_id)


def _execution_ms(plan_text: str) -> float:
    for line in plan_text.splitlines():
        if line.strip().startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    raise ValueError("no Execution Time in plan")


def _explain(id_number: str) -> str:
    from insurance.models import ID_NUMBER_PURPOSE, Citizen
    from portal.crypto import blind_index_candidates

    candidates = blind_index_candidates(id_number, purpose=ID_NUMBER_PURPOSE)
    # The same query as find_citizen_id_by_id_number's `.first()`.
    queryset = Citizen.objects.filter(id_number_bidx__in=candidates).values_list("id", flat=True).order_by("id")[:1]
    return queryset.explain(analyze=True, buffers=True)


def measure(count: int, known: int, unknown: int, seed: int) -> None:
    from django.db import connection

    areas = _areas()
    rng = random.Random(seed)
    known_numbers = [identity_number(rng.randrange(count), areas) for _ in range(known)]
    unknown_numbers = [identity_number(count + rng.randrange(10 * count), areas) for _ in range(unknown)]
    work = [(n, True) for n in known_numbers] + [(n, False) for n in unknown_numbers]
    rng.shuffle(work)

    for number, _ in work[:200]:  # warm the connection, the plan and the cache
        lookup(number)
    times: dict[bool, list[float]] = {True: [], False: []}
    for number, is_known in work:
        started = time.perf_counter()
        citizen = lookup(number)
        elapsed = (time.perf_counter() - started) * 1000
        if (citizen is not None) != is_known:
            raise SystemExit(f"lookup gave the wrong answer for a {'known' if is_known else 'unknown'} number")
        times[is_known].append(elapsed)

    print()
    print("Server time per lookup (Django ORM, two queries for a hit, one for a miss, loopback PostgreSQL):")
    print(_summary("known numbers (lookup + row)", times[True]))
    print(_summary("unknown numbers (lookup only)", times[False]))
    print(_summary("all", times[True] + times[False]))

    executions = [_execution_ms(_explain(number)) for number in known_numbers[:300]]
    print(_summary("PostgreSQL execution of the index query", executions))
    print()
    print("EXPLAIN (ANALYZE, BUFFERS) of the lookup of a known number:")
    print(_explain(known_numbers[0]))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('insurance_citizen')), "
            "pg_size_pretty(pg_relation_size('insurance_citizen_id_number_bidx_key'))"
        )
        table_size, index_size = cursor.fetchone()
    print(f"\ninsurance_citizen: {table_size} with indexes; blind-index unique index: {index_size}")


def machine() -> None:
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
    nproc = len(os.sched_getaffinity(0))  # what `nproc` prints
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW shared_buffers")
        shared_buffers = cursor.fetchone()[0]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine: nproc={nproc}, memory={memory_kb / 1024 / 1024:.1f} GiB, cpu={cpu}, load average {load}")
    print(f"python {platform.python_version()}; {version}; shared_buffers={shared_buffers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="ecard_bench", help="database to create and use (default ecard_bench)")
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--known", type=int, default=2000, help="lookups of loaded numbers")
    parser.add_argument("--unknown", type=int, default=500, help="lookups of numbers not loaded")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="loading processes")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/ecard")
    url = _database_url(server_url, args.database)
    ensure_database(server_url, args.database)
    setup_django(url)

    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    machine()
    load(url, args.citizens, args.workers)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE insurance_citizen")
    measure(args.citizens, args.known, args.unknown, args.seed)


if __name__ == "__main__":
    main()
