"""CRM core: accounts, contacts, their activities and lifecycle history."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.urls import reverse


class LifecycleStage(models.TextChoices):
    SUBSCRIBER = "subscriber", "Subscriber"
    LEAD = "lead", "Lead"
    MQL = "mql", "Marketing-qualified lead"
    SQL = "sql", "Sales-qualified lead"
    OPPORTUNITY = "opportunity", "Opportunity"
    CUSTOMER = "customer", "Customer"
    RECYCLED = "recycled", "Recycled"
    DISQUALIFIED = "disqualified", "Disqualified"


class Seniority(models.TextChoices):
    UNKNOWN = "", "Unknown"
    INDIVIDUAL = "individual", "Individual contributor"
    MANAGER = "manager", "Manager"
    DIRECTOR = "director", "Director"
    VP = "vp", "Vice president"
    C_LEVEL = "c_level", "C-level"
    OWNER = "owner", "Owner / founder"
    STUDENT = "student", "Student"
    INTERN = "intern", "Intern"


class ConsentStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    OPTED_IN = "opted_in", "Opted in"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    DO_NOT_EMAIL = "do_not_email", "Do not email"


class Account(models.Model):
    name = models.CharField(max_length=255)
    # Stored normalised (lower case, no scheme, no "www."), see leads.normalise.
    domain = models.CharField(max_length=255, null=True, blank=True, unique=True)
    industry = models.CharField(max_length=120, blank=True)
    employee_count = models.PositiveIntegerField(null=True, blank=True)
    annual_revenue = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    country = models.CharField(max_length=80, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_accounts",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(Lower("name"), name="account_name_lower_idx"),
            # A publish's rescore asks which accounts changed since its stored scores.
            models.Index(fields=["updated_at"], name="account_updated_at_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("leads:account_detail", args=[self.pk])


class CustomAttribute(models.Model):
    """A typed attribute that imported columns (or integrations) can fill on contacts.

    Values live in Contact.attributes under `key`, already converted to `data_type`, so
    scoring rules can compare numbers as numbers.
    """

    class DataType(models.TextChoices):
        TEXT = "text", "Text"
        NUMBER = "number", "Number"
        BOOLEAN = "boolean", "Yes / no"
        DATE = "date", "Date"

    key = models.SlugField(max_length=80, unique=True)
    label = models.CharField(max_length=120)
    data_type = models.CharField(max_length=10, choices=DataType.choices, default=DataType.TEXT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label"]

    def __str__(self) -> str:
        return f"{self.label} ({self.get_data_type_display()})"


class Contact(models.Model):
    email = models.EmailField(max_length=254, null=True, blank=True)
    first_name = models.CharField(max_length=120, blank=True)
    last_name = models.CharField(max_length=120, blank=True)
    job_title = models.CharField(max_length=200, blank=True)
    seniority = models.CharField(max_length=20, choices=Seniority.choices, blank=True)
    department = models.CharField(max_length=120, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    country = models.CharField(max_length=80, blank=True)
    city = models.CharField(max_length=120, blank=True)
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts")
    lead_source = models.CharField(max_length=120, blank=True)
    utm_source = models.CharField(max_length=120, blank=True)
    utm_medium = models.CharField(max_length=120, blank=True)
    utm_campaign = models.CharField(max_length=200, blank=True)
    utm_term = models.CharField(max_length=200, blank=True)
    utm_content = models.CharField(max_length=200, blank=True)
    lifecycle_stage = models.CharField(max_length=20, choices=LifecycleStage.choices, default=LifecycleStage.LEAD)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_contacts",
    )
    email_consent_status = models.CharField(max_length=20, choices=ConsentStatus.choices, default=ConsentStatus.UNKNOWN)
    email_consent_at = models.DateTimeField(null=True, blank=True)
    email_consent_source = models.CharField(max_length=200, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(max_length=200, null=True, blank=True, unique=True)
    # Set when the contact becomes an MQL (the queue's age and the hand-off SLA count
    # from here) and when it is given to a rep.
    mql_at = models.DateTimeField(null=True, blank=True)
    # A copy of the current score's sort and filter keys, so the sales queue filters and
    # sorts one table through one index instead of joining tens of thousands of MQLs to
    # their scores. Kept current only while the contact is an MQL (copied on entering the
    # stage, rewritten by scoring while there): a rule change rewrites the scores of half a
    # million contacts, and rewriting this wide, much-indexed row for each would double its
    # cost. Anywhere else, read ContactScore (contact.score).
    score_total = models.DecimalField(max_digits=8, decimal_places=1, default=0, editable=False)
    score_fit_grade = models.CharField(max_length=1, blank=True, editable=False)
    score_mql_level = models.CharField(max_length=40, blank=True, editable=False)
    owner_assigned_at = models.DateTimeField(null=True, blank=True)
    sla_reminded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(Lower("email"), condition=Q(email__isnull=False), name="contact_email_ci_unique"),
        ]
        indexes = [
            models.Index(fields=["lifecycle_stage", "mql_at"], name="contact_stage_mql_at_idx"),
            # The queue: MQLs, best score first, then the longest waiting. Only MQLs (a few
            # percent of contacts), and carrying the common filters, so a filtered queue is
            # counted and paged from the index alone instead of reading every MQL's row.
            models.Index(
                fields=["-score_total", "mql_at", "id"],
                include=["score_fit_grade", "score_mql_level", "country", "owner"],
                condition=Q(lifecycle_stage=LifecycleStage.MQL),
                name="contact_queue_idx",
            ),
        ]
        # No other index: each is written again whenever a contact's row moves (an update of
        # an indexed column: the queue copy of a score, a stage, an owner), and a rule change
        # updates thousands of rows in the queue. None for searching names either: the
        # search's "contains" (icontains) cannot use a btree. Migration 0013 also drops the
        # `LIKE` index Django adds beside a unique text column (external_id): the external id
        # is looked up exactly, or by a case-insensitive prefix, which that index cannot serve.

    def __str__(self) -> str:
        return self.full_name or self.email or self.external_id or f"Contact #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("leads:contact_detail", args=[self.pk])

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class ActivityType(models.Model):
    """The catalogue of things a contact can do. System types are seeded; marketers add more."""

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=300, blank=True)
    is_system = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Activity(models.Model):
    # No index of its own: activity_contact_time_idx starts with the contact.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="activities", db_index=False)
    # No database constraint: every ingest would lock the few hot type rows to check it (a
    # MultiXact per concurrent ingest in PostgreSQL). Types are never deleted (PROTECT), and
    # the ingest only stores ids it has just read from the type table.
    type = models.ForeignKey(ActivityType, on_delete=models.PROTECT, related_name="activities", db_constraint=False)
    occurred_at = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=60, default="api")
    external_id = models.CharField(max_length=200, null=True, blank=True)
    # The source's own id when it sent one, otherwise a fingerprint of the event, so
    # that a re-sent event always hits the (source, dedupe_key) unique constraint.
    dedupe_key = models.CharField(max_length=200)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        verbose_name_plural = "activities"
        constraints = [
            models.UniqueConstraint(fields=["source", "dedupe_key"], name="activity_source_dedupe_unique"),
        ]
        indexes = [models.Index(fields=["contact", "occurred_at"], name="activity_contact_time_idx")]

    def __str__(self) -> str:
        return f"{self.type} by {self.contact_id} at {self.occurred_at:%Y-%m-%d %H:%M}"


class StageChange(models.Model):
    """One lifecycle transition. Funnel numbers for any past date are computed from these."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.CharField(max_length=20, choices=LifecycleStage.choices, blank=True)
    to_stage = models.CharField(max_length=20, choices=LifecycleStage.choices)
    changed_at = models.DateTimeField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    rule = models.CharField(max_length=200, blank=True, help_text="The rule or process that made the change.")
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["to_stage", "changed_at"]),
            models.Index(fields=["contact", "changed_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.from_stage or '∅'} → {self.to_stage}"


class Outcome(models.Model):
    """A known result for a lead: what scoring is evaluated and tuned on."""

    class Kind(models.TextChoices):
        CONVERTED = "converted", "Converted"
        NOT_CONVERTED = "not_converted", "Did not convert"
        OPPORTUNITY = "opportunity", "Opportunity created"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    class Source(models.TextChoices):
        IMPORT = "import", "Imported history"
        SALES = "sales", "Sales rep"
        API = "api", "API"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="outcomes")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    occurred_at = models.DateTimeField()
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            # One imported outcome per contact: re-importing a file updates it.
            models.UniqueConstraint(
                fields=["contact"], condition=Q(source="import"), name="outcome_one_import_per_contact"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.kind}"


class ImportJob(models.Model):
    """A CSV upload being mapped, previewed and imported by a Celery task.

    The file's text is stored here rather than on local disk so that any worker on
    any machine can process it; progress is stored after every chunk so a restarted
    task resumes where the last one stopped.
    """

    class Status(models.TextChoices):
        MAPPING = "mapping", "Waiting for column mapping"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="import_jobs"
    )
    filename = models.CharField(max_length=255)
    content = models.TextField()
    headers = models.JSONField(default=list)
    mapping = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.MAPPING)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import #{self.pk} {self.filename}"

    @property
    def percent_done(self) -> int:
        if not self.total_rows:
            return 100 if self.status == self.Status.DONE else 0
        return int(100 * self.processed_rows / self.total_rows)

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}


