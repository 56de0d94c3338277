"""Partners, their keys, wallet linkages, the portal's signing keys, the outbox."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from insurance.models import Certificate, Citizen
from payments.ids import new_public_id


class PartnerKind(models.TextChoices):
    WALLET = "wallet", _("Wallet")
    SERVICE_PLATFORM = "service_platform", _("Service platform")


class PartnerState(models.TextChoices):
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")


class Partner(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=64)
    kind = models.CharField(_("kind"), max_length=24, choices=PartnerKind.choices)
    state = models.CharField(_("state"), max_length=16, choices=PartnerState.choices, default=PartnerState.ACTIVE)
    webhook_url = models.URLField(_("webhook URL"), max_length=500, blank=True)
    deliveries_paused = models.BooleanField(_("deliveries paused"), default=False)
    rate_limit_per_second = models.PositiveIntegerField(_("rate limit per second"), default=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("partner")
        verbose_name_plural = _("partners")

    def __str__(self) -> str:
        return self.code


class PartnerKeyState(models.TextChoices):
    ACTIVE = "active", _("Active")
    REVOKED = "revoked", _("Revoked")


class PartnerKey(models.Model):
    """A partner's Ed25519 public key for request signing (several for rotation)."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="keys")
    key_id = models.CharField(max_length=64, unique=True)
    public_key = models.CharField(max_length=64)  # standard base64 of the 32 raw bytes
    state = models.CharField(max_length=16, choices=PartnerKeyState.choices, default=PartnerKeyState.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key_id


class PortalKeyState(models.TextChoices):
    NEXT = "next", _("Next")
    ACTIVE = "active", _("Active")
    RETIRED = "retired", _("Retired")


class PortalKey(models.Model):
    """The portal's own Ed25519 signing keys; private halves encrypted at rest."""

    key_id = models.CharField(max_length=64, unique=True)
    public_key = models.CharField(max_length=64)
    private_key_enc = models.BinaryField()
    state = models.CharField(max_length=16, choices=PortalKeyState.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["state"], condition=Q(state="active"), name="one_active_portal_key"),
            models.UniqueConstraint(fields=["state"], condition=Q(state="next"), name="one_next_portal_key"),
        ]

    def __str__(self) -> str:
        return self.key_id


def _linkage_id() -> str:
    return new_public_id("lnk")


class LinkageState(models.TextChoices):
    ACTIVE = "active", _("Active")
    UNLINKED = "unlinked", _("Unlinked")


class LinkageEndReason(models.TextChoices):
    CITIZEN_REQUEST = "citizen_request", _("Citizen's request")
    CLERK = "clerk", _("Ended by a clerk")
    CERTIFICATE_REVOKED = "certificate_revoked", _("E-card revoked")
    CITIZEN_STATUS = "citizen_status", _("Citizen deceased or moved out")


