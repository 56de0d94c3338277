"""Issue 16, finding 4: a form reports all its errors at once, in a summary at the top
(role="alert", each error a link to its field), and a region administrator of one region
finds that region already ticked."""

import re
from pathlib import Path

import pytest
from django.urls import reverse

from insurance.services import certificate_activate
from payments.models import Partner
from portal.models import Role
from testkit.screens import make_partner, sign_in

pytestmark = pytest.mark.django_db


def _summary(response) -> str:
    html = response.content.decode()
    found = re.search(r'<div class="error-summary" role="alert"[^>]*>(.*?)</div>', html, flags=re.S)
    assert found, "a summary of the errors at the top of the form"
    return found.group(1)


def test_a_new_staff_account_reports_every_error_at_once_with_links_to_the_fields(client, make_user):
    make_user(Role.CLERK, ("310000",), username="taken")
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ("310000",)))
    response = client.post(
        reverse("staff_create"), {"username": "TAKEN", "role": Role.CLERK, "password": "short", "email": "x"}
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert {"username", "password", "regions", "email"} <= set(errors), errors
    summary = _summary(response)
    for field in ("username", "password", "regions", "email"):
        assert f'href="#id_{field}"' in summary, field
    html = response.content.decode()
    assert html.index('class="error-summary"') < html.index('name="username"'), "the summary is above the fields"


def test_a_partner_registration_reports_every_error_at_once(client, make_user):
    make_partner("wechat", "WeChat Pay")
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ("310000",)))
    response = client.post(
        reverse("partner_create"), {"code": "wechat", "name": "", "kind": "wallet", "webhook_url": "ftp://x"}
    )
    assert response.status_code == 200
    assert {"code", "name", "webhook_url"} <= set(response.context["form"].errors)
    summary = _summary(response)
    assert 'href="#id_code"' in summary and 'href="#id_webhook_url"' in summary
    assert Partner.objects.filter(code="wechat").count() == 1


def test_a_valid_form_shows_no_summary(client, make_user):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ("310000",)))
    assert 'class="error-summary"' not in client.get(reverse("partner_create")).content.decode()


def test_the_region_of_an_administrator_of_one_region_is_ticked(client, make_user):
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    html = client.get(reverse("staff_create")).content.decode()
    box = re.search(r'<input type="checkbox" name="regions"[^>]*>', html).group(0)
    assert "checked" in box


def test_no_region_is_ticked_for_an_administrator_of_several(client, make_user):
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000", "440000")))
    html = client.get(reverse("staff_create")).content.decode()
    assert "checked" not in "".join(re.findall(r'<input type="checkbox" name="regions"[^>]*>', html))


# --- The same summary on every other form that takes input -------------------------------------------


@pytest.mark.parametrize(
    "role, region_codes, view, fields",
    [
        (Role.CLERK, ("310000",), "citizen_register", {"id_number", "name", "scheme"}),
        (Role.NATIONAL_OPERATOR, ("310000",), "catalogue_create", {"code", "name_zh", "unit"}),
        (Role.REGION_ADMIN, ("310000",), "facility_create", {"code", "name_zh", "kind"}),
    ],
)
def test_an_empty_entry_form_lists_all_its_errors_at_the_top(client, make_user, role, region_codes, view, fields):
    sign_in(client, make_user(role, region_codes))
    response = client.post(reverse(view), {"name": ""})  # an empty POST would be a GET to `request.POST or None`
    assert response.status_code == 200
    assert fields <= set(response.context["form"].errors), response.context["form"].errors
    summary = _summary(response)
    for field in fields:
        assert f'href="#id_{field}"' in summary, field
    html = response.content.decode()
    assert html.index('class="error-summary"') < html.index(f'name="{sorted(fields)[0]}"')


def test_a_policy_version_with_a_bad_share_lists_it_at_the_top(client, make_user):
    sign_in(client, make_user(Role.REGION_ADMIN, ("310000",)))
    response = client.post(reverse("policy_new_version", args=["310000", "resident", 2026]), {"share_drug_a": "150"})
    assert response.status_code == 200 and response.context["step"] == "form"
    errors = response.context["form"].errors
    assert "share_drug_a" in errors, errors
    assert 'href="#id_share_drug_a"' in _summary(response)


def test_a_card_action_without_a_reason_says_so_at_the_top(client, make_user, make_citizen, system_actor):
    citizen = make_citizen("310000", with_card=True)
    card = certificate_activate(actor=system_actor, certificate=citizen.certificates.get())
    sign_in(client, make_user(Role.CLERK, ("310000",)))
    response = client.post(reverse("certificate_action", args=[card.pk, "suspend"]), {"reason": " "})
    assert response.status_code == 200 and response.context["step"] == "form"
    assert 'href="#id_reason"' in _summary(response)


def test_pausing_a_partner_without_a_reason_says_so_at_the_top(client, make_user):
    partner = make_partner("wechat", "WeChat Pay")
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ("310000",)))
    response = client.post(reverse("partner_state", args=[partner.code]), {"reason": ""})
    assert response.status_code == 200
    assert 'href="#id_reason"' in _summary(response)


def test_every_template_with_a_form_to_fill_in_includes_the_summary():
    """A form posted back with errors shows them at the top wherever it renders its fields (a
    search box keeps its one message beside it)."""
    templates = Path(__file__).resolve().parents[2] / "templates"
    missing = [
        str(path.relative_to(templates))
        for path in templates.rglob("*.html")
        if 'method="post"' in (text := path.read_text())
        and 'role="search"' not in text
        and ("form.as_div" in text or "field.errors" in text)
        and "portal/_form_errors.html" not in text
    ]
    assert not missing, missing
