"""The checks `bin/cluster drill` makes after its faults: the client's journal against the database,
the outbox against the webhook receiver's records, the accumulators against their settlements.

The comparisons are pure functions (tests/bench/test_drill_checks.py); the queries read the
cluster's database through HAProxy's write port with plain SQL (no Django: the drill is a client).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

AMOUNTS = ("total_fen", "fund_fen", "account_fen", "self_pay_fen", "deductible_fen")
LIVE = ("pending_payment", "paid")  # the states whose amounts the accumulator holds


@dataclass
class Result:
    lines: list[str] = field(default_factory=list)
    passed: bool = True

    def ok(self, text: str) -> None:
        self.lines.append(f"  ok    {text}")

    def fail(self, text: str) -> None:
        self.passed = False
        self.lines.append(f"  FAIL  {text}")

    def check(self, problems: list[str], what: str, shown: int = 5) -> None:
        if problems:
            self.fail(f"{what}: {len(problems)} problem(s)")
            self.lines.extend(f"          {p}" for p in problems[:shown])
        else:
            self.ok(what)


# --- Pure comparisons -------------------------------------------------------------------------------


def journal_problems(records: list[dict], settlements: dict[str, dict]) -> list[str]:
    """Each settlement the client saw created exists once with the amounts it was told; one id per key,
    one key per id; each confirmed one is paid. `settlements`: public id -> row (state and amounts)."""
    problems = []
    by_key: dict[str, set[str]] = {}
    keys_of: dict[str, set[str]] = {}
    for r in records:
        if r["kind"] != "settle":
            continue
        by_key.setdefault(r["idem"], set()).add(r["id"])
        keys_of.setdefault(r["id"], set()).add(r["idem"])
        row = settlements.get(r["id"])
        if row is None:
            problems.append(f"settlement {r['id']} (key {r['idem']}) answered 201 but is not in the database")
            continue
        wrong = [k for k in AMOUNTS if r.get(k) is not None and row[k] != r[k]]
        if wrong:
            problems.append(f"settlement {r['id']}: {', '.join(wrong)} differ from the answer the client saw")
    problems += [
        f"key {k} answered with several settlements: {sorted(ids)}" for k, ids in by_key.items() if len(ids) > 1
    ]
    problems += [f"settlement {i} answered for several keys: {sorted(ks)}" for i, ks in keys_of.items() if len(ks) > 1]
    for r in records:
        if (
            r["kind"] == "confirm"
            and r["id"] in settlements
            and settlements[r["id"]]["state"] not in ("paid", "refunded")
        ):
            problems.append(f"settlement {r['id']} was confirmed to the client but is {settlements[r['id']]['state']}")
    return problems


def refusal_causes(failures: list[tuple[float, str, str]], start: float, end: float) -> Counter:
    """What refused the requests between `start` and `end`, by count: the status and problem code
    (`503 service_unavailable`), a screen's status (`screen 503`) or the client's exception
    (`ConnectError`). `failures`: (time, kind, cause) as the journal keeps them; the load's own
    `cycle` entries (a cycle that gave up) are not requests."""
    return Counter(what for t, kind, what in failures if start <= t <= end and kind != "cycle")


def screen_cause(detail: dict | None) -> str:
    """What ended a clerk's cycle, from bench/soak.py's error detail: `screen 503`, `screen
    ConnectError`, `screen check failed` (a page that did not say what it should)."""
    if not detail:
        return "screen aborted"
    if "status" in detail:
        return f"screen {detail['status']}"
    if "error" in detail:
        return "screen " + str(detail["error"]).split(":")[0]
    return "screen check failed"


def server_error_problems(failures: list[tuple[float, str, str]]) -> list[str]:
    """Requests answered 500: a bug, whatever the fault. An unreachable database or Redis answers 503
    with Retry-After, a node that is gone 502 (from nginx); neither is a problem here."""
    counts = Counter(
        what for _, kind, what in failures if kind != "cycle" and what.removeprefix("screen ").split(" ")[0] == "500"
    )
    return [f"{n} request(s) answered {what}" for what, n in sorted(counts.items())]


def idempotency_problems(
    created: list[str], records: list[tuple[str, int | None, str | None]], journal: list[dict]
) -> list[str]:
    """Each settlement created during the drill is named by exactly one completed Idempotency-Key
    record (executed once per key, none without a key), and each key of the journal has its record
    naming the settlement the client got. `records`: (key, response status, settlement id in the body)."""
    problems = []
    named = Counter(sid for _, status, sid in records if status == 201 and sid)
    for sid in created:
        if named[sid] != 1:
            problems.append(f"settlement {sid} is named by {named[sid]} idempotency records (want 1)")
    by_key = {key: (status, sid) for key, status, sid in records}
    for r in journal:
        if r["kind"] != "settle":
            continue
        status, sid = by_key.get(r["idem"], (None, None))
        if status != 201 or sid != r["id"]:
            problems.append(f"key {r['idem']}: the stored response is {status} {sid}, the client got 201 {r['id']}")
    return problems


def replay_problems(journal: list[dict], stored: dict[str, tuple[int | None, str | None]]) -> list[str]:
    """The linkages and confirmations the client saw succeed: each key's stored response is the
    success the client got (a retry replayed it rather than running again). `stored`: key ->
    (response status, the id in its body)."""
    problems = []
    for r in journal:
        if r["kind"] in ("link", "confirm"):
            status, object_id = stored.get(r["idem"], (None, None))
            if status is None or not 200 <= status < 300 or object_id != r["id"]:
                problems.append(
                    f"{r['kind']} key {r['idem']}: the stored response is {status} {object_id}, not {r['id']}"
                )
    return problems


def accumulator_problems(rows: list[tuple]) -> list[str]:
    """rows: (citizen, year, fund_used, deductible_used, live fund sum, live deductible sum, annual cap)."""
    problems = []
    for citizen, year, fund_used, deductible_used, fund_sum, deductible_sum, cap in rows:
        if (fund_used, deductible_used) != (fund_sum or 0, deductible_sum or 0):
            problems.append(
                f"citizen {citizen} {year}: accumulator fund {fund_used} deductible {deductible_used}, "
                f"settlements fund {fund_sum or 0} deductible {deductible_sum or 0}"
            )
        if cap is not None and fund_used > cap:
            problems.append(f"citizen {citizen} {year}: fund use {fund_used} exceeds the annual cap {cap}")
    return problems


def outbox_problems(events: list[tuple[str, str, object]], received: set[str]) -> tuple[list[str], Counter]:
    """events: (public id, state, next_attempt_at). Each reached the receiver, or is pending with its
    next attempt set; one marked delivered that the receiver never got is lost."""
    problems = []
    tally: Counter = Counter()
    for event_id, state, next_attempt in events:
        got = event_id in received
        if got:
            tally["received"] += 1
        elif state == "pending" and next_attempt is not None:
            tally["pending with a next attempt"] += 1
        else:
            tally["lost"] += 1
            problems.append(f"event {event_id} ({state}) never reached the receiver")
    return problems, tally


def received_event_ids(path: Path) -> tuple[set[str], int]:
    """The event ids the receiver recorded, and how many receipts repeated an id (at-least-once)."""
    ids: list[str] = []
    if path.exists():
        for line in path.read_text().splitlines():
            headers = {k.lower(): v for k, v in json.loads(line).get("headers", {}).items()}
            if "ecard-event-id" in headers:
                ids.append(headers["ecard-event-id"])
    return set(ids), len(ids) - len(set(ids))


# --- The queries --------------------------------------------------------------------------------------


def _rows(url: str, sql: str, params: object = None) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def mark(url: str) -> dict:
    outbox, settlement, idem = _rows(
        url,
        "SELECT (SELECT coalesce(max(id), 0) FROM payments_outboxevent),"
        " (SELECT coalesce(max(id), 0) FROM payments_settlement),"
        " (SELECT coalesce(max(id), 0) FROM payments_idempotencyrecord)",
    )[0]
    return {"outbox": outbox, "settlement": settlement, "idempotency": idem}


def outbox_pending_due(url: str, *, all_pending: bool = False) -> int:
    due = "" if all_pending else " AND (next_attempt_at IS NULL OR next_attempt_at <= now())"
    return _rows(url, f"SELECT count(*) FROM payments_outboxevent WHERE state = 'pending'{due}")[0][0]  # noqa: S608


def _body_id(body: bytes | None) -> str | None:
    """The "id" of a stored JSON response, None if there is none."""
    try:
        return json.loads(bytes(body)).get("id") if body else None
    except (ValueError, AttributeError):
        return None


def delivered(url: str, event_ids: list[str]) -> bool:
    """Whether every one of these outbox events is marked delivered."""
    rows = _rows(
        url, "SELECT count(*) FROM payments_outboxevent WHERE public_id = ANY(%s) AND state = 'delivered'", (event_ids,)
    )
    return rows[0][0] == len(event_ids)


def check_database(url: str, journal: list[dict], since: dict, result: Result) -> None:
    ids = [r["id"] for r in journal if r["kind"] == "settle"]
    cols = ", ".join(AMOUNTS)
    settlements = {
        row[0]: dict(zip(("state", *AMOUNTS), row[1:], strict=True))
        for row in _rows(
            url, f"SELECT public_id, state, {cols} FROM payments_settlement WHERE public_id = ANY(%s)", (ids,)
        )  # noqa: S608
    }
    result.check(
        journal_problems(journal, settlements),
        f"{len(ids)} settlements the client saw created are in the database once, as answered",
    )
    links = [r["id"] for r in journal if r["kind"] == "link"]
    found = {
        row[0] for row in _rows(url, "SELECT public_id FROM payments_walletlinkage WHERE public_id = ANY(%s)", (links,))
    }
    result.check(
        [f"linkage {i} is missing" for i in links if i not in found],
        f"{len(links)} linkages the client saw created exist",
    )
    created = [
        row[0] for row in _rows(url, "SELECT public_id FROM payments_settlement WHERE id > %s", (since["settlement"],))
    ]
    records = []
    for key, status, body in _rows(
        url,
        "SELECT key, response_status, response_body FROM payments_idempotencyrecord"
        " WHERE id > %s AND method = 'POST' AND target = '/api/v1/settlements'",
        (since["idempotency"],),
    ):
        records.append((key, status, _body_id(body)))
    result.check(
        idempotency_problems(created, records, journal),
        f"{len(created)} settlements of the drill: each executed once for one Idempotency-Key",
    )
    keys = [r["idem"] for r in journal if r["kind"] in ("link", "confirm")]
    stored = {
        key: (status, _body_id(body))
        for key, status, body in _rows(
            url,
            "SELECT key, response_status, response_body FROM payments_idempotencyrecord WHERE key = ANY(%s)",
            (keys,),
        )
    }
    result.check(
        replay_problems(journal, stored),
        f"{len(keys)} linkages and confirmations: each key's stored response is the one the client got",
    )
    rows = _rows(
        url,
        "SELECT a.citizen_id, a.year, a.fund_used_fen, a.deductible_used_fen, s.fund, s.deductible, s.cap"
        " FROM payments_citizenyearaccumulator a LEFT JOIN ("
        "   SELECT st.citizen_id, st.year,"
        "     sum(st.fund_fen) FILTER (WHERE st.state IN ('pending_payment', 'paid')) AS fund,"
        "     sum(st.deductible_fen) FILTER (WHERE st.state IN ('pending_payment', 'paid')) AS deductible,"
        "     min(p.annual_cap_fen) AS cap"
        "   FROM payments_settlement st JOIN insurance_reimbursementpolicy p ON p.id = st.policy_id"
        "   GROUP BY st.citizen_id, st.year) s ON s.citizen_id = a.citizen_id AND s.year = a.year",
    )
    result.check(accumulator_problems(rows), f"{len(rows)} accumulators equal their settlements, none over its cap")


def check_outbox(url: str, receiver_file: Path, since: dict, result: Result) -> None:
    events = _rows(
        url, "SELECT public_id, state, next_attempt_at FROM payments_outboxevent WHERE id > %s", (since["outbox"],)
    )
    received, repeated = received_event_ids(receiver_file)
    problems, tally = outbox_problems(events, received)
    summary = ", ".join(f"{n} {what}" for what, n in sorted(tally.items()))
    result.check(problems, f"{len(events)} outbox events of the drill: {summary}; {repeated} receipts repeated")
