"""Scoring models: versioned rule sets, per-contact engagement aggregates, stored scores.

Time in scoring is counted in whole days (in settings.TIME_ZONE): an activity's age is
today's date minus the date it happened. Look-back windows and decay half-lives work on
that age, which is what lets per-contact daily aggregates stand in for the activities
themselves (see scoring.engine).
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from leads.models import ActivityType, Contact

GRADES = ["A", "B", "C", "D"]

# Bounds on what a marketer can set: wide for any real scoring model, narrow enough that sums
# over a million contacts stay inside PostgreSQL's integers and a half-life's table of decay
# weights (21 half-lives of days) stays small.
POINTS_LIMIT = 1000
SCORE_LIMIT = 10_000
WINDOW_DAYS_LIMIT = 3650
HALF_LIFE_DAYS_LIMIT = 365


def _between(low: int, high: int) -> list:
    return [MinValueValidator(low), MaxValueValidator(high)]


RULE_POINTS = _between(-POINTS_LIMIT, POINTS_LIMIT)
SCORE_BOUND = _between(0, SCORE_LIMIT)


class ScoringModel(models.Model):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    scoring_model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    note = models.CharField(max_length=300, blank=True)
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    fit_cap = models.IntegerField(
        "Fit cap", default=60, validators=SCORE_BOUND, help_text="Most fit points a contact can have."
    )
    engagement_cap = models.IntegerField(
        "Engagement cap", default=100, validators=SCORE_BOUND, help_text="Most engagement points a contact can have."
    )
    grade_a_min = models.IntegerField(
        "Grade A from", default=40, validators=SCORE_BOUND, help_text="Fit points for grade A."
    )
    grade_b_min = models.IntegerField(
        "Grade B from", default=25, validators=SCORE_BOUND, help_text="Fit points for grade B."
    )
    grade_c_min = models.IntegerField(
        "Grade C from", default=10, validators=SCORE_BOUND, help_text="Fit points for grade C (below: D)."
    )
    mqa_threshold = models.IntegerField(
        "Qualified account from",
        default=150,
        validators=_between(1, 100 * SCORE_LIMIT),
        help_text="Account score that makes a marketing-qualified account.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["scoring_model", "number"], name="version_number_unique"),
            models.UniqueConstraint(fields=["status"], condition=Q(status="active"), name="one_active_version"),
            models.UniqueConstraint(fields=["scoring_model"], condition=Q(status="draft"), name="one_draft_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.scoring_model} v{self.number} ({self.get_status_display()})"


class FitRule(models.Model):
    """Who the lead is: a test on a contact or account field, a custom attribute or the email."""

    class Operator(models.TextChoices):
        EQUALS = "equals", "equals"
        ONE_OF = "one_of", "is one of"
        CONTAINS = "contains", "contains"
        STARTS_WITH = "starts_with", "starts with"
        BETWEEN = "between", "is between"
        IS_SET = "is_set", "is set"
        IS_EMPTY = "is_empty", "is empty"
        FREE_MAIL = "free_mail", "is a free-mail address"
        DOMAIN_IN = "domain_in", "has its domain in"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="fit_rules")
    name = models.CharField(max_length=120)
    field = models.CharField(
        max_length=120, help_text="contact.job_title, account.industry, attribute.total_visits, email …"
    )
    operator = models.CharField(max_length=20, choices=Operator.choices)
    value = models.JSONField(
        default=None,
        null=True,
        blank=True,
        help_text="A text, a list of texts (one of, domain in), or [min, max] (between).",
    )
    points = models.IntegerField(validators=RULE_POINTS, help_text="Negative points mark a negative signal.")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def value_display(self) -> str:
        if self.value is None:
            return ""
        if self.operator == self.Operator.BETWEEN and isinstance(self.value, list):
            low, high = (list(self.value) + [None, None])[:2]
            return f"{'…' if low is None else low} – {'…' if high is None else high}"
        if isinstance(self.value, list):
            return ", ".join(str(item) for item in self.value)
        return str(self.value)


class EngagementRule(models.Model):
    """What the lead did: points per matching activity, capped, windowed or decaying."""

    class PropertyOperator(models.TextChoices):
        CONTAINS = "contains", "contains"
        EQUALS = "equals", "equals"
        STARTS_WITH = "starts_with", "starts with"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="engagement_rules")
    name = models.CharField(max_length=120)
    activity_type = models.ForeignKey(ActivityType, on_delete=models.PROTECT, related_name="+")
    property_name = models.CharField(max_length=60, blank=True, help_text="Optional filter, e.g. url")
    property_operator = models.CharField(max_length=20, choices=PropertyOperator.choices, blank=True)
    property_value = models.CharField(max_length=200, blank=True)
    points = models.IntegerField(
        validators=RULE_POINTS, help_text="Points per occurrence; negative for negative signals."
    )
    cap = models.PositiveIntegerField(
        null=True, blank=True, validators=_between(1, SCORE_LIMIT), help_text="Most points (in size) this rule gives."
    )
    window_days = models.PositiveIntegerField(
        null=True, blank=True, validators=_between(1, WINDOW_DAYS_LIMIT), help_text="Only the last N days count."
    )
    half_life_days = models.PositiveIntegerField(
        null=True, blank=True, validators=_between(1, HALF_LIFE_DAYS_LIMIT), help_text="Points halve every N days."
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(window_days__isnull=True) | Q(half_life_days__isnull=True),
                name="engagement_window_or_decay",
                violation_error_message="Choose a look-back window or a decay half-life, not both.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MqlLevel(models.Model):
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="mql_levels")
    name = models.CharField(max_length=40)
    # At least 1: a level at 0 or below would make every contact an MQL.
    min_score = models.IntegerField(validators=_between(1, SCORE_LIMIT))
    min_fit_grade = models.CharField(max_length=1, choices=[(g, g) for g in GRADES], default="C")

    class Meta:
        ordering = ["-min_score"]
        constraints = [models.UniqueConstraint(fields=["version", "name"], name="mql_level_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} (≥ {self.min_score}, fit ≥ {self.min_fit_grade})"


class Matcher(models.Model):
    """An activity filter that daily aggregates are kept for (a type, maybe a property test).

    Every activity type has a matcher with no property test; rules with a property filter
    add theirs. Adding a matcher backfills its aggregates once from that type's activities.
    """

    key = models.CharField(max_length=64, unique=True)
    activity_type = models.ForeignKey(ActivityType, on_delete=models.CASCADE, related_name="+")
    property_name = models.CharField(max_length=60, blank=True)
    property_operator = models.CharField(max_length=20, blank=True)
    property_value = models.CharField(max_length=200, blank=True)
    backfilled = models.BooleanField(default=False)

    def __str__(self) -> str:
        test = (
            f" where {self.property_name} {self.property_operator} {self.property_value}" if self.property_name else ""
        )
        return f"{self.activity_type.key}{test}"


class DailyEngagement(models.Model):
    """How many activities matching `matcher` a contact did on `day`: what engagement rules read."""

    # No index of its own: the unique constraint's index starts with the contact.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+", db_index=False)
    matcher = models.ForeignKey(Matcher, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "matcher", "day"], name="daily_engagement_unique")]

    def __str__(self) -> str:
        return f"{self.contact_id} {self.matcher_id} {self.day}: {self.count}"


class PendingEngagement(models.Model):
    """Counts from ingests not yet added to DailyEngagement: insert-only, so concurrent ingests
    never wait on each other's counter rows. The rescore of the contact (which its ingest
    requested) folds them in, under the contact's lock; readers add them meanwhile."""

    # No database constraints: checking them would lock the hot matcher and contact rows in
    # every ingest. Rows live seconds; deletes through the ORM still cascade to them.
    id = models.BigAutoField(primary_key=True)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    matcher = models.ForeignKey(Matcher, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    day = models.DateField()
    count = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"+{self.count} for {self.contact_id} {self.matcher_id} {self.day}"


class EngagementSums(models.Model):
    """Per contact, what each engagement rule's points multiply on day `as_of`: for every
    (matcher, window or half-life) in `signature`, its occurrences in the window or its
    decayed occurrences, in millionths. A full rescore whose rules differ
    only in points, caps, fit rules or levels reads these instead of the daily aggregates:
    a rule change costs one row per contact. Derived data, PostgreSQL's SQL rescore only:
    rebuilt from DailyEngagement by the next full rescore whenever it is missing or stale
    (another day, other keys) and deleted whenever the contact's daily aggregates change."""

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, primary_key=True, related_name="+")
    as_of = models.DateField()
    signature = models.TextField(help_text="The keys the sums are for, in order, comma-separated.")
    # bigint[] on PostgreSQL, the only database that writes these rows (elsewhere they are never written).
    sums = ArrayField(models.BigIntegerField())

    def __str__(self) -> str:
        return f"{self.contact_id} on {self.as_of}"


