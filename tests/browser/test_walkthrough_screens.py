"""Issue 16, findings 7 to 10 of the walk-through, as a user sees them at 1366 x 768 in Simplified
Chinese and in English (each test runs in both, the same steps, asserting that language's words);
axe-core checks every screen visited (`screen`).

- 7, dashboard: whole ticks on the settlement-count axis, 暂无数据 / "No data yet" for an empty
  series, chart titles as headings above the charts, one fixed colour per region, no one-column
  comparison table for an administrator of one region, and the note on live e-cards;
- 8, layout: the 已支付 / Paid badge, policy dates and shares keep one line; the export note speaks
  of the filters above only where there are filters (number inputs and the menu on one row:
  test_navigation_flow, in both languages);
- 9, delivery monitor: a failing event counted as failing only and retried now, its attempts before
  its body, and pausing deliveries or changing a webhook refused without a reason;
- 10, family bindings and staff: the menu counts pending requests, a click anywhere on a row opens
  it, a pending request offers no 解除 / End, a decision leads to the next pending request, and a
  deactivated account is reactivated in two steps.

Finding 11 (a 403 is one WARNING line) is no screen: tests/portal/test_log_noise.py.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from backoffice.dashboards.rollups import rollups_rebuild
from payments.linkages import services as linkages
from payments.models import BindingState, DeliveryAttempt, FamilyBinding, OutboxEvent, Partner, PartnerKind
from portal.actors import Actor
from portal.models import Role, User
from testkit.bindings import bind, link, make_wallet, register
from testkit.browser import PASSWORD, menu_link, sign_in_with_password, sign_in_with_totp
from testkit.dashboards import settle
from testkit.settlements import linked

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("language", ["zh-hans", "en"])]


def say(language: str, zh: str, en: str) -> str:
    """The words of the screen in the test's language (locale/zh_Hans/LC_MESSAGES/django.po)."""
    return zh if language == "zh-hans" else en


def lines_of(locator) -> int:
    """How many lines the element's text takes."""
    return locator.evaluate(
        """(el) => { const range = document.createRange(); range.selectNodeContents(el);
            return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size; }"""
    )


def squeezed(locator):
    """The element with its table cell squeezed to a pixel: only `white-space: nowrap` keeps it on one line."""
    locator.evaluate("(el) => { el.closest('td').style.width = '1px'; }")
    return locator


def test_dashboard_counts_whole_says_no_data_and_compares_several_regions_only(
    page, url, screen, language, make_user, make_citizen, regions, world, totp
):
    wallet = make_wallet("wechat")
    settle(wallet, linked(wallet, regions))  # one settlement today in Shanghai
    make_citizen("440000", with_card=True)  # nothing settled in Guangdong
    rollups_rebuild()
    make_user(Role.CLERK, ("310000", "440000"), username="clerk-two-regions", password=PASSWORD)
    make_user(Role.REGION_ADMIN, ("440000",), username="admin-guangdong", password=PASSWORD)

    # Two regions: compared side by side, each in its own colour, the count axis 0 and 1 (no 0.5).
    sign_in_with_password(page, url, screen, "clerk-two-regions", "clerk", language)
    page.goto(url(reverse("dashboard")))
    page.get_by_role("heading", name=say(language, "各地区对比", "Regions side by side")).wait_for()
    screen("dashboard-two-regions")
    settled = page.locator("figure", has=page.locator("#chart-settled-h"))
    assert settled.locator("svg text.axis[x='52']").all_text_contents() == ["0", "1"]
    fill = "(el) => getComputedStyle(el).fill"
    by_region = page.locator("figure", has=page.locator("#chart-regions-h"))
    assert by_region.locator(".bar.k310000 rect").evaluate(fill) == "rgb(161, 66, 244)"
    assert by_region.locator(".bar.k440000 rect").evaluate(fill) == "rgb(127, 106, 0)"

    # One region: its figures, no one-column comparison; an empty chart says so under its heading.
    page.context.clear_cookies()
    sign_in_with_totp(page, url, screen, totp, User.objects.get(username="admin-guangdong"), "admin", language)
    assert page.url.endswith(reverse("dashboard"))
    page.locator("[data-metric=active-citizens]").wait_for()
    screen("dashboard-one-region")
    assert page.locator("[data-metric=active-citizens]").inner_text() == "1"
    assert page.get_by_role("heading", name=say(language, "各地区对比", "Regions side by side")).count() == 0
    assert page.locator("table.dash-table.regions").count() == 0
    title = page.get_by_role(
        "heading", level=3, name=say(language, "近 90 天每日已支付结算笔数", "Settlements paid per day, last 90 days")
    )
    chart = page.locator("figure", has=title).locator("svg")
    assert chart.locator("text").all_text_contents() == [say(language, "暂无数据", "No data yet")]
    assert chart.locator("polyline").count() == 0, "no flat line"
    assert title.bounding_box()["y"] + title.bounding_box()["height"] <= chart.bounding_box()["y"], "title above"
    note = page.locator("[data-note=live-cards]").inner_text()
    if language == "zh-hans":
        assert "有效电子凭证" in note and "“正常”" in note and "有效钱包绑定数可能多于有效电子凭证数" in note
    else:
        assert "“Active” counts the activated ones only" in note and "may exceed live e-cards" in note


