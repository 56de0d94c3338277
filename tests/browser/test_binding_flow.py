"""A family binding requested through a wallet is approved in a real browser by a clerk of the
beneficiary's region, through the confirmation step, and shows as active."""

from __future__ import annotations

import re

import pytest

from payments.models import BindingState, OutboxEvent
from portal.audit import verify_chain
from portal.models import AuditEvent, Role
from testkit.bindings import bind, link, make_wallet, register
from testkit.browser import PASSWORD, menu_link, sign_in_with_password

pytestmark = [pytest.mark.browser]


def test_clerk_of_the_beneficiarys_region_approves_a_pending_family_binding(page, url, screen, regions, make_user):
    wechat = make_wallet("wechat")
    holder, _ = register(regions, "310000", name="张三明")
    _, beneficiary_number = register(regions, "220000", name="李四光")
    binding = bind(wechat, link(wechat, holder), beneficiary_number, name="李四光")
    assert binding.state == BindingState.PENDING
    make_user(Role.CLERK, ("220000",), username="clerk-jilin", password=PASSWORD)

    sign_in_with_password(page, url, screen, "clerk-jilin", "clerk")
    menu_link(page, "亲情账户").click()
    page.wait_for_url(re.compile(r"/partners/family-bindings/"))
    page.get_by_role("heading", name="亲情账户").wait_for()
    screen("queue")
    row = page.locator("table tbody tr", has_text="李*光")
    assert row.count() == 1
    assert row.locator(".badge").inner_text() == "待审批"
    assert "李四光" not in page.content() and beneficiary_number not in page.content(), "the queue is masked"

    row.get_by_role("link").first.click()
    page.wait_for_url(re.compile(rf"/{binding.public_id}/$"))
    screen("binding")
    page.get_by_role("link", name="批准亲情账户").click()
    page.wait_for_url(re.compile(rf"/{binding.public_id}/approve/$"))
    screen("approve")
    page.get_by_role("button", name="继续").click()  # no reason yet: the form says so
    page.wait_for_load_state()
    screen("approve-reason-missing")
    assert page.locator(".errorlist").count() >= 1
    page.fill("textarea[name=note], input[name=note]", "户口簿已核验")
    page.get_by_role("button", name="继续").click()
    page.get_by_text("请确认。").wait_for()
    screen("approve-confirm")
    binding.refresh_from_db()
    assert binding.state == BindingState.PENDING, "nothing happens before confirming"

    page.get_by_role("button", name="确认").click()
    # No other request waits: the clerk is back on the queue (else on the next request).
    page.wait_for_url(re.compile(r"/partners/family-bindings/$"))
    page.get_by_text("亲情账户已批准。").wait_for()
    screen("approved")
    page.goto(url(f"/partners/family-bindings/{binding.public_id}/"))
    assert page.locator("h1 .badge").inner_text() == "正常"
    assert page.get_by_role("link", name="批准亲情账户").count() == 0, "an active binding offers no approval"

    binding.refresh_from_db()
    assert (binding.state, binding.decided_by, binding.decision_note) == (
        BindingState.ACTIVE,
        "clerk-jilin",
        "户口簿已核验",
    )
    assert OutboxEvent.objects.filter(
        partner=wechat, object_id=binding.public_id, type="family_binding.activated"
    ).exists(), "the partner is notified"
    assert AuditEvent.objects.filter(object_id=binding.public_id, actor_label="clerk-jilin").exists()

    page.get_by_role("link", name="亲情账户").first.click()
    page.wait_for_url(re.compile(r"/partners/family-bindings/"))
    screen("queue-after")
    assert verify_chain() == []