class ContactScore(models.Model):
    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, primary_key=True, related_name="score")
    # The version that computed the numbers; a publish's run leaves the scores whose numbers
    # it keeps, which then stand for the new version (selectors.effective_versions_assign).
    # Not indexed: a publish rewrites half the scores' versions, and with the primary key as the
    # table's only index PostgreSQL updates the rows in place (HOT; the table keeps free room
    # in its pages, migration 0014), without an index entry per row. Nothing searches scores
    # by version; discarding a draft (which no score references) scans the table once.
    # No database constraint either (PROTECT still guards deletes, in Django): its check ran
    # at commit for every rewritten score, a quarter of a full rescore's time. Published
    # versions are never deleted, and only published versions score.
    version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    fit = models.DecimalField(max_digits=8, decimal_places=1, default=0)
    engagement = models.DecimalField(max_digits=8, decimal_places=1, default=0)
    # Not indexed: nothing searches scores by total (the queue sorts the contact's copy), and
    # a rule change rewrites the totals of half the contacts.
    total = models.DecimalField(max_digits=8, decimal_places=1, default=0)
    fit_grade = models.CharField(max_length=1, default="D")
    mql_level = models.CharField(max_length=40, blank=True)
    # The sums before the caps per dimension (fit points; engagement in tenths: each rule's
    # contribution is rounded to a tenth). A publish that changes a few rules adjusts them by
    # those rules' old and new contributions instead of re-evaluating every rule
    # (scoring.sql_rescore). Null for scores written before they were kept: evaluated in full.
    fit_uncapped = models.IntegerField(null=True, blank=True)
    engagement_uncapped_tenths = models.BigIntegerField(null=True, blank=True)
    # The contact's account when scored: a full rescore rolls every account up from the scores
    # alone (sql_rescore.accounts_rescore_all), where joining a million contacts took most of
    # its time. A contact that moves is rescored (its save requests it), which rewrites this
    # and rolls both accounts up. No index and no database constraint: written for every row.
    account = models.ForeignKey(
        "leads.Account",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    as_of = models.DateField(help_text="The day the score was computed for (decay and windows).")
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.total} ({self.fit_grade})"

    @property
    def explanation(self) -> list[dict]:
        """Every rule's contribution, as JSON-ready dicts; computed on read (see
        selectors.scores_explain, which explains a whole page of scores at once)."""
        if getattr(self, "_explained", None) is None:
            from .selectors import scores_explain

            scores_explain([self])
        return [part.as_json() for part in self._explained.contributions]

    def explained_as(self, result) -> None:
        """Take the engine's result for this score: its contributions, and its numbers,
        which differ from the stored ones only while a rescore of this contact is on its way."""
        self._explained = result
        self.fit, self.engagement, self.total = result.fit, result.engagement, result.total
        self.fit_grade, self.mql_level = result.fit_grade, result.mql_level