class WalletLinkage(models.Model):
    """A citizen's e-card activated in a partner's wallet."""

    public_id = models.CharField(max_length=40, unique=True, default=_linkage_id, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="linkages")
    citizen = models.ForeignKey(Citizen, on_delete=models.PROTECT, related_name="linkages")
    certificate = models.ForeignKey(Certificate, on_delete=models.PROTECT, related_name="linkages")
    partner_user_ref = models.CharField(_("partner user reference"), max_length=128)
    verification_reference = models.CharField(max_length=128, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=LinkageState.choices, default=LinkageState.ACTIVE)
    end_reason = models.CharField(_("end reason"), max_length=24, choices=LinkageEndReason.choices, blank=True)
    ended_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "citizen"],
                condition=Q(state="active"),
                name="one_active_linkage_per_citizen_partner",
            ),
            models.UniqueConstraint(
                fields=["partner", "partner_user_ref"],
                condition=Q(state="active"),
                name="one_active_linkage_per_partner_user",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id


def _event_id() -> str:
    return new_public_id("evt")


class OutboxState(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    DEAD = "dead", _("Dead")


class OutboxEvent(models.Model):
    """One event addressed to one partner, written in the business transaction.

    `body` is the exact JSON the partner receives on every attempt and reads
    from `GET /events`.
    """

    public_id = models.CharField(max_length=40, unique=True, default=_event_id, editable=False)
    # Both covered by composite indexes that lead with them (outbox_partner_state, the unique
    # one_outbox_event_per_domain_event_partner_object): no index of their own (payments 0006).
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="events", db_index=False)
    domain_event = models.ForeignKey(
        "portal.DomainEvent", null=True, blank=True, on_delete=models.PROTECT, db_index=False
    )
    type = models.CharField(max_length=48)
    object_id = models.CharField(max_length=40)
    body = models.TextField()
    created_at = models.DateTimeField(db_index=True)
    state = models.CharField(max_length=16, choices=OutboxState.choices, default=OutboxState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The writing transaction's id (set by a trigger). `GET /events` lists only
    # rows older than every transaction still running, ordered by (txid, id), so that a
    # poller never skips an event whose transaction committed late.
    txid = models.BigIntegerField(null=True, blank=True, editable=False)
    # The id of the request (or task) that caused the event, sent with the webhook as X-Request-Id
    # (portal/observability/requestid.py); "" for events written before it was kept.
    request_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["domain_event", "partner", "object_id", "type"],
                name="one_outbox_event_per_domain_event_partner_object",
            ),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="outbox_due"),
            models.Index(fields=["partner", "state", "id"], name="outbox_partner_state"),
            models.Index(fields=["partner", "txid", "id"], name="outbox_partner_feed"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_failing(self) -> bool:
        """Pending after failed attempts: retried on its schedule, counted as failing, not as pending."""
        return self.state == OutboxState.PENDING and self.attempts > 0

    def state_label(self) -> str:
        """The state as the delivery monitor counts it: a failing event says so, not "pending"."""
        return str(_("Failing")) if self.is_failing else self.get_state_display()


class DeliveryAttempt(models.Model):
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="delivery_attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of event {self.event_id}"


class SandboxReceipt(models.Model):
    """What the demo's sandbox webhook receiver got (the portal serves it to itself)."""

    partner_code = models.CharField(max_length=32, db_index=True)
    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=48)
    body = models.TextField()
    signature_valid = models.BooleanField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.partner_code} {self.event_type} {self.event_id}"


def _binding_id() -> str:
    return new_public_id("fbd")


class Relationship(models.TextChoices):
    PARENT = "parent", _("Parent")
    CHILD = "child", _("Child")
    SPOUSE = "spouse", _("Spouse")
    GRANDPARENT = "grandparent", _("Grandparent")
    GRANDCHILD = "grandchild", _("Grandchild")
    SIBLING = "sibling", _("Sibling")
    OTHER = "other", _("Other")


class BindingState(models.TextChoices):
    PENDING = "pending", _("Pending approval")
    ACTIVE = "active", _("Active")
    REJECTED = "rejected", _("Rejected")
    REVOKED = "revoked", _("Revoked")


class BindingEndReason(models.TextChoices):
    PARTNER_REQUEST = "partner_request", _("Partner's request")
    CLERK = "clerk", _("Decided by a clerk")
    HOLDER_UNLINKED = "holder_unlinked", _("Holder's wallet unlinked")
    CERTIFICATE_REVOKED = "certificate_revoked", _("E-card revoked")
    CITIZEN_STATUS = "citizen_status", _("Citizen deceased or moved out")
    TIMEOUT = "timeout", _("Not decided within 30 days")


BINDING_OPEN_STATES = ("pending", "active")


