"""What waits for the signed-in user, counted for the menu: pending family bindings and open risk
flags in their regions, and dead deliveries for those who see the delivery monitor.

One read of the user's regions and at most one count per menu entry, whatever the data: the menu
is on every screen."""

from dataclasses import dataclass

from payments.delivery.selectors import dead_event_count
from payments.models import BindingState, FamilyBinding, RiskFlag, RiskFlagState
from portal.models import Role
from portal.scope import restrict_to_region_codes, visible_region_codes

RISK_READERS = {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.AUDITOR}
MONITOR_READERS = {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}


@dataclass(frozen=True)
class MenuCounts:
    pending_bindings: int = 0
    open_risk_flags: int = 0
    dead_deliveries: int = 0

    @property
    def citizens(self) -> int:
        return self.pending_bindings

    @property
    def settlements(self) -> int:
        return self.open_risk_flags

    @property
    def partners(self) -> int:
        return self.dead_deliveries


def menu_counts(user) -> MenuCounts:
    if not getattr(user, "is_authenticated", False) or not user.sees_region_data:
        return MenuCounts()
    codes = visible_region_codes(user)
    if codes == []:
        return MenuCounts()
    bindings = FamilyBinding.objects.filter(state=BindingState.PENDING)
    flags = RiskFlag.objects.filter(state=RiskFlagState.OPEN)
    return MenuCounts(
        pending_bindings=restrict_to_region_codes(bindings, codes, "beneficiary__region").count(),
        open_risk_flags=(restrict_to_region_codes(flags, codes, "region").count() if user.role in RISK_READERS else 0),
        dead_deliveries=dead_event_count(codes) if user.role in MONITOR_READERS else 0,
    )