class ScoreChange(models.Model):
    # No index of its own: the (contact, changed_at) index serves every lookup by contact.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="score_changes", db_index=False)
    # No database constraint, as ContactScore.version: checked at commit for every change a
    # rescore records. Versions that scored are never deleted; PROTECT guards it in Django.
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+", db_constraint=False)
    changed_at = models.DateTimeField()
    old_total = models.DecimalField(max_digits=8, decimal_places=1)
    new_total = models.DecimalField(max_digits=8, decimal_places=1)
    delta = models.DecimalField(max_digits=8, decimal_places=1)
    fit_grade = models.CharField(max_length=1)
    reason = models.CharField(max_length=200)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["contact", "changed_at"])]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.old_total} → {self.new_total} ({self.reason})"


class ScoreChangeBatch(models.Model):
    """Score changes a full rescore's chunk recorded, as arrays in contact order (one element
    per contact whose total changed): the history of a publish that changes half a million
    totals, a few rows per chunk instead of a row per change, which cost more to write than
    the scores themselves. PostgreSQL's set-based rescore only; a contact's history reads
    these with its ScoreChange rows (selectors.score_history). A chunk writes one row per
    BUCKET of contact ids it covers, so a contact's entries are found by its bucket."""

    BUCKET = 1024

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+", db_constraint=False)
    changed_at = models.DateTimeField()
    reason = models.CharField(max_length=200)
    bucket = models.BigIntegerField(db_index=True, help_text="contact id // BUCKET of every contact in the row")
    contact_ids = ArrayField(models.BigIntegerField())
    # Totals in tenths (exact), and the new fit grades as one letter per contact.
    old_tenths = ArrayField(models.BigIntegerField())
    new_tenths = ArrayField(models.BigIntegerField())
    fit_grades = models.TextField()

    def __str__(self) -> str:
        return f"{len(self.contact_ids)} score changes ({self.reason})"