class FamilyBinding(models.Model):
    """A holder presents a beneficiary's e-card (亲情账户), made through the holder's wallet linkage."""

    public_id = models.CharField(max_length=40, unique=True, default=_binding_id, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="family_bindings")
    holder_linkage = models.ForeignKey(WalletLinkage, on_delete=models.PROTECT, related_name="family_bindings")
    holder_citizen = models.ForeignKey(Citizen, on_delete=models.PROTECT, related_name="bindings_as_holder")
    beneficiary = models.ForeignKey(Citizen, on_delete=models.PROTECT, related_name="bindings_as_beneficiary")
    relationship = models.CharField(_("relationship"), max_length=16, choices=Relationship.choices)
    consent_reference = models.CharField(_("consent reference"), max_length=128)
    state = models.CharField(_("state"), max_length=16, choices=BindingState.choices, default=BindingState.PENDING)
    end_reason = models.CharField(_("end reason"), max_length=24, choices=BindingEndReason.choices, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=256, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["holder_linkage", "beneficiary"],
                condition=Q(state__in=BINDING_OPEN_STATES),
                name="one_open_binding_per_holder_linkage_beneficiary",
            ),
        ]
        indexes = [models.Index(fields=["state", "created_at"], name="binding_state_created")]

    def __str__(self) -> str:
        return self.public_id


class QrToken(models.Model):
    """A minted QR token: whether it was used is known only here (PARTNER_API.md "QR tokens")."""

    jti = models.CharField(max_length=40, unique=True)
    certificate = models.ForeignKey(Certificate, on_delete=models.PROTECT, related_name="qr_tokens")
    linkage = models.ForeignKey(WalletLinkage, on_delete=models.PROTECT, related_name="qr_tokens")
    family_binding = models.ForeignKey(
        FamilyBinding, null=True, blank=True, on_delete=models.PROTECT, related_name="qr_tokens"
    )
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.jti


class IdempotencyState(models.TextChoices):
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETED = "completed", _("Completed")


class IdempotencyRecord(models.Model):
    """The first response to a partner's `Idempotency-Key`, replayed byte for byte (kept ≥ 24 h)."""

    partner = models.ForeignKey(
        Partner, on_delete=models.CASCADE, related_name="idempotency_records", db_index=False
    )  # the unique (partner, key) leads with it
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    target = models.TextField()
    body_sha256 = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=IdempotencyState.choices, default=IdempotencyState.IN_PROGRESS)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    response_content_type = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "key"], name="one_idempotency_record_per_partner_key")
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.key}"


# --- Settlements, the citizen-year accumulator, the personal account, premiums -------------


def _settlement_id() -> str:
    return new_public_id("stl")


def _premium_id() -> str:
    return new_public_id("prm")


class SettlementState(models.TextChoices):
    PENDING_PAYMENT = "pending_payment", _("Pending payment")
    PAID = "paid", _("Paid")
    CANCELLED = "cancelled", _("Cancelled")
    EXPIRED = "expired", _("Expired")
    REFUNDED = "refunded", _("Refunded")


class Settlement(models.Model):
    """A bill at a facility paid with an e-card (DESIGN.md sections 3 and 4).

    The split is computed once, at creation, against the policy version it
    points at; `year` (Asia/Shanghai) names the citizen-year accumulator it
    reserved in, so that a release or a refund goes back to the same year.
    """

    public_id = models.CharField(max_length=40, unique=True, default=_settlement_id, editable=False)
    # `partner` and `citizen` have no index of their own: settlement_partner_feed and
    # settlement_citizen_year lead with them (payments 0006).
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="settlements", db_index=False)
    certificate = models.ForeignKey(Certificate, on_delete=models.PROTECT, related_name="settlements")
    # The citizen whose card the token carries (the beneficiary, for a binding's token).
    citizen = models.ForeignKey(Citizen, on_delete=models.PROTECT, related_name="settlements", db_index=False)
    family_binding = models.ForeignKey(
        FamilyBinding, null=True, blank=True, on_delete=models.PROTECT, related_name="settlements"
    )
    qr_token = models.OneToOneField(QrToken, on_delete=models.PROTECT, related_name="settlement")
    facility = models.ForeignKey("insurance.Facility", on_delete=models.PROTECT, related_name="settlements")
    policy = models.ForeignKey("insurance.ReimbursementPolicy", on_delete=models.PROTECT, related_name="settlements")
    state = models.CharField(
        _("state"), max_length=16, choices=SettlementState.choices, default=SettlementState.PENDING_PAYMENT
    )
    year = models.PositiveSmallIntegerField(_("year"))
    total_fen = models.BigIntegerField(_("total (fen)"))
    eligible_fen = models.BigIntegerField(_("eligible (fen)"))
    deductible_fen = models.BigIntegerField(_("deductible applied (fen)"))
    fund_fen = models.BigIntegerField(_("pooled fund (fen)"))
    account_fen = models.BigIntegerField(_("personal account (fen)"))
    self_pay_fen = models.BigIntegerField(_("self-pay (fen)"))
    use_personal_account = models.BooleanField(default=False)
    partner_transaction_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001 (NULL until the partner confirms with its transaction id)
    refund_reason = models.CharField(max_length=128, blank=True)
    expires_at = models.DateTimeField(_("expires at"))
    created_at = models.DateTimeField(_("created at"), db_index=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)  # cancelled or expired
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("settlement")
        verbose_name_plural = _("settlements")
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    total_fen__gte=0,
                    eligible_fen__gte=0,
                    deductible_fen__gte=0,
                    fund_fen__gte=0,
                    account_fen__gte=0,
                    self_pay_fen__gte=0,
                ),
                name="settlement_amounts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(total_fen=models.F("fund_fen") + models.F("account_fen") + models.F("self_pay_fen")),
                name="settlement_split_adds_up",
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(state="pending_payment"), name="settlement_pending_expiry"),
            models.Index(fields=["partner", "created_at", "id"], name="settlement_partner_feed"),
            models.Index(fields=["citizen", "year"], name="settlement_citizen_year"),
        ]

    def __str__(self) -> str:
        return self.public_id


