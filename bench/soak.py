"""Soak of the running system: drives the stack that `make run` started, for `--minutes N`.

    .venv/bin/python bench/soak.py [--minutes 2] [--threads 4] [--var-dir var]

Not a test and not a benchmark: it checks that the whole system (web, worker, beat,
PostgreSQL, Redis) stays correct under a steady mixed load, and reports what it saw.
It reads `<var-dir>/run/stack.env` (written by `make run`: DATABASE_URL, REDIS_URL,
ECARD_MODE, PORT, ECARD_PUBLIC_BASE_URL), talks HTTP to http://127.0.0.1:$PORT, and
runs its few Django reads (the pools it draws from, the outbox and the sandbox's
receipts) and `manage.py verify_audit_chain` in subprocesses with that environment.

What it drives, in `--threads` threads (roles in turn: clerk, wechat_pay, alipay, clerk_gd, ...):

- clerks, through the screens: sign in (allauth form, CSRF), search a citizen of their
  region by identity number, open them, suspend the e-card and reinstate it (each with
  its reason and confirmation step), every fifth time reissue it too; every seventh
  time issue an e-card to a citizen without one and revoke that pending card again;
  now and then page through the citizen list or search by name;
- the demo wallets, through the signed partner API (every response's portal signature
  checked): link a citizen of the other regions (or one of the imported ones, whose
  card is pending activation), mint QR tokens, verify them, create settlements
  (sometimes replaying the create with its Idempotency-Key), confirm or cancel them,
  refund some, read them back, unlink; and poll `GET /events`;
- one citizen import through the screens (a generated CSV of `--import-rows` new
  citizens in the first clerk's region), polled until done with 0 failed rows.

Clerks and wallets work on different citizens (the clerks' regions, the other regions and
the imported ones), so that no refusal is expected; the two wallets may use one citizen at
the same moment, as a citizen with two wallets does.

Pacing: each partner's calls stay under half its rate limit; a 429 `rate_limited` is
waited out (Retry-After) and retried, and counted as throttled, not as an error. Every
other answer that is not the one expected is an error; the only refusals accepted are
409 `linkage_exists` / `certificate_unavailable` on `POST /linkages` (reported apart).

At the end it waits (up to `--drain-seconds`) until the outbox has nothing pending for
the sandbox partners among the events created during the soak, then reports, as a
table and as JSON (also written to `--json`): requests per kind (count, errors,
p50/p95 latency), the first errors, process restarts and tracebacks in what the
stack's log (`<var-dir>/log/stack.log`) got during the soak, outbox events created
against those the sandbox received (lost = created and not received), and the audit
chain's verification. Exit status 1 on any error, traceback, lost event (or one received
with an invalid signature) or broken chain; 0 otherwise (process restarts are reported, not
failed on); 2 when it cannot start (no stack.env, the stack not answering).
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import io
import json
import os
import queue
import random
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
HELPER_MARK = "SOAK-JSON "
DEFAULT_PASSWORD = "ecard-demo-2019"
MAX_ERROR_DETAILS = 25
TRACEBACKS_SHOWN = 3


# ============================================================================================
# The Django side: run in a subprocess with the stack's environment (`soak.py _django ...`).
# ============================================================================================


def _django_main(argv: list[str]) -> None:
    command = argv[0]
    arguments = json.loads(argv[1]) if len(argv) > 1 else {}
    sys.path.insert(0, str(BASE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    handler = {"setup": _dj_setup, "mark": _dj_mark, "outbox": _dj_outbox}[command]
    result = handler(**arguments)
    sys.stdout.write(HELPER_MARK + json.dumps(result, ensure_ascii=False) + "\n")


def _dj_mark() -> dict:
    from payments.models import OutboxEvent

    return {"outbox_max_id": OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0}


def _dj_setup(clerks: list[str], import_rows: int, pool_size: int, seed: int) -> dict:
    """Partners and their keys, the clerks, and the citizens each role of the soak may use."""
    from backoffice import demo_plan as demo
    from insurance.identity import make_identity_number
    from insurance.models import Certificate, Citizen
    from insurance.services import find_citizen_id_by_id_number
    from payments.models import Partner, WalletLinkage
    from portal.models import User

    rng = random.Random(seed)
    partners = []
    for partner in Partner.objects.order_by("code"):
        partners.append(
            {
                "code": partner.code,
                "kind": partner.kind,
                "state": partner.state,
                "deliveries_paused": partner.deliveries_paused,
                "rate_limit_per_second": partner.rate_limit_per_second,
                "webhook_url": partner.webhook_url,
                "sandbox": "/sandbox/webhooks/" in (partner.webhook_url or ""),
                "keys": [
                    {"key_id": k.key_id, "public_key": k.public_key}
                    for k in partner.keys.filter(state="active").order_by("id")
                ],
            }
        )
    clerk_info: dict[str, dict] = {}
    for user in User.objects.filter(username__in=clerks):
        clerk_info[user.username] = {
            "role": user.role,
            "active": user.is_active,
            "requires_mfa": bool(user.requires_mfa),
            "can_write": bool(user.can_write_citizens),
            "regions": sorted(user.regions.values_list("code", flat=True)),
        }
    clerk_regions = {code for info in clerk_info.values() for code in info["regions"]}

    live = {
        c.citizen_id: c.state
        for c in Certificate.objects.filter(state__in=["pending_activation", "active", "suspended"]).only(
            "citizen_id", "state"
        )
    }
    linked: dict[int, set[str]] = defaultdict(set)
    for citizen_id, code in WalletLinkage.objects.filter(state="active").values_list("citizen_id", "partner__code"):
        linked[citizen_id].add(code)

    clerk_pool: dict[str, list[str]] = defaultdict(list)
    issue_pool: dict[str, list[str]] = defaultdict(list)
    partner_pool: list[dict] = []
    citizens = list(
        Citizen.objects.filter(status="active")
        .only("id", "region_id", "id_number_enc", "name", "scheme")
        .order_by("id")
    )
    rng.shuffle(citizens)
    for citizen in citizens:
        state = live.get(citizen.pk)
        if citizen.region_id in clerk_regions:
            if state == "active" and linked.get(citizen.pk) and len(clerk_pool[citizen.region_id]) < pool_size:
                clerk_pool[citizen.region_id].append(citizen.id_number)
            elif state is None and len(issue_pool[citizen.region_id]) < pool_size:
                issue_pool[citizen.region_id].append(citizen.id_number)
        elif state in ("active", "pending_activation") and len(partner_pool) < pool_size * 4:
            partner_pool.append(
                {
                    "id_number": citizen.id_number,
                    "name": citizen.name,
                    "region": citizen.region_id,
                    "linked": sorted(linked.get(citizen.pk, ())),
                }
            )

    # The import: new citizens in the first clerk's first region, numbers nobody has yet.
    rows: list[dict] = []
    first = clerk_info.get(clerks[0]) if clerks else None
    import_region = first["regions"][0] if first and first["regions"] else ""
    districts = demo.DISTRICTS.get(import_region, ())
    taken: set[str] = set()
    today = dt.date.today()
    while import_region and districts and len(rows) < import_rows:
        male = rng.random() < 0.5
        birth = today - dt.timedelta(days=rng.randint(20 * 365, 70 * 365))
        number = make_identity_number(rng.choice(districts), birth, rng.randrange(0, 1000, 2) + (1 if male else 0))
        if number in taken or find_citizen_id_by_id_number(number) is not None:
            continue
        taken.add(number)
        pool = demo.MALE_GIVEN if male else demo.FEMALE_GIVEN
        rows.append(
            {
                "id_number": number,
                "name": rng.choice(demo.SURNAMES) + rng.choice(pool) + (rng.choice(pool) if rng.random() < 0.7 else ""),
                "phone": rng.choice(demo.PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}",
                "region_code": import_region,
                "scheme": rng.choice(["employee", "resident"]),
                "account_balance_fen": str(rng.randrange(0, 200_000)),
            }
        )
    return {
        "partners": partners,
        "clerks": clerk_info,
        "clerk_pool": clerk_pool,
        "issue_pool": issue_pool,
        "partner_pool": partner_pool,
        "import_region": import_region,
        "import_rows": rows,
        **_dj_mark(),
    }


def _dj_outbox(after: int, upto: int) -> dict:
    """The events addressed to the sandbox partners with ids in (after, upto], and their receipts."""
    from payments.models import OutboxEvent, Partner, SandboxReceipt

    sandbox = Partner.objects.filter(webhook_url__contains="/sandbox/webhooks/")
    events = list(
        OutboxEvent.objects.filter(id__gt=after, id__lte=upto, partner__in=sandbox).values_list(
            "public_id", "partner__code", "type", "state", "attempts"
        )
    )
    ids = [e[0] for e in events]
    received: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for start in range(0, len(ids), 1000):
        for event_id, code, valid in SandboxReceipt.objects.filter(event_id__in=ids[start : start + 1000]).values_list(
            "event_id", "partner_code", "signature_valid"
        ):
            received[(event_id, code)].append(valid)
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    lost: list[dict] = []
    invalid = duplicates = 0
    for public_id, code, kind, state, attempts in events:
        by_type[kind][0] += 1
        got = received.get((public_id, code))
        if got:
            by_type[kind][1] += 1
            duplicates += len(got) - 1
            invalid += 0 if any(got) else 1
        else:
            lost.append({"id": public_id, "partner": code, "type": kind, "state": state, "attempts": attempts})
    return {
        "created": len(events),
        "received": len(events) - len(lost),
        "lost": len(lost),
        "lost_sample": lost[:10],
        "pending": sum(1 for e in events if e[3] == "pending"),
        "states": dict(Counter(e[3] for e in events)),
        "by_partner": dict(Counter(e[1] for e in events)),
        "by_type": {kind: {"created": c, "received": r} for kind, (c, r) in sorted(by_type.items())},
        "received_invalid_signature": invalid,
        "duplicate_receipts": duplicates,
    }


# ============================================================================================
# The soak: plain HTTP (httpx) against the running stack.
# ============================================================================================


class CycleAborted(Exception):
    """The current cycle stops here (its error is already recorded)."""


class Recorder:
    """Requests per kind, their latencies and outcomes, and the first error details."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: dict[str, dict] = defaultdict(
            lambda: {"count": 0, "errors": 0, "throttled": 0, "refused": Counter(), "latencies": []}
        )
        self.errors: list[dict] = []
        self.error_total = 0
        self.last_error: dict | None = None  # the latest detail, kept beyond MAX_ERROR_DETAILS
        self.started = time.monotonic()

    def _detail(self, kind: str, detail: dict) -> None:
        self.error_total += 1
        self.last_error = detail
        if len(self.errors) < MAX_ERROR_DETAILS:
            self.errors.append({"at": round(time.monotonic() - self.started, 1), "kind": kind, **detail})

    def request(
        self,
        kind: str,
        seconds: float,
        *,
        error: dict | None = None,
        refused: str | None = None,
        throttled: bool = False,
    ) -> None:
        with self.lock:
            entry = self.kinds[kind]
            entry["count"] += 1
            entry["latencies"].append(seconds)
            if throttled:
                entry["throttled"] += 1
            if refused:
                entry["refused"][refused] += 1
            if error is not None:
                entry["errors"] += 1
                self._detail(kind, error)

    def fail(self, kind: str, detail: dict) -> None:
        """An error found by a check rather than by a request's status (counted on `kind`)."""
        with self.lock:
            self.kinds[kind]["errors"] += 1
            self._detail(kind, detail)

    def totals(self) -> tuple[int, int]:
        with self.lock:
            return sum(k["count"] for k in self.kinds.values()), sum(k["errors"] for k in self.kinds.values())

    def table(self) -> dict:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

        with self.lock:
            return {
                kind: {
                    "count": k["count"],
                    "errors": k["errors"],
                    "throttled": k["throttled"],
                    "refused": dict(k["refused"]),
                    "p50_ms": pct(k["latencies"], 0.50),
                    "p95_ms": pct(k["latencies"], 0.95),
                    "max_ms": pct(k["latencies"], 1.0),
                }
                for kind, k in sorted(self.kinds.items())
            }


