"""Separation of duties (三员分立, DESIGN §2): system administration (accounts, regions,
partners, catalogue), security administration (the portal's signing keys, partner keys)
and audit administration (reading and exporting the audit log) are held by different
accounts. One test per role and screen group: who opens what (200), who is refused (403),
and what is outside the scope (404)."""

from dataclasses import dataclass

import pytest
from django.urls import reverse

from payments import keys
from payments.models import PartnerKey, PartnerKeyState, PortalKey, PortalKeyState
from portal.actors import Actor
from portal.models import Role, User
from portal.scope import regions_visible_to, visible_region_codes
from testkit.audit import record
from testkit.screens import make_partner, sign_in

pytestmark = pytest.mark.django_db

HERE, THERE = "310000", "440000"
# A national operator whose deployment lets one account also read the audit log
# (ECARD_ALLOW_OPERATOR_AUDITOR on, and the account made an auditor too).
OPERATOR_AUDITOR = "national_operator+auditor"
ROLES = [Role.NATIONAL_OPERATOR, OPERATOR_AUDITOR, Role.SECURITY_OFFICER, Role.REGION_ADMIN, Role.CLERK, Role.AUDITOR]
NATIONAL = {Role.NATIONAL_OPERATOR, OPERATOR_AUDITOR, Role.SECURITY_OFFICER}


@dataclass
class World:
    citizen: object
    partner: object
    partner_key: PartnerKey
    here_event: object
    there_event: object


@pytest.fixture
def world(make_citizen):
    keys._forget_cached_key()
    keys.portal_key_create(actor=Actor.system("tests"))
    partner = make_partner("alipay", "Alipay")
    key = PartnerKey.objects.create(partner=partner, key_id="alipay-k", public_key="A" * 43 + "=")
    yield World(
        citizen=make_citizen(HERE, with_card=True),
        partner=partner,
        partner_key=key,
        here_event=record(region=HERE, action="certificate.revoke", object_type="certificate", object_id="C1"),
        there_event=record(region=THERE, action="certificate.revoke", object_type="certificate", object_id="C2"),
    )
    keys._forget_cached_key()


def person(make_user, role: str, settings) -> User:
    if role == OPERATOR_AUDITOR:
        settings.ECARD_ALLOW_OPERATOR_AUDITOR = True
        user = make_user(Role.NATIONAL_OPERATOR, ())
        user.also_auditor = True
        user.save(update_fields=["also_auditor"])
        return user
    return make_user(role, () if role in NATIONAL else (HERE,))


def everyone_but(*roles: str, status: int = 200) -> dict[str, int]:
    return {role: (403 if role in roles else status) for role in ROLES}


def only(*roles: str) -> dict[str, int]:
    return {role: (200 if role in roles else 403) for role in ROLES}


REGION_DATA = everyone_but(Role.SECURITY_OFFICER)
OPERATORS = only(Role.NATIONAL_OPERATOR, OPERATOR_AUDITOR)
SECURITY = only(Role.SECURITY_OFFICER)
AUDIT = only(Role.AUDITOR, OPERATOR_AUDITOR)

