"""GB 11643 identity numbers: property-based tests of the validator."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insurance.identity import (
    EARLIEST_BIRTH_DATE,
    InvalidIdentityNumber,
    check_character,
    make_identity_number,
    parse_identity_number,
    province_prefixes,
)

TODAY = dt.date(2025, 6, 15)
PROVINCES = sorted(province_prefixes())

area_codes = st.builds(
    lambda province, rest: province + rest,
    st.sampled_from(PROVINCES),
    st.text(alphabet="0123456789", min_size=4, max_size=4),
)
birth_dates = st.dates(min_value=EARLIEST_BIRTH_DATE, max_value=TODAY)
sequences = st.integers(min_value=0, max_value=999)
valid_numbers = st.builds(make_identity_number, area_codes, birth_dates, sequences)

# The check alphabet, plus characters a typist or a copy-paste may bring in:
# lowercase letters, a space, full-width and Arabic-Indic digits, a dash.
REPLACEMENTS = "0123456789X" + "xaO -" + "０１９" + "٣"


@settings(max_examples=300)
@given(area=area_codes, birth=birth_dates, sequence=sequences)
def test_every_generated_number_is_valid_with_its_birth_date_and_sex(area, birth, sequence):
    number = make_identity_number(area, birth, sequence)

    parsed = parse_identity_number(number, today=TODAY)

    assert parsed.value == number
    assert parsed.birth_date == birth
    assert parsed.sex == ("M" if sequence % 2 == 1 else "F")


@settings(max_examples=500)
@given(number=valid_numbers, position=st.integers(min_value=0, max_value=17), replacement=st.sampled_from(REPLACEMENTS))
def test_every_single_character_change_of_a_valid_number_is_refused(number, position, replacement):
    changed = number[:position] + replacement + number[position + 1 :]
    if changed.upper() == number or (position == 17 and replacement == "x" and number[17] == "X"):
        return  # not a change (lowercase x is the same check character)

    with pytest.raises(InvalidIdentityNumber):
        parse_identity_number(changed, today=TODAY)


def test_every_single_character_change_at_every_position_is_refused_exhaustively():
    number = make_identity_number("310101", dt.date(1985, 7, 20), 123)
    for position in range(18):
        for replacement in REPLACEMENTS:
            changed = number[:position] + replacement + number[position + 1 :]
            if changed.upper() == number:
                continue
            with pytest.raises(InvalidIdentityNumber):
                parse_identity_number(changed, today=TODAY)


def test_a_lowercase_x_check_character_is_accepted_and_normalised():
    # Find a sequence whose check character is X.
    number = next(n for s in range(1000) if (n := make_identity_number("110105", dt.date(1990, 3, 1), s)).endswith("X"))

    parsed = parse_identity_number(" " + number[:17] + "x ", today=TODAY)

    assert parsed.value == number


def test_a_birth_date_in_the_future_is_refused():
    number = make_identity_number("310101", TODAY + dt.timedelta(days=1), 11)

    with pytest.raises(InvalidIdentityNumber) as excinfo:
        parse_identity_number(number, today=TODAY)

    assert excinfo.value.code == "birth_date"


def test_a_birth_date_of_today_is_accepted():
    assert parse_identity_number(make_identity_number("310101", TODAY, 11), today=TODAY).birth_date == TODAY


def test_a_birth_date_before_1900_is_refused():
    with pytest.raises(InvalidIdentityNumber) as excinfo:
        parse_identity_number(make_identity_number("310101", dt.date(1899, 12, 31), 11), today=TODAY)
    assert excinfo.value.code == "birth_date"


@pytest.mark.parametrize("date_text", ["19900230", "19901301", "19900001", "19900100", "19000229", "20230229"])
def test_an_impossible_birth_date_is_refused(date_text):
    first17 = f"310101{date_text}123"
    number = first17 + check_character(first17)

    with pytest.raises(InvalidIdentityNumber) as excinfo:
        parse_identity_number(number, today=TODAY)

    assert excinfo.value.code == "birth_date"


def test_a_leap_day_birth_date_is_accepted():
    assert parse_identity_number(make_identity_number("310101", dt.date(2000, 2, 29), 2), today=TODAY).sex == "F"


@pytest.mark.parametrize("prefix", ["00", "10", "19", "20", "38", "66", "80", "99"])
def test_an_unknown_province_prefix_is_refused(prefix):
    number = make_identity_number(prefix + "0101", dt.date(1980, 1, 1), 5)

    with pytest.raises(InvalidIdentityNumber) as excinfo:
        parse_identity_number(number, today=TODAY)

    assert excinfo.value.code == "region"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "31010119850720123",
        "3101011985072012345",
        "31010119850720123\n5",
        "X10101198507201235",
        "31010119850720123Y",
    ],
)
def test_a_malformed_number_is_refused_with_the_format_code(raw):
    with pytest.raises(InvalidIdentityNumber) as excinfo:
        parse_identity_number(raw, today=TODAY)
    assert excinfo.value.code == "format"


def test_full_width_digits_are_refused_even_when_the_checksum_would_match():
    number = make_identity_number("310101", dt.date(1985, 7, 20), 123)
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in number)

    with pytest.raises(InvalidIdentityNumber) as excinfo:
        parse_identity_number(full_width, today=TODAY)

    assert excinfo.value.code == "format"


def test_the_check_character_follows_iso_7064_mod_11_2_on_a_published_example():
    # The example number of GB 11643-1999, appendix.
    assert check_character("11010519491231002") == "X"
    assert parse_identity_number("11010519491231002X", today=TODAY).sex == "F"