def _excerpt(response) -> str:
    """What a failed response (or page) said, short: a problem's code and detail, a form's errors, a title."""
    if isinstance(response, str):
        content_type, text = "text/html", response[:20000]
    else:
        content_type, text = response.headers.get("Content-Type", ""), response.text[:20000]
    if "json" in content_type:
        return text[:300]
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', text, re.S)
    found += re.findall(r'<li class="msg error">(.*?)</li>', text, re.S)
    if found:
        return re.sub(r"<[^>]+>", " ", " | ".join(found)).strip()[:300]
    title = re.search(r"<title>(.*?)</title>", text, re.S)
    return (title.group(1).strip() if title else re.sub(r"\s+", " ", text))[:300]


# --- Screens ------------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CITIZEN_LINK_RE = re.compile(r'href="/citizens/(\d+)/"')
CARD_ACTION_RE = re.compile(r'href="/citizens/cards/(\d+)/(suspend|reinstate|revoke|reissue)/"')


def _csrf(text: str) -> str:
    found = CSRF_RE.findall(text)
    if not found:
        raise ValueError("no CSRF token on the page")
    return found[-1]


def _card_actions(page: str) -> dict[int, set[str]]:
    actions: dict[int, set[str]] = defaultdict(set)
    for card, action in CARD_ACTION_RE.findall(page):
        actions[int(card)].add(action)
    return actions


