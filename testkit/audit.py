"""Audit events written directly, for the audit log screens."""

from django.db import transaction

from portal.actors import Actor
from portal.audit import audit_record
from portal.models import AuditEvent

HERE = "310000"


def record(
    *,
    region: str = HERE,
    action: str = "citizen.update",
    object_type: str = "citizen",
    object_id: str = "1",
    actor: Actor | None = None,
    reason: str = "",
    after: dict | None = None,
) -> AuditEvent:
    with transaction.atomic():
        return audit_record(
            actor=actor or Actor.system("tests"),
            action=action,
            object_type=object_type,
            object_id=object_id,
            region_code=region,
            reason=reason,
            after=after,
        )
