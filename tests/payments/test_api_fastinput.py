"""The fast path for settlement request bodies (payments/api/fastinput.py) against DRF itself.

For any body, the fast path either declines (None: the view asks the serializer) or gives exactly
the serializer's `validated_data`, and never a dict for a body the serializer refuses. The bodies
are mostly valid ones with one or more mutations (the edges DRF decides on: padding, blanks,
lengths, bounds, booleans for integers, unknown and missing keys, line counts) and random JSON.
"""

import copy

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.settlement_bench import LARGE_BILL, SMALL_BILL
from payments.api import fastinput as api_fastinput
from payments.api.fastinput import settlement_confirm_input, settlement_create_input
from payments.settlements import services as settlements
from payments.settlements.api import (
    SettlementConfirmInputSerializer,
    SettlementCreateInputSerializer,
    SettlementLineInputSerializer,
)

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A QR token as minted (base64url, ~300 characters), and one with odd but valid characters.
QR_TOKEN = "v1." + "Ab3-_x9Z" * 37


def serializer_result(serializer_class, body: object) -> dict | None:
    """What `parse_input` gives for `body`: the validated data, or None for a refusal."""
    if not isinstance(body, dict):
        return None
    serializer = serializer_class(data=body)
    return serializer.validated_data if serializer.is_valid() else None


def assert_same(fast, serializer_class, body: object) -> dict | None:
    pristine = copy.deepcopy(body)
    fast_result = fast(body)
    assert body == pristine  # the fast path changes nothing in the body
    expected = serializer_result(serializer_class, body)
    if fast_result is not None:
        assert expected is not None, f"fast path accepted what DRF refuses: {body!r}"
        assert fast_result == expected
        assert list(fast_result) == list(expected)  # the same keys in the same order
        for name, value in fast_result.items():
            assert type(value) is type(expected[name]), name
        for fast_line, line in zip(fast_result.get("lines", []), expected.get("lines", []), strict=True):
            assert list(fast_line) == list(line)
            assert all(type(fast_line[name]) is type(line[name]) for name in line)
    return fast_result


# --- Strategies -------------------------------------------------------------------------------

WHITESPACE = st.sampled_from(
    [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003", "\u3000", "\u200b", "\ufeff"]
)  # the last two are not str.isspace(): DRF keeps them
ODD = st.sampled_from(["\x00", "\ud800", "\udfff", "é", "医", "😀", "\u0301"])


def texts(max_size: int) -> st.SearchStrategy[str]:
    """Strings around a `max_size` limit, padded, blank, with odd characters, or anything."""
    plain = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=max_size)
    around_limit = st.integers(min_value=max(0, max_size - 2), max_value=max_size + 2).map(lambda n: "x" * n)
    padded = (
        st.tuples(st.lists(WHITESPACE, max_size=2), plain, st.lists(WHITESPACE, max_size=2))
        .filter(lambda parts: parts[0] or parts[2])
        .map(lambda parts: "".join(parts[0]) + parts[1] + "".join(parts[2]))
    )
    return st.one_of(
        plain,
        around_limit,
        st.just(""),
        st.lists(WHITESPACE, min_size=1, max_size=3).map("".join),
        padded,
        st.tuples(plain, ODD, plain).map("".join),
        st.text(max_size=max_size + 3),
    )


def integers(low: int, high: int) -> st.SearchStrategy[object]:
    """Integers at and around the bounds, anywhere, and what is not an integer."""
    return st.one_of(
        st.sampled_from([low - 1, low, low + 1, high - 1, high, high + 1, 10**30, -(10**30)]),
        st.integers(min_value=low, max_value=high),
        st.integers(),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([1.0, 0.0, "1", "1.0", " 2 ", "", None, [], {}, [1]]),
    )


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

JUNK_KEYS = st.sampled_from(["", "id", "Token", "lines ", "extra", "service_code", "self_pay_fen", "quantity"])


def change(draw, body: dict, fields: dict[str, st.SearchStrategy]) -> None:
    """One change to `body`: a field redrawn (most often), removed, set to null, or an unknown key added."""
    kind = draw(st.sampled_from(["redraw", "redraw", "redraw", "remove", "unknown", "null"]))
    name = draw(st.sampled_from(sorted(fields)))
    if kind == "redraw":
        body[name] = draw(fields[name])
    elif kind == "remove":
        body.pop(name, None)
    elif kind == "unknown":
        body[draw(JUNK_KEYS)] = draw(json_leaves)
    else:
        body[name] = None


