"""Citizens and their e-cards (certificates)."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from portal.crypto import decrypt_text
from portal.models import Region

ID_NUMBER_PURPOSE = "citizen.id_number"
PHONE_PURPOSE = "citizen.phone"


class Scheme(models.TextChoices):
    EMPLOYEE = "employee", _("Employee scheme")
    RESIDENT = "resident", _("Resident scheme")


class CitizenStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    MOVED_OUT = "moved_out", _("Moved out")
    DECEASED = "deceased", _("Deceased")


class Sex(models.TextChoices):
    MALE = "M", _("Male")
    FEMALE = "F", _("Female")


class Citizen(models.Model):
    """An insured person. Identity number and phone are encrypted at rest;
    exact lookup goes through their blind indexes (one indexed query)."""

    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="citizens", verbose_name=_("insured region"))
    id_number_enc = models.BinaryField()
    id_number_bidx = models.CharField(max_length=80, unique=True)
    id_number_masked = models.CharField(max_length=18)
    name = models.CharField(_("name"), max_length=64, db_index=True)
    phone_enc = models.BinaryField(null=True, blank=True)
    phone_bidx = models.CharField(max_length=80, blank=True, db_index=True)
    phone_masked = models.CharField(max_length=20, blank=True)
    birth_date = models.DateField(_("birth date"), db_index=True)
    sex = models.CharField(_("sex"), max_length=1, choices=Sex.choices)
    scheme = models.CharField(_("scheme"), max_length=16, choices=Scheme.choices)
    status = models.CharField(_("status"), max_length=16, choices=CitizenStatus.choices, default=CitizenStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("citizen")
        verbose_name_plural = _("citizens")
        indexes = [models.Index(fields=["region", "status"])]

    def __str__(self) -> str:
        return f"citizen {self.pk}"

    @property
    def id_number(self) -> str:
        return decrypt_text(self.id_number_enc, purpose=ID_NUMBER_PURPOSE)

    @property
    def phone(self) -> str:
        return decrypt_text(self.phone_enc, purpose=PHONE_PURPOSE) if self.phone_enc else ""

    @property
    def name_masked(self) -> str:
        from portal.masking import mask_name

        return mask_name(self.name)

    def current_certificate(self) -> "Certificate | None":
        return self.certificates.order_by("-issued_at", "-id").first()


class CertificateState(models.TextChoices):
    PENDING_ACTIVATION = "pending_activation", _("Pending activation")
    ACTIVE = "active", _("Active")
    SUSPENDED = "suspended", _("Suspended")
    REVOKED = "revoked", _("Revoked")
    EXPIRED = "expired", _("Expired")


LIVE_STATES = (CertificateState.PENDING_ACTIVATION, CertificateState.ACTIVE, CertificateState.SUSPENDED)
TERMINAL_STATES = (CertificateState.REVOKED, CertificateState.EXPIRED)


class EndReason(models.TextChoices):
    REVOKED = "revoked", _("Revoked")
    CITIZEN_STATUS = "citizen_status", _("Citizen deceased or moved out")
    EXPIRED = "expired", _("Expired")
    REISSUED = "reissued", _("Replaced by a reissued card")


class Certificate(models.Model):
    """An e-card. At most one live (non-terminal) card per citizen, enforced by the database."""

    number = models.CharField(_("number"), max_length=32, unique=True)
    citizen = models.ForeignKey(Citizen, on_delete=models.PROTECT, related_name="certificates")
    state = models.CharField(_("state"), max_length=24, choices=CertificateState.choices)
    issued_at = models.DateTimeField(_("issued at"))
    activated_at = models.DateTimeField(_("activated at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"))
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    end_reason = models.CharField(max_length=24, choices=EndReason.choices, blank=True)
    previous = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="successor", verbose_name=_("replaces")
    )

    class Meta:
        ordering = ["-issued_at", "-id"]
        verbose_name = _("e-card")
        verbose_name_plural = _("e-cards")
        constraints = [
            models.UniqueConstraint(
                fields=["citizen"],
                condition=Q(state__in=["pending_activation", "active", "suspended"]),
                name="one_live_certificate_per_citizen",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "expires_at"], name="certificate_state_expiry"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES


class CertificateTransition(models.Model):
    """The e-card history: every transition, who did it and why."""

    certificate = models.ForeignKey(Certificate, on_delete=models.PROTECT, related_name="transitions")
    action = models.CharField(max_length=24)
    from_state = models.CharField(max_length=24, blank=True)
    to_state = models.CharField(max_length=24)
    actor_label = models.CharField(max_length=150)
    reason = models.CharField(max_length=256, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
