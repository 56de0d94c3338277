"""`GET /api/v1/events` as a partner polls it (testkit/partner_client.py signs and verifies)."""

import json
import re
import secrets
import threading
import time

import pytest
from django.db import close_old_connections, connection, transaction
from django.test import Client

from payments import keys
from payments.delivery import outbox
from payments.models import OutboxEvent, Partner, PartnerKey, PartnerKind
from portal.actors import Actor
from testkit.partner_client import PartnerClient, new_key_pair

CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")

# The feed lists only events of finished transactions, so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def portal_key(transactional_db):
    keys._forget_cached_key()
    key = keys.portal_key_create(actor=Actor.system("tests"))
    yield key
    keys._forget_cached_key()


def make_partner(kind: str = PartnerKind.WALLET) -> tuple[Partner, PartnerClient]:
    code = f"p{secrets.token_hex(4)}"
    partner = Partner.objects.create(code=code, name=code, kind=kind)
    private, public = new_key_pair()
    key = PartnerKey.objects.create(partner=partner, key_id=f"{code}-key", public_key=public)
    return partner, PartnerClient(key_id=key.key_id, private_key=private, django_client=Client())


def write_event(partner: Partner, n: int = 0) -> OutboxEvent:
    obj = {"id": f"lnk_test{n}", "state": "active", "citizen": {"name_masked": "张*明"}, "version": n + 1}
    with transaction.atomic():
        return outbox.enqueue(partner=partner, type="linkage.created", obj=obj)


def poll(client: PartnerClient, cursor: str | None = None, limit: int | None = None) -> dict:
    params = []
    if cursor is not None:
        params.append(f"cursor={cursor}")
    if limit is not None:
        params.append(f"limit={limit}")
    response = client.get("/api/v1/events" + ("?" + "&".join(params) if params else ""))
    assert response.status == 200, response.body
    assert response.signature_valid
    page = response.json()
    assert page["next_cursor"] is not None and CURSOR.match(page["next_cursor"])
    return page


def collect(
    client: PartnerClient, cursor: str | None, count: int, *, limit: int | None = None, timeout: float = 60
) -> tuple[list[dict], str]:
    """Poll like a partner until `count` events have arrived. Transaction ids are cluster-wide,
    so a transaction of another database on the same server (another test run) may hold the
    feed back for a moment: the feed delays, it never skips."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        page = poll(client, cursor, limit)
        assert limit is None or len(page["results"]) <= limit
        seen.extend(page["results"])
        cursor = page["next_cursor"]
        if not page["results"]:
            time.sleep(0.1)
    return seen, cursor


def test_events_are_the_webhook_bodies_oldest_first_across_pages(portal_key):
    partner, client = make_partner()
    written = [write_event(partner, n) for n in range(5)]
    seen, cursor = collect(client, None, 5, limit=2)
    assert [event["id"] for event in seen] == [event.public_id for event in written]
    assert seen == [json.loads(event.body) for event in written]
    assert seen[0]["data"]["object"]["citizen"]["name_masked"] == "张*明"


def test_an_empty_page_keeps_the_cursor_and_a_later_event_follows_it(portal_key):
    partner, client = make_partner()
    write_event(partner, 0)
    _, cursor = collect(client, None, 1)
    empty = poll(client, cursor)
    assert empty["results"] == []
    assert empty["next_cursor"] == cursor
    later = write_event(partner, 1)
    seen, _ = collect(client, empty["next_cursor"], 1)
    assert [event["id"] for event in seen] == [later.public_id]


def test_a_new_partner_gets_an_empty_page_with_a_cursor(portal_key):
    _, client = make_partner()
    page = poll(client)
    assert page["results"] == []


def test_a_partner_never_sees_another_partners_events(portal_key):
    partner, client = make_partner()
    other, _ = make_partner()
    mine = write_event(partner, 0)
    write_event(other, 1)
    write_event(partner, 2)
    seen, _ = collect(client, None, 2)
    assert [event["id"] for event in seen][:1] == [mine.public_id]
    assert all(event["data"]["object"]["id"] != "lnk_test1" for event in seen)


def test_a_service_platform_may_read_its_events(portal_key):
    partner, client = make_partner(PartnerKind.SERVICE_PLATFORM)
    event = write_event(partner, 0)
    assert [e["id"] for e in collect(client, None, 1)[0]] == [event.public_id]


@pytest.mark.parametrize(
    "query",
    [
        "cursor=",
        "cursor=abc",
        "cursor=!!",
        "cursor=" + "A" * 300,
        "cursor=ZTEuMS4y%3D",
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
    ],
)
def test_a_bad_cursor_or_limit_is_a_validation_error(portal_key, query):
    _, client = make_partner()
    response = client.get(f"/api/v1/events?{query}")
    assert response.status == 400, response.body
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.code == "validation_error"
    assert response.json()["errors"]
    assert response.signature_valid


def test_a_cursor_from_another_encoding_is_refused_not_crashed(portal_key):
    import base64

    _, client = make_partner()
    forged = base64.urlsafe_b64encode(b"e1.99999999999999999999999.1").decode().rstrip("=")
    assert client.get(f"/api/v1/events?cursor={forged}").code == "validation_error"


def test_an_unsigned_poll_is_refused(portal_key):
    response = Client().get("/api/v1/events")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_required"


def test_a_poller_never_skips_an_event_whose_transaction_commits_late(portal_key):
    """A inserts and holds its transaction open; B inserts and commits; a poll returns
    nothing past A's event; once A commits, the next poll from the saved cursor returns it."""
    if True:  # noqa: SIM108 (keeps the steps indented as one block)
        partner, client = make_partner()
        early = write_event(partner, 0)
        seen, cursor = collect(client, None, 1)
        assert [e["id"] for e in seen] == [early.public_id]

        a_written = threading.Event()
        a_may_commit = threading.Event()
        a_result: dict = {}

        def connection_a() -> None:
            try:
                with transaction.atomic():
                    a_result["event"] = outbox.enqueue(
                        partner=partner, type="linkage.created", obj={"id": "lnk_late", "version": 1}
                    )
                    a_written.set()
                    assert a_may_commit.wait(30)
            except Exception as exc:  # surfaced by the main thread
                a_result["error"] = exc
                a_written.set()
            finally:
                connection.close()
                close_old_connections()

        thread = threading.Thread(target=connection_a)
        thread.start()
        try:
            assert a_written.wait(30) and "error" not in a_result
            b_event = write_event(partner, 2)  # connection B: committed after A began
            held = poll(client, cursor)
            assert held["results"] == []  # neither A's (uncommitted) nor B's (behind A's) yet
            cursor = held["next_cursor"]
        finally:
            a_may_commit.set()
            thread.join(30)
        assert "error" not in a_result
        seen, cursor = collect(client, cursor, 2)
        assert [e["id"] for e in seen] == [a_result["event"].public_id, b_event.public_id]
        assert poll(client, cursor)["results"] == []
