"""Clerks decide family bindings of their regions (by the beneficiary's region), after a
reason and a confirmation; outsiders get 404, auditors read only."""

import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from insurance.models import CertificateState
from payments.models import BindingState, OutboxEvent
from portal.models import Role
from testkit.bindings import bind, link, make_wallet, register
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def binding(regions):
    """The holder is insured in Shanghai, the beneficiary in Jilin."""
    wechat = make_wallet("wechat")
    holder, _ = register(regions, "310000", name="张三明")
    _, number = register(regions, "220000", name="李四光")
    return bind(wechat, link(wechat, holder), number, name="李四光")


@pytest.fixture
def jilin_clerk(client, make_user):
    user = make_user(Role.CLERK, ("220000",))
    sign_in(client, user)
    return user


def test_the_queue_lists_pending_bindings_of_the_beneficiarys_region_masked(client, jilin_clerk, binding):
    response = client.get(reverse("binding_queue"))

    html = response.content.decode()
    assert response.status_code == 200
    assert binding.public_id in html
    assert "李*光" in html and "李四光" not in html
    assert binding.beneficiary.id_number_masked in html


def test_the_queue_of_another_region_does_not_list_it_and_its_pages_answer_404(client, make_user, binding):
    sign_in(client, make_user(Role.CLERK, ("310000",)))  # the holder's region is not enough

    assert binding.public_id not in client.get(reverse("binding_queue")).content.decode()
    assert client.get(reverse("binding_detail", args=[binding.public_id])).status_code == 404
    url = reverse("binding_action", args=[binding.public_id, "approve"])
    assert client.post(url, {"note": "ok", "confirmed": "yes"}).status_code == 404
    binding.refresh_from_db()
    assert binding.state == BindingState.PENDING


def test_the_queue_costs_a_fixed_number_of_queries(
    client, jilin_clerk, binding, regions, django_assert_max_num_queries
):
    wechat = binding.partner
    for name in ("王五", "赵六", "钱七"):
        holder, _ = register(regions, "310000", name=name)
        _, number = register(regions, "220000", name="李四")
        bind(wechat, link(wechat, holder), number, name="李四")
    with django_assert_max_num_queries(12):
        assert client.get(reverse("binding_queue")).status_code == 200


def test_approval_asks_for_a_reason_then_a_confirmation_then_activates_the_card(client, jilin_clerk, binding):
    url = reverse("binding_action", args=[binding.public_id, "approve"])
    assert client.get(url).status_code == 200

    missing = client.post(url, {"note": "  "})
    assert missing.context["form"].errors
    confirm = client.post(url, {"note": "documents checked"})
    assert confirm.context["step"] == "confirm"
    binding.refresh_from_db()
    assert binding.state == BindingState.PENDING

    done = client.post(url, {"note": "documents checked", "confirmed": "yes"})

    assert done.status_code == 302
    binding.refresh_from_db()
    assert (binding.state, binding.decided_by, binding.decision_note) == (
        BindingState.ACTIVE,
        jilin_clerk.username,
        "documents checked",
    )
    assert binding.beneficiary.current_certificate().state == CertificateState.ACTIVE
    assert OutboxEvent.objects.filter(type="family_binding.activated").count() == 1


def test_rejection_with_a_reason_ends_the_binding_and_it_cannot_then_be_approved(client, jilin_clerk, binding):
    client.post(
        reverse("binding_action", args=[binding.public_id, "reject"]), {"note": "no consent", "confirmed": "yes"}
    )
    binding.refresh_from_db()
    assert (binding.state, binding.end_reason) == (BindingState.REJECTED, "clerk")

    response = client.post(
        reverse("binding_action", args=[binding.public_id, "approve"]), {"note": "oops", "confirmed": "yes"}
    )
    assert response.status_code == 302
    binding.refresh_from_db()
    assert binding.state == BindingState.REJECTED


