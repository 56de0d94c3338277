"""A citizen's name holds visible text only, however it arrives: the register and edit services
(whatever calls them) and the rows of an import refuse control and invisible characters with the
same check as the screens' forms (portal/text.py)."""

import pytest

from insurance import services
from insurance.imports.validation import validate_row
from insurance.models import Citizen
from portal.errors import DomainError
from testkit.citizens import new_id_number

pytestmark = pytest.mark.django_db

HOSTILE_NAMES = ["张\x1b[2J三", "张\u202e三", "张\x00三", "\u200b", "张\ufffd三", "张\r\n三"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_registering_a_citizen_refuses_a_name_with_control_or_invisible_characters(regions, system_actor, name):
    with pytest.raises(DomainError) as refused:
        services.citizen_register(
            actor=system_actor,
            id_number=new_id_number("310000"),
            name=name,
            phone="",
            region=regions["310000"],
            scheme="resident",
        )
    assert refused.value.extra.get("field") == "name"
    assert not Citizen.objects.exists()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_editing_a_citizen_refuses_the_same_names(make_citizen, system_actor, name):
    citizen = make_citizen("310000", name="王小明")
    with pytest.raises(DomainError):
        services.citizen_update(actor=system_actor, citizen=citizen, name=name, phone="", scheme="resident")
    citizen.refresh_from_db()
    assert citizen.name == "王小明"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_an_import_row_with_such_a_name_is_refused_on_its_name(regions, name):
    raw = {"id_number": new_id_number("310000"), "name": name, "phone": "", "region_code": "310000"}
    row, errors = validate_row(2, {**raw, "scheme": "resident"}, regions)
    assert row is None
    assert [error.column for error in errors] == ["name"]


def test_a_name_with_a_middle_dot_or_a_rare_character_is_kept(regions, system_actor):
    for name in ("阿依古丽·买买提", "𠀾𪚥", "O'Neil-Smith"):
        citizen = services.citizen_register(
            actor=system_actor,
            id_number=new_id_number("310000"),
            name=name,
            phone="",
            region=regions["310000"],
            scheme="resident",
        )
        assert citizen.name == name
