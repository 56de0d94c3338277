"""Bulk citizen import against PostgreSQL's own COPY of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ecard REDIS_URL=redis://127.0.0.1:6379/2 \
        .venv/bin/python bench/import_bench.py [--rows 1000000] [--per-row 5000]

DATABASE_URL names the PostgreSQL server; the benchmark recreates and
migrates its own database there (`<name>_import_bench`). It writes --rows
valid citizen rows (distinct identity numbers, one pilot region) to a CSV
file, then:

1. the ceiling: `COPY bench_copy FROM STDIN (FORMAT csv, HEADER)` of that
   file into a bare table of six text/bigint columns, without indexes, a
   plain *logged* table like the portal's own;
2. the import: the file stored encrypted as an upload is, then an `ImportJob`
   run by `insurance.imports.jobs.run_import_job` (which decrypts it as it reads) —
   the code path the Celery task and the screens use, in batches of
   ECARD_IMPORT_BATCH_ROWS (1000) — creating each citizen (encrypted
   identity number and phone, blind indexes) with its `pending_activation`
   e-card, its transition log row and the batch's audit event (three binary
   COPYs per batch into the real, indexed tables). The
   process's resident memory is sampled when the job's checkpoint passes
   25, 50, 75 and 100 % of the file;
3. with --per-row N, the previous per-row path (`citizen_register` +
   `certificate_issue`, one transaction per row) on N further rows, for
   the before/after comparison.

REDIS_URL is only needed by the settings (nothing is queued). Nothing here is
a test: it prints figures (and a JSON line at the end).
"""

import argparse
import csv
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import bench_database_url, recreate_database  # noqa: E402

REGION = "310000"
AREA = "310101"
FIRST_BIRTH = dt.date(1950, 1, 1)