class SettlementLine(models.Model):
    settlement = models.ForeignKey(Settlement, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    service = models.ForeignKey("insurance.ServiceItem", on_delete=models.PROTECT, related_name="+")
    service_code = models.CharField(max_length=32)  # as billed (the catalogue code never changes)
    category = models.CharField(max_length=16)  # the category when billed
    quantity = models.PositiveIntegerField()
    unit_price_fen = models.BigIntegerField()
    line_total_fen = models.BigIntegerField()
    eligible_fen = models.BigIntegerField()

    class Meta:
        ordering = ["settlement", "position"]
        constraints = [
            models.UniqueConstraint(fields=["settlement", "position"], name="one_settlement_line_per_position"),
            models.CheckConstraint(condition=Q(quantity__gte=1, quantity__lte=9999), name="settlement_line_quantity"),
        ]

    def __str__(self) -> str:
        return f"{self.service_code} x {self.quantity}"


class CitizenYearAccumulator(models.Model):
    """A citizen's deductible and fund use for one year, pending settlements included.

    Every settlement create, cancel, expiry and refund locks this row
    (`SELECT ... FOR UPDATE`), so that concurrent settlements never pass the
    deductible or the annual cap together.
    """

    citizen = models.ForeignKey(Citizen, on_delete=models.PROTECT, related_name="year_accumulators")
    year = models.PositiveSmallIntegerField()
    deductible_used_fen = models.BigIntegerField(default=0)
    fund_used_fen = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["citizen", "year"], name="one_accumulator_per_citizen_year"),
            models.CheckConstraint(
                condition=Q(deductible_used_fen__gte=0, fund_used_fen__gte=0), name="accumulator_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"citizen {self.citizen_id}, {self.year}"


class PersonalAccount(models.Model):
    """A citizen's personal account (个人账户). `balance_fen` caches the sum of the
    ledger entries (written in the entry's transaction); `held_fen` is what
    pending settlements have reserved and not yet debited."""

    citizen = models.OneToOneField(Citizen, on_delete=models.PROTECT, related_name="personal_account")
    balance_fen = models.BigIntegerField(default=0)
    held_fen = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance_fen__gte=0, held_fen__gte=0), name="account_not_negative"),
            models.CheckConstraint(condition=Q(held_fen__lte=models.F("balance_fen")), name="account_hold_covered"),
        ]

    def __str__(self) -> str:
        return f"personal account of citizen {self.citizen_id}"


class AccountEntryKind(models.TextChoices):
    ADJUSTMENT = "adjustment", _("Adjustment")
    SETTLEMENT = "settlement", _("Settlement")
    REFUND = "refund", _("Refund")