class Screens:
    """One signed-in member of staff, driving the server-rendered screens."""

    def __init__(self, base_url: str, username: str, password: str, rec: Recorder) -> None:
        import httpx

        self.httpx = httpx
        self.username, self.password, self.rec = username, password, rec
        self.http = httpx.Client(
            base_url=base_url, timeout=60, follow_redirects=False, headers={"User-Agent": "ecard-soak"}
        )

    def call(self, kind: str, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs):
        started = time.perf_counter()
        try:
            response = self.http.request(method, path, **kwargs)
        except self.httpx.HTTPError as exc:
            self.rec.request(
                kind,
                time.perf_counter() - started,
                error={"request": f"{method} {path}", "error": f"{type(exc).__name__}: {exc}"},
            )
            raise CycleAborted from exc
        elapsed = time.perf_counter() - started
        if response.status_code not in expect:
            where = response.headers.get("Location", "")
            self.rec.request(
                kind,
                elapsed,
                error={
                    "request": f"{method} {path}",
                    "status": response.status_code,
                    "detail": (f"redirected to {where}" if where else _excerpt(response)),
                },
            )
            raise CycleAborted
        self.rec.request(kind, elapsed)
        return response

    def check(self, kind: str, ok: bool, what: str) -> None:
        if not ok:
            self.rec.fail(kind, {"check": what, "user": self.username})
            raise CycleAborted

    def sign_in(self) -> None:
        page = self.call("screen:sign_in", "GET", "/accounts/login/")
        response = self.call(
            "screen:sign_in",
            "POST",
            "/accounts/login/",
            expect=(302,),
            data={"csrfmiddlewaretoken": _csrf(page.text), "login": self.username, "password": self.password},
        )
        where = response.headers.get("Location", "")
        self.check("screen:sign_in", "/accounts/" not in where, f"{self.username} signed in (redirected to {where})")

    def find_citizen(self, id_number: str) -> int:
        """Search by identity number (POSTed, then the redirect's GET) and return the one result's id."""
        page = self.call("screen:search", "GET", "/citizens/")
        response = self.call(
            "screen:search",
            "POST",
            "/citizens/",
            expect=(302,),
            data={"csrfmiddlewaretoken": _csrf(page.text), "q": id_number},
        )
        results = self.call("screen:search", "GET", response.headers["Location"])
        found = sorted(set(CITIZEN_LINK_RE.findall(results.text)))
        self.check("screen:search", len(found) == 1, f"one citizen found by identity number (found {len(found)})")
        return int(found[0])

    def citizen(self, pk: int) -> str:
        return self.call("screen:citizen", "GET", f"/citizens/{pk}/").text

    def two_step(self, kind: str, path: str, citizen_pk: int, reason: str) -> str:
        """The reason form, its confirmation page, the confirmation; then the citizen's page it leads to."""
        form = self.call(kind, "GET", path)
        confirm = self.call(kind, "POST", path, data={"csrfmiddlewaretoken": _csrf(form.text), "reason": reason})
        self.check(kind, 'name="confirmed"' in confirm.text, f"{path}: the confirmation step ({_excerpt(confirm)})")
        done = self.call(
            kind,
            "POST",
            path,
            expect=(302,),
            data={"csrfmiddlewaretoken": _csrf(confirm.text), "reason": reason, "confirmed": "yes"},
        )
        where = done.headers.get("Location", "")
        self.check(
            kind, where.rstrip("/").endswith(f"/citizens/{citizen_pk}"), f"{path}: back on the citizen ({where})"
        )
        page = self.citizen(citizen_pk)
        self.check(
            kind,
            'class="msg error"' not in page and 'class="msg success"' in page,
            f"{path}: a success message, no error ({_excerpt(page)})",
        )
        return page


# --- The partner API ---------------------------------------------------------------------


