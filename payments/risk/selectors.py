"""Scoped reads of the risk-review queue: a flag carries its citizen's region."""

from django.db.models import QuerySet

from payments.models import RiskFlag
from portal.scope import restrict_to_user_regions


def risk_flags_visible_to(user) -> QuerySet[RiskFlag]:
    return restrict_to_user_regions(RiskFlag.objects.all(), user, region_field="region")