# group -> (urls of the group, expected status of each role)
SCREENS = {
    "citizens": (
        lambda w: [reverse("citizen_search"), reverse("citizen_detail", args=[w.citizen.pk])],
        REGION_DATA,
    ),
    "citizen imports": (lambda w: [reverse("import_list")], REGION_DATA),
    "family bindings": (lambda w: [reverse("binding_queue")], REGION_DATA),
    "settlements": (lambda w: [reverse("settlement_list")], REGION_DATA),
    "dashboard": (lambda w: [reverse("dashboard"), reverse("dashboard_region", args=[HERE])], REGION_DATA),
    "catalogue": (lambda w: [reverse("catalogue_list")], REGION_DATA),
    "facilities and policies": (lambda w: [reverse("facility_list"), reverse("policy_index")], REGION_DATA),
    "catalogue editing": (lambda w: [reverse("catalogue_create")], OPERATORS),
    "risk review": (lambda w: [reverse("risk_queue")], everyone_but(Role.SECURITY_OFFICER, Role.CLERK)),
    "delivery monitor": (
        lambda w: [reverse("monitor_index")],
        only(Role.NATIONAL_OPERATOR, OPERATOR_AUDITOR, Role.REGION_ADMIN),
    ),
    "staff": (
        lambda w: [reverse("staff_list"), reverse("staff_create")],
        only(Role.NATIONAL_OPERATOR, OPERATOR_AUDITOR, Role.REGION_ADMIN),
    ),
    "partners (read)": (
        lambda w: [reverse("partner_list"), reverse("partner_detail", args=[w.partner.code])],
        only(Role.NATIONAL_OPERATOR, OPERATOR_AUDITOR, Role.SECURITY_OFFICER),
    ),
    "partners (administer)": (
        lambda w: [
            reverse("partner_create"),
            reverse("partner_webhook", args=[w.partner.code]),
            reverse("partner_state", args=[w.partner.code]),
            reverse("partner_rate_limit", args=[w.partner.code]),
        ],
        OPERATORS,
    ),
    "partner keys": (
        lambda w: [
            reverse("partner_key_add", args=[w.partner.code]),
            reverse("partner_key_revoke", args=[w.partner.code, w.partner_key.key_id]),
        ],
        SECURITY,
    ),
    "portal signing keys": (
        lambda w: [reverse("portal_key_list"), reverse("portal_key_rotate"), reverse("portal_key_activate")],
        SECURITY,
    ),
    "audit log": (
        lambda w: [
            reverse("audit_list"),
            reverse("audit_list") + "?format=csv",
            reverse("audit_detail", args=[w.here_event.seq]),
        ],
        AUDIT,
    ),
    "own account": (lambda w: [reverse("mfa_index")], everyone_but()),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("group", list(SCREENS))
def test_each_role_opens_only_the_screens_of_its_duty(client, make_user, settings, world, group, role):
    urls, expected = SCREENS[group]
    sign_in(client, person(make_user, role, settings))
    got = {url: client.get(url).status_code for url in urls(world)}
    assert got == dict.fromkeys(urls(world), expected[role])


@pytest.mark.parametrize("role", ROLES)
def test_refused_writes_change_nothing(client, make_user, settings, world, role):
    """A POST carrying the confirmation is refused like the GET, and nothing is written."""
    sign_in(client, person(make_user, role, settings))
    payload = {"reason": "x", "confirmed": "yes", "public_key": "A" * 43 + "=", "rate_limit_per_second": "7"}
    writes = {
        reverse("partner_key_add", args=[world.partner.code]): SECURITY,
        reverse("partner_key_revoke", args=[world.partner.code, world.partner_key.key_id]): SECURITY,
        reverse("portal_key_rotate"): SECURITY,
        reverse("partner_rate_limit", args=[world.partner.code]): OPERATORS,
    }
    before = (
        list(PortalKey.objects.values_list("key_id", "state")),
        list(world.partner.keys.values_list("key_id", "state")),
    )
    for url, allowed in writes.items():
        if allowed[role] == 403:
            assert client.post(url, payload).status_code == 403, url
    if role not in (Role.SECURITY_OFFICER,):
        assert (
            list(PortalKey.objects.values_list("key_id", "state")),
            list(world.partner.keys.values_list("key_id", "state")),
        ) == before


@pytest.mark.parametrize(
    "role, url",
    [
        (Role.AUDITOR, lambda w: reverse("audit_detail", args=[w.there_event.seq])),
        (Role.SECURITY_OFFICER, lambda w: reverse("partner_detail", args=["nobody"])),
        (Role.SECURITY_OFFICER, lambda w: reverse("partner_key_revoke", args=[w.partner.code, "no-such-key"])),
        (Role.SECURITY_OFFICER, lambda w: reverse("partner_key_add", args=["nobody"])),
        (OPERATOR_AUDITOR, lambda w: reverse("audit_detail", args=[999_999_999])),
    ],
)
def test_what_is_outside_the_scope_answers_404(client, make_user, settings, world, role, url):
    sign_in(client, person(make_user, role, settings))
    assert client.get(url(world)).status_code == 404


def _menu_links(html: str) -> list[str]:
    import re

    nav = html.split('class="mainnav"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'href="([^"]+)"', nav)


@pytest.mark.parametrize("role", ROLES)
def test_the_menu_shows_each_role_only_what_it_can_open(client, make_user, settings, world, role):
    sign_in(client, person(make_user, role, settings))
    links = _menu_links(client.get(reverse("mfa_index")).content.decode())
    assert links
    for link in links:
        assert client.get(link).status_code == 200, link
    for group in ("citizens", "partners (read)", "portal signing keys", "audit log", "staff"):
        urls, expected = SCREENS[group]
        shown = urls(world)[0] in links
        assert shown == (expected[role] == 200), (group, shown)


