"""The import's SQL: the only module of the import that writes or reads rows
with its own statements. New citizens, their `pending_activation` e-cards and
the cards' `issue` transitions go in as three binary COPYs per batch."""

import datetime as dt
from collections.abc import Iterable, Sequence

from django.db import connection

from insurance import services
from insurance.citizen_values import CITIZEN_VALUE_FIELDS, CitizenValues
from insurance.models import Certificate, CertificateState, CertificateTransition, Citizen, CitizenStatus

_CITIZEN_COPY_COLUMNS = ("id", "region_id", *CITIZEN_VALUE_FIELDS, "status", "created_at", "updated_at")
_CITIZEN_COPY_TYPES = (
    "int8",
    "varchar",
    "bytea",  # id_number_enc
    "varchar",
    "varchar",
    "varchar",  # name
    "bytea",  # phone_enc
    "varchar",
    "varchar",
    "date",  # birth_date
    "varchar",
    "varchar",
    "varchar",  # status
    "timestamptz",
    "timestamptz",
)
_CARD_COPY_COLUMNS = ("id", "number", "citizen_id", "state", "issued_at", "expires_at", "end_reason")
_CARD_COPY_TYPES = ("int8", "varchar", "int8", "varchar", "timestamptz", "timestamptz", "varchar")
_TRANSITION_COPY_COLUMNS = ("certificate_id", "action", "from_state", "to_state", "actor_label", "reason", "at")
_TRANSITION_COPY_TYPES = ("int8", "varchar", "varchar", "varchar", "varchar", "varchar", "timestamptz")


def _copy(cursor, model, columns: tuple[str, ...], types: tuple[str, ...], records: Iterable[tuple]) -> None:
    """One binary COPY of `records` into the model's table."""
    names = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{model._meta.db_table}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
        copy.set_types(types)
        for record in records:
            copy.write_row(record)


def insert_citizens_with_cards(
    citizens: Sequence[tuple[str, CitizenValues]], *, actor_label: str, reason: str, now: dt.datetime
) -> list[tuple[int, int, str]]:
    """Insert `(region code, values)` citizens as `citizen_register` + `certificate_issue`
    would (the same card number, validity and transition log), ids taken ahead from the
    sequences in one statement; [(citizen id, card id, card number)] in order."""
    expires = now + services.CERTIFICATE_VALIDITY
    with connection.cursor() as django_cursor, connection.wrap_database_errors:
        # A failed COPY surfaces as django.db.IntegrityError (wrap_database_errors), which the
        # caller's savepoint rolls back before the batch goes row by row through the services.
        cursor = django_cursor.cursor  # psycopg's own cursor: Django's has no copy()
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')), nextval(pg_get_serial_sequence(%s, 'id')) "
            "FROM generate_series(1, %s)",
            (Citizen._meta.db_table, Certificate._meta.db_table, len(citizens)),
        )
        ids = cursor.fetchall()
        created = [
            (citizen_id, card_id, services.new_certificate_number(region_code))
            for (citizen_id, card_id), (region_code, _values) in zip(ids, citizens, strict=True)
        ]
        status = CitizenStatus.ACTIVE.value
        _copy(
            cursor,
            Citizen,
            _CITIZEN_COPY_COLUMNS,
            _CITIZEN_COPY_TYPES,
            (
                (citizen_id, region_code, *values, status, now, now)
                for (citizen_id, _card_id, _card), (region_code, values) in zip(created, citizens, strict=True)
            ),
        )
        state = CertificateState.PENDING_ACTIVATION.value
        _copy(
            cursor,
            Certificate,
            _CARD_COPY_COLUMNS,
            _CARD_COPY_TYPES,
            ((card_id, card, citizen_id, state, now, expires, "") for citizen_id, card_id, card in created),
        )
        _copy(
            cursor,
            CertificateTransition,
            _TRANSITION_COPY_COLUMNS,
            _TRANSITION_COPY_TYPES,
            ((card_id, "issue", "", state, actor_label, reason, now) for _citizen_id, card_id, _card in created),
        )
    return created


def existing_id_number_indexes(indexes: list[str]) -> set[str]:
    """Which of these identity-number blind indexes are already stored (the unique index
    on insurance_citizen.id_number_bidx answers it)."""
    # One array parameter rather than an IN list of thousands: a statement the server
    # prepares once for the whole import instead of compiling and planning it per batch.
    with connection.cursor() as cursor:
        cursor.execute('SELECT "id_number_bidx" FROM "insurance_citizen" WHERE "id_number_bidx" = ANY(%s)', [indexes])
        return {found for (found,) in cursor.fetchall()}
