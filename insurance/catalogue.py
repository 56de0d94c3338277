"""The insured-service catalogue, facilities and reimbursement policies:
reads (selectors) and every write (services, each audited in its transaction)."""

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from insurance.errors import InsuranceErrorCode
from insurance.models import (
    DEFAULT_ELIGIBLE_SHARES,
    Facility,
    FacilityKind,
    ReimbursementPolicy,
    Scheme,
    ServiceCategory,
    ServiceItem,
)
from portal import money
from portal.actors import Actor
from portal.audit import audit_record
from portal.errors import DomainError
from portal.models import Region

SHANGHAI = ZoneInfo("Asia/Shanghai")
_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_MAX_FEN = 10**12  # ten billion yuan: far above any real price, cap or premium


def shanghai_today() -> dt.date:
    return timezone.now().astimezone(SHANGHAI).date()


def decimal_string(value: Decimal | str) -> str:
    """The wire form of a ratio or share: at least two decimals, at most four ("0.70", "0.725")."""
    number = Decimal(str(value)).quantize(Decimal("0.0001"))
    text = format(number.normalize(), "f")
    whole, _dot, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(InsuranceErrorCode.VALIDATION_ERROR, message, status=400, field=field)


def _fen(field: str, value: object, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_FEN:
        raise _invalid(field, f"{field} must be a whole number of fen, not negative.")
    return value


def _fraction(field: str, value: object) -> Decimal:
    """A Decimal from 0 to 1 with at most four decimals (floats refused: money is never float)."""
    if isinstance(value, float) or isinstance(value, bool):
        raise _invalid(field, f'{field} must be a decimal string such as "0.70", not a float.')
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _invalid(field, f'{field} must be a decimal such as "0.70".') from None
    if not number.is_finite() or not Decimal(0) <= number <= Decimal(1) or number != number.quantize(Decimal("0.0001")):
        raise _invalid(field, f"{field} must be from 0 to 1 with at most four decimals.")
    return number


# --- Selectors -----------------------------------------------------------------


def services_listed() -> QuerySet[ServiceItem]:
    """The national catalogue as partners see it: active entries."""
    return ServiceItem.objects.filter(active=True)


def facilities_listed(region_code: str | None = None) -> QuerySet[Facility]:
    """Active facilities, optionally of one region (national data: partners see every region's)."""
    queryset = Facility.objects.filter(active=True)
    if region_code is not None:
        queryset = queryset.filter(region_id=region_code)
    return queryset


def policy_in_force(
    region_code: str, scheme: str, year: int, *, today: dt.date | None = None
) -> ReimbursementPolicy | None:
    """The policy version that applies to `year` as of `today` (Asia/Shanghai).

    For the current or a past year: the latest version whose `effective_from`
    has passed. For a future year: its first published version. None if no
    version qualifies.
    """
    today = today or shanghai_today()
    versions = ReimbursementPolicy.objects.filter(region_id=region_code, scheme=scheme, year=year)
    if year > today.year:
        return versions.order_by("version").first()
    return versions.filter(effective_from__lte=today).order_by("-version").first()


def policy_versions(region_code: str, scheme: str, year: int) -> QuerySet[ReimbursementPolicy]:
    return ReimbursementPolicy.objects.filter(region_id=region_code, scheme=scheme, year=year).order_by("version")


# --- Snapshots for the audit log ------------------------------------------------


def service_snapshot(item: ServiceItem) -> dict:
    return {
        "code": item.code,
        "name_zh": item.name_zh,
        "name_en": item.name_en,
        "category": item.category,
        "unit": item.unit,
        "max_unit_price_fen": item.max_unit_price_fen,
        "active": item.active,
    }


def facility_snapshot(facility: Facility) -> dict:
    return {
        "code": facility.code,
        "name_zh": facility.name_zh,
        "name_en": facility.name_en,
        "kind": facility.kind,
        "region_code": facility.region_id,
        "active": facility.active,
    }


def policy_snapshot(policy: ReimbursementPolicy) -> dict:
    return {
        "region_code": policy.region_id,
        "scheme": policy.scheme,
        "year": policy.year,
        "version": policy.version,
        "effective_from": policy.effective_from.isoformat(),
        "deductible_fen": policy.deductible_fen,
        "ratio": decimal_string(policy.ratio),
        "annual_cap_fen": policy.annual_cap_fen,
        "personal_account_allowed": policy.personal_account_allowed,
        "eligible_shares": dict(policy.eligible_shares),
        "premium_fen": policy.premium_fen,
    }


# --- Policies ----------------------------------------------------------------------


def normalise_eligible_shares(overrides: Mapping[str, object] | None) -> dict[str, str]:
    """Every category, each a decimal string: the defaults with the policy's overrides."""
    shares = dict(DEFAULT_ELIGIBLE_SHARES)
    for category, value in (overrides or {}).items():
        if category not in ServiceCategory.values:
            raise _invalid("eligible_shares", f"Unknown category {category!r}.")
        shares[category] = decimal_string(_fraction(f"eligible_shares.{category}", value))
    return shares


@transaction.atomic
def policy_create_version(
    *,
    actor: Actor,
    region: Region,
    scheme: str,
    year: int,
    effective_from: dt.date,
    deductible_fen: int,
    ratio: Decimal | str,
    annual_cap_fen: int,
    personal_account_allowed: bool,
    eligible_shares: Mapping[str, object] | None = None,
    premium_fen: int | None = None,
    today: dt.date | None = None,
) -> ReimbursementPolicy:
    """Publish the next version of a region's policy for a scheme and year.

    Versions are never edited. A first version may take effect on any date
    up to the end of its year; a later one not before today (an edit never
    reaches back to settlements already made) and not before the version
    it follows, so that a later version number is always in force later.
    """
    today = today or shanghai_today()
    if scheme not in Scheme.values:
        raise _invalid("scheme", "The scheme is employee or resident.")
    if not isinstance(year, int) or isinstance(year, bool) or not 2000 <= year <= 2099:
        raise _invalid("year", "The year is a four-digit year from 2000 to 2099.")
    if not isinstance(effective_from, dt.date) or isinstance(effective_from, dt.datetime):
        raise _invalid("effective_from", "effective_from is a date.")
    if effective_from > dt.date(year, 12, 31) or effective_from < dt.date(year - 1, 1, 1):
        raise _invalid("effective_from", "A policy takes effect before the end of its year (and at most a year early).")
    deductible_fen = _fen("deductible_fen", deductible_fen)
    annual_cap_fen = _fen("annual_cap_fen", annual_cap_fen)
    ratio_value = _fraction("ratio", ratio)
    if not isinstance(personal_account_allowed, bool):
        raise _invalid("personal_account_allowed", "personal_account_allowed is true or false.")
    shares = normalise_eligible_shares(eligible_shares)
    if scheme == Scheme.RESIDENT:
        if premium_fen is None:
            raise _invalid("premium_fen", "The resident scheme has a yearly premium.")
        premium_fen = _fen("premium_fen", premium_fen)
    elif premium_fen is not None:
        raise _invalid("premium_fen", "The employee scheme has no premium.")

    # The region row serialises concurrent publications for the region (the
    # unique constraint would otherwise turn a race into an IntegrityError).
    Region.objects.select_for_update().get(pk=region.pk)
    previous = policy_versions(region.pk, scheme, year).last()
    if previous is not None:
        if effective_from < today:
            raise _invalid("effective_from", "A new version cannot take effect in the past.")
        if effective_from < previous.effective_from:
            raise _invalid("effective_from", "A new version cannot take effect before the version it follows.")
    policy = ReimbursementPolicy.objects.create(
        region=region,
        scheme=scheme,
        year=year,
        version=previous.version + 1 if previous else 1,
        effective_from=effective_from,
        deductible_fen=deductible_fen,
        ratio=ratio_value,
        annual_cap_fen=annual_cap_fen,
        personal_account_allowed=personal_account_allowed,
        eligible_shares=shares,
        premium_fen=premium_fen,
        created_by=actor.label[:150],
    )
    audit_record(
        actor=actor,
        action="policy.version_created",
        object_type="reimbursement_policy",
        object_id=policy.pk,
        region_code=region.pk,
        before=policy_snapshot(previous) if previous else None,
        after=policy_snapshot(policy),
    )
    return policy


# --- Catalogue and facilities ----------------------------------------------------


def _check_code(code: object) -> str:
    if not isinstance(code, str) or not _CODE_RE.match(code):
        raise _invalid("code", "A code is 1 to 32 letters, digits, '.', '_' or '-'.")
    return code


def _check_name(field: str, value: object, max_length: int = 128) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise _invalid(field, f"{field} is required (at most {max_length} characters).")
    return value.strip()


@transaction.atomic
def service_create(
    *, actor: Actor, code: str, name_zh: str, name_en: str, category: str, unit: str, max_unit_price_fen: int
) -> ServiceItem:
    code = _check_code(code)
    if category not in ServiceCategory.values:
        raise _invalid("category", _("Unknown category."))
    if ServiceItem.objects.filter(code=code).exists():
        raise DomainError(
            InsuranceErrorCode.SERVICE_EXISTS,
            _("A service with code %(code)s already exists.") % {"code": code},
            status=409,
        )
    item = ServiceItem.objects.create(
        code=code,
        name_zh=_check_name("name_zh", name_zh),
        name_en=_check_name("name_en", name_en),
        category=category,
        unit=_check_name("unit", unit, 16),
        max_unit_price_fen=_fen("max_unit_price_fen", max_unit_price_fen),
    )
    audit_record(
        actor=actor,
        action="service.created",
        object_type="service_item",
        object_id=item.pk,
        after=service_snapshot(item),
    )
    return item


_SERVICE_FIELDS = ("name_zh", "name_en", "category", "unit", "max_unit_price_fen", "active")


@transaction.atomic
def service_update(*, actor: Actor, item: ServiceItem, **changes: object) -> ServiceItem:
    """Change a catalogue entry (its code is its identity and never changes)."""
    unknown = set(changes) - set(_SERVICE_FIELDS)
    if unknown:
        raise _invalid(sorted(unknown)[0], _("This field cannot be changed."))
    item = ServiceItem.objects.select_for_update().get(pk=item.pk)
    before = service_snapshot(item)
    for name, value in changes.items():
        if name in ("name_zh", "name_en"):
            value = _check_name(name, value)
        elif name == "unit":
            value = _check_name(name, value, 16)
        elif name == "category" and value not in ServiceCategory.values:
            raise _invalid(name, _("Unknown category."))
        elif name == "max_unit_price_fen":
            value = _fen(name, value)
        elif name == "active" and not isinstance(value, bool):
            raise _invalid(name, "active is true or false.")
        setattr(item, name, value)
    if changes:
        item.save(update_fields=[*changes, "updated_at"])
        audit_record(
            actor=actor,
            action="service.updated",
            object_type="service_item",
            object_id=item.pk,
            before=before,
            after=service_snapshot(item),
        )
    return item


@transaction.atomic
def facility_create(*, actor: Actor, code: str, name_zh: str, name_en: str, kind: str, region: Region) -> Facility:
    code = _check_code(code)
    if kind not in FacilityKind.values:
        raise _invalid("kind", _("A facility is a hospital, a clinic or a pharmacy."))
    if Facility.objects.filter(code=code).exists():
        raise DomainError(
            InsuranceErrorCode.FACILITY_EXISTS,
            _("A facility with code %(code)s already exists.") % {"code": code},
            status=409,
        )
    facility = Facility.objects.create(
        code=code,
        name_zh=_check_name("name_zh", name_zh),
        name_en=_check_name("name_en", name_en),
        kind=kind,
        region=region,
    )
    audit_record(
        actor=actor,
        action="facility.created",
        object_type="facility",
        object_id=facility.pk,
        region_code=region.pk,
        after=facility_snapshot(facility),
    )
    return facility


_FACILITY_FIELDS = ("name_zh", "name_en", "kind", "active")


@transaction.atomic
def facility_update(*, actor: Actor, facility: Facility, **changes: object) -> Facility:
    """Change a facility (its code and region never change)."""
    unknown = set(changes) - set(_FACILITY_FIELDS)
    if unknown:
        raise _invalid(sorted(unknown)[0], _("This field cannot be changed."))
    facility = Facility.objects.select_for_update().get(pk=facility.pk)
    before = facility_snapshot(facility)
    for name, value in changes.items():
        if name in ("name_zh", "name_en"):
            value = _check_name(name, value)
        elif name == "kind" and value not in FacilityKind.values:
            raise _invalid(name, _("A facility is a hospital, a clinic or a pharmacy."))
        elif name == "active" and not isinstance(value, bool):
            raise _invalid(name, "active is true or false.")
        setattr(facility, name, value)
    if changes:
        facility.save(update_fields=[*changes, "updated_at"])
        audit_record(
            actor=actor,
            action="facility.updated",
            object_type="facility",
            object_id=facility.pk,
            region_code=facility.region_id,
            before=before,
            after=facility_snapshot(facility),
        )
    return facility


# --- Screens: activation, money and percentage formats ----------------------------


def service_set_active(*, actor: Actor, item: ServiceItem, active: bool) -> ServiceItem:
    """Deactivate (withdraw from the catalogue partners see) or reactivate a service."""
    return service_update(actor=actor, item=item, active=active)


def facility_set_active(*, actor: Actor, facility: Facility, active: bool) -> Facility:
    """Deactivate or reactivate a facility (its history and settlements stay)."""
    return facility_update(actor=actor, facility=facility, active=active)


def format_yuan(fen: int | None) -> str:
    """Integer fen as yuan for a form's input and the CSV files: "1234.05", no grouping."""
    return money.format_yuan(fen, grouped=False, empty="")


def format_percent(fraction: Decimal | str | None) -> str:
    """A fraction from 0 to 1 as a percentage without trailing zeros ("72.5 %" -> "72.5")."""
    if fraction is None or fraction == "":
        return ""
    number = (Decimal(str(fraction)) * 100).quantize(Decimal("0.01"))
    text = format(number, "f").rstrip("0").rstrip(".")
    return text or "0"
