"""`POST /api/v1/certificates/verify` under gunicorn, against a bare DRF endpoint as the ceiling.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ecard REDIS_URL=redis://127.0.0.1:6379/13 \
        .venv/bin/python bench/verify_bench.py [--duration 10] [--processes 2] [--connections 8]

It creates (and drops first) its own database `<name of DATABASE_URL>_verify_bench`,
migrates it, FLUSHES the Redis db of REDIS_URL, seeds a portal key, a wallet
partner with an Ed25519 key (rate limit raised out of the way), a citizen
with a linked card, and mints QR tokens (they live 60 s: a fresh one for
every phase). It starts gunicorn with the repository's `gunicorn.conf.py`
(two workers, `WEB_CONCURRENCY=2`, access log off, `DJANGO_SETTINGS_MODULE=bench.settings`
to mount `/api/v1/bench/ceiling`), and drives it from a separate load process
(bench/load_client.py, which signs every request with a fresh nonce):

1. in-process timeit: `Ed25519PublicKey.verify` alone, and the whole
   `PartnerSignatureAuthentication.authenticate` (key lookup, signature,
   timestamp, Redis nonce) over pre-signed requests;
2. saturation (closed loop): the ceiling, then verify; requests/s of each;
3. half of verify's saturating rate (open loop, fixed arrival rate):
   verify's p50/p99 latency, measured from when each request was due.

Not a test: nothing asserts a time. Prints one JSON document.
"""

import argparse
import base64
import datetime as dt
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
import timeit
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import CEILING_ENVIRON, fresh_django, load_average, machine, start_gunicorn  # noqa: E402

PYTHON = sys.executable


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _postgres_backends(admin_url: str, db_name: str) -> list[int]:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [db_name]
            )
        ]


class CpuMeter:
    """CPU seconds spent by the gunicorn workers, the PostgreSQL backends serving the benchmark
    database, and the load generator, over one phase: robust to a busy machine in a way
    requests/s are not. (Redis is shared with other users of the machine: not counted.)"""

    def __init__(self, server: subprocess.Popen, admin_url: str, db_name: str):
        self.server, self.admin_url, self.db_name = server, admin_url, db_name

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {
            "gunicorn": {pid: _cpu_seconds(pid) for pid in [self.server.pid, *_children(self.server.pid)]},
            "postgres": {pid: _cpu_seconds(pid) for pid in _postgres_backends(self.admin_url, self.db_name)},
        }

    def per_request_us(self, before: dict, after: dict, load_seconds: float, requests: int) -> dict:
        result = {}
        for name in ("gunicorn", "postgres"):
            spent = sum(cpu - before[name].get(pid, 0.0) for pid, cpu in after[name].items())
            result[f"{name}_us"] = round(spent / max(requests, 1) * 1e6, 1)
        result["load_generator_us"] = round(load_seconds / max(requests, 1) * 1e6, 1)
        result["total_us"] = round(sum(result.values()), 1)
        return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Data ---------------------------------------------------------------------------------