def test_the_security_officer_sees_no_region_and_starts_on_the_signing_keys(client, make_user, world):
    officer = make_user(Role.SECURITY_OFFICER, ())
    assert officer.requires_mfa
    assert visible_region_codes(officer) == []
    assert not regions_visible_to(officer).exists()
    sign_in(client, officer)
    assert client.get(reverse("home"))["Location"] == reverse("portal_key_list")


# --- The portal's signing keys ---------------------------------------------------------


@pytest.fixture
def officer(client, make_user):
    user = make_user(Role.SECURITY_OFFICER, (), username="sec-1")
    sign_in(client, user)
    client.cookies["django_language"] = "en"
    return user


def test_the_signing_keys_screen_lists_each_key_with_its_dates_and_public_key(client, officer, world):
    active = PortalKey.objects.get()
    page = client.get(reverse("portal_key_list")).content.decode()
    for text in (active.key_id, active.public_key, "Active", "Rotate"):
        assert text in page, text


def test_rotating_asks_for_confirmation_then_creates_the_next_key_audited(client, officer, world):
    from portal.models import AuditEvent

    url = reverse("portal_key_rotate")
    first = client.post(url, {})
    assert first.status_code == 200 and first.context["step"] == "confirm"
    assert PortalKey.objects.count() == 1
    assert client.post(url, {"confirmed": "yes"}).status_code == 302
    nxt = PortalKey.objects.get(state=PortalKeyState.NEXT)
    event = AuditEvent.objects.get(action="portal_key.create", object_id=nxt.key_id)
    assert (event.actor_type, event.actor_label) == ("user", "sec-1")
    # A second rotation before activating is refused on the screen, as by the command.
    refused = client.post(url, {"confirmed": "yes"})
    assert refused.status_code == 200
    assert PortalKey.objects.filter(state=PortalKeyState.NEXT).count() == 1

    activate = reverse("portal_key_activate")
    assert client.post(activate, {}).context["step"] == "confirm"
    assert client.post(activate, {"confirmed": "yes"}).status_code == 302
    assert PortalKey.objects.get(key_id=nxt.key_id).state == PortalKeyState.ACTIVE
    old = PortalKey.objects.get(state=PortalKeyState.RETIRED)
    assert old.retired_at is not None
    assert AuditEvent.objects.filter(action="portal_key.activate", actor_label="sec-1").exists()
    assert AuditEvent.objects.filter(action="portal_key.retire", object_id=old.key_id, actor_label="sec-1").exists()
    page = client.get(reverse("portal_key_list")).content.decode()
    assert "Retired" in page and old.key_id in page


def test_the_security_officer_adds_and_revokes_a_partner_key(client, officer, world):
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    code = world.partner.code
    assert client.post(reverse("partner_key_add", args=[code]), {"public_key": base64.b64encode(raw).decode()})[
        "Location"
    ] == reverse("partner_detail", args=[code])
    added = world.partner.keys.exclude(pk=world.partner_key.pk).get()
    assert added.state == PartnerKeyState.ACTIVE
    url = reverse("partner_key_revoke", args=[code, added.key_id])
    assert client.post(url, {"reason": "leaked", "confirmed": "yes"}).status_code == 302
    assert PartnerKey.objects.get(pk=added.pk).state == PartnerKeyState.REVOKED
    detail = client.get(reverse("partner_detail", args=[code])).content.decode()
    assert reverse("partner_key_add", args=[code]) in detail
    assert reverse("partner_webhook", args=[code]) not in detail


def test_a_national_operator_registers_a_partner_but_not_its_key(client, make_user, world):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    response = client.post(
        reverse("partner_create"),
        {"code": "newpay", "name": "New Pay", "kind": "wallet", "webhook_url": "", "public_key": "A" * 43 + "="},
    )
    assert response.status_code == 302
    assert not PartnerKey.objects.filter(partner__code="newpay").exists()
    detail = client.get(reverse("partner_detail", args=["newpay"])).content.decode()
    assert reverse("partner_key_add", args=["newpay"]) not in detail
    assert reverse("partner_webhook", args=["newpay"]) in detail


# --- One duty per account ---------------------------------------------------------------

PASSWORD = "a-long-enough-passphrase-7"