@st.composite
def mutated(draw, valid: dict, fields: dict[str, st.SearchStrategy], optional: frozenset = frozenset()) -> dict:
    """`valid` with one change, or with zero to three (an optional field possibly left out)."""
    body = dict(valid)
    for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2, 3]))):
        change(draw, body, fields)
    for name in optional:
        if name in body and draw(st.integers(min_value=0, max_value=3)) == 0:
            del body[name]
    return body


@st.composite
def one_line_mutated(draw, valid: dict) -> dict:
    """`valid` (a create body) with one change in one of its lines."""
    lines = [dict(line) for line in valid["lines"]]
    change(draw, lines[draw(st.integers(min_value=0, max_value=len(lines) - 1))], LINE_FIELDS)
    return {**valid, "lines": lines}


valid_lines = st.builds(
    dict,
    service_code=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32),
    quantity=st.integers(min_value=1, max_value=9999),
    unit_price_fen=st.integers(min_value=0, max_value=api_fastinput.MAX_FEN),
)
LINE_FIELDS = {
    "service_code": texts(32),
    "quantity": integers(1, 9999),
    "unit_price_fen": integers(0, api_fastinput.MAX_FEN),
}
lines = st.one_of(
    st.lists(valid_lines.flatmap(lambda line: mutated(line, LINE_FIELDS)), min_size=1, max_size=4),
    st.lists(valid_lines, min_size=1, max_size=4),
    st.lists(valid_lines, min_size=settlements.MAX_LINES - 1, max_size=settlements.MAX_LINES + 1),
    st.just([]),
    st.lists(json_values, max_size=3),
    json_values,
)
CREATE_FIELDS = {
    "token": st.one_of(st.just(QR_TOKEN), texts(300), st.integers(), st.none(), st.booleans()),
    "facility_code": texts(32),
    "lines": lines,
    "use_personal_account": st.one_of(
        st.booleans(), st.integers(min_value=-1, max_value=2), st.sampled_from(["true", "false", "", None, 1.0])
    ),
}
valid_create = st.builds(
    dict,
    token=st.one_of(
        st.just(QR_TOKEN), st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)))
    ),
    facility_code=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32),
    lines=st.one_of(
        st.lists(valid_lines, min_size=1, max_size=5), st.lists(valid_lines, min_size=1, max_size=settlements.MAX_LINES)
    ),
    use_personal_account=st.booleans(),
)
create_bodies = st.one_of(
    valid_create.flatmap(lambda body: mutated(body, CREATE_FIELDS, frozenset({"use_personal_account"}))),
    valid_create.flatmap(one_line_mutated),
    json_values,
)

CONFIRM_FIELDS = {
    "partner_transaction_id": texts(128),
    "self_pay_fen": integers(0, 10**18),
}
valid_confirm = st.builds(
    dict,
    partner_transaction_id=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=128
    ),
    self_pay_fen=st.integers(min_value=0, max_value=10**18),
)
confirm_bodies = st.one_of(valid_confirm.flatmap(lambda body: mutated(body, CONFIRM_FIELDS)), json_values)


# --- Properties -------------------------------------------------------------------------------


def outcome(fast: dict | None, drf: dict | None) -> str:
    """For --hypothesis-show-statistics: how the generated bodies spread over the cases."""
    if fast is not None:
        return "fast path"
    return "declined, DRF accepts" if drf is not None else "declined, DRF refuses"


@PROPERTY
@given(body=create_bodies)
def test_create_fast_path_is_the_serializer_or_declines(body):
    event(
        outcome(
            assert_same(settlement_create_input, SettlementCreateInputSerializer, body),
            serializer_result(SettlementCreateInputSerializer, body),
        )
    )


@PROPERTY
@given(body=confirm_bodies)
def test_confirm_fast_path_is_the_serializer_or_declines(body):
    event(
        outcome(
            assert_same(settlement_confirm_input, SettlementConfirmInputSerializer, body),
            serializer_result(SettlementConfirmInputSerializer, body),
        )
    )


@settings(max_examples=100, deadline=None)
@given(body=valid_create)
def test_create_fast_path_takes_every_plain_body(body):
    """Printable ASCII codes, any token without NUL or surrogates: the fast path is used."""
    assert assert_same(settlement_create_input, SettlementCreateInputSerializer, body) is not None


# --- Ordinary bodies are taken ----------------------------------------------------------------


