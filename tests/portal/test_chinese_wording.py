"""Finding 2 of issue 16: the Chinese a back-office user trips over, per screen (docs/glossary.md)."""

import pytest
from django.urls import reverse

from portal.models import Role
from testkit.screens import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, make_user):
    user = make_user(Role.NATIONAL_OPERATOR, ("310000",))
    sign_in(client, user)
    return user


def test_a_short_identity_number_is_refused_in_plain_chinese(client, operator):
    page = client.post(reverse("citizen_register"), {"id_number": "31010119860307", "name": "王小明"})
    text = page.content.decode()
    assert "身份证号应为18位。" in text
    assert "确保该变量" not in text


def test_the_risk_filter_calls_an_undecided_flag_pending(client, operator):
    text = client.get(reverse("risk_queue")).content.decode()
    assert ">待处理<" in text
    assert ">查看<" not in text


def test_facilities_services_and_partners_have_a_name_people_a_full_name(client, operator):
    for url in (reverse("facility_list"), reverse("catalogue_list"), reverse("partner_list")):
        text = client.get(url).content.decode()
        assert "<th>名称</th>" in text and "姓名" not in text, url
    assert "<th>姓名</th>" in client.get(reverse("citizen_search")).content.decode()


def test_sign_in_asks_for_a_username_or_email(client):
    text = client.get(reverse("account_login")).content.decode()
    assert "用户名或邮箱" in text
    assert "登录:" not in text


def test_chinese_form_labels_end_with_the_full_width_colon_and_english_ones_with_a_colon(client, operator):
    text = client.get(reverse("citizen_register")).content.decode()
    assert 'for="id_name">姓名：</label>' in text
    client.cookies["django_language"] = "en"
    assert 'for="id_name">Name:</label>' in client.get(reverse("citizen_register")).content.decode()
