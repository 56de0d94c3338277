"""Personal data never reaches the logs: not from screens, not from the partner API,
not from a failed request, whatever the log level."""

import logging

import pytest
from django.urls import reverse

from portal.models import Role
from testkit.api import idem_key, make_partner_client
from testkit.citizens import new_id_number
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


def _everything_logged(caplog) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)


def test_registering_searching_and_linking_a_citizen_logs_no_identity_number_name_or_phone(
    client,
    make_user,
    regions,
    caplog,
    portal_key,
    fresh_cache,
):
    caplog.set_level(logging.DEBUG)
    id_number, name, phone = new_id_number("310000"), "欧阳修远", "13912345678"
    sign_in(client, make_user(Role.CLERK, ("310000",)))

    response = client.post(
        reverse("citizen_register"),
        {
            "id_number": id_number,
            "name": name,
            "phone": phone,
            "region": "310000",
            "scheme": "resident",
        },
    )
    assert response.status_code == 302
    client.post(
        reverse("citizen_register"),
        {  # a duplicate: a form error, logged or not
            "id_number": id_number,
            "name": name,
            "phone": phone,
            "region": "310000",
            "scheme": "resident",
        },
    )
    for query in (id_number, phone, name[:2]):
        client.post(reverse("citizen_search"), {"q": query}, follow=True)
    client.get("/citizens/999999999/")  # a 404 is logged by Django: with the path only

    from insurance.models import Citizen
    from insurance.services import certificate_issue
    from portal.actors import Actor

    certificate_issue(actor=Actor.system("tests"), citizen=Citizen.objects.get(name=name), reason="test")
    partner = make_partner_client()
    body = {"id_number": id_number, "name": name, "partner_user_ref": "u-log", "verification_reference": "face-1"}
    assert partner.post("/api/v1/linkages", body, idempotency_key=idem_key()).status == 201
    wrong = {**body, "name": "欧阳修近", "partner_user_ref": "u-log-2"}
    assert partner.post("/api/v1/linkages", wrong, idempotency_key=idem_key()).status == 422

    logged = _everything_logged(caplog)
    assert caplog.records, "the scenario logged nothing at all: the check would prove nothing"
    for secret in (id_number, phone, name, "欧阳修近"):
        assert secret not in logged
