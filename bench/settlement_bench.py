"""Settlements over the partner API under gunicorn: create and confirm, distinct citizens and one citizen.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ecard REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/settlement_bench.py [--citizens 600] [--processes 4] [--threads 6] \\
        [--duration 20] [--minted-ahead-duration 20] [--contention-duration 10] [--workers 3] \\
        [--gunicorn-threads 6]

It drops and recreates its own database `<name of DATABASE_URL>_settlement_bench`,
migrates it, FLUSHES the Redis db of REDIS_URL (nonces, rate counters, and the
Celery messages the outbox queues: give it a db nothing else uses), and seeds,
all through the services (so every row is what the portal writes, audit chain
included): the demo catalogue (`insurance.catalogue_demo.seed_catalogue`), a
portal signing key, a wallet partner with an Ed25519 key (its rate limit, an
operator's setting, raised out of the way: the default 200 requests/s would cap
the figure at about 66 settlements/s), and `--citizens` employee-scheme
citizens of Shanghai (310000), each with an issued card activated by a linkage
to the wallet and a personal account balance of 2,000 yuan.

It starts gunicorn with the repository's `gunicorn.conf.py` (`--workers`
workers, `--gunicorn-threads` threads each, the access log written to /dev/null)
against that database and Redis db, and drives it from a separate load process (this script with `--load`):
`--processes` spawned client processes of `--threads` concurrent clients
each (asyncio tasks, each its own keep-alive HTTP/1.1 connection, the raw
client of `bench/load_client.py`), every request signed with a fresh nonce
(the signing of `testkit/partner_client.py`, written from the contract), every
response's status and portal signature checked. One settlement is three calls, all counted:

1. `POST /linkages/{id}/qr-tokens` `{}`: a fresh 60 s token, minted just before use;
2. `POST /settlements` (four lines, `use_personal_account: true`, a new Idempotency-Key): 201;
3. `POST /settlements/{id}/confirm` with the returned `self_pay_fen` (a new Idempotency-Key): 200 `paid`.

Before the load, `in_process` measures the server side of 200 settlements
through Django's test client in this process (no HTTP): SQL statements and
CPU ms per call (on a busy machine CPU time is inflated too, but less than
wall time), and the CPU of the PostgreSQL backend serving them. Each citizen settles once unmeasured first (its first settlement
of the year also creates its accumulator: `..._first_of_year`), as in the
load phases where almost every settlement is a later one. Each phase also
reports `cpu`: the cores used by gunicorn, by the load client, by PostgreSQL
(every `postgres` process), by Redis and by the rest (the kernel's own work,
anyone else), and their CPU ms per settlement; and `connections_per_worker`,
sampled halfway through it: the clients' keep-alive connections each gunicorn
worker holds (one worker uses one core at most).

Phase "distinct": every thread owns its own citizens (round robin), so no two
requests in flight touch one citizen. Phase "distinct_minted_ahead": the same, except that each client's QR tokens
are minted before the phase (a process of its own, outside the phase's time and
CPU), so that a settlement is exactly what the issue counts, create and
confirm: two signed requests. A token lives 60 s, so minting plus the phase
stay under a minute; a client that runs out mints inline (`minted_inline`,
counted as in the first phase). Minting is when the citizen opens the code in
the wallet, not part of settling the bill; both figures are reported.

Phase "contention": every thread on ONE
citizen's card, with bills large enough to reach the annual cap and empty the
account within the run. After each phase the database is checked: every
citizen-year accumulator within the policy's deductible and cap, equal to the
sums over the paid settlements (none left pending), each account's ledger
summing to its balance, nothing held.

Not a test: nothing asserts a time. Prints one JSON document.
"""

import argparse
import base64
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import fresh_django, load_average, machine, reference_loop_ms, start_gunicorn  # noqa: E402

PYTHON = sys.executable
KEY_ID = "settlement-bench-key"
BALANCE_FEN = 200_000  # 2,000 yuan in every personal account
FACILITY = "H310000001"