def test_badges_dates_and_export_notes_keep_their_place(page, url, screen, language, make_user, regions, world, totp):
    wallet = make_wallet("wechat")
    settle(wallet, linked(wallet, regions))
    make_user(Role.REGION_ADMIN, ("310000",), username="admin-layout", password=PASSWORD)
    sign_in_with_totp(page, url, screen, totp, User.objects.get(username="admin-layout"), "admin", language)

    page.goto(url(reverse("settlement_list")))
    paid = page.locator("td .badge", has_text=say(language, "已支付", "Paid"))
    paid.wait_for()
    screen("settlements")
    assert paid.evaluate("(el) => getComputedStyle(el).whiteSpace") == "nowrap"
    assert lines_of(squeezed(paid)) == 1, "the badge keeps one line"
    assert (
        page.locator(".export-buttons .muted")
        .inner_text()
        .startswith(say(language, "按上方筛选条件导出", "With the filters above"))
    ), "a list with filters"

    page.goto(url(reverse("policy_versions", args=["310000", "resident", world.year])))
    date = page.locator("td.nowrap").first
    date.wait_for()
    screen("policy-versions")
    assert date.inner_text() == say(language, f"{world.year}-01-01", f"1 Jan {world.year}")
    assert lines_of(squeezed(date)) == 1, "the date keeps one line"
    shares = page.locator("td small").first.text_content()
    assert "100\u00a0%" in shares and not re.search(r"\d %", shares), "a share's % never starts a line"
    note = page.locator(".export-buttons .muted").inner_text()
    assert note.startswith(say(language, "导出全部", "At most")), "a list without filters"
    assert say(language, "筛选", "filter") not in note


def test_delivery_monitor_retries_a_failing_event_and_asks_reasons(
    page, url, screen, language, make_user, make_citizen, portal_key, totp
):
    partner = Partner.objects.create(
        code="wechat", name="微信支付", kind=PartnerKind.WALLET, webhook_url="https://wechat.example.cn/hook"
    )
    citizen = make_citizen("310000", with_card=True)
    linkage = linkages.linkage_create(
        actor=Actor.system("tests"), partner=partner, citizen=citizen, partner_user_ref="user-1"
    )
    event = OutboxEvent.objects.get(partner=partner, object_id=linkage.public_id)
    DeliveryAttempt.objects.create(
        event=event, number=1, started_at=timezone.now(), status_code=502, latency_ms=7, error="HTTP 502"
    )
    later = timezone.now() + timezone.timedelta(hours=2)
    OutboxEvent.objects.filter(pk=event.pk).update(attempts=1, last_status=502, next_attempt_at=later)
    make_user(Role.NATIONAL_OPERATOR, (), username="operator-monitor", password=PASSWORD)
    sign_in_with_totp(page, url, screen, totp, User.objects.get(username="operator-monitor"), "operator", language)

    page.goto(url(reverse("monitor_partner", args=["wechat"])))
    facts = page.locator("dl.facts")
    facts.wait_for()
    screen("monitor-partner")

    def count(label: str) -> str:
        return (
            facts.locator("dt", has_text=re.compile(f"^{label}$"))
            .locator("xpath=following-sibling::dd[1]")
            .inner_text()
        )

    failing = say(language, "失败重试中", "Failing")
    assert (count(say(language, "待处理", "Pending")), count(failing)) == ("0", "1")
    assert page.locator("table tbody tr .badge").inner_text() == failing, "the row says what the header counts"

    page.goto(url(reverse("monitor_event", args=["wechat", event.public_id])))
    attempts = page.locator("main table")
    body = page.locator("main details", has_text=say(language, "事件内容", "Body"))
    attempts.wait_for()
    screen("failing-event")
    assert attempts.bounding_box()["y"] < body.bounding_box()["y"], "the attempts come first"
    assert body.get_attribute("open") is None, "the body is folded"
    page.get_by_role("link", name=say(language, "立即重试", "Retry now")).click()
    page.get_by_role("textbox", name=say(language, "原因", "Reason")).fill("合作方已恢复")
    page.get_by_role("button", name=say(language, "继续", "Continue")).click()
    page.get_by_text(say(language, "请确认。", "Please confirm.")).wait_for()
    screen("retry-confirm")
    page.get_by_role("button", name=say(language, "确认", "Confirm"), exact=True).click()
    page.get_by_text(say(language, "该事件将重新投递。", "The event will be delivered again.")).wait_for()
    screen("retried")
    event.refresh_from_db()
    assert event.next_attempt_at <= timezone.now(), "due now, not in two hours"

    required = say(language, "该字段是必填项。", "This field is required.")
    for path, step in (
        (reverse("monitor_deliveries", args=["wechat"]), "pause"),
        (reverse("partner_webhook", args=["wechat"]), "webhook"),
    ):
        page.goto(url(path))
        page.get_by_role("button", name=say(language, "继续", "Continue")).click()
        page.get_by_text(required).first.wait_for()
        screen(f"{step}-without-reason")
        reason = page.get_by_role("textbox", name=say(language, "原因", "Reason"))
        assert reason.get_attribute("aria-invalid") == "true", f"{step}: the reason is what is missing"
    partner.refresh_from_db()
    assert not partner.deliveries_paused


