"""The import's bulk path (binary COPY) against the per-row services: the same
rows, and a concurrent registration that collides with a COPY batch."""

import threading

import pytest
from django.db import connection, transaction

from insurance import services
from insurance.imports.validation import validate_row
from insurance.imports.writing import apply_row, import_rows
from insurance.models import ID_NUMBER_PURPOSE, Certificate, CertificateState, CertificateTransition, Citizen
from portal.actors import Actor
from portal.crypto import blind_index
from portal.models import AuditEvent
from testkit.citizens import new_id_number

HEADER = ("id_number", "name", "phone", "region_code", "scheme", "account_balance_fen")


def sample_rows() -> list[tuple[int, dict]]:
    """New citizens of two regions: with and without a phone, padded cells, a lower-case check character."""
    numbers = [new_id_number("310000") for _ in range(5)] + [new_id_number("440000") for _ in range(3)]
    numbers[0] = numbers[0].lower()  # an "x" check character is normalised; digits are unchanged either way
    rows = []
    for i, number in enumerate(numbers):
        region = "310000" if i < 5 else "440000"
        rows.append(
            (
                i + 2,
                {
                    "id_number": f" {number} ",
                    "name": f" 居民{i} ",
                    "phone": "" if i % 3 == 0 else f"138-0000-{i:04d}",
                    "region_code": region,
                    "scheme": "resident" if i % 2 else "employee",
                    "account_balance_fen": "",
                },
            )
        )
    return rows


def snapshot() -> list[dict]:
    """Everything the import writes per citizen, decrypted; ids, nonces and card numbers' random part aside."""
    out = []
    for citizen in Citizen.objects.order_by("id_number_bidx"):
        card = Certificate.objects.get(citizen=citizen)
        log = CertificateTransition.objects.get(certificate=card)
        out.append(
            {
                "id_number": citizen.id_number,
                "id_number_bidx": citizen.id_number_bidx,
                "id_number_masked": citizen.id_number_masked,
                "key_version": bytes(citizen.id_number_enc)[0],
                "name": citizen.name,
                "phone": citizen.phone,
                "phone_bidx": citizen.phone_bidx,
                "phone_masked": citizen.phone_masked,
                "phone_enc_is_null": citizen.phone_enc is None,
                "birth_date": citizen.birth_date,
                "sex": citizen.sex,
                "scheme": citizen.scheme,
                "status": citizen.status,
                "region": citizen.region_id,
                "timestamps_set": bool(citizen.created_at and citizen.updated_at),
                "card_prefix": card.number[:8],
                "card_length": len(card.number),
                "card_state": card.state,
                "validity": card.expires_at - card.issued_at,
                "activated_at": card.activated_at,
                "ended_at": card.ended_at,
                "end_reason": card.end_reason,
                "previous": card.previous_id,
                "log": (
                    log.action,
                    log.from_state,
                    log.to_state,
                    log.actor_label,
                    log.reason,
                    log.at == card.issued_at,
                ),
            }
        )
    return out


def delete_imported() -> None:
    CertificateTransition.objects.all().delete()
    Certificate.objects.all().delete()
    Citizen.objects.all().delete()


@pytest.mark.django_db
def test_the_copy_path_writes_exactly_the_rows_of_the_per_row_services(regions):
    actor = Actor.system("import-test")
    rows = sample_rows()

    summary = import_rows(rows, actor=actor, batch_size=100)
    assert summary.as_dict() == {"created": 8, "updated": 0, "failed": 0}
    by_copy = snapshot()
    batches = list(AuditEvent.objects.filter(action="citizen.import_batch").order_by("seq"))
    delete_imported()
    for number, raw in rows:
        valid, errors = validate_row(number, raw, regions)
        assert valid is not None and not errors
        assert apply_row(valid, actor=actor) is True
    by_services = snapshot()

    assert len(by_copy) == 8
    assert by_copy == by_services
    # The stored blind index is the one the services' lookups compute.
    assert {c["id_number_bidx"] for c in by_copy} == {
        blind_index(c["id_number"], purpose=ID_NUMBER_PURPOSE) for c in by_services
    }
    # One audit event per region of the batch, naming its rows, citizens and cards (no personal data).
    assert [(e.region_code, e.after["created"], e.after["rows"]) for e in batches] == [
        ("310000", 5, [2, 6]),
        ("440000", 3, [7, 9]),
    ]
    assert all(len(pair) == 2 and isinstance(pair[0], int) for e in batches for pair in e.after["citizens"])


@pytest.mark.django_db(transaction=True)
def test_a_copy_batch_that_collides_with_a_concurrent_registration_is_run_again_with_it_as_an_update(regions):
    rows = sample_rows()[:5]
    contested = rows[2][1]["id_number"].strip()
    main_pid = connection.cursor().connection.info.backend_pid
    registered = threading.Event()
    outcome: dict = {}

    def concurrent_clerk() -> None:
        # Registers the same number in an open transaction, and commits only once the
        # import's COPY is waiting on it (the unique blind index), as a real race would.
        from django.db import connection as own

        try:
            with transaction.atomic():
                citizen = services.citizen_register(
                    actor=Actor.system("clerk"),
                    id_number=contested,
                    name="先到者",
                    phone="",
                    region=regions["310000"],
                    scheme="resident",
                )
                services.certificate_issue(actor=Actor.system("clerk"), citizen=citizen, reason="walk-in")
                registered.set()
                with own.cursor() as cursor:
                    for _ in range(600):
                        cursor.execute(
                            "SELECT %s = ANY(pg_blocking_pids(%s))", [own.connection.info.backend_pid, main_pid]
                        )
                        if cursor.fetchone()[0]:
                            outcome["blocked"] = True
                            break
                        threading.Event().wait(0.05)
            outcome["citizen"] = citizen.pk
        finally:
            registered.set()
            own.close()

    clerk = threading.Thread(target=concurrent_clerk)
    clerk.start()
    assert registered.wait(30)
    summary = import_rows(rows, actor=Actor.system("import-test"), batch_size=100)
    clerk.join(60)

    assert outcome.get("blocked"), "the COPY never waited on the concurrent registration"
    # The contested row updated the citizen the clerk registered; the others were created by the
    # batch's COPY, run again once the number was looked up again.
    assert summary.as_dict() == {"created": 4, "updated": 1, "failed": 0}
    assert Citizen.objects.count() == 5
    assert Citizen.objects.get(pk=outcome["citizen"]).name == rows[2][1]["name"].strip()
    assert Certificate.objects.count() == CertificateTransition.objects.count() == 5
    assert set(Certificate.objects.values_list("state", flat=True)) == {CertificateState.PENDING_ACTIVATION}
    # Nothing of the refused COPY is left: one batch audit event, of the second COPY, names the four.
    (batch,) = AuditEvent.objects.filter(action="citizen.import_batch")
    contested_id = outcome["citizen"]
    assert batch.after["created"] == 4 and contested_id not in [c for c, _card in batch.after["citizens"]]
    assert sorted(c for c, _card in batch.after["citizens"]) == sorted(
        Citizen.objects.exclude(pk=contested_id).values_list("pk", flat=True)
    )
    assert AuditEvent.objects.filter(action="citizen.register").count() == 1  # the clerk's
    assert AuditEvent.objects.filter(action="citizen.update").count() == 1  # the contested row
