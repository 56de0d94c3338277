"""Citizen registration and update: validation, encryption at rest, indexed lookup."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from insurance import services
from insurance.identity import make_identity_number
from insurance.models import ID_NUMBER_PURPOSE, Certificate, Citizen
from portal.crypto import blind_index, encrypt_text
from portal.errors import DomainError
from portal.models import AuditEvent
from testkit.citizens import new_id_number

pytestmark = pytest.mark.django_db


def register(regions, actor, **overrides):
    values = {
        "id_number": new_id_number(),
        "name": "王小明",
        "phone": "13900001111",
        "region": regions["310000"],
        "scheme": "employee",
    }
    values.update(overrides)
    return services.citizen_register(actor=actor, **values)


def counts() -> tuple[int, int]:
    return Citizen.objects.count(), AuditEvent.objects.count()


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"id_number": "31010119850720123"}, "invalid_id_number", "id_number"),
        ({"id_number": "310101198507201230"}, "invalid_id_number", "id_number"),  # wrong check character (likely)
        ({"id_number": make_identity_number("990101", dt.date(1980, 1, 1), 1)}, "invalid_id_number", "id_number"),
        ({"name": ""}, "validation_error", "name"),
        ({"name": "   "}, "validation_error", "name"),
        ({"name": "名" * 65}, "validation_error", "name"),
        ({"scheme": "gold"}, "validation_error", "scheme"),
    ],
)
def test_registering_with_bad_input_is_refused_with_a_code_and_field_and_writes_nothing(
    regions, system_actor, overrides, code, field
):
    if overrides.get("id_number") == "310101198507201230":
        first17 = "31010119850720123"
        from insurance.identity import check_character

        wrong = "1" if check_character(first17) != "1" else "2"
        overrides = {"id_number": first17 + wrong}
    before = counts()

    with pytest.raises(DomainError) as excinfo:
        register(regions, system_actor, **overrides)

    assert excinfo.value.code == code
    assert excinfo.value.extra["field"] == field
    assert excinfo.value.status == 400
    assert counts() == before


def test_registering_the_same_identity_number_twice_is_refused(regions, system_actor):
    number = new_id_number()
    register(regions, system_actor, id_number=number)
    before = counts()

    with pytest.raises(DomainError) as excinfo:
        register(regions, system_actor, id_number=" " + number.lower() + " ", name="另一个人")

    assert excinfo.value.code == "citizen_exists"
    assert excinfo.value.extra["field"] == "id_number"
    assert counts() == before


def test_birth_date_and_sex_come_from_the_identity_number(regions, system_actor):
    number = new_id_number(birth=dt.date(1961, 4, 2), male=True)

    citizen = register(regions, system_actor, id_number=number)

    assert citizen.birth_date == dt.date(1961, 4, 2)
    assert citizen.sex == "M"
    assert citizen.id_number == number
    assert citizen.id_number_masked == number[:3] + "*" * 11 + number[-4:]


def test_identity_number_and_phone_are_encrypted_at_rest(regions, system_actor):
    number = new_id_number()
    citizen = register(regions, system_actor, id_number=number, phone="13912345678")

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id_number_enc, phone_enc, row_to_json(c)::text FROM insurance_citizen c WHERE id = %s", [citizen.pk]
        )
        id_raw, phone_raw, row_text = cursor.fetchone()
        cursor.execute("SELECT coalesce(before::text, '') || coalesce(after::text, '') FROM portal_auditevent")
        audit_text = " ".join(r[0] for r in cursor.fetchall())

    for plaintext in (number, "13912345678"):
        assert plaintext.encode() not in bytes(id_raw)
        assert plaintext.encode() not in bytes(phone_raw)
        assert plaintext not in row_text
        assert plaintext.encode().hex() not in row_text
        assert plaintext not in audit_text
    reloaded = Citizen.objects.get(pk=citizen.pk)
    assert reloaded.id_number == number
    assert reloaded.phone == "13912345678"


def test_lookup_by_identity_number_finds_the_citizen_whatever_the_case_and_spacing(regions, system_actor):
    number = next(n for s in range(1000) if (n := make_identity_number("310101", dt.date(1970, 5, 5), s)).endswith("X"))
    citizen = register(regions, system_actor, id_number=number)

    assert services.find_citizen_id_by_id_number(number) == citizen.pk
    assert services.find_citizen_id_by_id_number(f"  {number[:17]}x ") == citizen.pk
    assert services.find_citizen_id_by_id_number(new_id_number()) is None


def test_lookup_by_identity_number_is_one_query_through_the_blind_index(regions, system_actor):
    # Enough rows that the planner would otherwise scan the table.
    region = regions["310000"]
    filler = []
    for i in range(5000):
        value = make_identity_number("310101", dt.date(1940, 1, 1) + dt.timedelta(days=i), i % 1000)
        filler.append(
            Citizen(
                region=region,
                id_number_enc=encrypt_text(value, purpose=ID_NUMBER_PURPOSE),
                id_number_bidx=blind_index(value, purpose=ID_NUMBER_PURPOSE),
                id_number_masked="x",
                name=f"n{i}",
                birth_date=dt.date(1940, 1, 1),
                sex="M",
                scheme="employee",
            )
        )
    Citizen.objects.bulk_create(filler, batch_size=1000)
    citizen = register(regions, system_actor)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE insurance_citizen")

    with CaptureQueriesContext(connection) as queries:
        found = services.find_citizen_id_by_id_number(citizen.id_number)

    assert found == citizen.pk
    assert len(queries.captured_queries) == 1
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + queries.captured_queries[0]["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "id_number_bidx" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "Index" in plan, plan


def test_updating_a_citizen_changes_name_phone_and_scheme_and_is_audited(regions, system_actor):
    citizen = register(regions, system_actor)
    audits = AuditEvent.objects.count()

    services.citizen_update(actor=system_actor, citizen=citizen, name="王大明", phone="13700000000", scheme="resident")

    citizen = Citizen.objects.get(pk=citizen.pk)
    assert (citizen.name, citizen.phone, citizen.scheme) == ("王大明", "13700000000", "resident")
    assert citizen.phone_masked == "137****0000"
    assert AuditEvent.objects.filter(action="citizen.update").count() == 1
    assert AuditEvent.objects.count() == audits + 1


def test_an_update_that_changes_nothing_writes_no_audit_event(regions, system_actor):
    citizen = register(regions, system_actor)
    audits = AuditEvent.objects.count()

    services.citizen_update(
        actor=system_actor, citizen=citizen, name=citizen.name, phone=citizen.phone, scheme=citizen.scheme
    )

    assert AuditEvent.objects.count() == audits


@pytest.mark.parametrize(
    ("overrides", "field"), [({"name": ""}, "name"), ({"name": "x" * 65}, "name"), ({"scheme": "other"}, "scheme")]
)
def test_updating_with_bad_input_is_refused_and_writes_nothing(regions, system_actor, overrides, field):
    citizen = register(regions, system_actor)
    values = {"name": "新名字", "phone": "13000000000", "scheme": "resident"} | overrides
    audits = AuditEvent.objects.count()

    with pytest.raises(DomainError) as excinfo:
        services.citizen_update(actor=system_actor, citizen=citizen, **values)

    assert excinfo.value.extra["field"] == field
    reloaded = Citizen.objects.get(pk=citizen.pk)
    assert (reloaded.name, reloaded.phone, reloaded.scheme) == ("王小明", "13900001111", "employee")
    assert AuditEvent.objects.count() == audits


def test_an_unknown_citizen_status_is_refused(regions, system_actor):
    citizen = register(regions, system_actor)

    with pytest.raises(DomainError) as excinfo:
        services.citizen_set_status(actor=system_actor, citizen=citizen, status="asleep", reason="r")

    assert excinfo.value.extra["field"] == "status"
    assert not Certificate.objects.filter(citizen=citizen).exists()
