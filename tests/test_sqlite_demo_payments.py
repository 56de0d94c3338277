"""The partner payment flow works on the SQLite demo database (README: the demo runs anywhere).

The suite itself runs on PostgreSQL, so the flow runs in a subprocess with the demo's environment
(tests/sqlite_demo.py): SQLite and the local-memory cache, as `make run` has.
tests/sqlite_demo_flow.py migrates it, seeds through the services and drives the signed API through
Django's test client; a 500 or a PostgreSQL-only statement ends it with a traceback and a non-zero exit.
"""

from tests.sqlite_demo import run_on_demo_database


def test_partner_payment_flow_on_sqlite(tmp_path):
    summary = run_on_demo_database(["-m", "tests.sqlite_demo_flow"], tmp_path)
    assert summary["vendor"] == "sqlite"
    steps = summary["steps"]
    assert {name: (step["status"], step["code"], step["state"]) for name, step in steps.items()} == {
        "mint": (201, None, None),
        "verify": (200, None, "active"),
        "create": (201, None, "pending_payment"),
        "create_replayed": (201, None, "pending_payment"),
        "create_token_used": (409, "token_used", None),
        "verify_after_use": (200, None, "active"),
        "confirm": (200, None, "paid"),
        "refund": (200, None, "refunded"),
        "mint_2": (201, None, None),
        "create_2": (201, None, "pending_payment"),
        "cancel_2": (200, None, "cancelled"),
        "read_1": (200, None, "refunded"),
        "read_2": (200, None, "cancelled"),
    }
    assert all(step["signature_valid"] for step in steps.values())
    assert (steps["verify"]["token_used"], steps["verify_after_use"]["token_used"]) == (False, True)
    assert steps["verify"]["token_expires_at"] == steps["mint"]["expires_at"]
    citizen = dict(steps["verify"]["citizen"])
    assert "*" in citizen.pop("id_number_masked")
    assert citizen == {"name": "王小明", "sex": "M", "birth_date": "1970-05-01", "region_code": "310000",
                       "scheme": "employee"}
    assert steps["create_replayed"]["replayed"] == "true" and steps["create_replayed"]["same_body"]
    assert steps["create"]["replayed"] is None

    created = steps["create"]
    account_fen, deductible_fen, fund_fen = created["account_fen"], created["deductible_fen"], created["fund_fen"]
    assert account_fen > 0 and deductible_fen > 0 and fund_fen > 0
    assert created["total_fen"] == fund_fen + account_fen + created["self_pay_fen"]

    # Every stage: the ledger sums to the balance.
    for stage in ("after_create", "after_confirm", "after_refund", "after_create_2", "after_cancel_2"):
        assert summary[stage]["ledger_sum_fen"] == summary[stage]["balance_fen"], stage
    # Created: reserved in the year and held in the account (one create, despite the replay).
    assert summary["after_create"]["accumulators"] == [[deductible_fen, fund_fen]]
    assert (summary["after_create"]["balance_fen"], summary["after_create"]["held_fen"]) == (200_000, account_fen)
    # Confirmed: the hold became a debit entry.
    assert (summary["after_confirm"]["balance_fen"], summary["after_confirm"]["held_fen"]) == (200_000 - account_fen, 0)
    assert summary["after_confirm"]["entries"] == [["adjustment", 200_000, 200_000],
                                                   ["settlement", -account_fen, 200_000 - account_fen]]
    # Refunded: the year and the balance restored exactly.
    assert summary["after_refund"]["accumulators"] == [[0, 0]]
    assert (summary["after_refund"]["balance_fen"], summary["after_refund"]["held_fen"]) == (200_000, 0)
    assert summary["after_refund"]["entries"][-1] == ["refund", account_fen, 200_000]
    # The second settlement reserved the same, and its cancellation released it all.
    assert summary["after_create_2"]["accumulators"] == [[deductible_fen, fund_fen]]
    assert summary["after_create_2"]["held_fen"] == account_fen
    assert summary["after_cancel_2"]["accumulators"] == [[0, 0]]
    assert (summary["after_cancel_2"]["balance_fen"], summary["after_cancel_2"]["held_fen"]) == (200_000, 0)
    assert len(summary["after_cancel_2"]["entries"]) == 3
