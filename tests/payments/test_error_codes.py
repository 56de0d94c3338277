"""The error codes are enums with stable values, and the converted modules raise only members."""

import ast
import json
import re
from enum import StrEnum
from pathlib import Path

import pytest

from payments.api.problems import ApiError, ProblemCode, exception_handler
from payments.bindings.errors import BindingErrorCode
from payments.delivery.errors import DeliveryErrorCode
from payments.keys import PortalKeyErrorCode
from payments.linkages.errors import LinkageErrorCode
from payments.partners.errors import PartnerErrorCode
from payments.premiums.errors import PremiumErrorCode
from payments.risk.errors import RiskErrorCode
from payments.settlements.errors import SettlementErrorCode
from payments.tokens.errors import TokenErrorCode
from portal.errors import DomainError, InvalidTransition
from portal.staff_errors import StaffErrorCode

ENUMS: list[type[StrEnum]] = [
    ProblemCode,
    PartnerErrorCode,
    LinkageErrorCode,
    BindingErrorCode,
    TokenErrorCode,
    PremiumErrorCode,
    DeliveryErrorCode,
    RiskErrorCode,
    SettlementErrorCode,
    PortalKeyErrorCode,
    StaffErrorCode,
]

ROOT = Path(__file__).resolve().parents[2]
# The modules whose raise sites name their code by an enum member.
CONVERTED = [
    "payments/keys.py",
    "payments/api/auth.py",
    "payments/api/base.py",
    "payments/api/idempotency.py",
    "payments/ledger/services.py",
    "payments/api/lists.py",
    "payments/api/problems.py",
    "portal/services.py",
    # every subject's services and API, whatever subjects there are
    *sorted(str(p.relative_to(ROOT)) for m in ("services", "api") for p in (ROOT / "payments").glob(f"*/{m}.py")),
    "payments/catalogue/api.py",
]
RAISERS = {"DomainError", "InvalidTransition", "ApiError", "_unauthorized", "problem_response"}


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_each_value_is_its_members_name_in_snake_case(enum):
    for member in enum:
        assert member.value == member.name.lower()
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", member.value)


@pytest.mark.parametrize("path", CONVERTED)
def test_converted_modules_name_no_code_as_a_string_literal(path):
    tree = ast.parse((ROOT / path).read_text())  # a module renamed away fails here, not silently
    literal = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name not in RAISERS:
            continue
        code = node.args[0] if name in {"DomainError", "_unauthorized"} else (node.args[1:2] or [None])[0]
        if isinstance(code, ast.Constant) and isinstance(code.value, str):
            literal.append((node.lineno, code.value))
    assert literal == []


def test_domain_error_keeps_the_plain_value():
    error = DomainError(BindingErrorCode.BINDING_EXISTS, "An open family binding already exists.")
    assert type(error.code) is str
    assert error.code == "binding_exists" == BindingErrorCode.BINDING_EXISTS
    assert str(error) == "binding_exists: An open family binding already exists."
    assert DomainError(TokenErrorCode.TOKEN_EXPIRED).message == "token_expired"
    assert InvalidTransition("family binding", "active", "approve").code == "invalid_state"


@pytest.mark.parametrize("code", [ProblemCode.NOT_FOUND, "not_found"])
def test_api_error_renders_an_enum_and_a_string_alike(code):
    error = ApiError(404, code, "Not found.", hint="x")
    assert type(error.problem_code) is str
    response = exception_handler(error, {})
    assert response.status_code == 404
    assert type(response.data["code"]) is str
    body = json.loads(json.dumps(response.data))
    assert body == {
        "type": "https://ecard.example.gov.cn/problems/not_found",
        "title": "Not found",
        "status": 404,
        "detail": "Not found.",
        "code": "not_found",
        "hint": "x",
    }
