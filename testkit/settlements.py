"""Set-up for the settlement, ledger, premium and dashboard tests: a facility, a small catalogue,
this year's policies, linked citizens with a personal-account balance, and QR tokens."""

import datetime as dt
import secrets
from dataclasses import dataclass

from insurance import catalogue
from insurance import services as insurance_services
from insurance.catalogue import shanghai_today
from insurance.models import Citizen, Facility
from payments.bindings.services import family_binding_approve
from payments.ledger import services as ledger
from payments.linkages.services import linkage_create
from payments.models import CitizenYearAccumulator, FamilyBinding, Partner, PartnerKind, PersonalAccount, WalletLinkage
from payments.settlements.services import LineInput
from payments.tokens import services as qr
from portal.actors import Actor
from testkit.citizens import new_id_number

SYSTEM = Actor.system("tests")
DEDUCTIBLE = 10_000
CAP = 50_000
PREMIUM = 38_000

# code: (category, max unit price)
SERVICES = {
    "REG": ("registration", 5_000),
    "DRUGA": ("drug_a", 20_000),
    "DRUGB": ("drug_b", 20_000),
    "NONCAT": ("non_catalogue", 20_000),
}


@dataclass
class World:
    facility: Facility
    year: int


def publish_policies(regions, region_code: str = "310000", year: int | None = None, **overrides) -> None:
    year = year or shanghai_today().year
    for scheme in ("employee", "resident"):
        values = {
            "deductible_fen": DEDUCTIBLE,
            "ratio": "0.70",
            "annual_cap_fen": CAP,
            "personal_account_allowed": True,
            "premium_fen": PREMIUM if scheme == "resident" else None,
            **overrides,
        }
        catalogue.policy_create_version(
            actor=SYSTEM,
            region=regions[region_code],
            scheme=scheme,
            year=year,
            effective_from=dt.date(year, 1, 1),
            **values,
        )


def build_world(regions) -> World:
    """Services of each category, one facility in 310000 and this year's policies there (the
    `world` fixture; the portal's signing key must exist)."""
    for code, (category, max_price) in SERVICES.items():
        catalogue.service_create(
            actor=SYSTEM,
            code=code,
            name_zh=code,
            name_en=code,
            category=category,
            unit="次",
            max_unit_price_fen=max_price,
        )
    facility = catalogue.facility_create(
        actor=SYSTEM, code="H310-1", name_zh="医院", name_en="Hospital", kind="hospital", region=regions["310000"]
    )
    publish_policies(regions)
    return World(facility=facility, year=shanghai_today().year)


def make_wallet(kind: str = PartnerKind.WALLET) -> Partner:
    code = f"w{secrets.token_hex(4)}"
    return Partner.objects.create(code=code, name=code, kind=kind)


def insured(
    regions,
    *,
    region_code: str = "310000",
    scheme: str = "employee",
    balance: int = 0,
    name: str = "张三明",
    birth: dt.date | None = None,
) -> tuple[Citizen, str]:
    """A citizen with a pending card and a personal-account balance; returns it and its identity number."""
    id_number = new_id_number(region_code, birth)
    citizen = insurance_services.citizen_register(
        actor=SYSTEM, id_number=id_number, name=name, phone="13800000000", region=regions[region_code], scheme=scheme
    )
    insurance_services.certificate_issue(actor=SYSTEM, citizen=citizen, reason="test")
    if balance:
        ledger.account_balance_set(actor=SYSTEM, citizen=citizen, balance_fen=balance)
    return citizen, id_number


def linked(partner: Partner, regions, **kwargs) -> WalletLinkage:
    """A citizen linked to the partner (which activates the card)."""
    citizen, _ = insured(regions, **kwargs)
    return linkage_create(actor=SYSTEM, partner=partner, citizen=citizen, partner_user_ref=f"u-{citizen.pk}")


def bound(partner: Partner, holder: WalletLinkage, regions, **kwargs) -> FamilyBinding:
    """An active family binding made through the holder's linkage for a new beneficiary."""
    from payments.bindings.services import family_binding_create

    beneficiary, id_number = insured(regions, birth=dt.date(1950, 3, 3), name="李四", **kwargs)
    binding = family_binding_create(
        actor=SYSTEM,
        partner=partner,
        holder_linkage=holder,
        beneficiary_id_number=id_number,
        beneficiary_name="李四",
        relationship="parent",
        consent_reference="consent-1",
    )
    return family_binding_approve(actor=SYSTEM, binding=binding)


def token(linkage: WalletLinkage, binding: FamilyBinding | None = None, *, now: dt.datetime | None = None) -> str:
    return qr.qr_token_mint(actor=SYSTEM, linkage=linkage, family_binding=binding, now=now).token


def lines(*items: tuple[str, int, int]) -> list[LineInput]:
    return [LineInput(code, quantity, price) for code, quantity, price in items]


def accumulator(citizen_id: int, year: int) -> tuple[int, int]:
    row = CitizenYearAccumulator.objects.filter(citizen_id=citizen_id, year=year).first()
    return (row.deductible_used_fen, row.fund_used_fen) if row else (0, 0)


def account(citizen_id: int) -> PersonalAccount:
    return PersonalAccount.objects.get(citizen_id=citizen_id)


def assert_ledger_consistent(citizen_id: int) -> None:
    acct = account(citizen_id)
    assert ledger.ledger_sum(acct) == acct.balance_fen
    assert 0 <= acct.held_fen <= acct.balance_fen
