"""`rows.loaded` and `rows.related`: instances of rows read by hand-written SQL, built as the ORM builds them."""

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext

from payments import rows
from payments.models import Partner, PersonalAccount, Settlement, SettlementLine
from portal.models import Region
from testkit.settlements import make_wallet

pytestmark = pytest.mark.django_db


def _same(model, attnames, values):
    ours, django = rows.loaded(model, attnames, values), model.from_db("default", attnames, values)
    assert type(ours) is model
    assert {k: v for k, v in ours.__dict__.items() if k != "_state"} == {
        k: v for k, v in django.__dict__.items() if k != "_state"
    }
    assert (ours._state.adding, ours._state.db) == (django._state.adding, django._state.db) == (False, "default")
    assert ours.get_deferred_fields() == django.get_deferred_fields()
    return ours


def test_a_loaded_instance_is_what_from_db_gives_whole_or_partial():
    every = [field.attname for field in Settlement._meta.concrete_fields]
    _same(Settlement, every, list(range(len(every))))
    _same(Partner, ["id", "code"], [7, "w1"])
    _same(PersonalAccount, ["id", "citizen_id", "balance_fen", "held_fen"], [1, 2, 300, 0])
    _same(SettlementLine, ["id", "settlement_id", "position"], [1, 9, 1])
    assert all(rows._plain(model) for model in (Settlement, Partner, PersonalAccount, SettlementLine, Region))


def test_values_go_to_the_fields_they_are_named_with_in_any_order():
    # from_db takes the values in the model's field order whatever the order of the names: given
    # (position, ..., settlement_id) it put the position into settlement_id, and confirm once answered
    # lines shifted by one field. `loaded` goes by name.
    line = rows.loaded(SettlementLine, ["id", "position", "service_code", "settlement_id"], [1, 2, "REG", 9])
    assert (line.pk, line.position, line.service_code, line.settlement_id) == (1, 2, "REG", 9)
    mixed = SettlementLine.from_db("default", ["id", "position", "service_code", "settlement_id"], [1, 2, "REG", 9])
    assert (mixed.settlement_id, mixed.position) == (2, "REG")  # why `loaded` does not hand it the names


def test_a_deferred_field_is_read_from_the_database_when_used():
    partner = make_wallet()
    loaded = _same(Partner, ["id", "code"], [partner.pk, partner.code])
    with CaptureQueriesContext(connection) as captured:
        assert loaded.name == partner.name
    assert len(captured.captured_queries) == 1
    assert loaded.pk == partner.pk and loaded == partner


def test_with_an_init_receiver_connected_it_is_built_by_from_db_so_the_receiver_runs():
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(sender)

    post_init.connect(receiver, sender=Partner)
    try:
        _same(Partner, ["id", "code"], [7, "w1"])
        backwards = rows.loaded(Partner, ["code", "id"], ["w2", 8])  # by name there too
    finally:
        post_init.disconnect(receiver, sender=Partner)
    assert seen == [Partner, Partner, Partner]  # from_db's own, then ours through from_db, twice
    assert (backwards.pk, backwards.code) == (8, "w2")


def test_related_caches_the_object_its_id_names_and_refuses_another():
    partner = make_wallet()
    settlement = rows.loaded(Settlement, ["id", "partner_id"], [1, partner.pk])
    other = rows.loaded(Partner, ["id", "code"], [partner.pk, partner.code])
    rows.related(settlement, "partner", other)
    with CaptureQueriesContext(connection) as captured:
        assert settlement.partner is other
    assert captured.captured_queries == []
    with pytest.raises(ValueError, match="not the one its id names"):
        rows.related(settlement, "partner", rows.loaded(Partner, ["id"], [partner.pk + 1]))
    none = rows.loaded(Settlement, ["id", "family_binding_id"], [1, None])
    rows.related(none, "family_binding", None)
    assert none.family_binding is None
