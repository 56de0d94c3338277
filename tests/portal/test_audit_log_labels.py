"""Findings 2 and 3 of issue 16 on the audit log and the delivery monitor: stored codes
(actor and object types, the system's actor names and reasons, partner event types,
the delivery worker's errors) shown through their labels in the reader's language,
regions by name, the 操作 filter by the words of the label, the object linked to its
screen only for a reader who may open it, and the before/after times in 北京时间."""

import csv
import io
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from payments.linkages import services as linkage_services
from payments.models import OutboxEvent
from portal import audit_labels
from portal.actors import Actor
from portal.models import Role
from testkit.audit import record
from testkit.screens import make_partner, sign_in

pytestmark = pytest.mark.django_db

HERE, THERE = "310000", "130000"
ROOT = Path(__file__).resolve().parents[2]


def listed(client, **params) -> str:
    return client.get(reverse("audit_list") + ("?" + urlencode(params) if params else "")).content.decode()


def rows(html: str) -> str:
    return html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]


@pytest.fixture
def auditor(client, make_user, regions):
    user = make_user(Role.AUDITOR, (HERE,))
    sign_in(client, user)
    return user


def test_the_audit_log_shows_stored_codes_through_their_chinese_labels(client, auditor):
    record(action="certificate.issue", object_type="certificate", object_id="C1", reason="bulk import")
    record(
        action="family_binding.approve",
        object_type="family_binding",
        object_id="B1",
        actor=Actor(type="user", id="7", label="clerk_sh", ip=None, user_id=7),
    )
    page = rows(listed(client))
    assert "family_binding.approve" in page  # the action's code stays beside its label, for auditors
    page = re.sub(r'<span class="mono muted">[a-z_.]+</span>', "", page)
    for chinese in ("批量导入", "系统", "自动化测试", "电子凭证", "亲情账户", "工作人员", "上海市"):
        assert chinese in page
    for english in ("bulk import", "user", "system", "certificate", "family_binding", "310000", "tests"):
        assert english not in page
    assert "clerk_sh" in page  # a person's name is not a code


def test_the_same_labels_read_in_english(client, auditor):
    client.cookies["django_language"] = "en"
    record(action="certificate.issue", object_type="certificate", object_id="C1", reason="bulk import")
    page = rows(listed(client))
    assert "Bulk import" in page and "E-card" in page and "Shanghai" in page and "System" in page


def test_the_region_filter_names_the_regions(client, auditor):
    html = listed(client)
    assert re.search(r'<option value="310000">上海市</option>', html)


def test_the_action_filter_finds_actions_by_the_words_of_their_label(client, auditor):
    record(action="certificate.suspend", object_type="certificate", object_id="C-suspended")
    record(action="certificate.revoke", object_type="certificate", object_id="C-revoked")
    found = rows(listed(client, action="暂停"))
    assert "C-suspended" in found and "C-revoked" not in found
    assert "C-suspended" in rows(listed(client, action="certificate.suspend"))
    client.cookies["django_language"] = "en"
    found = rows(listed(client, action="suspended"))
    assert "C-suspended" in found and "C-revoked" not in found


def test_a_word_matches_labels_in_the_readers_language_only():
    from django.utils import translation

    with translation.override("zh-hans"):
        assert "certificate.suspend" in audit_labels.actions_matching("暂停")
        assert audit_labels.actions_matching("suspended") == []
    with translation.override("en"):
        assert "certificate.suspend" in audit_labels.actions_matching("Suspended")


def test_a_start_date_after_the_end_date_is_a_form_error(client, auditor):
    record(object_id="any-event")
    html = listed(client, date_from="2026-03-02", date_to="2026-03-01")
    assert "截止日期早于起始日期。" in html
    assert 'aria-invalid="true"' in html or "errorlist" in html
    assert "any-event" not in rows(html)


def test_the_object_links_to_its_screen_for_a_reader_who_may_open_it(client, auditor, make_citizen):
    citizen = make_citizen(HERE, with_card=True)
    card = citizen.certificates.get()
    record(action="citizen.update", object_type="citizen", object_id=str(citizen.pk))
    record(action="certificate.suspend", object_type="certificate", object_id=card.number)
    record(action="partner.create", object_type="partner", object_id="wechat")
    make_partner("wechat", "微信支付")
    page = rows(listed(client))
    url = reverse("citizen_detail", args=[citizen.pk])
    assert f'href="{url}">{citizen.pk}</a>' in page
    assert f'href="{url}">{card.number}</a>' in page  # an e-card has no page: its citizen's
    assert reverse("partner_detail", args=["wechat"]) not in page  # an auditor does not open partners