# Distinct citizens: a small everyday bill (consultation, blood count, two drugs).
SMALL_BILL = [
    {"service_code": "110200001", "quantity": 1, "unit_price_fen": 1000},
    {"service_code": "250101015", "quantity": 1, "unit_price_fen": 2000},
    {"service_code": "XJ01CAA040A001", "quantity": 2, "unit_price_fen": 1500},
    {"service_code": "XC10AAA050B001", "quantity": 1, "unit_price_fen": 3500},
]
# One citizen: large bills (MRI x 100 = 60,000 yuan each), so that the deductible (1,500 yuan),
# the account (2,000 yuan) and the employee annual cap of Shanghai (600,000 yuan) are all
# reached within a few dozen settlements, and every later one must find them exhausted.
LARGE_BILL = [
    {"service_code": "210200001", "quantity": 100, "unit_price_fen": 60000},
    {"service_code": "110200003", "quantity": 1, "unit_price_fen": 4000},
    {"service_code": "XA10AEA020B001", "quantity": 3, "unit_price_fen": 18000},
]


# --- Machine and database -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Data ---------------------------------------------------------------------------------


def seed(citizens: int) -> dict:
    """Catalogue, portal key, partner and key, citizens with linked cards and balances, through the services."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from insurance import services as insurance_services
    from insurance.catalogue_demo import seed_catalogue
    from insurance.identity import make_identity_number
    from payments import keys
    from payments.ledger import services as ledger
    from payments.linkages.services import linkage_create
    from payments.models import Partner, PartnerKey, PartnerKind
    from portal.actors import Actor
    from portal.models import Region
    from testkit.partner_client import new_key_pair

    actor = Actor.system("settlement-bench")
    seed_catalogue(actor=actor)
    keys.portal_key_create(actor=actor)
    partner = Partner.objects.create(
        code="bench",
        name="Bench wallet",
        kind=PartnerKind.WALLET,
        webhook_url="http://127.0.0.1:9/hook",
        rate_limit_per_second=1_000_000,
    )
    private, public = new_key_pair()
    PartnerKey.objects.create(partner=partner, key_id=KEY_ID, public_key=public)
    region = Region.objects.get(code="310000")
    linkages: list[str] = []
    started = time.perf_counter()
    for index in range(citizens + 1):  # the last one is the contention citizen
        birth = dt.date(1960, 1, 1) + dt.timedelta(days=index // 1000)
        citizen = insurance_services.citizen_register(
            actor=actor,
            id_number=make_identity_number("310101", birth, index % 1000),
            name="王小明",
            phone=f"139{index:08d}",
            region=region,
            scheme="employee",
        )
        insurance_services.certificate_issue(actor=actor, citizen=citizen, reason="settlement bench")
        linkage = linkage_create(actor=actor, partner=partner, citizen=citizen, partner_user_ref=f"bench-{index}")
        ledger.account_balance_set(actor=actor, citizen=citizen, balance_fen=BALANCE_FEN, note="settlement bench")
        linkages.append(linkage.public_id)
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {
        "private_b64": base64.b64encode(raw).decode(),
        "distinct": linkages[:-1],
        "one": linkages[-1],
        "seed_seconds": round(time.perf_counter() - started, 1),
    }


def check_books(citizen_ids: list[int] | None = None) -> dict:
    """The money invariants after a phase, over every citizen (or those given)."""
    from django.db import connection

    where = "" if citizen_ids is None else "WHERE a.citizen_id = ANY(%(ids)s)"
    report: dict = {}
    with connection.cursor() as cursor:
        # Accumulators against the policy (the one of each settlement's year, latest version) and the settlements.
        cursor.execute(
            f"""
            WITH pol AS (
                SELECT DISTINCT ON (region_id, scheme, year) region_id, scheme, year, deductible_fen, annual_cap_fen
                FROM insurance_reimbursementpolicy ORDER BY region_id, scheme, year, version DESC),
            sums AS (
                SELECT citizen_id, year,
                       SUM(deductible_fen) FILTER (WHERE state IN ('paid', 'pending_payment')) AS deductible,
                       SUM(fund_fen) FILTER (WHERE state IN ('paid', 'pending_payment')) AS fund,
                       COUNT(*) FILTER (WHERE state = 'paid') AS paid,
                       COUNT(*) FILTER (WHERE state = 'pending_payment') AS pending
                FROM payments_settlement GROUP BY citizen_id, year)
            SELECT COUNT(*),
                   COUNT(*) FILTER (WHERE a.deductible_used_fen > pol.deductible_fen),
                   COUNT(*) FILTER (WHERE a.fund_used_fen > pol.annual_cap_fen),
                   COUNT(*) FILTER (WHERE a.deductible_used_fen <> COALESCE(s.deductible, 0)
                                       OR a.fund_used_fen <> COALESCE(s.fund, 0)),
                   COALESCE(SUM(s.paid), 0), COALESCE(SUM(s.pending), 0),
                   COUNT(*) FILTER (WHERE a.fund_used_fen = pol.annual_cap_fen),
                   COUNT(*) FILTER (WHERE a.deductible_used_fen = pol.deductible_fen),
                   MAX(a.fund_used_fen), MAX(pol.annual_cap_fen)
            FROM payments_citizenyearaccumulator a
            JOIN insurance_citizen c ON c.id = a.citizen_id
            JOIN pol ON pol.region_id = c.region_id AND pol.scheme = c.scheme AND pol.year = a.year
            LEFT JOIN sums s ON s.citizen_id = a.citizen_id AND s.year = a.year
            {where}""",
            {"ids": citizen_ids},
        )
        (count, over_deductible, over_cap, unequal, paid, pending, at_cap, at_deductible, max_fund, cap) = (
            cursor.fetchone()
        )
        report["accumulators"] = {
            "checked": count,
            "above_deductible": over_deductible,
            "above_cap": over_cap,
            "not_equal_to_settlement_sums": unequal,
            "paid_settlements": paid,
            "pending_settlements": pending,
            "at_cap": at_cap,
            "at_deductible": at_deductible,
            "max_fund_used_fen": max_fund,
            "cap_fen": cap,
        }
        cursor.execute(
            f"""
            SELECT COUNT(*),
                   COUNT(*) FILTER (WHERE a.balance_fen <> COALESCE(e.total, 0)),
                   COUNT(*) FILTER (WHERE a.balance_fen < 0),
                   COUNT(*) FILTER (WHERE a.held_fen <> 0),
                   COUNT(*) FILTER (WHERE a.balance_fen <> %(initial)s - COALESCE(d.debited, 0)),
                   MIN(a.balance_fen)
            FROM payments_personalaccount a
            LEFT JOIN (SELECT account_id, SUM(amount_fen) AS total FROM payments_accountentry GROUP BY account_id) e
                   ON e.account_id = a.id
            LEFT JOIN (SELECT citizen_id, SUM(account_fen) AS debited FROM payments_settlement
                       WHERE state = 'paid' GROUP BY citizen_id) d ON d.citizen_id = a.citizen_id
            {where}""",
            {"ids": citizen_ids, "initial": BALANCE_FEN},
        )
        count, ledger_off, negative, held, debit_off, min_balance = cursor.fetchone()
        report["accounts"] = {
            "checked": count,
            "ledger_sum_not_balance": ledger_off,
            "negative": negative,
            "holding": held,
            "balance_not_initial_less_paid_account_fen": debit_off,
            "min_balance_fen": min_balance,
        }
    a, b = report["accumulators"], report["accounts"]
    report["ok"] = not (
        a["above_deductible"]
        or a["above_cap"]
        or a["not_equal_to_settlement_sums"]
        or a["pending_settlements"]
        or b["ledger_sum_not_balance"]
        or b["negative"]
        or b["holding"]
        or b["balance_not_initial_less_paid_account_fen"]
    )
    return report


def in_process_costs(private_b64: str, linkages: list[str]) -> dict:
    """Server-side cost of each call, measured in this process through Django's test client (no HTTP,
    no gunicorn): SQL statements per call and this process's CPU ms per call (PostgreSQL's own CPU not
    included). Independent of the load on the machine, unlike the wall-clock figures."""

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from testkit.partner_client import authorization

    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    client = Client()
    cpu = {"mint": 0.0, "create": 0.0, "confirm": 0.0}
    queries = {"mint": 0, "create": 0, "confirm": 0}

    def post(name: str, target: str, payload: dict, idempotent: bool) -> dict:
        body = json.dumps(payload, separators=(",", ":")).encode()
        header, _ = authorization(private, KEY_ID, "POST", target, body)
        extra = {"HTTP_AUTHORIZATION": header}
        if idempotent:
            extra["HTTP_IDEMPOTENCY_KEY"] = uuid.uuid4().hex
        connection.queries_log.clear()  # a deque of at most 9,000: once full, a capture would count 0
        with CaptureQueriesContext(connection) as captured:
            started = time.process_time()
            response = client.generic("POST", target, body, content_type="application/json", **extra)
            cpu[name] += time.process_time() - started
        queries[name] = len(captured.captured_queries)
        assert response.status_code in (200, 201), response.content
        return json.loads(response.content)

    def flow(linkage: str) -> None:
        token = post("mint", f"/api/v1/linkages/{linkage}/qr-tokens", {}, False)["token"]
        created = post(
            "create",
            "/api/v1/settlements",
            {"token": token, "facility_code": FACILITY, "lines": SMALL_BILL, "use_personal_account": True},
            True,
        )
        post(
            "confirm",
            f"/api/v1/settlements/{created['id']}/confirm",
            {"partner_transaction_id": "tx-" + uuid.uuid4().hex, "self_pay_fen": created["self_pay_fen"]},
            True,
        )

    # A citizen's first settlement of the year also creates its year accumulator (3 statements more);
    # the load phases are almost all later ones. So: one pass (counted apart), then the measured pass.
    for linkage in linkages:
        flow(linkage)
    first_of_year = dict(queries)
    for name in cpu:
        cpu[name] = 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = Path(f"/proc/{cursor.fetchone()[0]}/stat")  # PostgreSQL runs on this machine

    def backend_cpu() -> float | None:
        try:
            parts = backend.read_text().rsplit(")", 1)[1].split()
        except OSError:  # PostgreSQL on another machine: not measured
            return None
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    backend_before = backend_cpu()
    for linkage in linkages[1:]:
        flow(linkage)
    backend_after = backend_cpu()
    n = len(linkages) - 1
    return {
        "settlements": n,
        "sql_statements_per_call": queries,
        "sql_statements_per_call_first_of_year": first_of_year,
        "cpu_ms_per_call": {name: round(value / n * 1000, 1) for name, value in cpu.items()},
        "cpu_ms_per_settlement": round(sum(cpu.values()) / n * 1000, 1),
        # The PostgreSQL backend serving this process (clock ticks of 10 ms: use enough settlements).
        "postgres_backend_cpu_ms_per_settlement": (
            round((backend_after - backend_before) * 1000 / n, 1)
            if backend_before is not None and backend_after is not None
            else None
        ),
    }


def audit_chain_ok() -> dict:
    """Chain what the run wrote (no Celery beat runs here: the rows wait sealed, unchained), then verify."""
    from portal.audit import audit_chain_pending, verify_chain
    from portal.models import AuditEvent

    pending = AuditEvent.objects.filter(chain_seq__isnull=True).count()
    started = time.perf_counter()
    chained = audit_chain_pending()
    seconds = time.perf_counter() - started
    return {
        "intact": not verify_chain(),
        "unchained_after_run": pending,
        "chained_now": chained,
        "chainer_rows_per_second": round(chained / seconds) if chained else None,
    }


# --- The server ---------------------------------------------------------------------------


class _PartnerKeys:
    """The load client's side of the contract: its signing key, and the portal's published keys
    (parsed once) to check every answer's signature, as testkit/partner_client.verify_response does."""

    def __init__(self, config: dict) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

        self.private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(config["private_b64"]))
        self.portal = {
            key_id: Ed25519PublicKey.from_public_bytes(base64.b64decode(public))
            for key_id, public in config["portal_keys"].items()
        }

    def signed_by_portal(self, status: int, nonce: str, headers: dict[str, str], content: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        key = self.portal.get(headers.get("ecard-key-id"))
        if key is None:
            return False
        try:
            to_sign = (
                f"{status}\n{nonce}\n{headers['ecard-timestamp']}\n{headers['ecard-nonce']}\n".encode()
                + content
                + b"\n"
            )
            key.verify(base64.b64decode(headers["ecard-signature"]), to_sign)
        except (KeyError, ValueError, InvalidSignature):
            return False
        return True


async def _client_flows(
    config: dict, linkages: list[str], start_at: float, out: dict, tokens: list[str] | None = None
) -> None:
    """One keep-alive connection running settlements one after another (mint, create, confirm).

    With `tokens` (minted ahead by `_mint_ahead`, one per settlement to come, in order), a
    settlement is create and confirm only; once they run out it mints as usual (counted)."""
    import asyncio

    from bench.load_client import read_full_response, signed_request

    keys = _PartnerKeys(config)
    url = urlsplit(config["base_url"])
    host, port = url.hostname, url.port
    measure_from = start_at + config["warmup"]
    end_at = measure_from + config["duration"]
    bill = LARGE_BILL if config["bill"] == "large" else SMALL_BILL
    latencies: dict[str, list[float]] = {"mint": [], "create": [], "confirm": [], "settlement": []}
    errors: dict[str, int] = {}
    completed = 0
    reader = writer = None

    async def call(name: str, target: str, payload: dict, idempotent: bool) -> tuple[int, dict, float]:
        nonlocal reader, writer
        body = json.dumps(payload, separators=(",", ":")).encode()
        request, nonce = signed_request(
            keys.private,
            KEY_ID,
            host,
            port,
            "POST",
            target,
            body,
            {"Idempotency-Key": uuid.uuid4().hex} if idempotent else None,
        )
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status, headers, content, keep_alive = await read_full_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if writer is not None:
                writer.close()
            reader = writer = None
            return 0, {}, (time.perf_counter() - started) * 1000
        elapsed = (time.perf_counter() - started) * 1000
        if not keep_alive:
            writer.close()
            reader = writer = None
        try:
            data = json.loads(content) if content else {}
        except ValueError:
            data = {}
        if not keys.signed_by_portal(status, nonce, headers, content):
            errors[f"{name}:bad_signature"] = errors.get(f"{name}:bad_signature", 0) + 1
        return status, data, elapsed

    delay = start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    index = 0
    minted_inline = 0
    while time.time() < end_at:
        linkage = linkages[index % len(linkages)]
        flow_started = time.time()
        measured = flow_started >= measure_from
        samples: list[tuple[str, float]] = []
        if tokens is not None and index < len(tokens):
            status, data = 201, {"token": tokens[index]}
        else:
            minted_inline += tokens is not None
            status, data, ms = await call("mint", f"/api/v1/linkages/{linkage}/qr-tokens", {}, False)
            samples.append(("mint", ms))
        index += 1
        ok = status == 201
        if ok:
            status, data, ms = await call(
                "create",
                "/api/v1/settlements",
                {"token": data["token"], "facility_code": FACILITY, "lines": bill, "use_personal_account": True},
                True,
            )
            samples.append(("create", ms))
            ok = status == 201
            if ok:
                status, data, ms = await call(
                    "confirm",
                    f"/api/v1/settlements/{data['id']}/confirm",
                    {"partner_transaction_id": "tx-" + uuid.uuid4().hex, "self_pay_fen": data["self_pay_fen"]},
                    True,
                )
                samples.append(("confirm", ms))
                ok = status == 200 and data.get("state") == "paid"
        finished = time.time()
        if not ok:
            step = samples[-1][0] if samples else "mint"
            code = data.get("code", "?") if isinstance(data, dict) else "?"
            errors[f"{step}:{status}:{code}"] = errors.get(f"{step}:{status}:{code}", 0) + 1
        if measured and finished <= end_at:
            for name, ms in samples:
                latencies[name].append(ms)
            if ok:
                completed += 1
                latencies["settlement"].append((finished - flow_started) * 1000)
    if writer is not None:
        writer.close()
    out.update(
        latencies=latencies,
        errors=errors,
        completed=completed,
        minted_inline=minted_inline,
        attempts=index,
        tokens=len(tokens) if tokens is not None else None,
    )


async def _mint_ahead(config: dict, linkages: list[str], count: int) -> list[str]:
    """`count` tokens for this client's settlements to come (linkages in its round-robin order), minted
    through the signed API on one keep-alive connection, every answer checked (201, portal signature)."""
    import asyncio

    from bench.load_client import read_full_response, signed_request

    keys = _PartnerKeys(config)
    url = urlsplit(config["base_url"])
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    tokens = []
    for index in range(count):
        if time.time() >= config["mint_until"]:  # the first ones would be too old by the phase's end
            break
        target = f"/api/v1/linkages/{linkages[index % len(linkages)]}/qr-tokens"
        request, nonce = signed_request(keys.private, KEY_ID, url.hostname, url.port, "POST", target, b"{}")
        writer.write(request)
        status, headers, content, keep_alive = await read_full_response(reader)
        if not keys.signed_by_portal(status, nonce, headers, content):
            raise RuntimeError("minting ahead: an answer without a valid portal signature")
        if status != 201:
            raise RuntimeError(f"minting ahead: {status} {content[:200]!r}")
        tokens.append(json.loads(content)["token"])
        if not keep_alive:
            writer.close()
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.close()
    return tokens


MINT_AHEAD_SECONDS = 30  # at most; + 1 s to start + warm-up + the phase stays under the token's 60 s


def _mint_process(config: dict, linkage_sets: list[list[str]], count: int) -> list[list[str]]:
    import asyncio

    async def run_all() -> list[list[str]]:
        return list(await asyncio.gather(*(_mint_ahead(config, linkages, count) for linkages in linkage_sets)))

    return asyncio.run(run_all())


def _client_process(
    config: dict, linkage_sets: list[list[str]], start_at: float, token_sets: list[list[str]] | None = None
) -> dict:
    """`--threads` concurrent clients of this process: asyncio tasks on one loop, each its own connection
    (the raw HTTP/1.1 of bench/load_client.py: far less CPU per request than httpx, so the client
    takes less of the cores it shares with the server)."""
    import asyncio

    outs: list[dict] = [{} for _ in linkage_sets]

    async def run_all() -> None:
        await asyncio.gather(
            *(
                _client_flows(config, linkages, start_at, out, token_sets[i] if token_sets is not None else None)
                for i, (linkages, out) in enumerate(zip(linkage_sets, outs, strict=True))
            )
        )

    asyncio.run(run_all())
    return {
        "latencies": {name: [v for out in outs for v in out["latencies"][name]] for name in outs[0]["latencies"]},
        "errors": {k: sum(out["errors"].get(k, 0) for out in outs) for out in outs for k in out["errors"]},
        "completed": sum(out["completed"] for out in outs),
        "minted_inline": sum(out["minted_inline"] for out in outs),
        "attempts": [(out["attempts"], out["tokens"]) for out in outs],
    }


def percentile(values: list[float], fraction: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2) if ordered else None


def _per_process(config: dict) -> list[list[list[str]]]:
    clients = config["processes"] * config["threads"]
    if config["linkages"] and len(config["linkages"]) > 1:
        # Each thread its own citizens: no two requests in flight on one citizen.
        sets = [config["linkages"][i::clients] for i in range(clients)]
    else:
        sets = [config["linkages"]] * clients
    return [sets[p * config["threads"] : (p + 1) * config["threads"]] for p in range(config["processes"])]


def mint_main(config_path: str, tokens_path: str) -> None:
    """Mint the tokens of a minted-ahead phase (a process of its own, outside the measured CPU)."""
    import multiprocessing

    config = json.loads(Path(config_path).read_text())
    with multiprocessing.get_context("spawn").Pool(config["processes"]) as pool:
        parts = pool.starmap(_mint_process, [(config, s, config["mint_ahead"]) for s in _per_process(config)])
    Path(tokens_path).write_text(json.dumps(parts))


def load_main(config_path: str) -> None:
    import multiprocessing

    config = json.loads(Path(config_path).read_text())
    clients = config["processes"] * config["threads"]
    per_process = _per_process(config)
    token_parts = (
        json.loads(Path(config["tokens_path"]).read_text()) if config.get("tokens_path") else [None] * len(per_process)
    )
    start_at = time.time() + 1.0
    with multiprocessing.get_context("spawn").Pool(config["processes"]) as pool:
        parts = pool.starmap(
            _client_process, [(config, s, start_at, t) for s, t in zip(per_process, token_parts, strict=True)]
        )
    completed = sum(p["completed"] for p in parts)
    errors: dict[str, int] = {}
    for part in parts:
        for key, count in part["errors"].items():
            errors[key] = errors.get(key, 0) + count
    calls = {}
    for name in ("mint", "create", "confirm", "settlement"):
        values = [v for p in parts for v in p["latencies"][name]]
        calls[name] = {
            "count": len(values),
            "p50_ms": percentile(values, 0.50),
            "p95_ms": percentile(values, 0.95),
            "p99_ms": percentile(values, 0.99),
            "max_ms": round(max(values), 2) if values else None,
        }
    print(
        json.dumps(
            {
                "clients": clients,
                "settlements_completed": completed,
                "minted_inline": sum(p["minted_inline"] for p in parts),
                # settlements each client began (warm-up included), and the tokens it had ahead
                "per_client_attempts_and_tokens": [pair for p in parts for pair in p["attempts"]],
                "settlements_per_second": round(completed / config["duration"], 1),
                "requests_per_second": round(
                    sum(calls[n]["count"] for n in ("mint", "create", "confirm")) / config["duration"], 1
                ),
                "latency": calls,
                "errors": errors,
            }
        )
    )


def _machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU-seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


def _processes() -> list[tuple[int, str, list[str]]]:
    """(pid, command name, the fields after it) of every process in /proc/*/stat."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        command, rest = text.split(" (", 1)[1].rsplit(")", 1)
        found.append((int(stat.parent.name), command, rest.split()))
    return found


def _process_tree_cpu_seconds(root: int) -> float:
    """User + system CPU-seconds of `root` and its direct children (gunicorn's master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum(
        (int(fields[11]) + int(fields[12])) / tick for pid, _, fields in _processes() if root in (pid, int(fields[1]))
    )


def _named_cpu_seconds(name: str) -> float:
    """CPU-seconds (user + system) of every process whose command name is `name`, plus what their
    exited children used: a PostgreSQL backend whose connection closed (gunicorn's connections are
    renewed every minute) is reaped by the postmaster, and its CPU moves to the postmaster's
    `cutime`/`cstime`."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum(
        sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
        for _, command, fields in _processes()
        if command == name
    )


def _connections_per_worker(master: int, port: int) -> list[int]:
    """How many established connections to `port` each gunicorn worker (child of `master`) holds,
    most first. A keep-alive connection stays with the worker that accepted it, and a worker uses
    one core at most: 17 of 24 clients on one worker leave the others idle (see the results)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        for line in Path("/proc/net", table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # local port, ESTABLISHED
                inodes.add(f"socket:[{fields[9]}]")
    counts = []
    for pid, _, fields in _processes():
        if int(fields[1]) == master:
            try:
                counts.append(sum(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()))
            except OSError:  # exited meanwhile
                continue
    return sorted(counts, reverse=True)


def run_load(
    base: dict, *, linkages: list[str], bill: str, duration: float, server_pid: int, mint_ahead: int = 0
) -> dict:
    config = dict(
        base,
        linkages=linkages,
        bill=bill,
        duration=duration,
        mint_ahead=mint_ahead,
        mint_until=time.time() + min(MINT_AHEAD_SECONDS, max(5.0, 56 - duration - base["warmup"])),
    )
    minted = {}
    if mint_ahead:  # before the measured process: its time and CPU are not the phase's
        config["tokens_path"] = tempfile.mktemp(suffix=".json")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(config, handle)
        started = time.time()
        subprocess.run([PYTHON, __file__, "--mint", handle.name, config["tokens_path"]], check=True, cwd=BASE_DIR)
        os.unlink(handle.name)
        counts = [len(tokens) for part in json.loads(Path(config["tokens_path"]).read_text()) for tokens in part]
        minted = {
            "tokens_minted_ahead": sum(counts),
            "tokens_asked_per_client": mint_ahead,
            "clients_short_of_tokens_asked": sum(count < mint_ahead for count in counts),
            "minting_seconds": round(time.time() - started, 1),
        }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    try:
        before = load_average()
        started = time.time()
        children_before = os.times()
        busy_before, total_before = _machine_cpu_seconds()
        server_before = _process_tree_cpu_seconds(server_pid)
        postgres_before, redis_before = _named_cpu_seconds("postgres"), _named_cpu_seconds("redis-server")
        load = subprocess.Popen(
            [PYTHON, __file__, "--load", handle.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=BASE_DIR,
        )
        try:  # halfway through the measured time, every client connected
            load.wait(timeout=base["warmup"] + duration / 2 + 1.0)
        except subprocess.TimeoutExpired:
            connections = _connections_per_worker(server_pid, urlsplit(base["base_url"]).port)
        else:
            connections = None
        output, errors = load.communicate()
        if load.returncode:
            raise subprocess.CalledProcessError(load.returncode, load.args, output, errors)
        server = _process_tree_cpu_seconds(server_pid) - server_before
        postgres = _named_cpu_seconds("postgres") - postgres_before
        redis = _named_cpu_seconds("redis-server") - redis_before
        busy_after, total_after = _machine_cpu_seconds()
        children_after = os.times()
    finally:
        os.unlink(handle.name)
        if config.get("tokens_path"):
            os.unlink(config["tokens_path"])
    result = dict(minted, **json.loads(output.strip().splitlines()[-1]))
    result["connections_per_worker"] = connections
    result["wall_seconds"] = round(time.time() - started, 1)
    result["load_average_before"] = before
    result["load_average_after"] = load_average()
    # Where the machine's CPU went during the whole load run (warm-up and spawn included): the
    # gunicorn processes, the load client, and the rest (PostgreSQL, Redis, and anyone else's work).
    client = (
        children_after.children_user
        + children_after.children_system
        - children_before.children_user
        - children_before.children_system
    )
    busy, total = busy_after - busy_before, total_after - total_before
    wall = time.time() - started
    rate = max(result["settlements_per_second"], 0.1)
    shares = {
        "gunicorn": server,
        "load_client": client,
        "postgres": postgres,
        "redis": redis,
        "rest_kernel_and_other": busy - server - client - postgres - redis,
    }
    # Cores used on average over the run, and CPU ms per settlement at the measured rate.
    result["cpu"] = {
        "cores_busy": round(busy / wall, 2),
        "cores_available": round(total / wall, 2),
        "cores": {name: round(value / wall, 2) for name, value in shares.items()},
        "ms_per_settlement": {name: round(value / wall / rate * 1000, 1) for name, value in shares.items()},
    }
    return result


# --- Main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=600, help="distinct citizens, seeded through the services")
    # The default shape saturates this 2-core machine (docs/benchmarks-settlements.md):
    # fewer clients or server threads leave a core partly idle while requests wait on PostgreSQL.
    parser.add_argument("--processes", type=int, default=4, help="load client processes")
    parser.add_argument("--threads", type=int, default=6, help="threads (keep-alive clients) per load process")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument(
        "--gunicorn-threads", type=int, default=6, help="threads per gunicorn worker (GUNICORN_THREADS)"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured, distinct citizens")
    parser.add_argument("--contention-duration", type=float, default=10.0, help="seconds measured, one citizen")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--minted-ahead-duration",
        type=float,
        default=20.0,
        help="seconds measured, distinct citizens, tokens minted before the phase (0: no such phase)",
    )
    parser.add_argument("--load", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--mint", nargs=2, metavar=("CONFIG", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args.load)
        return
    if args.mint:
        mint_main(*args.mint)
        return

    db_url, _admin_url, _db_name = fresh_django("_settlement_bench")
    from django.core.cache import cache

    from insurance.models import Citizen

    data = seed(args.citizens)
    report: dict = {
        "machine": dict(machine(), reference_loop_ms_at_start=reference_loop_ms()),
        "load_average_at_start": load_average(),
        "gunicorn": {"workers": args.workers, "threads": args.gunicorn_threads},
        "load": {"processes": args.processes, "threads_per_process": args.threads, "warmup_s": args.warmup},
        "seed": {"citizens": args.citizens + 1, "seconds": data["seed_seconds"]},
    }
    report["in_process"] = in_process_costs(data["private_b64"], data["distinct"][:201])
    report["in_process"]["load_average_after"] = load_average()
    port = _free_port()
    server = start_gunicorn(db_url, port, args.workers, GUNICORN_THREADS=str(args.gunicorn_threads))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/keys", timeout=5) as response:  # as a partner does
        portal_keys = {k["key_id"]: k["public_key"] for k in json.load(response)["keys"]}
    base = {
        "base_url": f"http://127.0.0.1:{port}",
        "private_b64": data["private_b64"],
        "portal_keys": portal_keys,
        "processes": args.processes,
        "threads": args.threads,
        "warmup": args.warmup,
    }
    try:
        report["distinct"] = run_load(
            base, linkages=data["distinct"], bill="small", duration=args.duration, server_pid=server.pid
        )
        report["distinct"]["books"] = check_books()
        if args.minted_ahead_duration:
            # Enough tokens for twice the rate just measured with the mint (at most 320/s), and
            # for a client three times as fast as the average: clients do not progress evenly (in
            # `per_client_attempts_and_tokens`, one connection or one client process is sometimes
            # served 2-5 times as often as another). A token lives 60 s: minting stops after
            # MINT_AHEAD_SECONDS whatever it has, and each client uses its tokens in the order
            # minted, so none is older than a minute when used; a client out of tokens mints inline
            # (`minted_inline`). A fixed budget can take longer to mint than a token lives on a slow
            # machine, and a smaller margin leaves the fastest clients short.
            clients = args.processes * args.threads
            expected = min(320.0, max(50.0, 2.0 * report["distinct"]["settlements_per_second"]))
            per_client = int(expected * (args.minted_ahead_duration + args.warmup) / clients * 3) + 1
            report["distinct_minted_ahead"] = run_load(
                base,
                linkages=data["distinct"],
                bill="small",
                duration=args.minted_ahead_duration,
                server_pid=server.pid,
                mint_ahead=per_client,
            )
            report["distinct_minted_ahead"]["books"] = check_books()
        report["one_citizen"] = run_load(
            base, linkages=[data["one"]], bill="large", duration=args.contention_duration, server_pid=server.pid
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    one = Citizen.objects.filter(linkages__public_id=data["one"]).values_list("pk", flat=True)
    report["one_citizen"]["books"] = check_books(list(one))
    report["books_all_citizens"] = check_books()
    report["audit_chain_intact"] = audit_chain_ok()
    report["load_average_at_end"] = load_average()
    report["machine"]["reference_loop_ms_at_end"] = reference_loop_ms()
    cache.clear()  # the Celery messages the outbox queued (no worker runs here)
    print(json.dumps(report, indent=2, ensure_ascii=False, default=int))  # SUMs come back as Decimal


if __name__ == "__main__":
    main()
