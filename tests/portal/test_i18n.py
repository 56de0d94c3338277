"""Simplified Chinese and English: every message has a translation, key screens in Chinese carry no
English sentence, dates and numbers follow the language, the choice is remembered, e-mails too."""

from __future__ import annotations

import datetime as dt
import gettext
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone, translation

from payments.linkages import services as payment_services
from payments.models import OutboxEvent, OutboxState
from portal.models import Role
from testkit.bindings import bind, link, make_wallet, register
from testkit.screens import make_partner, sign_in

BASE_DIR = Path(settings.BASE_DIR)
PO = BASE_DIR / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
BIRTH = dt.date(1986, 3, 7)
GETTEXT_TOOLS = all(shutil.which(tool) for tool in ("xgettext", "msgmerge", "msgattrib", "msgfmt"))
needs_gettext = pytest.mark.skipif(not GETTEXT_TOOLS, reason="GNU gettext is not installed (apt-get install gettext)")


def english(client) -> None:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"


# --- Formats --------------------------------------------------------------------------------

FORMATS = Template(
    "{% load humanize %}"
    '{{ d|date:"SHORT_DATE_FORMAT" }}|{{ d|date }}|{{ t|date:"SHORT_DATETIME_FORMAT" }}|{{ t|date:"DATETIME_FORMAT" }}'
    '|{{ n|intcomma }}|{{ x|floatformat:"2g" }}'
)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("zh-hans", "1986-03-07|1986年3月7日|2026-11-05 09:04|2026-11-05 09:04:59|1,234,567|12,345.60"),
        ("en", "7 Mar 1986|7 March 1986|5 Nov 2026 09:04|5 Nov 2026 09:04:59|1,234,567|12,345.60"),
    ],
)
def test_dates_and_numbers_are_formatted_for_the_language(language, expected):
    moment = dt.datetime(2026, 11, 5, 9, 4, 59, tzinfo=timezone.get_current_timezone())
    context = Context({"d": BIRTH, "t": moment, "n": 1234567, "x": Decimal("12345.6")})
    with translation.override(language):
        assert FORMATS.render(context) == expected


def test_no_template_hard_codes_a_date_format():
    """Dates in templates name a format (SHORT_DATE_FORMAT...) so that they follow the language."""
    offenders = [
        f"{path.relative_to(BASE_DIR)}: {match}"
        for path in sorted((BASE_DIR / "templates").rglob("*.html"))
        for match in re.findall(r'\|date:"([^"]*)"', path.read_text())
        if not re.fullmatch(r"[A-Z_]+_FORMAT", match)
    ]
    assert not offenders, "hard-coded date formats:\n" + "\n".join(offenders)


@pytest.mark.django_db
def test_the_same_screen_shows_dates_and_labels_per_language(client, make_user, make_citizen):
    citizen = make_citizen("310000", name="王小明", birth=BIRTH, with_card=True)
    sign_in(client, make_user(Role.CLERK))
    url = reverse("citizen_detail", args=[citizen.pk])
    card = citizen.certificates.get()
    issued = timezone.localtime(card.issued_at)

    chinese = client.get(url).content.decode()
    english(client)
    in_english = client.get(url).content.decode()

    assert "1986-03-07" in chinese and "7 Mar 1986" not in chinese
    assert "7 Mar 1986" in in_english and "1986-03-07" not in in_english
    assert issued.strftime("%Y-%m-%d %H:%M") in chinese
    assert f"{issued.day} {issued.strftime('%b %Y %H:%M')}" in in_english
    # The e-card history shows labels, not the stored codes.
    assert "Pending activation" in in_english and ">pending_activation<" not in in_english
    assert "待激活" in chinese and ">pending_activation<" not in chinese


# --- Everything is translated ---------------------------------------------------------------