class Pacer:
    """Spaces one partner's requests (all its threads together) to at most `per_second`."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / max(per_second, 0.1)
        self.lock = threading.Lock()
        self.next_at = 0.0

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            time.sleep(at - now)


class PortalKeys:
    """The portal's public keys from `GET /api/v1/keys`, fetched again (at most once a minute) for an unknown id."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.lock = threading.Lock()
        self.keys: dict = {}
        self.fetched_at = -1e9
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        import httpx
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        with self.lock:
            if not force and time.monotonic() - self.fetched_at < 60:
                return
            response = httpx.get(self.base_url + "/api/v1/keys", timeout=30)
            response.raise_for_status()
            self.keys = {
                k["key_id"]: Ed25519PublicKey.from_public_bytes(base64.b64decode(k["public_key"]))
                for k in response.json()["keys"]
            }
            self.fetched_at = time.monotonic()

    def verify(self, key_id: str, signature: str, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        if key_id not in self.keys:
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the response then counts as unsigned
                return False
        key = self.keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(base64.b64decode(signature, validate=True), message)
        except (InvalidSignature, ValueError):
            return False
        return True


class PartnerApi:
    """One partner's signed API calls: signs each request, checks each response's portal signature."""

    def __init__(
        self, base_url: str, code: str, key_id: str, private_key, pacer: Pacer, portal_keys: PortalKeys, rec: Recorder
    ) -> None:
        import httpx

        self.httpx = httpx
        self.code, self.key_id, self.private_key = code, key_id, private_key
        self.pacer, self.portal_keys, self.rec = pacer, portal_keys, rec
        self.http = httpx.Client(base_url=base_url, timeout=60, headers={"User-Agent": "ecard-soak"})

    def _authorization(self, method: str, target: str, body: bytes) -> tuple[str, str]:
        timestamp = str(int(time.time()))
        nonce = secrets.token_urlsafe(24)
        message = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = base64.b64encode(self.private_key.sign(message)).decode()
        return (
            f'ECARD-ED25519 key_id="{self.key_id}",timestamp="{timestamp}",nonce="{nonce}",signature="{signature}"'
        ), nonce

    def send(
        self,
        kind: str,
        method: str,
        target: str,
        payload: object = None,
        *,
        idempotency_key: str | None = None,
        ok: tuple[int, ...] = (200,),
        refusals: tuple[str, ...] = (),
    ):
        """The response (status in `ok`, or a refusal named in `refusals`); anything else is recorded as an
        error and aborts the cycle. 429 `rate_limited` is waited out and the request sent again (signed afresh)."""
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        for _attempt in range(10):
            self.pacer.wait()
            authorization, nonce = self._authorization(method, target, body)
            headers = {"Authorization": authorization}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            started = time.perf_counter()
            try:
                response = self.http.request(method, target, content=body, headers=headers)
            except self.httpx.HTTPError as exc:
                self.rec.request(
                    kind,
                    time.perf_counter() - started,
                    error={
                        "partner": self.code,
                        "request": f"{method} {target}",
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                raise CycleAborted from exc
            elapsed = time.perf_counter() - started
            h = response.headers
            message = (
                f"{response.status_code}\n{nonce}\n{h.get('Ecard-Timestamp', '')}\n{h.get('Ecard-Nonce', '')}\n".encode()
                + response.content
                + b"\n"
            )
            if not self.portal_keys.verify(h.get("Ecard-Key-Id", ""), h.get("Ecard-Signature", ""), message):
                self.rec.request(
                    kind,
                    elapsed,
                    error={
                        "partner": self.code,
                        "request": f"{method} {target}",
                        "status": response.status_code,
                        "detail": f"the response is not signed by the portal: {_excerpt(response)}",
                    },
                )
                raise CycleAborted
            code = ""
            if response.status_code >= 400:
                try:
                    code = response.json().get("code", "")
                except ValueError:
                    code = ""
            if response.status_code == 429 and code == "rate_limited":
                self.rec.request(kind, elapsed, throttled=True)
                time.sleep(min(float(h.get("Retry-After", "1") or 1), 30.0))
                continue
            if response.status_code in ok:
                self.rec.request(kind, elapsed)
                return response
            if code and code in refusals:
                self.rec.request(kind, elapsed, refused=code)
                return response
            self.rec.request(
                kind,
                elapsed,
                error={
                    "partner": self.code,
                    "request": f"{method} {target}",
                    "status": response.status_code,
                    "detail": _excerpt(response),
                },
            )
            raise CycleAborted
        self.rec.fail(kind, {"partner": self.code, "request": f"{method} {target}", "detail": "still throttled"})
        raise CycleAborted

    def check(self, kind: str, ok: bool, what: str) -> None:
        if not ok:
            self.rec.fail(kind, {"partner": self.code, "check": what})
            raise CycleAborted

    def read_all(self, kind: str, target: str) -> list[dict]:
        items: list[dict] = []
        cursor = None
        while True:
            page = self.send(
                kind,
                "GET",
                target + ("&" if "?" in target else "?") + "limit=200" + (f"&cursor={cursor}" if cursor else ""),
            ).json()
            items += page["results"]
            cursor = page.get("next_cursor")
            if not cursor or not page["results"]:
                return items


# --- Workers ------------------------------------------------------------------------------


class Worker(threading.Thread):
    def __init__(self, name: str, stop: threading.Event, rec: Recorder, pace: float, seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self.stop, self.rec, self.pace = stop, rec, pace
        self.rng = random.Random(seed)
        self.cycles = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.cycle()
                self.cycles += 1
            except CycleAborted:
                self.stop.wait(1.0)
            except Exception as exc:  # a bug of the soak itself: shown, counted, and the soak goes on
                self.rec.fail(f"soak:{self.name}", {"error": f"{type(exc).__name__}: {exc}"})
                self.stop.wait(1.0)
            self.stop.wait(self.pace * (0.5 + self.rng.random()))

    def cycle(self) -> None:
        raise NotImplementedError


class ClerkWorker(Worker):
    """Card actions through the screens, on citizens of the clerk's region that no partner of the soak uses."""

    def __init__(self, screens: Screens, pool: list[str], issue_pool: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.screens, self.pool, self.issue_pool = screens, pool, issue_pool
        self.signed_in = False
        self.turn = 0

    def cycle(self) -> None:
        s = self.screens
        if not self.signed_in:
            s.sign_in()
            self.signed_in = True
        self.turn += 1
        if self.turn % 4 == 0:
            self.browse()
        if self.issue_pool and self.turn % 7 == 0:
            self.issue_and_revoke(self.issue_pool[(self.turn // 7) % len(self.issue_pool)])
        elif self.pool:
            self.suspend_and_reinstate(self.pool[self.turn % len(self.pool)], reissue=self.turn % 5 == 0)

    def browse(self) -> None:
        s = self.screens
        s.call("screen:list", "GET", f"/citizens/?status=active&page={self.rng.randint(1, 4)}")
        page = s.call("screen:search_name", "GET", "/citizens/")
        response = s.call(
            "screen:search_name",
            "POST",
            "/citizens/",
            expect=(302,),
            data={"csrfmiddlewaretoken": _csrf(page.text), "q": self.rng.choice("王李张刘陈杨黄赵吴周")},
        )
        results = s.call("screen:search_name", "GET", response.headers["Location"])
        found = CITIZEN_LINK_RE.findall(results.text)
        if found:
            s.citizen(int(self.rng.choice(found)))

    def suspend_and_reinstate(self, id_number: str, *, reissue: bool) -> None:
        s = self.screens
        pk = s.find_citizen(id_number)
        actions = _card_actions(s.citizen(pk))
        for card, allowed in actions.items():  # a card an earlier, broken cycle left suspended
            if "reinstate" in allowed:
                actions = _card_actions(
                    s.two_step("screen:reinstate", f"/citizens/cards/{card}/reinstate/", pk, "soak: 恢复上次中断的挂失")
                )
        cards = [card for card, allowed in actions.items() if "suspend" in allowed]
        s.check("screen:citizen", len(cards) == 1, f"one active e-card to suspend (found {len(cards)})")
        card = cards[0]
        page = s.two_step("screen:suspend", f"/citizens/cards/{card}/suspend/", pk, "soak: 参保人申请临时挂失")
        s.check("screen:suspend", "reinstate" in _card_actions(page).get(card, ()), "the card shows as suspended")
        page = s.two_step(
            "screen:reinstate", f"/citizens/cards/{card}/reinstate/", pk, "soak: 参保人找回手机，恢复使用"
        )
        s.check("screen:reinstate", "suspend" in _card_actions(page).get(card, ()), "the card shows as active again")
        if reissue:
            page = s.two_step("screen:reissue", f"/citizens/cards/{card}/reissue/", pk, "soak: 更换手机，重新申领凭证")
            new = [c for c, allowed in _card_actions(page).items() if "suspend" in allowed]
            s.check("screen:reissue", len(new) == 1 and new[0] != card, "a new active card replaced the old one")

    def issue_and_revoke(self, id_number: str) -> None:
        s = self.screens
        pk = s.find_citizen(id_number)
        page = s.citizen(pk)
        for card, allowed in _card_actions(page).items():  # a pending card an earlier, broken cycle left
            if "revoke" in allowed and "suspend" not in allowed and "reinstate" not in allowed:
                page = s.two_step("screen:revoke", f"/citizens/cards/{card}/revoke/", pk, "soak: 作废未激活凭证")
        s.check("screen:citizen", f'href="/citizens/{pk}/issue/"' in page, "the citizen can be issued an e-card")
        before = set(_card_actions(page))
        page = s.two_step("screen:issue", f"/citizens/{pk}/issue/", pk, "soak: 参保登记，发放电子凭证")
        new = [c for c, allowed in _card_actions(page).items() if c not in before and "revoke" in allowed]
        s.check("screen:issue", len(new) == 1, "the new card shows, pending activation")
        page = s.two_step("screen:revoke", f"/citizens/cards/{new[0]}/revoke/", pk, "soak: 重复登记，作废未激活凭证")
        s.check(
            "screen:revoke", f'href="/citizens/{pk}/issue/"' in page, "the card is revoked (a new one may be issued)"
        )


class PartnerWorker(Worker):
    """A wallet's day: link, mint, verify, settle (confirm or cancel, some refunded), unlink; poll events."""

    def __init__(
        self,
        api: PartnerApi,
        pool: list[dict],
        incoming: queue.Queue,
        services: list[dict],
        facilities: dict[str, list[str]],
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.api, self.pool, self.incoming = api, pool, incoming
        self.services, self.facilities = services, facilities
        self.turn = 0
        self.cursor: str | None = None
        self.events_seen = 0

    def next_citizen(self) -> dict | None:
        try:
            citizen = self.incoming.get_nowait()  # an imported citizen: their card is pending activation
            self.pool.append(citizen)
            return citizen
        except queue.Empty:
            pass
        if not self.pool:
            return None
        self.turn += 1
        return self.pool[self.turn % len(self.pool)]

    def cycle(self) -> None:
        try:
            citizen = self.next_citizen()
            if citizen is not None:
                self.linked_life(citizen)
        finally:
            if not self.stop.is_set():
                self.poll_events()

    def poll_events(self) -> None:
        target = "/api/v1/events?limit=100" + (f"&cursor={self.cursor}" if self.cursor else "")
        page = self.api.send("api:events", "GET", target).json()
        self.events_seen += len(page["results"])
        self.cursor = page["next_cursor"]
        self.api.check("api:events", bool(self.cursor), "GET /events: next_cursor is never null")

    def linked_life(self, citizen: dict) -> None:
        api = self.api
        response = api.send(
            "api:linkage_create",
            "POST",
            "/api/v1/linkages",
            {
                "id_number": citizen["id_number"],
                "name": citizen["name"],
                "partner_user_ref": f"soak-{uuid.uuid4().hex}",
                "verification_reference": f"soak-face-{uuid.uuid4().hex[:12]}",
            },
            idempotency_key=str(uuid.uuid4()),
            ok=(201,),
            refusals=("linkage_exists", "certificate_unavailable"),
        )
        if response.status_code != 201:  # not ours to use: left alone from now on
            self.pool.remove(citizen)
            return
        linkage = response.json()
        try:
            api.check(
                "api:linkage_create",
                linkage["state"] == "active" and linkage["certificate"]["state"] == "active",
                f"a new linkage is active with an active card (got {linkage['state']}, "
                f"{linkage['certificate']['state']})",
            )
            if self.rng.random() < 0.3:
                got = api.send("api:linkage_get", "GET", f"/api/v1/linkages/{linkage['id']}").json()
                api.check(
                    "api:linkage_get", got["id"] == linkage["id"] and got["state"] == "active", "GET /linkages/{id}"
                )
            for _ in range(self.rng.randint(1, 3)):
                self.settle(linkage, citizen["region"])
                if self.stop.is_set():
                    break
        finally:
            self.unlink(linkage["id"])

    def unlink(self, linkage_id: str) -> None:
        """End the linkage; once more after a failure (already counted), so that the soak leaves none behind."""
        for attempt in (1, 2):
            try:
                unlinked = self.api.send(
                    "api:unlink", "POST", f"/api/v1/linkages/{linkage_id}/unlink", {"reason": "citizen_request"}
                ).json()
                break
            except CycleAborted:
                if attempt == 2:
                    raise
                time.sleep(1.0)
        self.api.check(
            "api:unlink",
            unlinked["state"] == "unlinked" and unlinked["end_reason"] == "citizen_request",
            f"the linkage is unlinked (got {unlinked['state']})",
        )

    def settle(self, linkage: dict, region: str) -> None:
        api = self.api
        token = api.send("api:qr_token", "POST", f"/api/v1/linkages/{linkage['id']}/qr-tokens", {}, ok=(201,)).json()
        verified = api.send("api:verify", "POST", "/api/v1/certificates/verify", {"token": token["token"]}).json()
        number = linkage["certificate"]["number"]
        api.check(
            "api:verify",
            verified["certificate_number"] == number
            and verified["state"] == "active"
            and verified["token_used"] is False,
            f"verify: the linked card, active, token unused (got state {verified['state']}, "
            f"token_used {verified['token_used']}, same card {verified['certificate_number'] == number})",
        )
        lines = []
        for service in self.rng.sample(self.services, k=min(len(self.services), self.rng.randint(1, 3))):
            top = min(service["max_unit_price_fen"], 30_000)
            lines.append(
                {
                    "service_code": service["code"],
                    "quantity": self.rng.randint(1, 3),
                    "unit_price_fen": self.rng.randint(max(1, top // 4), top),
                }
            )
        body = {
            "token": token["token"],
            "facility_code": self.rng.choice(self.facilities[region]),
            "lines": lines,
            "use_personal_account": self.rng.random() < 0.3,
        }
        key = str(uuid.uuid4())
        created = api.send("api:settlement_create", "POST", "/api/v1/settlements", body, idempotency_key=key, ok=(201,))
        settlement = created.json()
        api.check(
            "api:settlement_create",
            settlement["state"] == "pending_payment" and settlement["certificate_number"] == number,
            f"a pending settlement (got {settlement['state']})",
        )
        if self.rng.random() < 0.15:  # the same request again: the first answer, byte for byte
            again = api.send(
                "api:settlement_replay", "POST", "/api/v1/settlements", body, idempotency_key=key, ok=(201,)
            )
            api.check(
                "api:settlement_replay",
                again.content == created.content and again.headers.get("Idempotent-Replayed") == "true",
                "the replay answers the first response",
            )
        if self.rng.random() < 0.25:
            again = api.send("api:verify", "POST", "/api/v1/certificates/verify", {"token": token["token"]}).json()
            api.check("api:verify", again["token_used"] is True, "verify after settling: token_used")
        sid = settlement["id"]
        if self.rng.random() < 0.2:
            cancelled = api.send("api:settlement_cancel", "POST", f"/api/v1/settlements/{sid}/cancel", {}).json()
            api.check(
                "api:settlement_cancel", cancelled["state"] == "cancelled", f"cancelled (got {cancelled['state']})"
            )
            final = "cancelled"
        else:
            paid = api.send(
                "api:settlement_confirm",
                "POST",
                f"/api/v1/settlements/{sid}/confirm",
                {
                    "partner_transaction_id": f"soak-tx-{uuid.uuid4().hex}",
                    "self_pay_fen": settlement["self_pay_fen"],
                },
                idempotency_key=str(uuid.uuid4()),
            ).json()
            api.check("api:settlement_confirm", paid["state"] == "paid", f"paid (got {paid['state']})")
            final = "paid"
            if self.rng.random() < 0.2:
                refunded = api.send(
                    "api:settlement_refund",
                    "POST",
                    f"/api/v1/settlements/{sid}/refund",
                    {"reason": "soak: 患者退费"},
                    idempotency_key=str(uuid.uuid4()),
                ).json()
                api.check(
                    "api:settlement_refund", refunded["state"] == "refunded", f"refunded (got {refunded['state']})"
                )
                final = "refunded"
        if self.rng.random() < 0.3:
            got = api.send("api:settlement_get", "GET", f"/api/v1/settlements/{sid}").json()
            api.check(
                "api:settlement_get", got["state"] == final, f"GET /settlements/{{id}}: {final} (got {got['state']})"
            )


class ImportWorker(threading.Thread):
    """One citizen import through the screens, followed to its end; its citizens then go to the partners."""

    def __init__(
        self,
        screens: Screens,
        region: str,
        rows: list[dict],
        incoming: dict[str, list[queue.Queue]],
        rec: Recorder,
        timeout: float,
    ) -> None:
        super().__init__(name="import", daemon=True)
        self.screens, self.region, self.rows, self.incoming, self.rec = screens, region, rows, incoming, rec
        self.timeout = timeout
        self.result: dict = {"rows": len(rows), "region": region, "state": "not started"}

    def run(self) -> None:
        try:
            self._run()
        except CycleAborted:
            self.result["aborted"] = True
        except Exception as exc:
            self.rec.fail("soak:import", {"error": f"{type(exc).__name__}: {exc}"})

    def _run(self) -> None:
        s = self.screens
        s.sign_in()
        page = s.call("screen:import", "GET", "/citizens/imports/new/")
        options = re.findall(r'<option value="([^"]+)"', page.text)
        s.check("screen:import", self.region in options, f"the import form offers region {self.region} ({options})")
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=["id_number", "name", "phone", "region_code", "scheme", "account_balance_fen"]
        )
        writer.writeheader()
        writer.writerows(self.rows)
        response = s.call(
            "screen:import",
            "POST",
            "/citizens/imports/new/",
            expect=(302,),
            data={"csrfmiddlewaretoken": _csrf(page.text), "region": self.region},
            files={"file": ("soak-import.csv", buffer.getvalue().encode("utf-8"), "text/csv")},
        )
        where = response.headers["Location"]
        match = re.search(r"/citizens/imports/(\d+)/", where)
        s.check("screen:import", match is not None, f"the upload leads to its job ({where})")
        job = int(match.group(1))
        self.result.update(job=job, state="queued")
        s.call("screen:import", "GET", f"/citizens/imports/{job}/")
        started = time.monotonic()
        while True:
            status = s.call("screen:import_status", "GET", f"/citizens/imports/{job}/status/").json()
            self.result.update({k: status[k] for k in ("state", "rows_total", "created", "updated", "failed", "error")})
            if status["finished"]:
                break
            if time.monotonic() - started > self.timeout:
                s.check(
                    "screen:import_status",
                    False,
                    f"import job {job} finished within {self.timeout:.0f} s "
                    f"(state {status['state']}, {status['rows_done']} rows done)",
                )
            time.sleep(1.0)
        self.result["seconds"] = round(time.monotonic() - started, 1)
        s.check(
            "screen:import_status",
            status["state"] == "done"
            and status["failed"] == 0
            and status["created"] + status["updated"] == len(self.rows),
            f"import job {job}: done with every row imported and 0 failed (got {status})",
        )
        # Every wallet links each imported citizen (the first one activates the card), in an order of
        # its own, each row going to one of that wallet's threads.
        for code, queues in self.incoming.items():
            rows = list(self.rows)
            random.Random(f"{code}-{self.screens.username}").shuffle(rows)
            for index, row in enumerate(rows):
                queues[index % len(queues)].put(
                    {"id_number": row["id_number"], "name": row["name"], "region": row["region_code"], "linked": []}
                )


# --- The stack: its environment, its log, Django subprocesses --------------------------------


def read_stack_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def django_env(stack: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **stack}
    env.setdefault("ECARD_MODE", "demo")
    env["DB_CONN_MAX_AGE"] = "0"
    return env


def run_helper(env: dict[str, str], command: str, **arguments) -> dict:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "_django", command, json.dumps(arguments)],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(HELPER_MARK):
            return json.loads(line[len(HELPER_MARK) :])
    raise RuntimeError(
        f"the Django helper `{command}` failed (exit {result.returncode}):\n"
        f"{result.stderr[-3000:]}{result.stdout[-1000:]}"
    )


# bin/stack.py prefixes each line with the process's name ("web     | ..."); an access-log line, a
# Django or Celery log record starts a new record.
_LOG_PREFIX = re.compile(r"^[\w\[\]-]+\s*\| ?")
_NEW_RECORD = re.compile(r"^(\[?\d{4}-\d\d-\d\d[ T]\d|\d+\.\d+\.\d+\.\d+ \[|==>)")


def scan_log(path: Path, start: int) -> dict:
    """Restarts and tracebacks in what the stack's log got since byte `start`."""
    if not path.exists():
        return {"path": str(path), "missing": True, "restarts": 0, "tracebacks": 0}
    size = path.stat().st_size
    truncated = size < start
    with path.open("rb") as handle:
        handle.seek(0 if truncated else start)
        text = handle.read().decode("utf-8", errors="replace")
    lines = text.splitlines()
    restarts = [line for line in lines if "[stack]" in line and "restarting" in line]
    traceback_lines = [i for i, line in enumerate(lines) if "Traceback" in line]
    shown: list[str] = []
    covered = -1
    for i in traceback_lines:
        if len(shown) == TRACEBACKS_SHOWN:
            break
        if i <= covered:
            continue  # a chained exception's second traceback, already in the block shown
        prefix = _LOG_PREFIX.match(lines[i])
        block = [lines[i]]
        for line in lines[i + 1 : i + 200]:
            own = _LOG_PREFIX.match(line)
            if (own and prefix and own.group(0) != prefix.group(0)) or _NEW_RECORD.match(
                line[own.end() if own else 0 :]
            ):
                break  # another process's line, or the next log record
            block.append(line)
        covered = i + len(block) - 1
        if len(block) > 40:  # the frames of the project's own code, and how it ended
            own_frames = [
                line
                for k, line in enumerate(block[1:-8], start=1)
                if ('File "' in line and "site-packages" not in line and "/lib/python" not in line)
                or (
                    'File "' in block[k - 1]
                    and "site-packages" not in block[k - 1]
                    and "/lib/python" not in block[k - 1]
                    and 'File "' not in line
                )
            ]
            block = [block[0], f"    ... ({len(block) - 9} lines; the project's frames:)", *own_frames, *block[-8:]]
        shown.append("\n".join(block))
    server_errors = sum(1 for line in lines if re.search(r'"[A-Z]+ [^"]*" 5\d\d ', line))
    return {
        "path": str(path),
        "bytes_scanned": len(text.encode("utf-8")),
        "rotated_or_truncated": truncated,
        "restarts": len(restarts),
        "restart_lines": restarts[:5],
        "tracebacks": len(traceback_lines),
        "first_tracebacks": shown,
        "http_5xx_lines": server_errors,
    }


# --- Main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=2.0, help="how long to drive the stack (default 2)")
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        help="worker threads, roles in turn: clerk, wechat_pay, alipay, clerk_gd, ... (default 4)",
    )
    parser.add_argument("--var-dir", type=Path, default=BASE_DIR / "var", help="the stack's var/ (default: the repo's)")
    parser.add_argument("--stack-env", type=Path, help="default <var-dir>/run/stack.env")
    parser.add_argument("--log", type=Path, help="the stack's log (default <var-dir>/log/stack.log)")
    parser.add_argument(
        "--keys-dir",
        type=Path,
        help="the demo partners' private keys (default <ECARD_VAR_DIR or var-dir>/demo-partner-keys)",
    )
    parser.add_argument("--base-url", help="default http://127.0.0.1:$PORT from stack.env")
    parser.add_argument("--clerks", default="clerk,clerk_gd", help="staff who do the screens' card actions")
    parser.add_argument("--password", help="their password (default ECARD_DEMO_PASSWORD or the demo's)")
    parser.add_argument("--import-rows", type=int, default=200, help="citizens in the one import (default 200)")
    parser.add_argument("--import-timeout", type=float, default=300)
    parser.add_argument("--pool-size", type=int, default=150, help="citizens per clerk region (partners: 4x)")
    parser.add_argument("--pace", type=float, default=0.3, help="mean pause between a thread's cycles, seconds")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=60,
        help="how long to wait at the end for the outbox to deliver the soak's events (default 60)",
    )
    parser.add_argument("--json", type=Path, help="also write the report here (default <var-dir>/log/soak-report.json)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()

    stack_env_path = args.stack_env or args.var_dir / "run" / "stack.env"
    if not stack_env_path.exists():
        print(
            f"soak: no {stack_env_path}: start the stack with `make run` first (or give --stack-env / --var-dir)",
            file=sys.stderr,
        )
        return 2
    stack = read_stack_env(stack_env_path)
    missing = [k for k in ("DATABASE_URL", "REDIS_URL", "PORT") if not stack.get(k)]
    if missing:
        print(f"soak: {stack_env_path} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    if stack.get("ECARD_MODE", "demo") != "demo":  # it suspends cards and settles bills: never in production
        print(
            f"soak: the stack runs with ECARD_MODE={stack['ECARD_MODE']}; the soak drives only the demo",
            file=sys.stderr,
        )
        return 2
    base_url = (args.base_url or f"http://127.0.0.1:{stack['PORT']}").rstrip("/")
    log_path = args.log or args.var_dir / "log" / "stack.log"
    keys_dir = args.keys_dir or Path(stack.get("ECARD_VAR_DIR") or args.var_dir) / "demo-partner-keys"
    password = (
        args.password or stack.get("ECARD_DEMO_PASSWORD") or os.environ.get("ECARD_DEMO_PASSWORD") or DEFAULT_PASSWORD
    )
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    clerks = [c.strip() for c in args.clerks.split(",") if c.strip()]
    env = django_env(stack)

    import httpx
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        httpx.get(base_url + "/healthz", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        print(f"soak: the stack does not answer at {base_url}/healthz: {exc}", file=sys.stderr)
        return 2

    log_start = log_path.stat().st_size if log_path.exists() else 0
    started_at = dt.datetime.now(dt.UTC).astimezone()
    print(f"soak: {args.minutes:g} min against {base_url}, seed {seed}; reading the pools ...", file=sys.stderr)
    try:
        setup = run_helper(
            env, "setup", clerks=clerks, import_rows=args.import_rows, pool_size=args.pool_size, seed=seed
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    outbox_after = setup["outbox_max_id"]

    rec = Recorder()
    stop = threading.Event()
    portal_keys = PortalKeys(base_url)

    for name in clerks:
        info = setup["clerks"].get(name)
        problem = (
            "does not exist"
            if info is None
            else "is not active"
            if not info["active"]
            else "cannot write citizens"
            if not info["can_write"]
            else "must use TOTP (the soak signs in clerks without it)"
            if info["requires_mfa"]
            else "has no region"
            if not info["regions"]
            else ""
        )
        if problem:
            print(f"soak: the clerk {name!r} {problem}", file=sys.stderr)
            return 2

    # The wallets of the sandbox, each with its private key on this machine.
    partner_apis: dict[str, tuple[dict, str, object]] = {}
    for partner in setup["partners"]:
        if not (partner["sandbox"] and partner["kind"] == "wallet" and partner["state"] == "active"):
            continue
        pem = keys_dir / f"{partner['code']}.pem"
        if not pem.exists():
            continue
        private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            continue
        raw = base64.b64encode(
            private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).decode()
        key_id = next((k["key_id"] for k in partner["keys"] if k["public_key"] == raw), None)
        if key_id:
            partner_apis[partner["code"]] = (partner, key_id, private)
    if not partner_apis:
        print(f"soak: no sandbox wallet with its private key in {keys_dir}", file=sys.stderr)
        return 2
    pacers = {code: Pacer(p["rate_limit_per_second"] / 2) for code, (p, _, _) in partner_apis.items()}

    # Roles in turn: clerk, first wallet, second wallet, second clerk, ...
    order: list[tuple[str, str]] = []
    wallets = sorted(partner_apis, key=lambda c: (c != "wechat_pay", c))
    slots = [("clerk", clerks[0]), *[("partner", w) for w in wallets], *[("clerk", c) for c in clerks[1:]]]
    for i in range(max(1, args.threads)):
        order.append(slots[i % len(slots)])

    # Catalogue reads the settlements need (one call each, as a wallet would cache them).
    first_code = wallets[0]
    reader = PartnerApi(
        base_url,
        first_code,
        partner_apis[first_code][1],
        partner_apis[first_code][2],
        pacers[first_code],
        portal_keys,
        rec,
    )
    try:
        services = [s for s in reader.read_all("api:services", "/api/v1/services") if s["max_unit_price_fen"] >= 100]
        facilities: dict[str, list[str]] = defaultdict(list)
        for facility in reader.read_all("api:facilities", "/api/v1/facilities"):
            facilities[facility["region_code"]].append(facility["code"])
    except CycleAborted:
        print(f"soak: the catalogue could not be read: {rec.errors}", file=sys.stderr)
        return 2

    workers: list[Worker] = []
    incoming: dict[str, list[queue.Queue]] = defaultdict(list)
    partner_threads = Counter(code for role, code in order if role == "partner")
    clerk_threads = Counter(name for role, name in order if role == "clerk")
    seen: Counter = Counter()
    for index, (role, who) in enumerate(order):
        n, nth = 0, seen[(role, who)]
        seen[(role, who)] += 1
        common = {"name": f"{role}-{who}-{nth}", "stop": stop, "rec": rec, "pace": args.pace, "seed": seed + index}
        if role == "clerk":
            n = clerk_threads[who]
            regions = setup["clerks"][who]["regions"]
            pool = [x for r in regions for x in setup["clerk_pool"].get(r, [])][nth::n]
            issue = [x for r in regions for x in setup["issue_pool"].get(r, [])][nth::n]
            screens = Screens(base_url, who, password, rec)
            workers.append(ClerkWorker(screens, pool, issue, **common))
        else:
            n = partner_threads[who]
            partner, key_id, private = partner_apis[who]
            api = PartnerApi(base_url, who, key_id, private, pacers[who], portal_keys, rec)
            pool = [c for c in setup["partner_pool"] if who not in c["linked"] and facilities.get(c["region"])][nth::n]
            random.Random(seed + index).shuffle(pool)  # each wallet in an order of its own
            q: queue.Queue = queue.Queue()
            incoming[who].append(q)
            workers.append(PartnerWorker(api, pool, q, services, facilities, **common))

    importer = None
    if args.import_rows > 0 and setup["import_rows"]:
        if not facilities.get(setup["import_region"]):
            incoming = {}
        importer = ImportWorker(
            Screens(base_url, clerks[0], password, rec),
            setup["import_region"],
            setup["import_rows"],
            incoming,
            rec,
            args.import_timeout,
        )

    deadline = time.monotonic() + args.minutes * 60
    for worker in workers:
        worker.start()
    if importer:
        importer.start()
    next_progress = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= next_progress:
            requests, errors = rec.totals()
            elapsed = args.minutes * 60 - (deadline - time.monotonic())
            print(f"soak: {elapsed / 60:5.1f} min: {requests} requests, {errors} errors", file=sys.stderr)
            next_progress += 30
    stop.set()
    for worker in workers:
        worker.join(timeout=120)
        if worker.is_alive():
            rec.fail(f"soak:{worker.name}", {"error": "the thread did not finish its last cycle within 120 s"})
    if importer:
        importer.join(timeout=max(0.0, args.import_timeout))
        if importer.is_alive():
            rec.fail("screen:import_status", {"check": "the import thread did not finish"})
    soak_seconds = round(time.monotonic() - (deadline - args.minutes * 60), 1)

    # The outbox: the soak's events (ids up to now), delivered to the sandbox?
    print("soak: load stopped; waiting for the outbox to deliver the soak's events ...", file=sys.stderr)
    drain_started = time.monotonic()
    try:
        outbox_upto = run_helper(env, "mark")["outbox_max_id"]
        while True:
            events = run_helper(env, "outbox", after=outbox_after, upto=outbox_upto)
            if (
                events["pending"] == 0 and events["lost"] == 0
            ) or time.monotonic() - drain_started > args.drain_seconds:
                break
            time.sleep(2)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        events = {
            "created": 0,
            "received": 0,
            "lost": 0,
            "lost_sample": [],
            "pending": 0,
            "states": {},
            "by_partner": {},
            "by_type": {},
            "received_invalid_signature": 0,
            "duplicate_receipts": 0,
            "error": str(exc)[-2000:],
        }
    events["drain_seconds"] = round(time.monotonic() - drain_started, 1)

    log = scan_log(log_path, log_start)
    chain = subprocess.run(
        [sys.executable, "manage.py", "verify_audit_chain"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    chain_output = (chain.stdout + chain.stderr).strip().splitlines()
    audit = {"intact": chain.returncode == 0, "exit_code": chain.returncode, "output": chain_output[-5:]}

    requests, errors = rec.totals()
    failures = []
    if errors:
        failures.append(f"{errors} error(s)")
    if log.get("tracebacks"):
        failures.append(f"{log['tracebacks']} traceback line(s) in the log")
    if events["lost"]:
        failures.append(f"{events['lost']} event(s) created and not received by the sandbox")
    if events.get("error"):
        failures.append("the outbox and the sandbox's receipts could not be read")
    if events["received_invalid_signature"]:
        failures.append(f"{events['received_invalid_signature']} event(s) received with an invalid signature")
    if not audit["intact"]:
        failures.append("the audit chain is broken")
    report = {
        "ok": not failures,
        "failures": failures,
        "started_at": started_at.isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "soak_seconds": soak_seconds,
        "base_url": base_url,
        "seed": seed,
        "threads": [f"{role}:{who}" for role, who in order],
        "totals": {"requests": requests, "errors": errors},
        "requests": rec.table(),
        "errors": rec.errors,
        "cycles": {w.name: w.cycles for w in workers},
        "events_polled": {w.name: w.events_seen for w in workers if isinstance(w, PartnerWorker)},
        "import": importer.result if importer else None,
        "sandbox_partners": {
            p["code"]: {"deliveries_paused": p["deliveries_paused"], "driven": p["code"] in partner_apis}
            for p in setup["partners"]
            if p["sandbox"]
        },
        "log": log,
        "events": events,
        "audit_chain": audit,
    }
    print_report(report)
    json_path = args.json or args.var_dir / "log" / "soak-report.json"
    try:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"\nreport (JSON), also in {json_path}:")
    except OSError as exc:
        print(f"\nreport (JSON; not written to {json_path}: {exc}):")
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0 if report["ok"] else 1


def print_report(report: dict) -> None:
    print()
    print(
        f"Soak of {report['base_url']}: {report['minutes']:g} min ({report['soak_seconds']} s), "
        f"threads {', '.join(report['threads'])}, seed {report['seed']}"
    )
    print()
    print(f"{'kind':<26} {'count':>7} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  other")
    for kind, k in report["requests"].items():
        other = ", ".join(
            [f"throttled {k['throttled']}"] * bool(k["throttled"])
            + [f"refused {code} {n}" for code, n in k["refused"].items()]
        )
        print(
            f"{kind:<26} {k['count']:>7} {k['errors']:>6} {k['p50_ms'] or '-':>8} {k['p95_ms'] or '-':>8} "
            f"{k['max_ms'] or '-':>8}  {other}"
        )
    print(f"{'total':<26} {report['totals']['requests']:>7} {report['totals']['errors']:>6}")
    if report["errors"]:
        print("\nfirst errors:")
        for error in report["errors"][:10]:
            print("  " + json.dumps(error, ensure_ascii=False))
    imp = report["import"]
    if imp:
        print(
            f"\nimport: job {imp.get('job')}, {imp.get('state')}, {imp.get('rows')} rows: created {imp.get('created')}, "
            f"updated {imp.get('updated')}, failed {imp.get('failed')} ({imp.get('seconds')} s)"
        )
    log = report["log"]
    print(
        f"\nlog {log['path']}: {log.get('bytes_scanned', 0)} bytes since the start; process restarts "
        f"{log['restarts']}, traceback lines {log['tracebacks']}, HTTP 5xx lines {log.get('http_5xx_lines', 0)}"
    )
    for line in log.get("restart_lines", []):
        print("  " + line)
    for block in log.get("first_tracebacks", []):
        print("  ---\n  " + block.replace("\n", "\n  "))
    ev = report["events"]
    print(
        f"\noutbox events for the sandbox partners created during the soak: {ev['created']}, received "
        f"{ev['received']}, lost {ev['lost']} (states {ev['states']}; waited {ev['drain_seconds']} s; "
        f"duplicate receipts {ev['duplicate_receipts']}, invalid signatures {ev['received_invalid_signature']})"
    )
    for kind, counts in ev["by_type"].items():
        print(f"  {kind:<26} created {counts['created']:>6}  received {counts['received']:>6}")
    for lost in ev["lost_sample"]:
        print(f"  lost: {lost}")
    if ev.get("error"):
        print(f"  could not be read: {ev['error']}")
    for code, info in report["sandbox_partners"].items():
        if info["deliveries_paused"]:
            print(f"  note: deliveries to {code} are paused (partner monitor): its events stay pending")
    audit = report["audit_chain"]
    print(
        f"\naudit chain: {'intact' if audit['intact'] else 'BROKEN'} (exit {audit['exit_code']}): "
        + " / ".join(audit["output"][-2:])
    )
    print(f"\nresult: {'OK' if report['ok'] else 'FAILED: ' + '; '.join(report['failures'])}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_django":
        _django_main(sys.argv[2:])
    else:
        sys.exit(main())