def test_the_bench_bodies_take_the_fast_path():
    for bill in (SMALL_BILL, LARGE_BILL):
        for extra in ({"use_personal_account": True}, {"use_personal_account": False}, {}):
            body = {"token": QR_TOKEN, "facility_code": "H310000001", "lines": bill, **extra}
            result = assert_same(settlement_create_input, SettlementCreateInputSerializer, body)
            assert result == {
                "token": QR_TOKEN,
                "facility_code": "H310000001",
                "lines": bill,
                "use_personal_account": extra.get("use_personal_account", False),
            }
    confirm = {"partner_transaction_id": "wallet-txn-0001", "self_pay_fen": 4321}
    assert assert_same(settlement_confirm_input, SettlementConfirmInputSerializer, confirm) == confirm
    assert (
        assert_same(
            settlement_confirm_input,
            SettlementConfirmInputSerializer,
            {"partner_transaction_id": "t", "self_pay_fen": 0},
        )
        is not None
    )


def test_edges_are_left_to_drf_or_agree():
    base = {"token": QR_TOKEN, "facility_code": "H310000001", "lines": SMALL_BILL}
    declined = [
        {**base, "facility_code": " H310000001"},  # DRF trims: its result differs from the input
        {**base, "facility_code": "x" * 33},
        {**base, "lines": []},
        {**base, "lines": SMALL_BILL * 26},  # 104 lines
        {**base, "use_personal_account": 1},
        {**base, "unknown": 1},
        {**base, "lines": [{**SMALL_BILL[0], "quantity": True}]},
        {**base, "lines": [{**SMALL_BILL[0], "quantity": 1.0}]},
        {**base, "lines": [{**SMALL_BILL[0], "unit_price_fen": api_fastinput.MAX_FEN + 1}]},
        {**base, "lines": [{**SMALL_BILL[0], "note": "x"}]},
        {key: value for key, value in base.items() if key != "token"},
        {**base, "token": "abc\x00"},
    ]
    for body in declined:
        assert assert_same(settlement_create_input, SettlementCreateInputSerializer, body) is None, body
    accepted = [
        {**base, "token": ""},  # allow_blank, no trimming: DRF keeps it as is
        {**base, "token": "  padded  "},
        {**base, "facility_code": "x" * 32, "lines": SMALL_BILL * 25},  # 100 lines
        {**base, "lines": [{**SMALL_BILL[0], "quantity": 9999, "unit_price_fen": api_fastinput.MAX_FEN}]},
        {**base, "facility_code": "医院\u200b"},  # U+200B is not whitespace for str.strip()
    ]
    for body in accepted:
        assert assert_same(settlement_create_input, SettlementCreateInputSerializer, body) is not None, body


# --- The bounds are the serializers' ----------------------------------------------------------


def _char(field) -> tuple:
    return type(field).__name__, field.max_length, field.min_length, field.trim_whitespace, field.allow_blank


def _int(field) -> tuple:
    return type(field).__name__, field.min_value, field.max_value


def test_the_fast_path_mirrors_the_serializer_fields():
    """If a serializer field changes, the fast path must change with it: this fails first."""
    create = SettlementCreateInputSerializer().fields
    assert list(create) == ["token", "facility_code", "lines", "use_personal_account"]
    assert _char(create["token"]) == ("StrictCharField", None, None, False, True)
    assert _char(create["facility_code"]) == (
        "StrictCharField",
        api_fastinput.FACILITY_CODE_MAX_LENGTH,
        None,
        True,
        False,
    )
    assert create["lines"].max_length == settlements.MAX_LINES and create["lines"].min_length is None
    assert create["lines"].allow_empty is False
    assert (create["use_personal_account"].required, create["use_personal_account"].default) == (False, False)
    line = SettlementLineInputSerializer().fields
    assert list(line) == ["service_code", "quantity", "unit_price_fen"]
    assert _char(line["service_code"]) == ("StrictCharField", api_fastinput.SERVICE_CODE_MAX_LENGTH, None, True, False)
    assert _int(line["quantity"]) == ("StrictIntegerField", *api_fastinput.QUANTITY_RANGE)
    assert _int(line["unit_price_fen"]) == ("StrictIntegerField", *api_fastinput.UNIT_PRICE_FEN_RANGE)
    confirm = SettlementConfirmInputSerializer().fields
    assert list(confirm) == ["partner_transaction_id", "self_pay_fen"]
    assert _char(confirm["partner_transaction_id"]) == (
        "ReferenceField",
        api_fastinput.PARTNER_TRANSACTION_ID_MAX_LENGTH,
        None,
        True,
        False,
    )
    assert _int(confirm["self_pay_fen"]) == ("StrictIntegerField", *api_fastinput.SELF_PAY_FEN_RANGE)
    for serializer in (
        SettlementCreateInputSerializer(),
        SettlementLineInputSerializer(),
        SettlementConfirmInputSerializer(),
    ):
        for name, field in serializer.fields.items():
            assert not field.allow_null and not field.read_only and field.source == name
            assert getattr(serializer, "validate_" + name, None) is None
        assert not getattr(type(serializer), "Meta", None)
