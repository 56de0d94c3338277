"""Money shown as yuan from integer fen, without float."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from portal.money import format_yuan


def test_grouped_for_reading_and_plain_for_forms():
    assert format_yuan(123456) == "1,234.56"
    assert format_yuan(123456, grouped=False) == "1234.56"
    assert format_yuan(-5) == "-0.05"
    assert format_yuan(None) == "—" and format_yuan(None, empty="") == ""


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_the_text_is_exactly_the_amount(fen):
    assert Decimal(format_yuan(fen).replace(",", "")) * 100 == fen
    assert format_yuan(fen, grouped=False) == format_yuan(fen).replace(",", "")
