"""Every action the services record has a readable, translated name on the audit screens."""

import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import translation

from portal.audit_labels import ACTION_LABELS, action_label
from portal.models import Role
from testkit.audit import record
from testkit.screens import sign_in

ROOT = Path(__file__).resolve().parents[2]
LITERAL = re.compile(r'action="([a-z_]+\.[a-z_.]+)"')
# Codes built at run time (f"certificate.{action}" and the like), from the services' own action names.
DYNAMIC = [
    *(f"certificate.{a}" for a in ("issue", "activate", "suspend", "reinstate", "revoke", "expire", "reissue")),
    *(f"settlement.{a}" for a in ("confirm", "cancel", "expire", "refund")),
    *(f"family_binding.{a}" for a in ("reject", "revoke")),
    *(f"risk_flag.{a}" for a in ("dismiss", "confirm")),
]


def recorded_codes() -> set[str]:
    codes = set(DYNAMIC)
    for app in ("portal", "insurance", "payments"):
        for path in (ROOT / app).rglob("*.py"):
            codes |= set(LITERAL.findall(path.read_text(encoding="utf-8")))
    return codes


def test_every_recorded_action_code_has_a_label():
    codes = recorded_codes()
    assert len(codes) > 30  # the scan found the services' codes
    assert sorted(codes - ACTION_LABELS.keys()) == []


def test_every_label_is_translated_into_chinese():
    with translation.override("en"):
        english = {code: str(label) for code, label in ACTION_LABELS.items()}
    with translation.override("zh-hans"):
        untranslated = [code for code, label in ACTION_LABELS.items() if str(label) == english[code]]
    assert untranslated == []


def test_an_unknown_code_is_shown_as_stored():
    assert action_label("something.new") == "something.new"


@pytest.mark.django_db
def test_the_audit_screens_show_the_label_in_the_readers_language(client, make_user, regions):
    event = record(action="certificate.revoke", object_type="certificate", object_id="C310-9")
    sign_in(client, make_user(Role.AUDITOR, ("310000",)))
    for url in (reverse("audit_list"), reverse("audit_detail", args=[event.seq])):
        page = client.get(url).content.decode()
        assert "电子凭证已注销" in page and "certificate.revoke" in page
    client.cookies["django_language"] = "en"
    assert "E-card revoked" in client.get(reverse("audit_list")).content.decode()
