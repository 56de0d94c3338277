"""Scoped reads of citizens and e-cards. Every screen starts from these."""

import re
from dataclasses import dataclass

from django.db.models import QuerySet

from insurance.models import ID_NUMBER_PURPOSE, PHONE_PURPOSE, Certificate, CertificateTransition, Citizen
from portal.crypto import blind_index_candidates
from portal.models import AuditEvent
from portal.scope import restrict_to_user_regions

_ID_NUMBER = re.compile(r"^\d{17}[\dX]$")
_PHONE = re.compile(r"^\+?\d{5,20}$")


def citizens_visible_to(user) -> QuerySet[Citizen]:
    return restrict_to_user_regions(Citizen.objects.select_related("region"), user, region_field="region")


def certificates_visible_to(user) -> QuerySet[Certificate]:
    return restrict_to_user_regions(
        Certificate.objects.select_related("citizen", "citizen__region"), user, region_field="citizen__region"
    )


@dataclass(frozen=True)
class CitizenQuery:
    """A parsed search: `needle` is a name prefix, or the blind index candidates
    of an identity number or phone (so that the query itself holds no personal data)."""

    kind: str = ""  # "", "id_number", "phone" or "name"
    needle: tuple[str, ...] = ()
    region: str = ""
    status: str = ""
    scheme: str = ""


def search_kind(text: str) -> str:
    """How the search box reads its text: "id_number", "phone", "name" or "" (empty)."""
    text = text.strip().upper()
    if not text:
        return ""
    if _ID_NUMBER.match(text):
        return "id_number"
    if _PHONE.match(text):
        return "phone"
    return "name"


def parse_search_text(text: str) -> tuple[str, tuple[str, ...]]:
    text = text.strip()
    kind = search_kind(text)
    if kind == "id_number":
        return kind, tuple(blind_index_candidates(text.upper(), purpose=ID_NUMBER_PURPOSE))
    if kind == "phone":
        return kind, tuple(blind_index_candidates(text, purpose=PHONE_PURPOSE))
    if kind == "name":
        return kind, (text,)
    return "", ()


def citizen_search(user, query: CitizenQuery) -> QuerySet[Citizen]:
    """Exact identity number or phone (through their blind indexes: one indexed
    query, never a scan of decrypted values) or a name prefix, within the user's scope."""
    queryset = citizens_visible_to(user)
    if query.kind == "id_number":
        queryset = queryset.filter(id_number_bidx__in=list(query.needle))
    elif query.kind == "phone":
        queryset = queryset.filter(phone_bidx__in=list(query.needle))
    elif query.kind == "name" and query.needle:
        queryset = queryset.filter(name__startswith=query.needle[0])
    if query.region:
        queryset = queryset.filter(region_id=query.region)
    if query.status:
        queryset = queryset.filter(status=query.status)
    if query.scheme:
        queryset = queryset.filter(scheme=query.scheme)
    return queryset.order_by("id")


def certificate_history(citizen: Citizen) -> list[Certificate]:
    """The citizen's e-cards, newest first, each with its transitions."""
    from django.db.models import Prefetch

    return list(
        Certificate.objects.filter(citizen=citizen)
        .select_related("previous")
        .prefetch_related(Prefetch("transitions", queryset=CertificateTransition.objects.order_by("at", "id")))
        .order_by("-issued_at", "-id")
    )


def citizen_audit_trail(citizen: Citizen, certificates: list[Certificate], limit: int = 200) -> QuerySet[AuditEvent]:
    """Changes to the citizen and to its e-cards, from the audit log, newest first."""
    from django.db.models import Q

    condition = Q(object_type="citizen", object_id=str(citizen.pk))
    numbers = [c.number for c in certificates]
    if numbers:
        condition |= Q(object_type="certificate", object_id__in=numbers)
    # Opening the page is recorded too (services.citizen_viewed), for the auditors, not for this list.
    return AuditEvent.objects.filter(condition).exclude(action="citizen.view").order_by("-seq")[:limit]