class ImportRejectedRow(models.Model):
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="rejected_rows")
    row_number = models.PositiveIntegerField(help_text="1-based line in the file, header excluded.")
    values = models.JSONField()
    errors = models.JSONField()

    class Meta:
        ordering = ["row_number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "row_number"], name="import_rejected_row_unique"),
        ]

    def __str__(self) -> str:
        return f"Import #{self.job_id} row {self.row_number}"


class RejectReason(models.TextChoices):
    NOT_A_FIT = "not_a_fit", "Not a fit"
    NO_BUDGET = "no_budget", "No budget"
    NO_AUTHORITY = "no_authority", "No authority"
    BAD_TIMING = "bad_timing", "Bad timing"
    BAD_DATA = "bad_data", "Bad data"
    COMPETITOR = "competitor", "Competitor"
    ALREADY_CUSTOMER = "already_customer", "Already a customer"
    OTHER = "other", "Other"
    SLA_EXPIRED = "sla_expired", "SLA expired"


class HandoffDecision(models.Model):
    """A rep accepting or rejecting an MQL: what scoring is later tuned on."""

    class Decision(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="handoff_decisions")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    reason = models.CharField(max_length=20, choices=RejectReason.choices, blank=True)
    note = models.CharField(max_length=1000, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField()
    mql_at = models.DateTimeField(null=True, blank=True)
    to_stage = models.CharField(max_length=20, choices=LifecycleStage.choices)

    class Meta:
        ordering = ["-decided_at"]
        indexes = [models.Index(fields=["decision", "decided_at"])]

    def __str__(self) -> str:
        return f"{self.contact_id} {self.decision}"

    @property
    def time_to_handoff(self):
        return self.decided_at - self.mql_at if self.mql_at else None


class LeadFeedback(models.Model):
    class Rating(models.TextChoices):
        GOOD = "good", "Good lead"
        BAD = "bad", "Bad lead"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="feedback")
    rating = models.CharField(max_length=4, choices=Rating.choices)
    reason = models.CharField(max_length=20, choices=RejectReason.choices, blank=True)
    note = models.CharField(max_length=1000, blank=True)
    given_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    given_at = models.DateTimeField()

    class Meta:
        ordering = ["-given_at"]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.rating}"