class AccountEntry(models.Model):
    """One entry of a personal account's append-only ledger (PostgreSQL refuses UPDATE and DELETE)."""

    account = models.ForeignKey(PersonalAccount, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=16, choices=AccountEntryKind.choices)
    amount_fen = models.BigIntegerField()  # signed: credits positive, debits negative
    balance_after_fen = models.BigIntegerField()
    settlement = models.ForeignKey(
        Settlement, null=True, blank=True, on_delete=models.PROTECT, related_name="account_entries"
    )
    actor_label = models.CharField(max_length=150)
    note = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["account", "id"]
        verbose_name_plural = _("account entries")
        constraints = [
            models.CheckConstraint(condition=Q(balance_after_fen__gte=0), name="account_entry_balance_not_negative"),
            models.CheckConstraint(condition=~Q(amount_fen=0), name="account_entry_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_fen} fen"


class PremiumState(models.TextChoices):
    PAID = "paid", _("Paid")


class PremiumPayment(models.Model):
    """A resident's yearly premium paid through a partner; its row is the enrolment for that
    year being paid (one per citizen and year, enforced by the database)."""

    public_id = models.CharField(max_length=40, unique=True, default=_premium_id, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="premiums")
    citizen = models.ForeignKey(Citizen, on_delete=models.PROTECT, related_name="premiums")
    policy = models.ForeignKey("insurance.ReimbursementPolicy", on_delete=models.PROTECT, related_name="premiums")
    year = models.PositiveSmallIntegerField()
    amount_fen = models.BigIntegerField()
    partner_transaction_id = models.CharField(max_length=128)
    state = models.CharField(max_length=16, choices=PremiumState.choices, default=PremiumState.PAID)
    created_at = models.DateTimeField(db_index=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["citizen", "year"], name="one_premium_per_citizen_year"),
            models.CheckConstraint(condition=Q(amount_fen__gte=0), name="premium_not_negative"),
        ]

    def __str__(self) -> str:
        return self.public_id


# --- Risk review (payments/risk/services.py) ------------------------------------------------------------


class RiskRule(models.TextChoices):
    FACILITIES_PER_DAY = "facilities_per_day", _("One e-card at too many facilities in a day")
    LARGE_SETTLEMENT = "large_settlement", _("Settlement over the amount threshold")
    BINDING_OVERUSE = "binding_overuse", _("Family binding used far more than the holder's own card")


class RiskFlagState(models.TextChoices):
    OPEN = "open", pgettext_lazy("risk flag state", "Open")
    DISMISSED = "dismissed", _("Dismissed")
    CONFIRMED = "confirmed", _("Confirmed")


class RiskFlag(models.Model):
    """One rule firing for one subject on one day (Asia/Shanghai), for a region administrator to review.

    The unique constraint makes the rule scan idempotent: a rescan of the same day adds nothing.
    `evidence` holds ids, counts and amounts only, never personal data.
    """

    rule = models.CharField(_("rule"), max_length=32, choices=RiskRule.choices)
    subject_type = models.CharField(max_length=24)  # "certificate", "settlement", "family_binding"
    subject_id = models.CharField(max_length=40)  # the subject's public id or number
    day = models.DateField(_("day"))
    region = models.ForeignKey("portal.Region", on_delete=models.PROTECT, related_name="risk_flags")
    citizen = models.ForeignKey(Citizen, null=True, blank=True, on_delete=models.PROTECT, related_name="risk_flags")
    evidence = models.JSONField(default=dict)
    state = models.CharField(_("state"), max_length=16, choices=RiskFlagState.choices, default=RiskFlagState.OPEN)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=256, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("risk flag")
        verbose_name_plural = _("risk flags")
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject_type", "subject_id", "day"], name="one_risk_flag_per_rule_subject_day"
            ),
        ]
        indexes = [models.Index(fields=["region", "state", "created_at"], name="risk_flag_queue")]

    def __str__(self) -> str:
        return f"{self.rule} {self.subject_id} {self.day}"
