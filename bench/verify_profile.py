"""CPU cost of one `POST /api/v1/certificates/verify`, in process, through the WSGI application.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ecard REDIS_URL=redis://127.0.0.1:6379/13 \
        .venv/bin/python bench/verify_profile.py [--requests 2000] [--profile 30]

A companion of bench/verify_bench.py for a busy machine: wall-clock throughput
depends on what else runs, the CPU time of the serving process much less. It
builds its own database (`<name of DATABASE_URL>_verify_profile`), FLUSHES the Redis db of REDIS_URL, seeds as verify_bench does,
then calls `portal.wsgi.application` directly with signed requests (fresh nonce
each) and reports, per request, for verify and for the bare DRF ceiling:
CPU time of this process (`time.process_time`), wall time, SQL statements and
Redis round trips (pipelines count once). `--profile N` prints the top N
functions of a cProfile of the verify requests by cumulative time.

Not a test: nothing asserts a time. Prints one JSON document (and the profile before it).
"""

import argparse
import base64
import cProfile
import io
import json
import pstats
import secrets
import sys
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import CEILING_ENVIRON, fresh_django, load_average  # noqa: E402


def _environ(path: str, body: bytes, authorization: str | None) -> dict:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "RAW_URI": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    return environ


def _authorization(private_key, key_id: str, target: str, body: bytes) -> str:
    timestamp = int(time.time())
    nonce = secrets.token_urlsafe(18)
    to_sign = f"POST\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(private_key.sign(to_sign)).decode()
    return f'ECARD-ED25519 key_id="{key_id}",timestamp="{timestamp}",nonce="{nonce}",signature="{signature}"'


class _Counters:
    """SQL statements (Django's execute wrapper) and Redis round trips (one per packed send)."""

    def __init__(self) -> None:
        import redis.connection
        from django.db import connection

        self.sql = 0
        self.redis = 0
        connection.execute_wrappers.append(self._sql)
        original = redis.connection.AbstractConnection.send_packed_command
        counters = self

        def send_packed_command(conn, command, check_health=True):
            counters.redis += 1
            return original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = send_packed_command

    def _sql(self, execute, sql, params, many, context):
        self.sql += 1
        return execute(sql, params, many, context)


def _run(
    application, make_environ, n: int, counters: _Counters, profile: cProfile.Profile | None = None, threads: int = 1
) -> dict:
    from django.db import connection

    environs = [make_environ() for _ in range(n)]  # signed beforehand: the client's work is not counted
    statuses: dict[str, int] = {}

    def start_response(status, headers, exc_info=None):
        statuses[status[:3]] = statuses.get(status[:3], 0) + 1

    sql, rds = counters.sql, counters.redis

    def serve(share: list[dict]) -> None:
        for environ in share:
            body = b"".join(application(environ, start_response))
            assert body
        connection.close()  # each thread has its own connection, as in gunicorn

    cpu, wall = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    if threads == 1:
        for environ in environs:
            assert b"".join(application(environ, start_response))
    else:
        workers = [threading.Thread(target=serve, args=(environs[i::threads],)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "requests": n,
        "statuses": statuses,
        "cpu_us_per_request": round(cpu / n * 1e6, 1),
        "wall_us_per_request": round(wall / n * 1e6, 1),
        "sql_per_request": round((counters.sql - sql) / n, 2),
        "redis_round_trips_per_request": round((counters.redis - rds) / n, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4, help="also serve from this many threads at once")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions of a cProfile")
    args = parser.parse_args()

    fresh_django("_verify_profile", **CEILING_ENVIRON)
    from bench.verify_bench import fresh_token, seed

    data = seed()

    from portal.wsgi import application

    counters = _Counters()
    verify_path = "/api/v1/certificates/verify"
    body = json.dumps({"token": fresh_token(data["linkage"])}).encode()

    def verify_environ() -> dict:
        return _environ(verify_path, body, _authorization(data["private"], data["key_id"], verify_path, body))

    def ceiling_environ() -> dict:
        return _environ("/api/v1/bench/ceiling", b"{}", None)

    _run(application, verify_environ, 50, counters)  # warm: connections, caches, imports
    _run(application, ceiling_environ, 50, counters)
    report = {"load_average_at_start": load_average()}
    report["ceiling"] = _run(application, ceiling_environ, args.requests, counters)
    report["verify"] = _run(application, verify_environ, args.requests, counters)
    if args.threads > 1:  # as gunicorn's gthread worker: CPU per request when threads share the GIL
        report[f"ceiling_{args.threads}_threads"] = _run(
            application, ceiling_environ, args.requests, counters, threads=args.threads
        )
        report[f"verify_{args.threads}_threads"] = _run(
            application, verify_environ, args.requests, counters, threads=args.threads
        )
    report["verify_cpu_vs_ceiling"] = round(
        report["verify"]["cpu_us_per_request"] / report["ceiling"]["cpu_us_per_request"], 2
    )
    if args.profile:
        profile = cProfile.Profile(time.process_time)  # CPU, not wall: the machine may be busy
        _run(application, verify_environ, min(args.requests, 500), counters, profile)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.profile)
        print(out.getvalue(), file=sys.stderr)
    report["load_average_at_end"] = load_average()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
