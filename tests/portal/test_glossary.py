"""The Chinese catalogue follows docs/glossary.md, and no Chinese screen text is left in English.

The glossary's table is the source of the pairs: each row names the Chinese the screens
use for a term, the English words whose every catalogue entry must carry it, and the
entries whose Chinese must be exactly it (checked through Django's own lookup, so that
our overrides of Django's and allauth's wording are what a reader sees)."""

import gettext
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

ROOT = Path(__file__).resolve().parents[2]
GLOSSARY = ROOT / "docs" / "glossary.md"
CELL = re.compile(r"(?<!\\)\|")
CODE = re.compile(r"`([^`]+)`")
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
PLACEHOLDER = re.compile(r"%\(\w+\)[sdf]|%[sd]|\{\w*\}")
# Codes and names the Chinese screens show unchanged (docs/glossary.md, "Codes that stay").
ALLOWED_WORDS = {"CSV", "XLSX", "TOTP", "JSON", "URL", "API", "IP", "QR", "ID", "HMAC", "SHA", "Webhook", "UTC"}


@dataclass(frozen=True)
class Term:
    chinese: str
    english: str
    screens: str
    words: tuple[str, ...]
    exactly: tuple[str, ...]


def glossary_terms() -> list[Term]:
    text = GLOSSARY.read_text(encoding="utf-8")
    table = text.split("## Domain terms", 1)[1].split("\n## ", 1)[0]
    terms = []
    for line in table.splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in CELL.split(line.strip().strip("|"))]
        if cells[0].startswith("中文"):
            continue  # the header
        zh, en, screens, words, exactly = cells[:5]
        terms.append(
            Term(
                chinese=zh,
                english=en,
                screens=screens,
                words=tuple(CODE.findall(words)),
                exactly=tuple(w.replace("\\|", "|") for w in CODE.findall(exactly)),
            )
        )
    return terms


def our_catalogue() -> dict[str, str]:
    """msgid (without its context) → msgstr, from our compiled zh_Hans catalogue; plural forms each."""
    mo = Path(settings.LOCALE_PATHS[0]) / "zh_Hans" / "LC_MESSAGES" / "django.mo"
    with mo.open("rb") as fh:
        catalog = gettext.GNUTranslations(fh)._catalog  # type: ignore[attr-defined]
    entries: dict[str, str] = {}
    for key, msgstr in catalog.items():
        msgid = key[0] if isinstance(key, tuple) else key
        if msgid:
            entries[f"{msgid}#{key[1]}" if isinstance(key, tuple) else msgid] = msgstr
    return entries


def in_chinese(entry: str) -> str:
    context, _, msgid = entry.rpartition("|")
    with translation.override("zh-hans"):
        return translation.pgettext(context, msgid) if context else translation.gettext(msgid)


def test_the_glossary_table_is_read():
    terms = glossary_terms()
    assert len(terms) >= 20
    assert any(t.screens == "待处理" and "risk flag state|Open" in t.exactly for t in terms)
    assert all(t.chinese and t.english and t.screens for t in terms)


@pytest.mark.parametrize(
    "entry, expected",
    [(entry, term.screens) for term in glossary_terms() for entry in term.exactly],
)
def test_the_catalogue_uses_the_glossary_term(entry, expected):
    assert in_chinese(entry) == expected


@pytest.mark.parametrize(
    "word, expected",
    [(word, term.screens) for term in glossary_terms() for word in term.words],
)
def test_every_entry_with_a_glossary_word_uses_its_chinese_term(word, expected):
    pattern = re.compile(rf"\b{re.escape(word)}s?\b", re.IGNORECASE)
    against = {
        msgid: msgstr
        for msgid, msgstr in our_catalogue().items()
        if pattern.search(msgid.rpartition("\x04")[2]) and expected not in msgstr
    }
    assert against == {}


def test_no_chinese_translation_is_left_in_english():
    left_in_english = {}
    for msgid, msgstr in our_catalogue().items():
        if not msgstr.strip() or CJK.search(msgstr):
            continue
        words = set(re.findall(r"[A-Za-z]+", PLACEHOLDER.sub("", msgstr)))
        if words - ALLOWED_WORDS:
            left_in_english[msgid] = msgstr
    assert left_in_english == {}


def test_a_translation_in_english_would_be_caught():
    assert not CJK.search("bulk import") and {"bulk", "import"} - ALLOWED_WORDS
    assert (
        CJK.search("验证码错误。")
        and not set(re.findall(r"[A-Za-z]+", PLACEHOLDER.sub("", "%(n)s CSV"))) - ALLOWED_WORDS
    )
