"""Services lock the rows other rows refer to (citizen, partner, card, linkage) FOR NO KEY UPDATE, so
that while they run another transaction's foreign-key check on those rows (FOR KEY SHARE, taken by
every insert of a settlement, token or linkage) does not wait. With FOR UPDATE, a wallet linking or
unlinking a citizen while another wallet settled for the same citizen deadlocked: one held the card
and waited for the citizen, the other held the citizen and waited for the card's settlement to commit
(found by bench/soak.py)."""

import psycopg
import pytest
from django.db import transaction

from insurance import services as insurance_services
from insurance.models import Certificate
from payments.linkages.services import linkage_create, linkage_unlink
from testkit.database import other_connection
from testkit.settlements import SYSTEM, linked, make_wallet

pytestmark = pytest.mark.django_db(transaction=True)


def _key_share_waits(table: str, pk: int) -> bool:
    """Whether a foreign-key check on the row (FOR KEY SHARE, from another connection) has to wait."""
    with other_connection() as conn:
        conn.execute("SET lock_timeout = '1s'")
        try:
            conn.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR KEY SHARE", [pk])  # noqa: S608 - our table names
        except psycopg.errors.LockNotAvailable:
            return True
    return False


def _referenced_rows(linkage) -> dict[str, int]:
    return {
        "insurance_citizen": linkage.citizen_id,
        "payments_partner": linkage.partner_id,
        "insurance_certificate": linkage.certificate_id,
        "payments_walletlinkage": linkage.pk,
    }


def test_an_unlink_in_progress_does_not_hold_up_foreign_key_checks(regions):
    linkage = linked(make_wallet(), regions)
    with transaction.atomic():
        linkage_unlink(actor=SYSTEM, linkage=linkage, reason="citizen_request")
        waiting = [table for table, pk in _referenced_rows(linkage).items() if _key_share_waits(table, pk)]
    assert waiting == []


def test_a_linkage_being_created_does_not_hold_up_foreign_key_checks(regions):
    first = linked(make_wallet(), regions)  # the citizen's card, active, held by one wallet
    other = make_wallet()
    with transaction.atomic():
        second = linkage_create(actor=SYSTEM, partner=other, citizen=first.citizen, partner_user_ref="u-2")
        rows = {**_referenced_rows(first), "payments_partner": second.partner_id}
        waiting = [table for table, pk in rows.items() if _key_share_waits(table, pk)]
    assert waiting == []


def test_a_card_action_in_progress_does_not_hold_up_foreign_key_checks(regions):
    linkage = linked(make_wallet(), regions)  # an active card
    card = Certificate.objects.get(pk=linkage.certificate_id)
    with transaction.atomic():
        insurance_services.certificate_suspend(actor=SYSTEM, certificate=card, reason="lost phone")
        waiting = [table for table, pk in _referenced_rows(linkage).items() if _key_share_waits(table, pk)]
    assert waiting == []


def test_the_locks_still_exclude_each_other(regions):
    """NO KEY UPDATE still serialises the services: a second writer of the same card waits."""
    card = Certificate.objects.get(pk=linked(make_wallet(), regions).certificate_id)
    with transaction.atomic():
        insurance_services.certificate_suspend(actor=SYSTEM, certificate=card, reason="lost phone")
        with other_connection() as conn:
            conn.execute("SET lock_timeout = '1s'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                conn.execute("SELECT 1 FROM insurance_certificate WHERE id = %s FOR NO KEY UPDATE", [card.pk])