def seed() -> dict:
    """Portal key, partner and key, citizen with a linked card. Returns what the clients need."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    from insurance import services as insurance_services
    from insurance.identity import make_identity_number
    from payments import keys
    from payments.linkages.services import linkage_create
    from payments.models import Partner, PartnerKey, PartnerKind
    from portal.actors import Actor
    from portal.models import Region

    actor = Actor.system("verify-bench")
    keys.portal_key_create(actor=actor)
    # The rate limit is an operator's setting; out of the way here, or 429s would cap the figure.
    partner = Partner.objects.create(
        code="bench",
        name="Bench wallet",
        kind=PartnerKind.WALLET,
        webhook_url="http://127.0.0.1:9/hook",
        rate_limit_per_second=1_000_000,
    )
    private = Ed25519PrivateKey.generate()
    public = base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    PartnerKey.objects.create(partner=partner, key_id="bench-key", public_key=public)
    citizen = insurance_services.citizen_register(
        actor=actor,
        id_number=make_identity_number("310101", dt.date(1980, 5, 17), 123),
        name="张三明",
        phone="13800000000",
        region=Region.objects.get(code="310000"),
        scheme="resident",
    )
    insurance_services.certificate_issue(actor=actor, citizen=citizen, reason="verify bench")
    linkage = linkage_create(actor=actor, partner=partner, citizen=citizen, partner_user_ref="bench-user")
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {
        "private": private,
        "private_b64": base64.b64encode(raw_private).decode(),
        "key_id": "bench-key",
        "linkage": linkage,
    }


def fresh_token(linkage) -> str:
    from payments.tokens import services as qr
    from portal.actors import Actor

    return qr.qr_token_mint(actor=Actor.system("verify-bench"), linkage=linkage).token


# --- In-process timings -------------------------------------------------------------------


def micro_timings(data: dict, repeat: int) -> dict:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from payments.api.auth import PartnerSignatureAuthentication
    from payments.models import PartnerKey
    from payments.signing import public_key_from_b64

    body = json.dumps({"token": fresh_token(data["linkage"])}).encode()
    target = "/api/v1/certificates/verify"

    def signed_header() -> str:
        timestamp = int(time.time())
        nonce = secrets.token_urlsafe(18)
        to_sign = f"POST\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = base64.b64encode(data["private"].sign(to_sign)).decode()
        return (
            f'ECARD-ED25519 key_id="{data["key_id"]}",timestamp="{timestamp}",nonce="{nonce}",signature="{signature}"'
        )

    # 1. The signature check alone, on one message.
    public_key = public_key_from_b64(PartnerKey.objects.get(key_id=data["key_id"]).public_key)
    message = b"POST\n/api/v1/certificates/verify\n1700000000\nabcdefghijklmnop\n" + body + b"\n"
    signature = data["private"].sign(message)
    verify_seconds = min(timeit.repeat(lambda: public_key.verify(signature, message), number=repeat, repeat=5)) / repeat

    # 2. The whole authentication class, each call with its own request and fresh nonce (built beforehand).
    factory = APIRequestFactory()
    requests = [
        Request(factory.post(target, data=body, content_type="application/json", HTTP_AUTHORIZATION=signed_header()))
        for _ in range(repeat)
    ]
    for request in requests:
        request._request.body  # noqa: B018 - read the body before timing, as the server has by then
    auth = PartnerSignatureAuthentication()
    auth.authenticate(
        Request(factory.post(target, data=body, content_type="application/json", HTTP_AUTHORIZATION=signed_header()))
    )  # warm the connections
    iterator = iter(requests)
    started = time.perf_counter()
    for _ in range(repeat):
        auth.authenticate(next(iterator))
    auth_seconds = (time.perf_counter() - started) / repeat
    return {
        "ed25519_verify_us": round(verify_seconds * 1e6, 1),
        "authentication_class_us": round(auth_seconds * 1e6, 1),
        "calls": repeat,
    }


# --- The server and the load --------------------------------------------------------------


def run_load(
    port: int,
    args,
    *,
    path: str,
    body: str = "",
    mode: str = "closed",
    rate: float = 0.0,
    unsigned: bool = False,
    data: dict | None = None,
    duration: float | None = None,
    meter: CpuMeter | None = None,
) -> dict:
    command = [
        PYTHON,
        str(BASE_DIR / "bench" / "load_client.py"),
        "--port",
        str(port),
        "--path",
        path,
        "--method",
        "POST",
        "--body",
        body,
        "--mode",
        mode,
        "--rate",
        str(rate or 1),
        "--processes",
        str(args.processes),
        "--connections",
        str(args.connections),
        "--duration",
        str(duration or args.duration),
        "--warmup",
        str(args.warmup),
    ]
    if unsigned:
        command.append("--unsigned")
    else:
        command += ["--key-id", data["key_id"], "--private-key", data["private_b64"]]
    load_before = load_average()
    cpu_before = meter.snapshot() if meter else None
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(output.strip().splitlines()[-1])
    if meter:
        load_seconds = (
            children_after.ru_utime + children_after.ru_stime - children_before.ru_utime - children_before.ru_stime
        )
        result["cpu_per_request"] = meter.per_request_us(
            cpu_before, meter.snapshot(), load_seconds, result["answered_with_warmup"]
        )
    result["load_average_before"] = load_before
    result["load_average_after"] = load_average()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds measured per phase (<= 50: tokens live 60 s)"
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=2, help="load processes")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections per load process")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--timeit-calls", type=int, default=2000)
    args = parser.parse_args()
    if args.duration + args.warmup > 55:
        sys.exit("--duration + --warmup must stay under the 60 s life of a QR token")

    db_url, admin_url, db_name = fresh_django("_verify_bench")
    data = seed()

    report: dict = {
        "machine": machine(),
        "load_average_at_start": load_average(),
        "gunicorn": {"workers": args.workers, "threads": int(os.environ.get("GUNICORN_THREADS", "4"))},
        "load": {
            "processes": args.processes,
            "connections_per_process": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
    }
    report["timeit"] = micro_timings(data, args.timeit_calls)

    port = _free_port()
    server = start_gunicorn(db_url, port, args.workers, **CEILING_ENVIRON)
    meter = CpuMeter(server, admin_url, db_name)
    try:
        report["ceiling"] = run_load(port, args, path="/api/v1/bench/ceiling", body="{}", unsigned=True, meter=meter)
        body = json.dumps({"token": fresh_token(data["linkage"])})
        report["verify"] = run_load(port, args, path="/api/v1/certificates/verify", body=body, data=data, meter=meter)
        report["verify_vs_ceiling"] = round(
            report["verify"]["requests_per_second"] / report["ceiling"]["requests_per_second"], 3
        )
        half = round(report["verify"]["requests_per_second"] / 2, 1)
        body = json.dumps({"token": fresh_token(data["linkage"])})
        report["verify_at_half_load"] = run_load(
            port,
            args,
            path="/api/v1/certificates/verify",
            body=body,
            mode="open",
            rate=half,
            data=data,
            duration=min(args.duration * 1.5, 50 - args.warmup),
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    report["load_average_at_end"] = load_average()
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