def test_no_link_to_an_object_outside_the_readers_regions(client, auditor, make_citizen):
    elsewhere = make_citizen(THERE, with_card=True)
    record(region=HERE, action="citizen.update", object_type="citizen", object_id=str(elsewhere.pk))
    page = rows(listed(client))
    assert reverse("citizen_detail", args=[elsewhere.pk]) not in page
    assert f">{elsewhere.pk}<" in page


def test_an_operator_auditor_opens_the_partner(client, make_user, regions, settings):
    settings.ECARD_ALLOW_OPERATOR_AUDITOR = True
    user = make_user(Role.NATIONAL_OPERATOR, ())
    user.also_auditor = True
    user.save(update_fields=["also_auditor"])
    make_partner("wechat", "微信支付")
    record(region="", action="partner.create", object_type="partner", object_id="wechat")
    sign_in(client, user)
    assert f'href="{reverse("partner_detail", args=["wechat"])}"' in rows(listed(client))


def test_the_detail_shows_the_snapshot_times_in_beijing_time(client, auditor):
    event = record(
        action="certificate.suspend",
        object_type="certificate",
        object_id="C1",
        reason="bulk import",
        after={"state": "suspended", "changed_at": "2026-03-01T16:30:00+00:00", "note": "2026-03-01T16:30 kept"},
    )
    html = client.get(reverse("audit_detail", args=[event.seq])).content.decode()
    assert "2026-03-02T00:30:00+08:00" in html
    assert "2026-03-01T16:30:00+00:00" not in html
    assert "2026-03-01T16:30 kept" in html  # not a timestamp: as stored
    assert "批量导入" in html and "上海市" in html and "电子凭证" in html


def test_the_export_carries_the_labels_and_region_names(client, auditor):
    record(action="certificate.issue", object_type="certificate", object_id="C1", reason="bulk import")
    body = b"".join(client.post(reverse("audit_list"), {"format": "csv"}).streaming_content).decode("utf-8-sig")
    row = next(r for r in csv.reader(io.StringIO(body)) if "C1" in r)
    assert "上海市" in row and "批量导入" in row and "电子凭证" in row and "系统" in row
    assert "certificate.issue" in row  # the code too, for an auditor's tools


def test_every_partner_event_type_has_a_label():
    enqueued = set()
    for path in (ROOT / "payments").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        enqueued |= set(re.findall(r'type="([a-z_]+\.[a-z_]+)"', text))
        enqueued |= set(re.findall(r'"([a-z_]+\.[a-z_]+ed)"', text))
    for path in (ROOT / "insurance").rglob("*.py"):
        enqueued |= set(re.findall(r'"((?:certificate|citizen)\.[a-z_]+ed)"', path.read_text(encoding="utf-8")))
    enqueued.discard("citizen.register_refused")  # an audit action, not a partner event
    assert len(enqueued) > 10
    assert sorted(enqueued - audit_labels.EVENT_TYPE_LABELS.keys()) == []


def test_the_delivery_monitor_shows_event_types_and_errors_in_chinese(client, make_user, regions, make_citizen):
    partner = make_partner("wechat", "微信支付")
    citizen = make_citizen(HERE, with_card=True)
    linkage = linkage_services.linkage_create(
        actor=Actor.system("tests"), partner=partner, citizen=citizen, partner_user_ref="user-1"
    )
    OutboxEvent.objects.filter(object_id=linkage.public_id).update(last_error="connection failed", attempts=3)
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, (HERE,)))
    html = client.get(reverse("monitor_partner", args=[partner.code])).content.decode()
    assert "连接失败" in html and "connection failed" not in html
    assert "绑定钱包" in html


def test_the_citizen_page_shows_the_systems_reasons_and_object_types_in_chinese(client, make_user, make_citizen):
    from insurance import services as insurance_services

    citizen = make_citizen(HERE)
    insurance_services.certificate_issue(actor=Actor.system("import_citizens"), citizen=citizen, reason="bulk import")
    sign_in(client, make_user(Role.NATIONAL_OPERATOR, (HERE,)))
    html = client.get(reverse("citizen_detail", args=[citizen.pk])).content.decode()
    assert "批量导入" in html and "bulk import" not in html
    assert "参保人导入（命令行）" in html  # the system's actor, in the citizen's audit history
    assert ">certificate " not in html and "电子凭证 " in html