class MqlQualification(models.Model):
    """A contact becoming an MQL: the score snapshot and the rules that fired, for the queue."""

    # No index of its own: the (contact, qualified_at) index serves every lookup by contact.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="qualifications", db_index=False)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    # The full rescore that made it (None: new data about the contact did): its reps get a digest.
    run = models.ForeignKey("RescoreRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    level = models.CharField(max_length=40)
    total = models.DecimalField(max_digits=8, decimal_places=1)
    fit = models.DecimalField(max_digits=8, decimal_places=1)
    engagement = models.DecimalField(max_digits=8, decimal_places=1)
    fit_grade = models.CharField(max_length=1)
    explanation = models.JSONField(default=list)
    top_reasons = models.JSONField(default=list)
    qualified_at = models.DateTimeField()

    class Meta:
        ordering = ["-qualified_at"]
        indexes = [models.Index(fields=["contact", "qualified_at"])]

    def __str__(self) -> str:
        return f"{self.contact_id} qualified {self.level} at {self.total}"


class AccountScore(models.Model):
    """Account-based marketing: its contacts' engagement rolled up, plus the account's fit."""

    account = models.OneToOneField("leads.Account", on_delete=models.CASCADE, primary_key=True, related_name="score")
    # A full rescore rewrites every account's row at its end: as ContactScore.version, no index
    # and no database constraint (checked at commit for every row, with an index entry each).
    version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    fit = models.DecimalField(max_digits=8, decimal_places=1, default=0)
    engagement = models.DecimalField(max_digits=10, decimal_places=1, default=0)
    # Not indexed: nothing searches or sorts accounts by score but the admin's list.
    total = models.DecimalField(max_digits=10, decimal_places=1, default=0)
    engaged_contacts = models.PositiveIntegerField(default=0)
    is_mqa = models.BooleanField(default=False)
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.account_id}: {self.total}"


class RescoreRun(models.Model):
    """A full rescore split into chunks of contact ids that workers claim one by one.

    Each chunk's score writes and its "done" mark commit together, so a chunk is never
    counted twice; a chunk whose worker died is claimed again after CLAIM_TIMEOUT.
    """

    class Reason(models.TextChoices):
        PUBLISH = "publish", "Model published"
        REFRESH = "refresh", "Daily decay and window refresh"
        MANUAL = "manual", "Manual rescore"

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="rescore_runs")
    # The version a publish replaced: the stored scores were computed with it, so a contact's
    # score is adjusted by the rules that changed (sql_rescore.RuleChange). Else the run's own.
    base_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=10, choices=Reason.choices)
    as_of = models.DateField()
    total_chunks = models.PositiveIntegerField(default=0)
    done_chunks = models.PositiveIntegerField(default=0)
    total_contacts = models.PositiveIntegerField(default=0)
    changed_contacts = models.PositiveIntegerField(default=0)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Ended unfinished because a newer version was published: that version's own rescore covers
    # every contact, and this one must not write its older scores over it.
    superseded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Rescore #{self.pk} ({self.get_reason_display()})"

    @property
    def percent_done(self) -> int:
        return 100 if not self.total_chunks else int(100 * self.done_chunks / self.total_chunks)

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None