def pending_request(partner, regions, *, holder: str, beneficiary: str) -> FamilyBinding:
    """A family binding asked through the wallet for a beneficiary insured in Jilin (220000)."""
    citizen, _ = register(regions, "310000", name=holder)
    _, number = register(regions, "220000", name=beneficiary)
    return bind(partner, link(partner, citizen), number, name=beneficiary)


def test_binding_queue_rows_open_decisions_go_on_and_staff_come_back(
    page, url, screen, language, make_user, regions, totp
):
    wechat = make_wallet("wechat")
    first = pending_request(wechat, regions, holder="张三明", beneficiary="李四光")
    second = pending_request(wechat, regions, holder="王五", beneficiary="赵六")
    make_user(Role.REGION_ADMIN, ("220000",), username="admin-jilin", password=PASSWORD)
    away = make_user(Role.CLERK, ("220000",), username="clerk-back-from-leave", password=PASSWORD)
    User.objects.filter(pk=away.pk).update(is_active=False)
    sign_in_with_totp(page, url, screen, totp, User.objects.get(username="admin-jilin"), "admin", language)

    group = page.locator(".mainnav summary", has_text=say(language, "参保人与电子凭证", "Citizens and e-cards"))
    assert group.locator(".count").inner_text() == "2"
    queue = menu_link(page, say(language, "亲情账户", "Family bindings"), exact=False)
    assert queue.locator(".count").inner_text() == "2"
    queue.click()
    page.wait_for_url(re.compile(r"/partners/family-bindings/$"))
    screen("queue")
    row = page.locator("table tbody tr", has_text="李*光")
    row.locator("td", has_text="wechat").click()  # the partner's cell, not a link
    page.wait_for_url(re.compile(rf"/{first.public_id}/$"))
    screen("pending-request")
    assert page.get_by_role("link", name=say(language, "驳回亲情账户", "Reject family binding")).count() == 1
    assert page.get_by_role("link", name=say(language, "解除亲情账户", "End family binding")).count() == 0

    page.get_by_role("link", name=say(language, "批准亲情账户", "Approve family binding")).click()
    page.locator("input[name=note]").fill("户口簿已核验")
    page.get_by_role("button", name=say(language, "继续", "Continue")).click()
    page.get_by_role("button", name=say(language, "确认", "Confirm"), exact=True).click()
    page.wait_for_url(re.compile(rf"/{second.public_id}/$"))  # the next pending request, not the one decided
    page.get_by_text(say(language, "亲情账户已批准。", "The family binding has been approved.")).wait_for()
    screen("next-request")
    assert FamilyBinding.objects.get(pk=first.pk).state == BindingState.ACTIVE

    menu_link(page, say(language, "工作人员", "Staff"), exact=True).click()
    row = page.locator("table tbody tr", has_text="clerk-back-from-leave")
    assert row.locator(".badge").inner_text() == say(language, "已停用", "Deactivated")
    screen("staff")
    row.get_by_role("link", name=say(language, "重新启用", "Reactivate")).click()
    page.get_by_role("textbox", name=say(language, "原因", "Reason")).fill("休假结束")
    page.get_by_role("button", name=say(language, "继续", "Continue")).click()
    page.get_by_text(say(language, "请确认。", "Please confirm.")).wait_for()
    screen("reactivate-confirm")
    assert not User.objects.get(pk=away.pk).is_active, "nothing happens before confirming"
    page.get_by_role("button", name=say(language, "确认", "Confirm"), exact=True).click()
    page.wait_for_url(re.compile(r"/staff/$"))
    screen("reactivated")
    assert row.locator(".badge").first.inner_text() == say(language, "正常", "Active")
    assert User.objects.get(pk=away.pk).is_active