class AuditEntry(models.Model):
    """Who did what to which record, with the values before and after."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=60)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=60)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"]), models.Index(fields=["action", "at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}#{self.object_id}"


class RoutingRule(models.Model):
    """Territory routing: MQLs whose country or industry matches go to this rep first."""

    class Field(models.TextChoices):
        COUNTRY = "country", "Contact country"
        INDUSTRY = "industry", "Account industry"

    field = models.CharField(max_length=10, choices=Field.choices)
    value = models.CharField(max_length=120)
    rep = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="routing_rules")
    priority = models.PositiveIntegerField(default=100, help_text="Lower runs first.")

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return f"{self.get_field_display()} = {self.value} → {self.rep}"


class RepRotation(models.Model):
    """A rep's place in the round-robin: the next MQL goes to the active rep served longest ago."""

    rep = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rotation")
    is_active = models.BooleanField(default=True, help_text="Takes new MQLs.")
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.rep} ({'active' if self.is_active else 'paused'})"


class CampaignCost(models.Model):
    """What marketing spent on a campaign over a period: the reports divide it by the MQLs it brought."""

    campaign = models.CharField(
        max_length=200,
        help_text="Exactly as in utm_campaign (or an activity’s “campaign”).",
    )
    name = models.CharField(max_length=200, blank=True, help_text="A readable name, if the key is cryptic.")
    period_start = models.DateField("From")
    period_end = models.DateField("To", help_text="Inclusive.")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, help_text="ISO 4217 code, e.g. EUR.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "campaign", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(period_end__gte=F("period_start")), name="campaign_cost_period_order"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="campaign_cost_amount_not_negative"),
        ]
        indexes = [models.Index(fields=["period_start", "period_end"], name="campaign_cost_period_idx")]

    def __str__(self) -> str:
        return f"{self.campaign} {self.period_start}–{self.period_end}: {self.amount} {self.currency}"

    @property
    def days(self) -> int:
        return (self.period_end - self.period_start).days + 1


class HandoffRequest(models.Model):
    """A lead that has just become an MQL and waits for its hand-off (nurture exits, routing,
    the rep's email): written in the transaction that qualified it when that transaction
    answers a caller who waits (`POST /api/activities/?score=now`), deleted by the hand-off
    task that serves it after commit. Beat queues the requests whose task never ran again."""

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, primary_key=True, related_name="+")
    from_stage = models.CharField(max_length=20, blank=True)
    # The qualification this hand-off belongs to: a lead that left the queue and came back
    # since has a newer clock, and is handed off by that qualification, not this one.
    mql_at = models.DateTimeField()
    requested_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"Hand off {self.contact_id} (MQL since {self.mql_at:%Y-%m-%d %H:%M})"
