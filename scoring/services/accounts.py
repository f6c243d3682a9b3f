"""Account scores: contacts' engagement rolled up to their accounts, after commit and once per burst."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from config.coalesce import task_queue_once, task_started
from leads.models import Account

from ..engine import evaluate
from ..locks import account_scores_lock
from ..models import (
    AccountRollupRequest,
    AccountScore,
    ModelVersion,
)
from ..selectors import (
    account_fit_rules,
    active_version,
    ruleset_for,
)
from ._shared import claim_timeout

ACCOUNT_PROFILE = ["id", "name", "domain", "industry", "employee_count", "annual_revenue", "country"]


def accounts_rescore(*, account_ids: Iterable[int], version: ModelVersion) -> None:
    """Roll contacts' engagement up to their accounts and add the account's own fit."""
    ids = sorted(account_ids)
    if not ids:
        return
    account_scores_lock()
    account_only = account_fit_rules(ruleset_for(version))
    # Each account's profile with its contacts' scores summed, in one query; in id order,
    # the order every rollup writes them in.
    accounts = (
        Account.objects.filter(id__in=ids)
        .order_by("id")
        .values(*ACCOUNT_PROFILE)
        .annotate(
            engagement_sum=Sum("contacts__score__engagement"),
            engaged=Count("contacts__score", filter=Q(contacts__score__engagement__gt=0)),
        )
    )
    now = timezone.now()
    rows = []
    for account in accounts:
        profile = {f"account.{key}": account[key] for key in ACCOUNT_PROFILE}
        fit = evaluate(account_only, profile, {}, timezone.localdate()).fit
        engagement = account["engagement_sum"] or Decimal(0)
        rows.append(
            AccountScore(
                account_id=account["id"],
                version=version,
                fit=fit,
                engagement=engagement,
                total=fit + engagement,
                engaged_contacts=account["engaged"],
                is_mqa=fit + engagement >= version.mqa_threshold,
                computed_at=now,
            )
        )
    AccountScore.objects.bulk_create(
        rows,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["account"],
        update_fields=["version", "fit", "engagement", "total", "engaged_contacts", "is_mqa", "computed_at"],
    )


ROLLUP_QUEUED_FLAG = "scoring:account-rollup-queued"


def account_rollups_request(*, account_ids: Iterable[int]) -> None:
    """Record, in the caller's transaction, that these accounts must be rolled up again, and
    queue the rollup after commit (see AccountRollupRequest): an ingest pays one insert for
    its account instead of summing every contact of it, and two contacts of one account
    rescored at the same moment cannot leave the older sum as the last one written."""
    ids = sorted(set(account_ids))
    if not ids:
        return
    now = timezone.now()
    if connection.vendor == "postgresql":  # plain SQL: see _contacts_lock
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {AccountRollupRequest._meta.db_table} (account_id, requested_at) "
                "SELECT id, %s FROM unnest(%s::bigint[]) AS id "
                "ON CONFLICT (account_id) DO UPDATE SET requested_at = excluded.requested_at",
                [now, ids],
            )
    else:
        AccountRollupRequest.objects.bulk_create(
            [AccountRollupRequest(account_id=account_id, requested_at=now) for account_id in ids],
            update_conflicts=True,
            unique_fields=["account"],
            update_fields=["requested_at"],
        )
    transaction.on_commit(account_rollups_queue, robust=True)


ROLLUP_DELAY_SECONDS = 1


def account_rollups_queue() -> None:
    """Make sure a rollup task is queued (config.coalesce), run a second later, so the events
    of that second, however many, cost one task: an account's score may lag its contacts' by
    a second, never by an event."""
    from ..tasks import account_rollups

    task_queue_once(ROLLUP_QUEUED_FLAG, account_rollups, countdown=ROLLUP_DELAY_SECONDS)


def account_rollups_drain(*, limit: int = 500) -> int:
    """Roll up the requested accounts, oldest request first, `limit` per transaction; returns
    how many. Requests another rollup holds are left for a task queued a second later."""
    from ..tasks import account_rollups

    task_started(ROLLUP_QUEUED_FLAG)
    done = 0
    while True:
        served, skipped = _account_rollups_serve(limit=limit)
        done += served
        if skipped:
            account_rollups.apply_async(countdown=1)
            return done
        if served < limit:
            return done


@transaction.atomic
def _account_rollups_serve(*, limit: int) -> tuple[int, bool]:
    """Lock up to `limit` requests (SKIP LOCKED: another rollup has those), roll their accounts
    up from the committed contact scores and delete them. A contact rescored after the read
    re-requests its account: its upsert waits for this commit, then inserts a new request."""
    version = active_version()
    if version is None:  # nothing is scored: the requests wait for a published model
        return 0, False
    pending = AccountRollupRequest.objects.order_by("requested_at")
    locked = list(pending.select_for_update(skip_locked=True).values_list("account_id", flat=True)[:limit])
    skipped = len(locked) < limit and pending.exclude(account_id__in=locked).exists()
    accounts_rescore(account_ids=locked, version=version)  # returns at once when there are none
    AccountRollupRequest.objects.filter(account_id__in=locked).delete()
    return len(locked), skipped


def account_rollups_sweep() -> int:
    """Queue a rollup for requests older than RESCORE_CLAIM_TIMEOUT, whose task must have been
    lost (beat, every minute); returns how many. Re-stamped, so they are counted once."""
    from ..tasks import account_rollups

    stale = AccountRollupRequest.objects.filter(requested_at__lt=timezone.now() - claim_timeout())
    count = stale.update(requested_at=timezone.now())
    if count:
        account_rollups.delay()
    return count
