"""Portal core: regions, people and their roles, the audit chain, domain events."""

from django.conf import settings
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
        # What a form's choice of regions shows (a staff account's regions, a citizen's region):
        # the name in the reader's language, as everywhere else.
        return f"{self.code} {self.display_name}"

    @property
    def display_name(self) -> str:
        from django.utils.translation import get_language

        return self.name_zh if (get_language() or "zh").startswith("zh") else self.name_en


class Role(models.TextChoices):
    NATIONAL_OPERATOR = "national_operator", _("National operator")
    REGION_ADMIN = "region_admin", _("Region administrator")
    CLERK = "clerk", _("Clerk")
    AUDITOR = "auditor", _("Auditor")
    SECURITY_OFFICER = "security_officer", _("Security officer")


ROLES_REQUIRING_MFA = frozenset({Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.AUDITOR, Role.SECURITY_OFFICER})
# Separation of duties (三员分立, DESIGN §2): system administration (national operators; region
# administrators for their regions' clerks), security administration (security officers: the
# portal's signing keys and partner keys) and audit administration (auditors: the audit log)
# are held by different accounts. Security officers are national, bound to no region, and
# see no region's data: citizens, e-cards, settlements, dashboards and the audit log are not
# theirs to read. These roles open the screens of the regions' data (portal/screens.py).
ROLES_SEEING_REGION_DATA = frozenset({Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.CLERK, Role.AUDITOR})


class User(AbstractUser):
    role = models.CharField(_("role"), max_length=32, choices=Role.choices, default=Role.CLERK)
    regions = models.ManyToManyField(Region, blank=True, related_name="staff", verbose_name=_("regions"))
    # A national operator who also reads the audit log. Honoured only while the deployment
    # sets ECARD_ALLOW_OPERATOR_AUDITOR, and only settable then (portal/services.py).
    also_auditor = models.BooleanField(_("also auditor"), default=False)

    class Meta:
        verbose_name = _("staff member")
        verbose_name_plural = _("staff members")

    def audit_region_code(self) -> str:
        """The region an audit event about this account is filed under: its one region, or none
        (a national account, or one of several regions: only a national auditor reads it then)."""
        codes = list(self.regions.values_list("code", flat=True))
        return codes[0] if len(codes) == 1 else ""

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

    @property
    def sees_region_data(self) -> bool:
        return self.role in ROLES_SEEING_REGION_DATA

    @property
    def reads_audit_log(self) -> bool:
        """Auditors; a national operator only where the deployment allows one account both duties."""
        if self.role == Role.AUDITOR:
            return True
        return (
            self.role == Role.NATIONAL_OPERATOR
            and self.also_auditor
            and bool(getattr(settings, "ECARD_ALLOW_OPERATOR_AUDITOR", False))
        )

    @property
    def holds_keys(self) -> bool:
        return self.role == Role.SECURITY_OFFICER


class AuditEvent(models.Model):
    """Append-only, HMAC-chained record of every change (portal/audit.py).

    A write inserts its row with `row_hmac` (HMAC of its content) and the id of
    its transaction, taking no shared lock; the chainer later gives committed
    rows their place in the one chain (`chain_seq`, `prev_hash`, `hash`).
    `seq` is the insertion order (gaps where a transaction rolled back).
    """

    seq = models.BigAutoField(primary_key=True)
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
    xid = models.BigIntegerField(default=0)  # pg_current_xact_id() of the writing transaction
    row_hmac = models.CharField(max_length=64, blank=True, default="")  # "" on rows written before 0004
    chain_seq = models.BigIntegerField(null=True, blank=True, unique=True)  # place in the chain, once chained
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-seq"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"


class AuditChainHead(models.Model):
    """Single row: the last sequence number and hash of the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"chain head at {self.last_seq}"


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

    def __str__(self) -> str:
        return f"{self.type} {self.aggregate_type} {self.aggregate_id}"


# --- Dashboard rollups (backoffice/dashboards/rollups.py keeps them) --------------


class RollupFact(models.Model):
    """What one object (citizen, e-card, linkage, binding, paid settlement) adds to the rollups.

    The rollup tick recomputes the fact of every object the audit log says was
    touched and applies only the difference to the counters, so running it
    twice, or over an overlapping range, never counts anything twice.
    """

    kind = models.CharField(max_length=16)
    object_id = models.BigIntegerField()
    region_code = models.CharField(max_length=6)
    partner_id = models.IntegerField(null=True, blank=True)
    state = models.CharField(max_length=24, blank=True)
    month = models.DateField(null=True, blank=True)  # a citizen's birth month (first day)
    day1 = models.DateField(null=True, blank=True)  # created / issued / paid (Asia/Shanghai)
    day2 = models.DateField(null=True, blank=True)  # activated / refunded
    amount_fen = models.BigIntegerField(default=0)  # a settlement's pooled fund
    total_fen = models.BigIntegerField(default=0)  # a settlement's total

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "object_id"], name="one_rollup_fact_per_object")]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id}"


class RollupCount(models.Model):
    """A current-state count of a region: citizens by status, cards by state, cohorts by birth month..."""

    region_code = models.CharField(max_length=6)
    metric = models.CharField(max_length=24)
    dim = models.CharField(max_length=32, blank=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["region_code", "metric", "dim"], name="one_rollup_count_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.region_code} {self.metric} {self.dim}"


class RollupDaily(models.Model):
    """A per-day flow of a region (Asia/Shanghai day): cards issued, settlements paid, fund spent..."""

    region_code = models.CharField(max_length=6)
    day = models.DateField()
    metric = models.CharField(max_length=24)
    dim = models.CharField(max_length=32, blank=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["region_code", "day", "metric", "dim"], name="one_rollup_daily_per_key"),
        ]
        indexes = [models.Index(fields=["day", "region_code"], name="rollup_daily_day")]

    def __str__(self) -> str:
        return f"{self.region_code} {self.day} {self.metric} {self.dim}"


class RollupWatermark(models.Model):
    """Where the rollup tick resumes in the audit log (one row, locked by every tick and rebuild).

    `seq` is given at insert, not at commit, so a transaction may commit a lower
    `seq` after a higher one was read: `gaps` keeps the numbers skipped below
    `last_seq` (with when they were first missed) and every tick looks them up
    again until they appear or are old enough to be rolled-back transactions.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.BigIntegerField(default=0)
    gaps = models.JSONField(default=dict, blank=True)
    ticked_at = models.DateTimeField(null=True, blank=True)
    rebuilt_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollups at audit seq {self.last_seq}"


# --- Sign-in controls (portal/signin.py) ------------------------------------------


class SignInState(models.Model):
    """A staff member's sign-in controls: recent failed attempts, a lock, a password to change.

    No row means nothing to enforce: accounts made outside `staff_create` (the demo's, the
    tests') are neither locked nor asked for a new password until something writes one.
    """

    user = models.OneToOneField(User, primary_key=True, on_delete=models.CASCADE, related_name="sign_in_state")
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    must_change_password = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"sign-in state of user {self.user_id}"


class PasswordHistory(models.Model):
    """The hashes of a staff member's last passwords, none of which may be chosen again."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="password_history")
    password = models.CharField(max_length=128)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="password_history_user")]

    def __str__(self) -> str:
        return f"password of user {self.user_id} at {self.created_at}"
