"""Issue 16, the walk-through's fixed items 1 to 4 in a real browser (1366x768), in Simplified
Chinese and in English: each test takes the same steps in both languages and reads the fix in
that language's words, and every screen it visits is checked by axe-core (`screen`).

1. Controls: the Filter button of the settlement list and the risk queue reads against its
   background; a search by identity number is refined by scheme without retyping the number.
2. Wording: the risk queue's Open state, Name on facilities, services and partners, the sign-in
   field and the wrong-code message, a short identity number, the delivery monitor's error, and
   the audit log's labels and Beijing times.
3. Audit log: the Action filter by the label's words, a start date after the end date, regions
   by name, the object linked to its screen.
4. Forms: every error of a new staff account and of a partner registration in a summary at the
   top whose links move the focus to the field; an administrator's one region ticked.

Items 5 and 6 run in both languages where they ran in Chinese: the import in
test_import_templates_flow.py, the first sign-in in test_walkthrough_sign_in.py.
"""

from __future__ import annotations

import re

import pytest

from payments.linkages import services as linkage_services
from payments.models import OutboxEvent
from portal.actors import Actor
from portal.models import Role
from testkit.audit import record
from testkit.browser import (
    LANGUAGES,
    PASSWORD,
    activate_totp,
    contrast_ratio,
    enter_totp_code,
    sign_in_with_password,
    sign_in_with_totp,
    use_language,
)
from testkit.screens import make_partner

pytestmark = [pytest.mark.browser]

by_language = pytest.mark.parametrize("language", LANGUAGES)


def say(language: str, chinese: str, english: str) -> str:
    return english if language == "en" else chinese


