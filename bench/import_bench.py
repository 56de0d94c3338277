"""Bulk citizen import against PostgreSQL's own COPY of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ecard REDIS_URL=redis://127.0.0.1:6379/2 \
        .venv/bin/python bench/import_bench.py [--rows 1000000] [--workers 2] [--per-row 5000]

DATABASE_URL names the PostgreSQL server; the benchmark recreates and
migrates its own database there (`<name>_import_bench`), and flushes
REDIS_URL's db. It writes --rows valid citizen rows (distinct identity
numbers, one pilot region) to a CSV file, then:

1. the ceiling: `COPY bench_copy FROM STDIN (FORMAT csv, HEADER)` of that
   file into a bare table of six text/bigint columns, without indexes, a
   plain *logged* table like the portal's own;
2. the import: the file stored encrypted as an upload is, then an `ImportJob`
   of it. With --workers N (N >= 1), the job's task is queued and N real
   `celery worker` processes (`-P threads -c 1 -Q celery,imports`, as
   testkit starts them) run it: the first cuts the file into chunks of
   ECARD_IMPORT_CHUNK_ROWS (5000), and every process claims chunks (the
   production path); the time runs from queuing to the job's end. With
   --workers 0, `run_import_job` runs it in this process. Each citizen is
   created (encrypted identity number and phone, blind indexes) with its
   `pending_activation` e-card, its transition log row and the chunk's audit
   event (three binary COPYs per chunk into the real, indexed tables). The
   importing processes' resident memory is sampled when the job passes 25,
   50, 75 and 100 % of the rows;
3. the floor: the rows the import wrote to the citizen, e-card and transition
   tables (already encrypted, indexed, numbered) are copied out, the tables
   emptied, and the same rows `COPY`ed back into the same tables, with their
   indexes and deferred foreign keys, in one transaction: what PostgreSQL
   alone needs for the rows the import writes;
4. with --per-row N, the previous per-row path (`citizen_register` +
   `certificate_issue`, one transaction per row) on N further rows, for
   the before/after comparison.

Nothing here is a test: it prints figures (and a JSON line at the end).
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


def rss_kib(pid: int | str = "self") -> tuple[int, int]:
    """(current, peak) resident set size of a process (this one by default), KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
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


FLOOR_TABLES = ("insurance_citizen", "insurance_certificate", "insurance_certificatetransition")


