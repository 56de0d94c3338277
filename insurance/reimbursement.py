"""The split of one settlement (DESIGN.md section 4, steps 1 to 6).

One pure function: no database, no clock. The caller reads the policy in
force, the citizen-year accumulator (under a row lock) and the account
balance, and passes the numbers in. Money is integer fen; shares and the
ratio are `Decimal`; every rounding is half-up to the fen. Never a float.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.utils.translation import gettext_lazy as _

from insurance.errors import InsuranceErrorCode
from insurance.models import ServiceCategory
from portal.errors import DomainError

MIN_QUANTITY = 1
MAX_QUANTITY = 9999
_FEN = Decimal(1)
_CATEGORIES = frozenset(ServiceCategory.values)


@dataclass(frozen=True)
class BillLine:
    """One line of a bill, with its catalogue entry's category and maximum price."""

    category: str
    quantity: int
    unit_price_fen: int
    max_unit_price_fen: int
    service_code: str = ""


@dataclass(frozen=True)
class PolicyTerms:
    """The numbers of one policy version that the split needs."""

    deductible_fen: int
    ratio: Decimal
    annual_cap_fen: int
    personal_account_allowed: bool
    eligible_shares: Mapping[str, Decimal]

    @classmethod
    def of(cls, policy) -> "PolicyTerms":
        """From a `ReimbursementPolicy` row (shares are stored as decimal strings)."""
        return cls(
            deductible_fen=policy.deductible_fen,
            ratio=Decimal(policy.ratio),
            annual_cap_fen=policy.annual_cap_fen,
            personal_account_allowed=policy.personal_account_allowed,
            eligible_shares={category: Decimal(str(share)) for category, share in policy.eligible_shares.items()},
        )


@dataclass(frozen=True)
class LineSplit:
    line_total_fen: int
    eligible_fen: int


@dataclass(frozen=True)
class Split:
    lines: tuple[LineSplit, ...]
    total_fen: int
    eligible_fen: int
    deductible_fen: int  # the deductible applied by this settlement (step 3)
    fund_fen: int
    account_fen: int
    self_pay_fen: int


def round_fen(amount: Decimal) -> int:
    """Half-up to the fen (0.5 fen rounds away from zero)."""
    return int(amount.quantize(_FEN, rounding=ROUND_HALF_UP))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(InsuranceErrorCode.VALIDATION_ERROR, message, status=400, field=field)


def _check_terms(policy: PolicyTerms) -> None:
    if not isinstance(policy.ratio, Decimal) or not Decimal(0) <= policy.ratio <= Decimal(1):
        raise _invalid("ratio", "The ratio must be a Decimal from 0 to 1.")
    for name in ("deductible_fen", "annual_cap_fen"):
        value = getattr(policy, name)
        if not _is_int(value) or value < 0:
            raise _invalid(name, f"{name} must be a whole number of fen, not negative.")
    for category in _CATEGORIES:
        share = policy.eligible_shares.get(category)
        if not isinstance(share, Decimal) or not Decimal(0) <= share <= Decimal(1):
            raise _invalid("eligible_shares", f"The eligible share of {category} must be a Decimal from 0 to 1.")


def _line_total(index: int, line: BillLine) -> int:
    if line.category not in _CATEGORIES:
        raise _invalid(f"lines[{index}].category", f"Unknown category {line.category!r}.")
    if not _is_int(line.quantity) or not MIN_QUANTITY <= line.quantity <= MAX_QUANTITY:
        raise _invalid(f"lines[{index}].quantity", "The quantity must be a whole number from 1 to 9999.")
    if not _is_int(line.unit_price_fen) or line.unit_price_fen < 0:
        raise _invalid(f"lines[{index}].unit_price_fen", "The unit price must be a whole number of fen, not negative.")
    if line.unit_price_fen > line.max_unit_price_fen:
        raise DomainError(
            InsuranceErrorCode.PRICE_ABOVE_MAXIMUM,
            _("Line %(line)s (%(code)s): the unit price %(price)s fen is above the catalogue maximum %(max)s fen.")
            % {
                "line": index + 1,
                "code": line.service_code or line.category,
                "price": line.unit_price_fen,
                "max": line.max_unit_price_fen,
            },
            status=422,
        )
    return line.quantity * line.unit_price_fen


def compute_split(
    *,
    lines: Sequence[BillLine],
    policy: PolicyTerms,
    deductible_used_fen: int,
    fund_used_fen: int,
    account_balance_fen: int,
    use_personal_account: bool,
) -> Split:
    """DESIGN.md section 4, steps 1 to 6, in that order.

    `deductible_used_fen` and `fund_used_fen` are the citizen's totals for the
    settlement's year so far (pending settlements included); the personal
    account pays only if the policy allows it and the citizen asked for it.
    """
    if not lines:
        raise _invalid("lines", "A bill has at least one line.")
    _check_terms(policy)
    for name, value in (
        ("deductible_used_fen", deductible_used_fen),
        ("fund_used_fen", fund_used_fen),
        ("account_balance_fen", account_balance_fen),
    ):
        if not _is_int(value) or value < 0:
            raise _invalid(name, f"{name} must be a whole number of fen, not negative.")

    # 1. Line totals and the bill's total (prices checked against the catalogue).
    line_totals = [_line_total(index, line) for index, line in enumerate(lines)]
    total = sum(line_totals)

    # 2. The eligible part, rounded line by line.
    line_eligible = [
        round_fen(Decimal(line_total) * policy.eligible_shares[line.category])
        for line, line_total in zip(lines, line_totals, strict=True)
    ]
    eligible = sum(line_eligible)

    # 3. What is left of the year's deductible.
    deductible_applied = min(eligible, max(0, policy.deductible_fen - deductible_used_fen))

    # 4. The pooled fund's share, within what is left of the year's cap.
    fund = min(
        round_fen(Decimal(eligible - deductible_applied) * policy.ratio),
        max(0, policy.annual_cap_fen - fund_used_fen),
    )

    # 5. The personal account, where the policy and the citizen allow it.
    account = min(total - fund, account_balance_fen) if policy.personal_account_allowed and use_personal_account else 0

    # 6. The rest is the citizen's.
    self_pay = total - fund - account

    return Split(
        lines=tuple(LineSplit(t, e) for t, e in zip(line_totals, line_eligible, strict=True)),
        total_fen=total,
        eligible_fen=eligible,
        deductible_fen=deductible_applied,
        fund_fen=fund,
        account_fen=account,
        self_pay_fen=self_pay,
    )