def field(page, label: str):
    """The form field a person finds by its label (a label ends with a colon)."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}[:：]?$"))


def signed_out(page, url, language: str) -> None:
    """A new person at the same browser: no session, the language kept."""
    page.context.clear_cookies()
    use_language(page, url, language)


def submit(page, button) -> None:
    button.click()
    page.wait_for_load_state()


@by_language
def test_item_1_controls_filter_button_contrast_and_a_refined_identity_number_search(
    page, url, screen, make_user, make_citizen, totp, language
):
    admin = make_user(Role.REGION_ADMIN, ("310000",), password=PASSWORD)
    wanted = make_citizen("310000", scheme="resident")
    make_citizen("310000", scheme="employee")
    sign_in_with_totp(page, url, screen, totp, admin, "admin", language)

    for path, step in (("/partners/settlements/", "settlements"), ("/partners/risk/", "risk")):
        page.goto(url(path))
        screen(step)
        button = page.get_by_role("button", name=say(language, "筛选", "Filter"), exact=True)
        ratio = contrast_ratio(button)
        assert ratio >= 4.5, f"{path}: the Filter button's contrast is {ratio:.2f}:1"

    page.goto(url("/citizens/"))
    page.fill("input[name=q]", wanted.id_number)
    search = page.get_by_role("button", name=say(language, "查询", "Search"), exact=True)
    submit(page, search)
    screen("found-by-number")
    results = page.locator("main table tbody")
    assert results.locator("tr").count() == 1 and wanted.id_number_masked in results.inner_text()
    note = page.locator("main p.muted", has_text=wanted.id_number_masked)
    assert say(language, "更改筛选条件时保留此搜索", "kept while you change the filters") in note.inner_text()
    assert page.locator("input[name=q]").input_value() == "", "the box never holds the masked number"

    field(page, say(language, "险种", "Scheme")).select_option("resident")
    submit(page, search)
    screen("refined-by-scheme")
    assert results.locator("tr").count() == 1 and wanted.id_number_masked in results.inner_text()
    assert "scheme=resident" in page.url


@by_language
def test_item_2_wording_of_the_screens_in_the_readers_language(
    page, url, screen, make_user, make_citizen, totp, language
):
    operator = make_user(Role.NATIONAL_OPERATOR, ("310000",), password=PASSWORD)
    secret = activate_totp(operator)
    partner = make_partner("wechat", "微信支付")
    citizen = make_citizen("310000", with_card=True)
    linkage = linkage_services.linkage_create(
        actor=Actor.system("tests"), partner=partner, citizen=citizen, partner_user_ref="user-1"
    )
    OutboxEvent.objects.filter(object_id=linkage.public_id).update(last_error="connection failed", attempts=3)

    use_language(page, url, language)
    page.goto(url("/accounts/login/"))
    login_label = page.locator("label[for=id_login]").inner_text()
    assert login_label.rstrip(":：") == say(language, "用户名或邮箱", "Username or email"), login_label
    sign_in_with_password(page, url, screen, operator.username, "operator", language)
    enter_totp_code(page, "000000" if totp.code(secret) != "000000" else "111111")
    screen("wrong-code")
    assert say(language, "验证码错误。", "Incorrect code.") in page.locator("main").inner_text()
    enter_totp_code(page, totp.code(secret))

    page.goto(url("/partners/risk/"))
    screen("risk")
    states = page.locator("#risk-state option").all_inner_texts()
    assert states[0] == say(language, "待处理", "Open") and "查看" not in states, states

    for path, step in (
        ("/catalogue/facilities/", "facilities"),
        ("/catalogue/services/", "services"),
        ("/partners/manage/", "partners"),
    ):
        page.goto(url(path))
        screen(step)
        headers = page.locator("main table thead th").all_inner_texts()
        assert say(language, "名称", "Name") in headers and "姓名" not in headers, (path, headers)

    page.goto(url(f"/partners/monitor/{partner.code}/"))
    screen("monitor")
    row = page.locator("main table tbody tr").first.inner_text()
    assert say(language, "连接失败", "Connection failed") in row and "connection failed" not in row, row
    assert say(language, "绑定钱包", "Wallet linked") in row, row

    page.goto(url("/citizens/new/"))
    field(page, say(language, "身份证号", "Identity number")).fill("31010119860307")
    field(page, say(language, "姓名", "Name")).fill("王小明")
    submit(page, page.locator("main form button[type=submit]"))
    screen("short-identity-number")
    main = page.locator("main").inner_text()
    assert say(language, "身份证号应为18位。", "An identity number has 18 characters.") in main, main
    assert "确保该变量" not in main and "Ensure this value" not in main

    # The audit log, read by the region's auditor.
    auditor = make_user(Role.AUDITOR, ("310000",), password=PASSWORD)
    record(action="certificate.issue", object_type="certificate", object_id="C1", reason="bulk import")
    record(
        action="family_binding.approve",
        object_type="family_binding",
        object_id="B1",
        actor=Actor(type="user", id="7", label="clerk_sh", ip=None, user_id=7),
    )
    changed = record(
        action="certificate.suspend",
        object_type="certificate",
        object_id="C2",
        after={"state": "suspended", "changed_at": "2026-03-01T16:30:00+00:00"},
    )
    signed_out(page, url, language)
    sign_in_with_totp(page, url, screen, totp, auditor, "auditor", language)
    page.goto(url("/audit/"))
    screen("audit-log")
    rows = page.locator("main table tbody tr")
    binding, issued = rows.filter(has_text="B1"), rows.filter(has_text="C1")
    actor, object_cell = binding.locator("td").nth(2).inner_text(), binding.locator("td").nth(4).inner_text()
    assert say(language, "工作人员", "Staff") in actor and "user" not in actor, actor
    assert say(language, "亲情账户", "Family binding") in object_cell and "family_binding" not in object_cell
    reason = issued.locator("td").nth(6).inner_text()
    assert reason == say(language, "批量导入", "Bulk import"), reason

    page.goto(url(f"/audit/{changed.seq}/"))
    screen("audit-detail")
    after = page.locator("main pre").last.inner_text()
    assert "2026-03-02T00:30:00+08:00" in after and "+00:00" not in after, after


@by_language
def test_item_3_audit_log_filters_regions_and_object_links(page, url, screen, make_user, make_citizen, totp, language):
    auditor = make_user(Role.AUDITOR, ("310000",), password=PASSWORD)
    citizen = make_citizen("310000", with_card=True)
    card = citizen.certificates.get()
    record(action="certificate.suspend", object_type="certificate", object_id=card.number)
    record(action="certificate.revoke", object_type="certificate", object_id="C-revoked")
    sign_in_with_totp(page, url, screen, totp, auditor, "auditor", language)

    page.goto(url("/audit/"))
    screen("audit-log")
    rows = page.locator("main table tbody tr")
    assert rows.filter(has_text="C-revoked").locator("td").nth(5).inner_text() == say(language, "上海市", "Shanghai")
    region_options = page.locator("select[name=region] option").all_inner_texts()
    assert say(language, "上海市", "Shanghai") in region_options and "310000" not in "".join(region_options)

    filter_button = page.get_by_role("button", name=say(language, "筛选", "Filter"), exact=True)
    action = field(page, say(language, "操作", "Action"))
    action.fill(say(language, "暂停", "Suspend"))
    submit(page, filter_button)
    screen("filtered-by-action")
    assert rows.count() == 1 and card.number in rows.inner_text()

    action.fill("")
    page.locator("input[name=date_from]").fill("2026-03-02")
    page.locator("input[name=date_to]").fill("2026-03-01")
    submit(page, filter_button)
    screen("dates-reversed")
    error = page.locator("main form .errorlist")
    assert error.inner_text() == say(language, "截止日期早于起始日期。", "The end date is before the start date.")

    page.goto(url("/audit/"))
    submit(page, rows.get_by_role("link", name=card.number).first)
    screen("object-opened")
    assert page.url.endswith(f"/citizens/{citizen.pk}/"), page.url


@by_language
def test_item_4_forms_summarise_every_error_and_tick_the_administrators_region(
    page, url, screen, make_user, totp, language
):
    make_user(Role.CLERK, ("310000",), username="taken")
    admin = make_user(Role.REGION_ADMIN, ("310000",), password=PASSWORD)
    sign_in_with_totp(page, url, screen, totp, admin, "admin", language)

    page.goto(url("/staff/new/"))
    screen("new-account")
    region = page.get_by_role("checkbox", name=say(language, "310000 上海市", "310000 Shanghai"), exact=True)
    assert region.is_checked(), "the administrator's one region, ticked"
    page.locator("#id_username").fill("TAKEN")
    page.locator("#id_email").fill("x")
    page.locator("#id_password").fill("short")
    submit(page, page.get_by_role("button", name=say(language, "创建", "Create"), exact=True))
    screen("new-account-errors")
    summary = page.get_by_role("alert")
    assert summary.locator("p").inner_text() == say(
        language, "请更正以下 3 处错误。", "Please correct the 3 errors below."
    )
    errors = summary.get_by_role("link").all_inner_texts()
    fields = say(language, "用户名|电子邮箱|初始密码|初始密码", "Username|E-mail|Initial password|Initial password")
    assert [error.split(":")[0] for error in errors] == fields.split("|"), errors
    short = say(
        language,
        "密码太短，至少应包含 10 个字符。",
        "This password is too short. It must contain at least 10 characters.",
    )
    assert any(error.endswith(short) for error in errors), errors
    summary.get_by_role("link", name=re.compile(say(language, "^初始密码", "^Initial password"))).first.click()
    assert page.evaluate("document.activeElement.id") == "id_password"

    make_partner("wechat", "WeChat Pay")
    operator = make_user(Role.NATIONAL_OPERATOR, ("310000",), password=PASSWORD)
    signed_out(page, url, language)
    sign_in_with_totp(page, url, screen, totp, operator, "operator", language)
    page.goto(url("/partners/manage/new/"))
    page.locator("#id_code").fill("wechat")
    page.locator("#id_webhook_url").fill("ftp://x")
    submit(page, page.get_by_role("button", name=say(language, "保存", "Save"), exact=True))
    screen("new-partner-errors")
    summary = page.get_by_role("alert")
    hrefs = summary.get_by_role("link").evaluate_all("(links) => links.map((a) => a.getAttribute('href'))")
    assert {"#id_code", "#id_name", "#id_webhook_url"} <= set(hrefs), hrefs
    summary.locator("a[href='#id_webhook_url']").click()
    assert page.evaluate("document.activeElement.id") == "id_webhook_url"
