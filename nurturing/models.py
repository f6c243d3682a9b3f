"""Outgoing email as database rows: the outbox that every email of the module goes through."""

from django.db import models

from leads.models import Contact


class OutboundEmail(models.Model):
    """One message, created in the transaction that decided to send it, sent later by a worker.

    `key` is unique, so the same decision taken twice (a task run twice, a double click)
    queues one email. A worker leases a row (queued → sending, with `claimed_at` and
    `claimed_by`), sends outside any transaction and records the result at once; rows whose
    lease expired (their worker died) go back to the queue.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    key = models.CharField(max_length=200, unique=True)
    to = models.EmailField(max_length=254)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject = models.CharField(max_length=300)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    # Marketing email obeys consent and suppression at send time; notifications to reps do not.
    marketing = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Who holds the lease (unique per claim; cleared when it expires): only the holder records a result.
    claimed_by = models.CharField(max_length=100, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # In the claim's order, like outbox_queued_idx: ending at next_attempt_at, it was
            # what a planner with statistics from before a bulk enqueue ("no queued rows")
            # chose, sorting every queued row on every claim until autovacuum analysed.
            models.Index(fields=["status", "next_attempt_at", "id"], name="outbox_due_idx"),
            # Only queued rows: stays small however many sent rows pile up, so claiming is fast.
            models.Index(
                fields=["next_attempt_at", "id"], condition=models.Q(status="queued"), name="outbox_queued_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to} ({self.status})"


class Sequence(models.Model):
    """An automated series of marketing emails that moves leads toward MQL."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    class Entry(models.TextChoices):
        SEGMENT = "segment", "Contacts matching a segment"
        MANUAL = "manual", "Manual enrolment only"
        EVENT = "event", "An event: rejected by sales"

    name = models.CharField(max_length=120, unique=True)
    description = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    entry = models.CharField(max_length=10, choices=Entry.choices, default=Entry.SEGMENT)
    # Segment: every condition must hold (empty lists and blank bounds match everyone).
    entry_stages = models.JSONField(default=list, blank=True, help_text='Lifecycle stages, e.g. ["lead"].')
    entry_min_score = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)
    entry_max_score = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)
    entry_grades = models.JSONField(default=list, blank=True, help_text='Fit grades, e.g. ["A", "B"].')
    entry_sources = models.JSONField(default=list, blank=True, help_text="Lead sources.")
    entry_conditions = models.JSONField(
        default=list,
        blank=True,
        help_text='Attribute tests like scoring fit rules: [{"field": "contact.country", "operator": "equals", '
        '"value": "Germany"}].',
    )
    entry_reject_reason = models.CharField(max_length=20, blank=True, help_text="For event entry: the reason.")
    exit_on_mql = models.BooleanField("Exit when the contact becomes an MQL", default=True)
    exit_on_sql = models.BooleanField("Exit when sales accepts the contact", default=True)
    exit_on_reply = models.BooleanField("Exit when the contact replies", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SequenceStep(models.Model):
    class DelayUnit(models.TextChoices):
        HOURS = "hours", "hours"
        DAYS = "days", "days"

    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    delay_amount = models.PositiveIntegerField(default=1, help_text="After the previous step (or enrolment).")
    delay_unit = models.CharField(max_length=5, choices=DelayUnit.choices, default=DelayUnit.DAYS)
    send_weekdays = models.JSONField(default=list, blank=True, help_text="0 = Monday … 6 = Sunday; empty: any day.")
    send_hour_from = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Sending window start (0–23).")
    send_hour_to = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Sending window end (1–24).")
    subject = models.CharField(max_length=200)
    body = models.TextField(help_text="Markdown. Merge fields: {{ first_name | there }} (a fallback after the bar).")
    skip_condition = models.JSONField(
        null=True,
        blank=True,
        help_text='Skip this step when it holds, e.g. {"field": "contact.lifecycle_stage", '
        '"operator": "equals", "value": "mql"}.',
    )

    class Meta:
        ordering = ["sequence", "position"]
        constraints = [models.UniqueConstraint(fields=["sequence", "position"], name="step_position_unique")]

    def __str__(self) -> str:
        return f"{self.sequence} · step {self.position}: {self.subject}"

    @property
    def weekday_names(self) -> str:
        names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        return ", ".join(names[day] for day in sorted(self.send_weekdays) if 0 <= day <= 6)


class StepVariant(models.Model):
    """An A/B variant of a step; contacts are split between variants by weight."""

    step = models.ForeignKey(SequenceStep, on_delete=models.CASCADE, related_name="variants")
    label = models.CharField(max_length=20, default="B")
    subject = models.CharField(max_length=200)
    body = models.TextField()
    weight = models.PositiveIntegerField(default=50, help_text="Share of contacts, against the step's own 50.")

    class Meta:
        ordering = ["step", "label"]
        constraints = [models.UniqueConstraint(fields=["step", "label"], name="variant_label_unique")]

    def __str__(self) -> str:
        return f"{self.step} · variant {self.label}"


class Enrolment(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        EXITED = "exited", "Exited"

    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="enrolments")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="enrolments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    source = models.CharField(max_length=20, default="segment")
    enrolled_at = models.DateTimeField()
    next_position = models.PositiveIntegerField(default=1)
    next_due_at = models.DateTimeField(null=True, blank=True)
    exited_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["-enrolled_at"]
        constraints = [
            # A contact is in a sequence at most once at a time.
            models.UniqueConstraint(
                fields=["sequence", "contact"], condition=models.Q(status="active"), name="one_active_enrolment"
            ),
        ]
        indexes = [models.Index(fields=["status", "next_due_at"], name="enrolment_due_idx")]

    def __str__(self) -> str:
        return f"{self.contact_id} in {self.sequence_id} ({self.status})"


class StepSend(models.Model):
    """One step for one enrolment: sent (through the outbox) or skipped. Unique, so a step
    is never mailed twice to the same enrolment."""

    enrolment = models.ForeignKey(Enrolment, on_delete=models.CASCADE, related_name="sends")
    step = models.ForeignKey(SequenceStep, on_delete=models.CASCADE, related_name="sends")
    variant = models.CharField(max_length=20, default="A")
    email = models.OneToOneField(
        OutboundEmail, null=True, blank=True, on_delete=models.SET_NULL, related_name="step_send"
    )
    skipped = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["enrolment", "step"], name="one_send_per_step")]

    def __str__(self) -> str:
        return f"{self.enrolment_id} step {self.step_id} ({self.variant})"


class EmailLink(models.Model):
    """A link of a marketing email, stored when the email was prepared.

    The click-tracking URL carries only this row's id (signed), and the redirect goes to
    the URL stored here, so the tracker can never be used as an open redirect.
    """

    email = models.ForeignKey(OutboundEmail, on_delete=models.CASCADE, related_name="links")
    position = models.PositiveIntegerField(help_text="1-based order of the link in the HTML part.")
    url = models.TextField()

    class Meta:
        ordering = ["email", "position"]
        constraints = [models.UniqueConstraint(fields=["email", "position"], name="email_link_position_unique")]

    def __str__(self) -> str:
        return f"{self.email_id} link {self.position}: {self.url[:80]}"


class Suppression(models.Model):
    """An address that must never receive marketing email again: it bounced hard, its owner
    reported us as spam, or someone suppressed it by hand.

    Kept per address rather than on the contact: a bounce may name an address no contact
    has (any more), and re-importing a suppressed address as a new contact must not make
    it mailable again. Consent (unsubscribed, do not email) stays on the contact.
    """

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Spam complaint"
        MANUAL = "manual", "Suppressed by hand"

    address = models.EmailField(max_length=254, unique=True, help_text="Stored lower-cased.")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.address} ({self.reason})"