def test_a_clerk_can_end_an_active_binding(client, jilin_clerk, binding):
    client.post(reverse("binding_action", args=[binding.public_id, "approve"]), {"note": "ok", "confirmed": "yes"})
    client.post(reverse("binding_action", args=[binding.public_id, "revoke"]), {"note": "asked", "confirmed": "yes"})

    binding.refresh_from_db()
    assert (binding.state, binding.end_reason) == (BindingState.REVOKED, "clerk")


def test_an_unknown_action_is_404(client, jilin_clerk, binding):
    assert client.get(reverse("binding_action", args=[binding.public_id, "delete"])).status_code == 404


def test_auditors_read_but_cannot_decide(client, make_user, binding):
    sign_in(client, make_user(Role.AUDITOR, ("220000",)))

    detail = client.get(reverse("binding_detail", args=[binding.public_id]))
    assert detail.status_code == 200
    assert reverse("binding_action", args=[binding.public_id, "approve"]) not in detail.content.decode()
    url = reverse("binding_action", args=[binding.public_id, "approve"])
    assert client.post(url, {"note": "ok", "confirmed": "yes"}).status_code == 403
    binding.refresh_from_db()
    assert binding.state == BindingState.PENDING


def test_the_beneficiarys_page_shows_the_binding(client, jilin_clerk, binding):
    html = client.get(reverse("citizen_detail", args=[binding.beneficiary_id])).content.decode()

    assert reverse("binding_detail", args=[binding.public_id]) in html
    assert "张*明" in html


def test_the_page_language_is_chinese_by_default(client, jilin_clerk, binding):
    html = client.get(reverse("binding_detail", args=[binding.public_id])).content.decode()
    assert "亲情账户" in html


def _another_pending(binding, regions, name: str = "王五"):
    wechat = binding.partner
    holder, _ = register(regions, "310000", name=name)
    _, number = register(regions, "220000", name="李四")
    return bind(wechat, link(wechat, holder), number, name="李四")


def test_a_queue_row_opens_by_the_beneficiarys_name_not_only_its_date(client, jilin_clerk, binding):
    html = client.get(reverse("binding_queue")).content.decode()
    detail = reverse("binding_detail", args=[binding.public_id])
    assert re.search(rf'<a href="{re.escape(detail)}"[^>]*>\s*李\*光\s*</a>', html), "the name is a link"


def test_ending_is_not_offered_on_a_pending_binding(client, jilin_clerk, binding):
    html = client.get(reverse("binding_detail", args=[binding.public_id])).content.decode()
    assert reverse("binding_action", args=[binding.public_id, "approve"]) in html
    assert reverse("binding_action", args=[binding.public_id, "revoke"]) not in html
    response = client.post(
        reverse("binding_action", args=[binding.public_id, "revoke"]), {"note": "x", "confirmed": "yes"}
    )
    assert response.status_code == 302
    binding.refresh_from_db()
    assert binding.state == BindingState.PENDING


def test_after_a_decision_the_clerk_goes_to_the_next_pending_request(client, jilin_clerk, binding, regions):
    following = _another_pending(binding, regions)
    done = client.post(
        reverse("binding_action", args=[binding.public_id, "approve"]), {"note": "ok", "confirmed": "yes"}
    )
    assert done["Location"] == reverse("binding_detail", args=[following.public_id])
    page = client.get(done["Location"])
    assert "亲情账户已批准。" in page.content.decode()

    last = client.post(
        reverse("binding_action", args=[following.public_id, "reject"]), {"note": "no", "confirmed": "yes"}
    )
    assert last["Location"] == reverse("binding_queue")
    assert [str(m) for m in get_messages(last.wsgi_request)] == ["亲情账户已驳回。"]


def test_the_next_request_is_never_one_of_another_region(client, jilin_clerk, binding, regions):
    wechat = binding.partner
    holder, _ = register(regions, "220000", name="王五")
    _, number = register(regions, "310000", name="李四")
    bind(wechat, link(wechat, holder), number, name="李四")  # its beneficiary is in Shanghai
    done = client.post(
        reverse("binding_action", args=[binding.public_id, "approve"]), {"note": "ok", "confirmed": "yes"}
    )
    assert done["Location"] == reverse("binding_queue")