def create_staff(client, **data):
    payload = {"username": "new-one", "email": "", "role": "clerk", "regions": [HERE], "password": PASSWORD, **data}
    return client.post(reverse("staff_create"), payload)


def test_a_national_operator_creates_every_role_including_security_officers_and_auditors(client, make_user):
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    offered = {value for value, _label in client.get(reverse("staff_create")).context["form"].fields["role"].choices}
    assert offered == set(Role.values)
    assert create_staff(client, username="sec", role="security_officer", regions=[]).status_code == 302
    assert create_staff(client, username="aud", role="auditor").status_code == 302
    officer = User.objects.get(username="sec")
    assert (officer.role, officer.regions.count(), officer.also_auditor) == (Role.SECURITY_OFFICER, 0, False)
    assert User.objects.get(username="aud").role == Role.AUDITOR


def test_a_region_administrator_creates_clerks_only(client, make_user):
    sign_in(client, make_user(Role.REGION_ADMIN, (HERE,)))
    offered = {value for value, _label in client.get(reverse("staff_create")).context["form"].fields["role"].choices}
    assert offered == {Role.CLERK}
    for role in (Role.AUDITOR, Role.SECURITY_OFFICER, Role.REGION_ADMIN, Role.NATIONAL_OPERATOR):
        response = create_staff(client, username=f"x-{role}", role=role)
        assert "role" in response.context["form"].errors, role
    assert not User.objects.filter(username__startswith="x-").exists()


def test_the_operator_auditor_flag_is_not_offered_nor_accepted_unless_the_deployment_allows_it(client, make_user):
    from portal import services
    from portal.errors import DomainError

    operator = make_user(Role.NATIONAL_OPERATOR, ())
    sign_in(client, operator)
    assert "also_auditor" not in client.get(reverse("staff_create")).context["form"].fields
    create_staff(client, username="op2", role="national_operator", regions=[], also_auditor="on")
    assert User.objects.get(username="op2").also_auditor is False
    with pytest.raises(DomainError):
        services.staff_create(
            actor=Actor.system("tests"),
            manager=operator,
            username="op3",
            email="",
            role=Role.NATIONAL_OPERATOR,
            regions=[],
            password=PASSWORD,
            also_auditor=True,
        )
    assert not User.objects.filter(username="op3").exists()


def test_where_the_deployment_allows_it_an_operator_is_made_also_auditor_at_creation(client, make_user, settings):
    settings.ECARD_ALLOW_OPERATOR_AUDITOR = True
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, ()))
    assert "also_auditor" in client.get(reverse("staff_create")).context["form"].fields
    assert (
        create_staff(client, username="op2", role="national_operator", regions=[], also_auditor="on").status_code == 302
    )
    assert User.objects.get(username="op2").also_auditor is True
    # Only a national operator may hold the second duty: no clerk, admin or security officer.
    response = create_staff(client, username="sec2", role="security_officer", regions=[], also_auditor="on")
    assert "also_auditor" in response.context["form"].errors
    assert not User.objects.filter(username="sec2").exists()


def test_the_flag_does_nothing_once_the_deployment_turns_the_setting_off(client, make_user, settings, world):
    settings.ECARD_ALLOW_OPERATOR_AUDITOR = False
    operator = make_user(Role.NATIONAL_OPERATOR, ())
    operator.also_auditor = True
    operator.save(update_fields=["also_auditor"])
    sign_in(client, operator)
    assert client.get(reverse("audit_list")).status_code == 403
    settings.ECARD_ALLOW_OPERATOR_AUDITOR = True
    page = client.get(reverse("audit_list")).content.decode()
    assert reverse("audit_detail", args=[world.there_event.seq]) in page


def test_the_role_is_single_valued_and_no_screen_changes_one(make_user):
    from django import forms

    from portal.forms import StaffCreateForm

    # The only form that sets a role offers one: a second duty cannot be ticked beside the first.
    role_field = StaffCreateForm(manager=make_user(Role.NATIONAL_OPERATOR, ())).fields["role"]
    assert isinstance(role_field, forms.ChoiceField)
    assert not isinstance(role_field, forms.MultipleChoiceField)
    from django.urls import get_resolver

    names = {name for name in get_resolver().reverse_dict if isinstance(name, str)}
    assert {name for name in names if name.startswith("staff_")} == {
        "staff_list",
        "staff_create",
        "staff_deactivate",
        "staff_reactivate",  # is_active only: the role stays as it was
        "staff_unlock",
        "staff_password_reset",
    }
