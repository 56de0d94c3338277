"""The comparisons `bin/cluster drill` makes after its faults (bench/drill_checks.py): each catches
what it is for, and passes what is right."""

import datetime as dt
import json

from bench import drill_checks as checks

AMOUNTS = {"total_fen": 10000, "fund_fen": 6000, "account_fen": 0, "self_pay_fen": 4000, "deductible_fen": 0}


def settle(sid: str, key: str, **amounts: int) -> dict:
    return {"kind": "settle", "id": sid, "idem": key, **AMOUNTS, **amounts}


def row(state: str = "paid", **amounts: int) -> dict:
    return {"state": state, **AMOUNTS, **amounts}


def test_journal_matches_database():
    journal = [settle("stl_1", "k1"), {"kind": "confirm", "id": "stl_1", "idem": "c1"}, settle("stl_2", "k2")]
    assert checks.journal_problems(journal, {"stl_1": row(), "stl_2": row("pending_payment")}) == []


def test_journal_finds_missing_changed_and_unpaid_settlements():
    journal = [
        settle("stl_1", "k1"),
        settle("stl_2", "k2"),
        settle("stl_3", "k3"),
        {"kind": "confirm", "id": "stl_3", "idem": "c3"},
    ]
    problems = checks.journal_problems(journal, {"stl_2": row(fund_fen=5999), "stl_3": row("pending_payment")})
    assert len(problems) == 3
    assert "stl_1" in problems[0] and "not in the database" in problems[0]
    assert "stl_2" in problems[1] and "fund_fen" in problems[1]
    assert "stl_3" in problems[2] and "pending_payment" in problems[2]


def test_journal_finds_one_key_answered_with_two_settlements():
    journal = [settle("stl_1", "k1"), settle("stl_2", "k1")]
    problems = checks.journal_problems(journal, {"stl_1": row(), "stl_2": row()})
    assert problems == ["key k1 answered with several settlements: ['stl_1', 'stl_2']"]


def test_idempotency_each_settlement_once_per_key():
    journal = [settle("stl_1", "k1")]
    records = [("k1", 201, "stl_1"), ("k2", 201, "stl_2"), ("k3", 422, None)]
    assert checks.idempotency_problems(["stl_1", "stl_2"], records, journal) == []


def test_idempotency_finds_a_settlement_without_key_twice_executed_key_and_wrong_replay():
    journal = [settle("stl_1", "k1")]
    records = [("k1", 201, "stl_9"), ("k2", 201, "stl_2"), ("k3", 201, "stl_2")]
    problems = checks.idempotency_problems(["stl_1", "stl_2"], records, journal)
    assert problems == [
        "settlement stl_1 is named by 0 idempotency records (want 1)",
        "settlement stl_2 is named by 2 idempotency records (want 1)",
        "key k1: the stored response is 201 stl_9, the client got 201 stl_1",
    ]


def test_replays_of_links_and_confirmations():
    journal = [
        {"kind": "link", "idem": "l1", "id": "lnk_1"},
        {"kind": "confirm", "idem": "c1", "id": "stl_1"},
        {"kind": "confirm", "idem": "c2", "id": "stl_2"},
        {"kind": "confirm", "idem": "c3", "id": "stl_3"},
        settle("stl_1", "k1"),
    ]
    stored = {"l1": (201, "lnk_1"), "c1": (200, "stl_1"), "c2": (500, "stl_2"), "k1": (201, "stl_1")}
    assert checks.replay_problems(journal, stored) == [
        "confirm key c2: the stored response is 500 stl_2, not stl_2",
        "confirm key c3: the stored response is None None, not stl_3",
    ]


def test_accumulators():
    assert checks.accumulator_problems([(1, 2026, 500, 100, 500, 100, 1000), (2, 2026, 0, 0, None, None, None)]) == []
    problems = checks.accumulator_problems([(1, 2026, 600, 100, 500, 100, 1000), (2, 2026, 1200, 0, 1200, 0, 1000)])
    assert len(problems) == 2
    assert "accumulator fund 600" in problems[0] and "settlements fund 500" in problems[0]
    assert "exceeds the annual cap 1000" in problems[1]


def test_outbox_received_pending_or_lost(tmp_path):
    receipts = tmp_path / "events.jsonl"
    lines = [{"headers": {"Ecard-Event-Id": e}} for e in ("evt_1", "evt_1", "evt_2")] + [{"headers": {}}]
    receipts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    received, repeated = checks.received_event_ids(receipts)
    assert (received, repeated) == ({"evt_1", "evt_2"}, 1)
    later = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    events = [
        ("evt_1", "delivered", None),
        ("evt_2", "pending", later),  # received, its success not yet recorded
        ("evt_3", "pending", later),
        ("evt_4", "delivered", None),
        ("evt_5", "pending", None),
        ("evt_6", "dead", None),
    ]
    problems, tally = checks.outbox_problems(events, received)
    assert tally == {"received": 2, "pending with a next attempt": 1, "lost": 3}
    assert [p.split()[1] for p in problems] == ["evt_4", "evt_5", "evt_6"]


FAILURES = [
    (10.0, "settle", "503 service_unavailable"),
    (10.5, "settle", "503 service_unavailable"),
    (11.0, "clerk_cycle", "screen 503"),
    (11.5, "cycle", "settle: GaveUp after 30 attempts"),
    (12.0, "link", "ConnectError"),
    (30.0, "settle", "502"),
]


def test_refusals_are_told_by_status_and_code_within_the_fault_window():
    assert checks.refusal_causes(FAILURES, 10.0, 12.0) == {
        "503 service_unavailable": 2,
        "screen 503": 1,
        "ConnectError": 1,
    }
    assert checks.refusal_causes(FAILURES, 29.0, 31.0) == {"502": 1}


def test_a_503_or_a_502_is_no_problem_but_a_500_is():
    assert checks.server_error_problems(FAILURES) == []
    failures = [*FAILURES, (13.0, "settle", "500"), (14.0, "settle", "500"), (15.0, "clerk_cycle", "screen 500")]
    assert checks.server_error_problems(failures) == ["2 request(s) answered 500", "1 request(s) answered screen 500"]


def test_a_clerk_cycle_is_told_by_the_status_or_the_exception_that_ended_it():
    assert checks.screen_cause({"request": "GET /citizens/", "status": 503, "detail": "..."}) == "screen 503"
    assert checks.screen_cause({"request": "GET /", "error": "ConnectError: [Errno 111] refused"}) == (
        "screen ConnectError"
    )
    assert checks.screen_cause({"check": "the card is suspended", "user": "clerk"}) == "screen check failed"
    assert checks.screen_cause(None) == "screen aborted"