class VisibleText(HTMLParser):
    """The text a person reads: no scripts, no code-like values (`.mono`, `<pre>`, `<code>`)."""

    SKIP = {"script", "style", "pre", "code", "textarea", "option"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("placeholder", "title", "aria-label", "alt"):
            if attrs.get(name):
                self.parts.append(attrs[name])
        if tag in self.VOID:
            return
        hidden = tag in self.SKIP or "mono" in (attrs.get("class") or "").split()
        self.stack.append(hidden or (bool(self.stack) and self.stack[-1]))

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not (self.stack and self.stack[-1]) and data.strip():
            self.parts.append(data.strip())


def english_phrases(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    # Two English words in a row is a sentence or a label left untranslated; single tokens
    # (codes, "TOTP", units) are not counted.
    words = r"[A-Za-z][A-Za-z'’-]*(?:[ ,]+[A-Za-z][A-Za-z'’-]*)+"
    return [
        m.group(0)
        for part in parser.parts
        for m in re.finditer(words, part)
        if len(re.findall(r"[A-Za-z]", m.group(0))) >= 5
    ]


@pytest.fixture
def screens(db, regions, make_user, make_citizen, system_actor):
    """A national operator and the objects the key screens show (names in Chinese, as in the pilot)."""
    operator = make_user(Role.NATIONAL_OPERATOR, ("310000", "220000"), username="operator1")
    partner = make_partner("wechat", "微信支付")
    citizen = make_citizen("310000", name="王小明", with_card=True)
    linkage = payment_services.linkage_create(
        actor=system_actor, partner=partner, citizen=citizen, partner_user_ref="user-1"
    )
    event = OutboxEvent.objects.get(object_id=linkage.public_id)
    OutboxEvent.objects.filter(pk=event.pk).update(state=OutboxState.DEAD, attempts=16, last_status=500)
    wallet = make_wallet("alipay")
    holder, _ = register(regions, "310000", name="张三明")
    _, number = register(regions, "220000", name="李四光")
    binding = bind(wallet, link(wallet, holder), number, name="李四光")
    return {
        "operator": operator,
        "urls": [
            reverse("account_login"),
            reverse("citizen_search"),
            reverse("citizen_detail", args=[citizen.pk]),
            reverse("citizen_register"),
            reverse("binding_queue"),
            reverse("binding_detail", args=[binding.public_id]),
            reverse("binding_action", args=[binding.public_id, "approve"]),
            reverse("settlement_list"),
            reverse("catalogue_list"),
            reverse("facility_list"),
            reverse("policy_index"),
            reverse("staff_list"),
            reverse("partner_list"),
            reverse("partner_detail", args=[partner.code]),
            reverse("monitor_index"),
            reverse("monitor_partner", args=[partner.code]),
            reverse("monitor_event", args=[partner.code, event.public_id]),
            reverse("monitor_replay", args=[partner.code, event.public_id]),
            reverse("risk_queue"),
            reverse("mfa_index"),
        ],
    }


def test_key_screens_in_chinese_leave_no_english_phrase(client, screens):
    """Fails on any screen text not wrapped for translation, or wrapped but missing from the catalogue."""
    found = {}
    for url in screens["urls"]:
        if url != reverse("account_login"):
            sign_in(client, screens["operator"])
        response = client.get(url)
        assert response.status_code == 200, url
        phrases = english_phrases(response.content.decode())
        if phrases:
            found[url] = phrases
        if url == reverse("account_login"):
            sign_in(client, screens["operator"])
    assert not found, "English left on Chinese screens:\n" + "\n".join(
        f"{url}: {sorted(set(p))}" for url, p in found.items()
    )


def test_the_english_phrase_detector_finds_untranslated_text():
    assert english_phrases("<p>已签发 <span>No e-card has been issued.</span></p>") == ["No e-card has been issued"]
    assert english_phrases('<input placeholder="Search by name">') == ["Search by name"]
    assert english_phrases('<p class="mono">certificate.issue pending activation</p><p>42 ms · 上海</p>') == []


@needs_gettext
def test_every_message_in_the_code_has_a_chinese_translation(tmp_path):
    """makemessages over a copy of the code: no msgid of zh_Hans may be missing, empty or fuzzy."""
    copy = tmp_path / "src"
    copy.mkdir()
    for name in ("manage.py", "portal", "insurance", "payments", "backoffice", "templates", "locale"):
        source = BASE_DIR / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
        else:
            shutil.copy2(source, copy / name)
    # The copy's settings put LOCALE_PATHS inside the copy: the repository's catalogue is never touched.
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "--no-obsolete"],
        cwd=copy,
        check=True,
        capture_output=True,
    )
    po = copy / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
    missing = []
    for flag in ("--untranslated", "--only-fuzzy"):
        out = subprocess.run(
            ["msgattrib", flag, "--no-obsolete", "--no-wrap", str(po)], check=True, capture_output=True, text=True
        ).stdout
        missing += [m for m in re.findall(r'^msgid "(.+)"$', out, flags=re.M)]
    assert not missing, f"{len(missing)} msgids without Chinese:\n" + "\n".join(missing)


@needs_gettext
def test_the_compiled_catalogue_is_current(tmp_path):
    """django.mo says what django.po says (regenerate with `manage.py compilemessages`)."""
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(fresh), str(PO)], check=True, capture_output=True)
    with MO.open("rb") as committed, fresh.open("rb") as compiled:
        assert gettext.GNUTranslations(committed)._catalog == gettext.GNUTranslations(compiled)._catalog


# --- The choice is remembered -------------------------------------------------------------


@pytest.mark.django_db
def test_the_sign_in_page_has_the_language_switch_and_returns_to_the_page(client):
    login = client.get(reverse("account_login")).content.decode()
    assert f'action="{reverse("set_language")}"' in login
    assert f'name="next" value="{reverse("account_login")}"' in login

    response = client.post(reverse("set_language"), {"language": "en", "next": reverse("account_login")})

    assert response.status_code == 302 and response["Location"] == reverse("account_login")
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "en"
    assert int(cookie["max-age"]) == 365 * 24 * 3600, "remembered for a year, not for the browser session"
    assert 'lang="en"' in client.get(reverse("account_login")).content.decode()


@pytest.mark.django_db
def test_the_next_of_the_switch_keeps_the_query_string(client, make_user):
    sign_in(client, make_user(Role.CLERK))
    page = client.get(reverse("citizen_search"), {"q": "王"}).content.decode()
    assert 'name="next" value="/citizens/?q=%E7%8E%8B"' in page
    response = client.post(reverse("set_language"), {"language": "en", "next": "/citizens/?q=%E7%8E%8B"})
    assert response["Location"] == "/citizens/?q=%E7%8E%8B"


@pytest.mark.django_db
def test_the_language_survives_signing_out(client, make_user):
    sign_in(client, make_user(Role.CLERK))
    client.post(reverse("set_language"), {"language": "en", "next": "/"})

    response = client.post(reverse("account_logout"), follow=True)

    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert response.redirect_chain[-1][0].startswith(reverse("account_login"))
    assert 'lang="en"' in response.content.decode()


# --- E-mails ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "subject_word", "body_word"),
    [
        ("zh-hans", "密码", "密码"),
        ("en", "Password", "password"),
    ],
)
def test_the_password_reset_e_mail_is_in_the_chosen_language(client, make_user, language, subject_word, body_word):
    user = make_user(Role.CLERK)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.post(reverse("account_reset_password"), {"email": user.email})
    assert response.status_code == 302
    [message] = mail.outbox
    assert subject_word in message.subject
    assert body_word in message.body
    if language == "zh-hans":
        assert "Password" not in message.subject and "You're receiving" not in message.body
