"""Scoped reads of wallet linkages and sandbox receipts."""

from django.db.models import QuerySet

from payments.models import SandboxReceipt, WalletLinkage
from portal.scope import restrict_to_user_regions


def linkages_visible_to(user) -> QuerySet[WalletLinkage]:
    return restrict_to_user_regions(
        WalletLinkage.objects.select_related("partner", "citizen", "citizen__region", "certificate"),
        user,
        region_field="citizen__region",
    )


def sandbox_receipts() -> QuerySet[SandboxReceipt]:
    """Receipts of the demo partners' sandbox webhooks (not personal data, not region-scoped)."""
    return SandboxReceipt.objects.order_by("-received_at", "-id")