class RescoreChunk(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    run = models.ForeignKey(RescoreRun, on_delete=models.CASCADE, related_name="chunks")
    first_contact_id = models.BigIntegerField()
    last_contact_id = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    changed_contacts = models.PositiveIntegerField(default=0)
    # Why its last attempt failed (blank once it is done): the run's page shows a chunk that
    # keeps failing, which the workers retry every minute, instead of waiting in silence.
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["first_contact_id"]
        indexes = [models.Index(fields=["status", "claimed_at"])]

    def __str__(self) -> str:
        return f"Chunk {self.first_contact_id}–{self.last_contact_id} of run {self.run_id}"


class ModelSuggestion(models.Model):
    """A scorecard learned from sales feedback and outcomes, proposed as a draft version."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        INSUFFICIENT = "insufficient", "Not enough labelled leads"
        FAILED = "failed", "Failed"

    class Target(models.TextChoices):
        PRECISION = "precision", "Target precision"
        VOLUME = "volume", "Target MQL volume"

    scoring_model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="suggestions")
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    draft = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    target_kind = models.CharField(max_length=10, choices=Target.choices, default=Target.PRECISION)
    target_value = models.DecimalField(
        max_digits=4, decimal_places=3, help_text="A precision (0–1) or a share of leads to flag as MQL (0–1)."
    )
    max_rules = models.PositiveIntegerField(default=25)
    points_to_double = models.PositiveIntegerField(default=20, help_text="Points that double the odds.")
    holdout = models.DecimalField(max_digits=3, decimal_places=2, default=0.30)
    seed = models.PositiveIntegerField(default=42)
    progress = models.PositiveIntegerField(default=0)
    stage = models.CharField(max_length=120, blank=True)
    message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Suggestion #{self.pk} for {self.scoring_model} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.INSUFFICIENT, self.Status.FAILED)


class RescoreRequest(models.Model):
    """A contact whose score must follow data that changed: written in the transaction that
    changed the data, deleted by the rescore that reads it. The task queued after that
    commit normally does so within seconds; beat queues the requests whose task never ran
    (a broker restarted without persistence, a publish that failed) once more."""

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, primary_key=True, related_name="+")
    reason = models.CharField(max_length=200)
    requested_at = models.DateTimeField(db_index=True)
    # Bumped by every new request for a waiting contact: a drain deletes only the generation
    # it read, so data that arrived while it was scoring keeps its request.
    generation = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"Rescore {self.contact_id} ({self.reason})"


class AccountRollupRequest(models.Model):
    """An account whose score must follow its contacts' new scores: written in the transaction
    that rescored one of them, deleted by the rollup task that serves it after commit. One
    task rolls an account up however many of its contacts changed meanwhile, and rollups of
    one account never run at once (the task locks the request), so the last write is always
    of the newest scores. Beat queues the requests whose task never ran again."""

    account = models.OneToOneField("leads.Account", on_delete=models.CASCADE, primary_key=True, related_name="+")
    requested_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"Roll up account {self.account_id}"


class DraftPreview(models.Model):
    """What publishing a version would do (selectors.preview_version), computed by a worker:
    at a million contacts it takes from seconds to a minute, too long for a page request.
    `rules` fingerprints the rule set and the active version it was computed against, so
    a draft edited since gets a new one."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="previews")
    rules = models.CharField(max_length=64)
    total_contacts = models.PositiveIntegerField(default=0)
    done_contacts = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    failure = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["version", "rules", "-created_at"], name="draftpreview_lookup_idx")]

    def __str__(self) -> str:
        return f"Preview #{self.pk} of {self.version}"

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None

    @property
    def percent_done(self) -> int:
        if self.is_finished:
            return 100
        return int(100 * self.done_contacts / self.total_contacts) if self.total_contacts else 0