def copy_floor(url: str, work: Path) -> float:
    """The import's rows, already encrypted, COPYed back into the same indexed tables (one
    transaction, the foreign keys checked at commit as the import's are); seconds."""
    import psycopg

    dumps = {table: work / f"{table}.copy" for table in FLOOR_TABLES}
    with psycopg.connect(url) as conn:
        for table, path in dumps.items():
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} TO STDOUT (FORMAT BINARY)") as copy,
                path.open("wb") as out,
            ):
                for block in copy:
                    out.write(block)
        conn.execute(f"TRUNCATE {', '.join(FLOOR_TABLES)} CASCADE")
        conn.commit()
        conn.execute("CHECKPOINT")  # the import's own WAL is not written during the floor's
        started = time.perf_counter()
        for table, path in dumps.items():
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy,
                path.open("rb") as handle,
            ):
                while block := handle.read(1 << 20):
                    copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
    for path in dumps.values():
        path.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=0, help="celery worker processes (0: in this process)")
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
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()

    from django.core.files import File

    from insurance.imports.files import store_upload
    from insurance.imports.jobs import run_import_job
    from insurance.models import Certificate, Citizen, ImportChunk, ImportJob
    from insurance.tasks import run_import
    from portal.models import Region, Role, User
    from testkit.processes import CeleryWorker

    media = work / "media" / "imports"
    media.mkdir(parents=True)
    csv_path = media / "bench.csv"
    print(f"writing {args.rows:,} rows to {csv_path} ...", flush=True)
    write_rows(csv_path, 0, args.rows)
    size = csv_path.stat().st_size
    print(f"{size / 1e6:.1f} MB; load average {os.getloadavg()[0]:.1f}", flush=True)

    pg_url = url.replace("pgsql://", "postgresql://", 1)
    copy_seconds = copy_ceiling(pg_url, csv_path)
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

    workers = [
        CeleryWorker(
            env={"DATABASE_URL": url, "ECARD_VAR_DIR": str(work), "LOG_LEVEL": "WARNING"},
            name=f"import{i}",
            concurrency=1,
            beat=False,
            log_dir=str(work),
        ).start()
        for i in range(args.workers)
    ]
    pids: list[int | str] = [w.proc.pid for w in workers if w.proc] or ["self"]
    samples: dict[int, tuple[int, float]] = {}  # mark: (RSS of the importing processes, KiB; seconds)
    done = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        from django.db import connection as thread_connection

        marks = [25, 50, 75]
        while not done.wait(0.25) and marks:
            rows_done = ImportJob.objects.filter(pk=job.pk).values_list("rows_done", flat=True).get()
            while marks and rows_done * 100 >= marks[0] * args.rows:
                samples[marks.pop(0)] = (sum(rss_kib(pid)[0] for pid in pids), time.perf_counter() - started)
        thread_connection.close()

    sampler = threading.Thread(target=sample, daemon=True)
    before = sum(rss_kib(pid)[0] for pid in pids)
    split_seconds: float | None = None  # when the last chunk was cut (the split is serial)
    cpu_started = time.process_time()
    try:
        sampler.start()
        if workers:
            run_import.delay(job.pk)
            while not (state := ImportJob.objects.get(pk=job.pk)).is_finished:
                if split_seconds is None and state.chunks_total is not None:
                    split_seconds = time.perf_counter() - started
                time.sleep(0.05)
        else:
            run_import_job(job.pk)
        import_seconds = time.perf_counter() - started
        python_cpu = time.process_time() - cpu_started
        samples[100] = (sum(rss_kib(pid)[0] for pid in pids), import_seconds)
        peak = max(rss_kib(pid)[1] for pid in pids)
    finally:
        done.set()
        for worker in workers:
            worker.stop()
    sampler.join()
    result = ImportJob.objects.get(pk=job.pk)
    import_rate = args.rows / import_seconds
    assert result.state == "done", result.error
    assert result.created == args.rows == Citizen.objects.count() == Certificate.objects.count()
    by_worker: dict[str, int] = {}
    for claimed_by, rows in ImportChunk.objects.filter(job=result).values_list("claimed_by", "rows"):
        key = claimed_by.split("-")[0]
        by_worker[key] = by_worker.get(key, 0) + rows
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, count(*) FROM pg_indexes WHERE tablename = ANY(%s) GROUP BY tablename ORDER BY tablename",
            [list(FLOOR_TABLES)],
        )
        indexes = dict(cursor.fetchall())
    connection.close()
    floor_seconds = copy_floor(pg_url, work)
    floor_rate = args.rows / floor_seconds
    how = f"{args.workers} worker process(es)" if workers else "in this process"
    print(
        f"import ({how}, {result.chunks_total} chunks): {import_seconds:.1f} s, {import_rate:,.0f} rows/s, "
        f"{import_rate / copy_rate:.2%} of COPY into a bare table, {import_rate / floor_rate:.1%} of the floor",
        flush=True,
    )
    if split_seconds is not None:
        print(f"  the file was cut into chunks (serial, by the first process) by {split_seconds:.1f} s")
    print("  rows imported by each process: " + ", ".join(f"{k} {v:,}" for k, v in sorted(by_worker.items())))
    if not workers:
        print(f"  this process's CPU time: {python_cpu:.1f} s (the rest of the wall time is mostly PostgreSQL's)")
    print(
        f"floor, COPY of the same rows already encrypted into the same indexed tables: {floor_seconds:.1f} s, "
        f"{floor_rate:,.0f} rows/s",
        flush=True,
    )
    print("  indexes maintained per row: " + ", ".join(f"{t} {n}" for t, n in indexes.items()))
    print(f"RSS of the importing process(es) before the import: {before / 1024:.1f} MiB")
    for mark in sorted(samples):
        current, at = samples[mark]
        print(f"  at {mark:3d} % ({at:6.1f} s): RSS {current / 1024:.1f} MiB")
    print(f"  peak of any one of them: {peak / 1024:.1f} MiB")

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
                "workers": args.workers,
                "chunks": result.chunks_total,
                "file_mb": round(size / 1e6, 1),
                "copy_rows_per_s": round(copy_rate),
                "floor_rows_per_s": round(floor_rate),
                "import_rows_per_s": round(import_rate),
                "import_s": round(import_seconds, 1),
                "split_done_s": round(split_seconds, 1) if split_seconds is not None else None,
                "ratio_to_floor": round(import_rate / floor_rate, 4),
                "rows_by_process": by_worker,
                "per_row_rows_per_s": round(per_row_rate) if per_row_rate else None,
                "rss_mib": {m: round(samples[m][0] / 1024, 1) for m in sorted(samples)},
                "indexes": indexes,
                "machine": f"{platform.node()} {os.cpu_count()} CPU, Python {platform.python_version()}",
                "load_average": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
