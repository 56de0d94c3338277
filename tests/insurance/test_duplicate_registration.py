"""A clerk learns that an identity number is registered, never where: the register form and the
import's error report give one neutral message whether the existing citizen is in the clerk's
region or another, and the refused attempt is audited (without the number in clear)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from insurance.imports.jobs import import_job_create, run_import_job
from insurance.models import Citizen, ImportJobState
from portal.actors import Actor
from portal.models import AuditEvent, Region, Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db

MESSAGES = {
    "en": "This identity number is already registered and cannot be registered again.",
    "zh-hans": "该身份证号已有参保登记，不能重复登记。",
}


def register(client, id_number: str):
    return client.post(
        "/citizens/new/",
        {"id_number": id_number, "name": "李四", "phone": "", "region": "310000", "scheme": "resident"},
    )


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_register_form_answers_the_same_for_a_number_in_the_clerks_region_or_another(
    make_user, make_citizen, client, language
):
    here, elsewhere = make_citizen("310000"), make_citizen("440000")
    sign_in(client, make_user(Role.CLERK, ("310000",)))
    client.cookies["django_language"] = language
    answers = []
    for citizen in (here, elsewhere):
        response = register(client, citizen.id_number)
        assert response.status_code == 200
        answers.append(response.context["form"].errors.as_data())
    messages = [[m for e in answer["id_number"] for m in e.messages] for answer in answers]
    assert messages == [[MESSAGES[language]], [MESSAGES[language]]]
    assert all(answer.keys() == {"id_number"} for answer in answers)
    assert Citizen.objects.count() == 2


def test_a_refused_registration_is_audited_without_the_number_in_clear(make_user, make_citizen, client):
    elsewhere = make_citizen("440000")
    clerk = make_user(Role.CLERK, ("310000",))
    sign_in(client, clerk)
    register(client, elsewhere.id_number)
    event = AuditEvent.objects.get(action="citizen.register_refused")
    assert (event.actor_type, event.actor_id) == ("user", str(clerk.pk))
    assert event.region_code == "310000"
    assert elsewhere.id_number not in str(event.after) and elsewhere.id_number_masked in str(event.after)


def test_the_import_reports_the_same_message_for_a_number_in_the_clerks_other_region_or_elsewhere(
    make_user, make_citizen, media
):
    mine, elsewhere = make_citizen("440000"), make_citizen("350000")
    clerk = make_user(Role.CLERK, ("310000", "440000"))
    content = "id_number,name,phone,region_code,scheme\n" + "".join(
        f"{c.id_number},王五,,310000,resident\n" for c in (mine, elsewhere)
    )
    job = import_job_create(
        actor=Actor.for_user(clerk),
        user=clerk,
        region=Region.objects.get(code="310000"),
        upload=SimpleUploadedFile("people.csv", content.encode()),
        language="en",
    )
    job = run_import_job(job.pk)
    assert (job.state, job.created, job.updated, job.failed) == (ImportJobState.DONE, 0, 0, 2)
    errors = list(job.row_errors.order_by("row").values_list("row", "column", "message"))
    assert errors == [(2, "id_number", MESSAGES["en"]), (3, "id_number", MESSAGES["en"])]
    event = AuditEvent.objects.get(action="citizen.register_refused")
    assert event.region_code == "310000" and event.after["rows"] == [2, 3]
    assert mine.id_number not in str(event.after) and elsewhere.id_number not in str(event.after)
