"""Citizens and their e-cards (certificates)."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

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

    # No index of its own: the (region, status) index below leads with the region (see migration 0006).
    region = models.ForeignKey(
        Region, on_delete=models.PROTECT, related_name="citizens", verbose_name=_("insured region"), db_index=False
    )
    id_number_enc = models.BinaryField()
    id_number_bidx = models.CharField(max_length=80, unique=True)
    id_number_masked = models.CharField(max_length=18)
    name = models.CharField(pgettext_lazy("person", "name"), max_length=64)  # indexed for prefix search in Meta.indexes
    phone_enc = models.BinaryField(null=True, blank=True)
    phone_bidx = models.CharField(max_length=80, blank=True, db_index=True)
    phone_masked = models.CharField(max_length=20, blank=True)
    birth_date = models.DateField(_("birth date"))  # no query filters or sorts on it: no index
    sex = models.CharField(_("sex"), max_length=1, choices=Sex.choices)
    scheme = models.CharField(_("scheme"), max_length=16, choices=Scheme.choices)
    status = models.CharField(_("status"), max_length=16, choices=CitizenStatus.choices, default=CitizenStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("citizen")
        verbose_name_plural = _("citizens")
        indexes = [
            models.Index(fields=["region", "status"]),
            # The search's `name__startswith` (and equality): one pattern-ops index rather than
            # Django's pair of a plain and a `_like` index, each maintained on every insert.
            models.Index(fields=["name"], name="citizen_name_prefix", opclasses=["varchar_pattern_ops"]),
        ]

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

    # Stored as codes (read by code and exports); the history on screens shows these labels.
    ACTION_LABELS = {
        "issue": _("Issue"),
        "activate": _("Activate"),
        "suspend": _("Suspend"),
        "reinstate": _("Reinstate"),
        "revoke": _("Revoke"),
        "reissue": _("Reissue"),
        "expire": _("Expire"),
    }

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} {self.from_state or '-'} -> {self.to_state}"

    def get_action_display(self) -> str:
        return str(self.ACTION_LABELS.get(self.action, self.action))

    def get_from_state_display(self) -> str:
        return str(CertificateState(self.from_state).label) if self.from_state else ""

    def get_to_state_display(self) -> str:
        return str(CertificateState(self.to_state).label)


# --- Insured-service catalogue, facilities, reimbursement policies -----------


class ServiceCategory(models.TextChoices):
    REGISTRATION = "registration", _("Registration")
    CONSULTATION = "consultation", _("Consultation")
    LAB_TEST = "lab_test", _("Laboratory test")
    IMAGING = "imaging", _("Imaging")
    DRUG_A = "drug_a", _("Class A drug")
    DRUG_B = "drug_b", _("Class B drug")
    NON_CATALOGUE = "non_catalogue", _("Outside the catalogue")
    OTHER = "other", _("Other")


# DESIGN.md section 4: the share of each category's line total that counts as eligible.
DEFAULT_ELIGIBLE_SHARES: dict[str, str] = {
    ServiceCategory.REGISTRATION.value: "1.00",
    ServiceCategory.CONSULTATION.value: "1.00",
    ServiceCategory.LAB_TEST.value: "1.00",
    ServiceCategory.IMAGING.value: "1.00",
    ServiceCategory.DRUG_A.value: "1.00",
    ServiceCategory.DRUG_B.value: "0.90",
    ServiceCategory.NON_CATALOGUE.value: "0.00",
    ServiceCategory.OTHER.value: "0.00",
}


def default_eligible_shares() -> dict[str, str]:
    return dict(DEFAULT_ELIGIBLE_SHARES)


class ServiceItem(models.Model):
    """An entry of the national insured-service catalogue (edited by national operators)."""

    code = models.CharField(_("code"), max_length=32, unique=True)
    name_zh = models.CharField(_("Chinese name"), max_length=128)
    name_en = models.CharField(_("English name"), max_length=128)
    category = models.CharField(_("category"), max_length=16, choices=ServiceCategory.choices)
    unit = models.CharField(_("unit"), max_length=16)
    max_unit_price_fen = models.BigIntegerField(_("maximum unit price (fen)"))
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("insured service")
        verbose_name_plural = _("insured services")
        constraints = [
            models.CheckConstraint(condition=Q(max_unit_price_fen__gte=0), name="service_max_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name_zh}"


class FacilityKind(models.TextChoices):
    HOSPITAL = "hospital", _("Hospital")
    CLINIC = "clinic", _("Clinic")
    PHARMACY = "pharmacy", _("Pharmacy")


class Facility(models.Model):
    """A hospital, clinic or pharmacy of a region (edited by its administrators)."""

    code = models.CharField(_("code"), max_length=32, unique=True)
    name_zh = models.CharField(_("Chinese name"), max_length=128)
    name_en = models.CharField(_("English name"), max_length=128)
    kind = models.CharField(_("kind"), max_length=16, choices=FacilityKind.choices)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="facilities", verbose_name=_("region"))
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("facility")
        verbose_name_plural = _("facilities")
        indexes = [models.Index(fields=["region", "code"], name="facility_region_code")]

    def __str__(self) -> str:
        return f"{self.code} {self.name_zh}"


class ReimbursementPolicy(models.Model):
    """One version of a region's policy for a scheme and a year.

    A version never changes once made (PostgreSQL refuses an UPDATE, see
    migration 0004): an edit creates the next version, effective from a date,
    so that a settlement always points at the exact numbers it was split with.
    """

    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="policies", verbose_name=_("region"))
    scheme = models.CharField(_("scheme"), max_length=16, choices=Scheme.choices)
    year = models.PositiveSmallIntegerField(_("year"))
    version = models.PositiveIntegerField(_("version"))
    effective_from = models.DateField(_("effective from"))
    deductible_fen = models.BigIntegerField(_("deductible (fen)"))
    ratio = models.DecimalField(_("reimbursement ratio"), max_digits=5, decimal_places=4)
    annual_cap_fen = models.BigIntegerField(_("annual fund cap (fen)"))
    personal_account_allowed = models.BooleanField(_("personal account may pay"))
    eligible_shares = models.JSONField(_("eligible share per category"), default=default_eligible_shares)
    premium_fen = models.BigIntegerField(_("yearly premium (fen)"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(_("created by"), max_length=150)

    class Meta:
        ordering = ["region", "scheme", "year", "version"]
        verbose_name = _("reimbursement policy")
        verbose_name_plural = _("reimbursement policies")
        constraints = [
            models.UniqueConstraint(fields=["region", "scheme", "year", "version"], name="one_policy_per_version"),
            models.CheckConstraint(condition=Q(version__gte=1), name="policy_version_positive"),
            models.CheckConstraint(condition=Q(deductible_fen__gte=0), name="policy_deductible_not_negative"),
            models.CheckConstraint(condition=Q(annual_cap_fen__gte=0), name="policy_cap_not_negative"),
            models.CheckConstraint(condition=Q(ratio__gte=0) & Q(ratio__lte=1), name="policy_ratio_between_0_and_1"),
            models.CheckConstraint(
                condition=Q(scheme="employee", premium_fen__isnull=True)
                | Q(scheme="resident", premium_fen__isnull=False, premium_fen__gte=0),
                name="policy_premium_only_for_residents",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.region_id} {self.scheme} {self.year} v{self.version}"


# --- Bulk citizen import jobs (PARTNER_API.md "Provisioning") ---------------


class ImportJobState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


def import_file_path(instance: "ImportJob", filename: str) -> str:
    # A random name: the uploader's file name is kept in `original_name`, never in the path.
    import uuid
    from pathlib import PurePath

    # Every suffix: "upload.csv.enc" keeps both its format and that it is encrypted.
    return f"imports/{uuid.uuid4().hex}{''.join(PurePath(filename).suffixes).lower()}"


class ImportJob(models.Model):
    """One uploaded citizen file, imported in the background in chunks.

    The job's first task cuts the file into `ImportChunk`s; `split_row` is the
    spreadsheet row number (the header is row 1) up to which the file is cut,
    written in the same transaction as each chunk, so that a split that dies is
    resumed from there. Any import worker then claims chunks; each chunk commits
    its citizens, error rows and the job's counts together. `chunks_total` is set
    when the split is complete; the job is done when every chunk is.
    """

    uploaded_by = models.ForeignKey(
        "portal.User", on_delete=models.PROTECT, related_name="import_jobs", verbose_name=_("uploaded by")
    )
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="import_jobs", verbose_name=_("region"))
    file = models.FileField(upload_to=import_file_path, max_length=200)
    original_name = models.CharField(_("file name"), max_length=255)
    file_size = models.PositiveBigIntegerField(_("size (bytes)"))
    state = models.CharField(_("state"), max_length=16, choices=ImportJobState.choices, default=ImportJobState.QUEUED)
    rows_total = models.PositiveIntegerField(_("rows in the file"), null=True, blank=True)
    rows_done = models.PositiveIntegerField(_("rows done"), default=0)
    created = models.PositiveIntegerField(_("created"), default=0)
    updated = models.PositiveIntegerField(_("updated"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    split_row = models.PositiveIntegerField(default=1)
    chunks_total = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(_("error"), max_length=500, blank=True)
    # The uploader's screen language: the worker writes the row errors in it.
    language = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(_("uploaded at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    requeued_at = models.DateTimeField(null=True, blank=True)  # by the sweep: not again before a run had its time

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("citizen import")
        verbose_name_plural = _("citizen imports")
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="import_job_state_heartbeat")]

    def __str__(self) -> str:
        return f"import {self.pk}"

    @property
    def percent(self) -> int | None:
        """How far through the file, 0-100; None while the size is unknown."""
        if self.state == ImportJobState.DONE:
            return 100
        if not self.rows_total:
            return None
        return min(99, self.rows_done * 100 // self.rows_total)

    @property
    def is_finished(self) -> bool:
        return self.state in (ImportJobState.DONE, ImportJobState.FAILED)


class ImportChunkState(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class ImportChunk(models.Model):
    """A run of consecutive rows of an import (`ECARD_IMPORT_CHUNK_ROWS`), claimed by any
    import worker (`FOR UPDATE SKIP LOCKED`) and committed in one transaction.

    `payload` holds the rows as read from the file, compressed and encrypted (AES-GCM,
    bound to the job and the chunk's index): personal data is never stored in clear. It
    is emptied when the chunk is done or the job ends. `attempts` is the fencing token of
    the run that claimed the chunk; a running chunk whose `heartbeat_at` is stale is
    claimed again (its worker died), up to the job's attempts limit."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_row = models.PositiveIntegerField()
    last_row = models.PositiveIntegerField()
    rows = models.PositiveIntegerField()
    payload = models.BinaryField()
    state = models.CharField(max_length=16, choices=ImportChunkState.choices, default=ImportChunkState.PENDING)
    claimed_by = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="import_chunk_job_index")]

    def __str__(self) -> str:
        return f"import {self.job_id} chunk {self.index}"


class ImportRowError(models.Model):
    """A refused row of an import: where, why and the value refused, masked if it is
    personal data (an identity number, a name, a phone number)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    row = models.PositiveIntegerField(_("row"))
    column = models.CharField(_("column"), max_length=64, blank=True)
    message = models.CharField(_("message"), max_length=500)
    value = models.CharField(_("submitted value"), max_length=64, blank=True, default="")

    class Meta:
        ordering = ["row", "id"]
        indexes = [models.Index(fields=["job", "row"], name="import_error_job_row")]

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"