def identity(index: int) -> str:
    from insurance.identity import make_identity_number

    return make_identity_number(AREA, FIRST_BIRTH + dt.timedelta(days=index // 1000), index % 1000)


def write_rows(path: Path, start: int, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_number", "name", "phone", "region_code", "scheme", "account_balance_fen"])
        for i in range(start, start + count):
            writer.writerow([identity(i), f"居民{i}", f"138{i:08d}", REGION, "resident" if i % 3 else "employee", ""])


def rss_kib() -> tuple[int, int]:
    """(current, peak) resident set size of this process, KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def copy_ceiling(url: str, path: Path) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE bench_copy (id_number text, name text, phone text, region_code text, "
            "scheme text, account_balance_fen bigint)"
        )
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY bench_copy FROM STDIN (FORMAT csv, HEADER)") as copy,
            path.open("rb") as handle,
        ):
            while block := handle.read(1 << 20):
                copy.write(block)
        conn.commit()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-row", type=int, default=0, help="also time the old per-row path on N rows")
    args = parser.parse_args()

    url, admin_url, name = bench_database_url("_import_bench")
    recreate_database(admin_url, name)
    work = Path(tempfile.mkdtemp(prefix="ecard-import-bench-"))
    os.environ["DATABASE_URL"] = url
    os.environ["ECARD_VAR_DIR"] = str(work)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "0")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)

    from django.core.files import File

    from insurance.imports.files import store_upload
    from insurance.imports.jobs import run_import_job
    from insurance.models import Certificate, Citizen, ImportJob
    from portal.models import Region, Role, User

    media = work / "media" / "imports"
    media.mkdir(parents=True)
    csv_path = media / "bench.csv"
    print(f"writing {args.rows:,} rows to {csv_path} ...", flush=True)
    write_rows(csv_path, 0, args.rows)
    size = csv_path.stat().st_size
    print(f"{size / 1e6:.1f} MB; load average {os.getloadavg()[0]:.1f}", flush=True)

    copy_seconds = copy_ceiling(url.replace("pgsql://", "postgresql://", 1), csv_path)
    copy_rate = args.rows / copy_seconds
    print(f"COPY into a bare logged table: {copy_seconds:.2f} s, {copy_rate:,.0f} rows/s", flush=True)

    region = Region.objects.get(code=REGION)
    user = User.objects.create_user(username="bench-clerk", password="x" * 12, role=Role.CLERK)
    user.regions.set([region])
    job = ImportJob(uploaded_by=user, region=region, original_name="bench.csv", file_size=size)
    with csv_path.open("rb") as plain:  # stored as an upload is: encrypted in chunks (imports/files.py)
        store_upload(job, File(plain, name="bench.csv"), "csv")
    job.save()
    csv_path.unlink()
    connection.close()

    samples: dict[int, tuple[int, int, float]] = {}
    done = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        from django.db import connection as thread_connection

        marks = [25, 50, 75]
        while not done.wait(0.25) and marks:
            checkpoint = ImportJob.objects.filter(pk=job.pk).values_list("checkpoint_row", flat=True).get()
            while marks and (checkpoint - 1) * 100 >= marks[0] * args.rows:
                samples[marks.pop(0)] = (*rss_kib(), time.perf_counter() - started)
        thread_connection.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = rss_kib()
    cpu_started = time.process_time()
    result = run_import_job(job.pk)
    import_seconds = time.perf_counter() - started
    python_cpu = time.process_time() - cpu_started
    samples[100] = (*rss_kib(), import_seconds)
    done.set()
    sampler.join()
    import_rate = args.rows / import_seconds
    assert result is not None and result.state == "done", result and result.error
    assert result.created == args.rows == Citizen.objects.count() == Certificate.objects.count()
    print(
        f"import (run_import_job, batch path): {import_seconds:.1f} s, {import_rate:,.0f} rows/s, "
        f"{import_rate / copy_rate:.1%} of COPY",
        flush=True,
    )
    print(f"  this process's CPU time: {python_cpu:.1f} s (the rest of the wall time is mostly PostgreSQL's)")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, count(*) FROM pg_indexes WHERE tablename IN "
            "('insurance_citizen', 'insurance_certificate', 'insurance_certificatetransition') "
            "GROUP BY tablename ORDER BY tablename"
        )
        indexes = dict(cursor.fetchall())
    print("  indexes maintained per row: " + ", ".join(f"{t} {n}" for t, n in indexes.items()))
    print(f"RSS before the import: {before[0] / 1024:.1f} MiB (peak so far {before[1] / 1024:.1f} MiB)")
    for mark in sorted(samples):
        current, peak, at = samples[mark]
        print(f"  at {mark:3d} % ({at:6.1f} s): RSS {current / 1024:.1f} MiB, peak so far {peak / 1024:.1f} MiB")

    per_row_rate = None
    if args.per_row:
        from insurance.imports.reading import read_rows
        from insurance.imports.validation import validate_row
        from insurance.imports.writing import apply_row
        from portal.actors import Actor

        small = work / "per-row.csv"
        write_rows(small, args.rows, args.per_row)
        regions = {REGION: region}
        actor = Actor.for_user(user)
        started = time.perf_counter()
        for number, raw in read_rows(small):
            valid, errors = validate_row(number, raw, regions)
            assert valid is not None and not errors
            apply_row(valid, actor=actor)
        per_row_rate = args.per_row / (time.perf_counter() - started)
        print(
            f"old per-row path (citizen_register + certificate_issue per row): {per_row_rate:,.0f} rows/s "
            f"on {args.per_row:,} rows",
            flush=True,
        )

    print(
        json.dumps(
            {
                "rows": args.rows,
                "file_mb": round(size / 1e6, 1),
                "copy_rows_per_s": round(copy_rate),
                "import_rows_per_s": round(import_rate),
                "ratio": round(import_rate / copy_rate, 4),
                "per_row_rows_per_s": round(per_row_rate) if per_row_rate else None,
                "rss_mib": {m: round(samples[m][0] / 1024, 1) for m in sorted(samples)},
                "python_cpu_s": round(python_cpu, 1),
                "indexes": indexes,
                "machine": f"{platform.node()} {os.cpu_count()} CPU, Python {platform.python_version()}",
                "load_average": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
