"""How many SQL statements minting a QR token costs through the signed API (issue 4's benchmark:
every settlement at the counter starts with a mint), so that it cannot silently grow.

One read of the linkage with its card, one INSERT of the token (a single statement: no BEGIN/COMMIT
around it). The partner-key read of authentication is cached after a process's first two requests
(payments/api/auth.py).
"""

import base64
import json

import pytest

from payments import keys
from payments.models import QrToken
from testkit.api import link, make_partner_client
from testkit.settlements import insured

pytestmark = pytest.mark.django_db

MINT_MAX = 2


@pytest.fixture
def wallet(world, fresh_cache):
    return make_partner_client()


def test_minting_for_the_holder_stays_within_its_statement_budget(
    wallet, regions, django_assert_max_num_queries, monkeypatch
):
    monkeypatch.setattr(keys, "CACHE_SECONDS", 3600)  # the portal key's periodic re-read is not the mint's
    keys._forget_cached_key()
    citizen, _ = insured(regions, balance=300_000)
    linkage = link(wallet, citizen)
    assert wallet.post(f"/api/v1/linkages/{linkage['id']}/qr-tokens", {}).status == 201  # key now cached

    with django_assert_max_num_queries(MINT_MAX):
        response = wallet.post(f"/api/v1/linkages/{linkage['id']}/qr-tokens", {})
    assert response.status == 201
    jti = QrToken.objects.order_by("-id").values_list("jti", flat=True).first()
    assert jti is not None and jti == _payload_jti(response.json()["token"])


def _payload_jti(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
