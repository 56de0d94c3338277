"""Portal core: regions, people and their roles, the audit chain, domain events."""

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class Region(models.Model):
    """A pilot region (GB/T 2260 six-digit code)."""

    code = models.CharField(_("code"), max_length=6, primary_key=True)
    name_zh = models.CharField(_("Chinese name"), max_length=64)
    name_en = models.CharField(_("English name"), max_length=64)
    pilot_start = models.DateField(_("pilot start"))

    class Meta:
        ordering = ["code"]
        verbose_name = _("region")
        verbose_name_plural = _("regions")

    def __str__(self) -> str:
        return f"{self.code} {self.name_zh}"

    @property
    def display_name(self) -> str:
        from django.utils.translation import get_language

        return self.name_zh if (get_language() or "zh").startswith("zh") else self.name_en


class Role(models.TextChoices):
    NATIONAL_OPERATOR = "national_operator", _("National operator")
    REGION_ADMIN = "region_admin", _("Region administrator")
    CLERK = "clerk", _("Clerk")
    AUDITOR = "auditor", _("Auditor")


ROLES_REQUIRING_MFA = frozenset({Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.AUDITOR})


class User(AbstractUser):
    role = models.CharField(_("role"), max_length=32, choices=Role.choices, default=Role.CLERK)
    regions = models.ManyToManyField(Region, blank=True, related_name="staff", verbose_name=_("regions"))

    class Meta:
        verbose_name = _("staff member")
        verbose_name_plural = _("staff members")

    @property
    def requires_mfa(self) -> bool:
        return self.role in ROLES_REQUIRING_MFA

    @property
    def is_national(self) -> bool:
        return self.role == Role.NATIONAL_OPERATOR

    @property
    def can_write_citizens(self) -> bool:
        return self.role in {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.CLERK}

    @property
    def can_manage_staff(self) -> bool:
        return self.role in {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN}


class AuditEvent(models.Model):
    """Append-only, HMAC-chained record of every change.

    `hash = HMAC(key, prev_hash || canonical JSON of the row)`; the chain head
    (AuditChainHead) is locked by every append, so the chain is one line.
    """

    seq = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16)  # "user", "partner", "system"
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    region_code = models.CharField(max_length=6, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.CharField(max_length=256, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        indexes = [models.Index(fields=["object_type", "object_id"])]


class AuditChainHead(models.Model):
    """Single row: the last sequence number and hash of the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)


class DomainEvent(models.Model):
    """A change other apps must hear about, written in the transaction of the change."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    type = models.CharField(max_length=64)
    aggregate_type = models.CharField(max_length=64)
    aggregate_id = models.CharField(max_length=64)
    region_code = models.CharField(max_length=6, blank=True)
    data = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["aggregate_type", "aggregate_id"])]
