"""Rescore requests: contacts whose data changed, rescored by a worker after commit, oldest first."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config.coalesce import task_queue_once, task_started
from leads.models import Contact

from ..models import (
    RescoreRequest,
)
from ._shared import claim_timeout
from .scores import contacts_rescore


def rescore_requests_record(*, contact_ids: Iterable[int], reason: str) -> None:
    """Record, in the caller's transaction, that these contacts' scores must be recomputed
    (see RescoreRequest). A contact already waiting keeps one request, with the newest reason
    and a new generation."""
    table = RescoreRequest._meta.db_table
    ids = sorted(set(contact_ids))
    now = timezone.now()
    upsert = (
        "ON CONFLICT (contact_id) DO UPDATE SET reason = excluded.reason, "
        f"requested_at = excluded.requested_at, generation = {table}.generation + 1"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # in contact order (unnest keeps it): see ingest's locking
            cursor.execute(
                f"INSERT INTO {table} (contact_id, reason, requested_at, generation) "
                f"SELECT id, %s, %s, 0 FROM unnest(%s::bigint[]) AS id {upsert}",
                [reason[:200], now, ids],
            )
            return
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            cursor.execute(
                f"INSERT INTO {table} (contact_id, reason, requested_at, generation) "
                f"VALUES {', '.join(['(%s, %s, %s, 0)'] * len(batch))} {upsert}",
                [value for contact_id in batch for value in (contact_id, reason[:200], now)],
            )


DRAIN_QUEUED_FLAG = "scoring:drain-queued"


def rescore_drain_queue() -> None:
    """Make sure a drain of the pending rescore requests is queued (after a commit that
    recorded some), coalesced (config.coalesce): a burst of ingests costs one task, and a
    contact touched ten times meanwhile is scored once."""
    from ..tasks import score_pending

    task_queue_once(DRAIN_QUEUED_FLAG, score_pending)


def rescore_requests_drain(*, batches: int = 20) -> int:
    """Rescore pending requests, oldest first, up to `batches` × RESCORE_DRAIN_BATCH contacts;
    queues another drain if some remain. Returns how many contacts were rescored."""
    from ..tasks import score_pending

    # Before claiming: a request committed after this point queues its own drain, and one
    # committed before it is visible to the claim below, so none is left waiting.
    task_started(DRAIN_QUEUED_FLAG)
    done = 0
    for _ in range(batches):
        claimed, skipped = _rescore_requests_claim_and_run(limit=settings.RESCORE_DRAIN_BATCH)
        done += claimed
        if skipped:  # held by another transaction (a stage change, a drain): look again shortly
            score_pending.apply_async(countdown=1)
            return done
        if claimed < settings.RESCORE_DRAIN_BATCH:
            return done
    rescore_drain_queue()
    return done


@transaction.atomic
def _rescore_requests_claim_and_run(*, limit: int) -> tuple[int, int]:
    """Lock up to `limit` requested contacts, skipping those another drain (or any rescore)
    holds, and rescore them in this transaction: a worker that dies leaves the requests in
    place. Locks contacts, not requests, as every rescore does, so lock orders never cross.

    Commits without waiting for the WAL flush: everything written here is derived from data
    already committed, and the requests' deletion is in the same transaction, so a database
    crash that loses this commit loses the requests' deletion with it and the drain runs
    again; meanwhile, ingests that re-request these contacts do not wait on the flush."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
    pending = list(RescoreRequest.objects.order_by("requested_at").values_list("contact_id", flat=True)[:limit])
    locked = list(
        Contact.objects.select_for_update(no_key=True, skip_locked=True)
        .filter(id__in=pending)
        .values_list("id", flat=True)
    )
    requests = list(
        RescoreRequest.objects.filter(contact_id__in=locked).values_list("contact_id", "reason", "generation")
    )
    reasons = defaultdict(list)
    for contact_id, reason, _ in requests:
        reasons[reason].append(contact_id)
    for reason, contact_ids in reasons.items():
        contacts_rescore(contact_ids=contact_ids, reason=reason, clear_requests=False)
    _rescore_requests_delete_served(requests)
    return len(locked), len(pending) - len(locked)


def _rescore_requests_delete_served(requests: list[tuple[int, str, int]]) -> None:
    """Delete the requests this drain served, at the end of its transaction (an ingest that
    re-requests one of these contacts waits on that row lock only for the commit), and only
    in the generation read: a request renewed meanwhile stays for the next drain. Rows are
    locked in contact order first, the order ingests write them in, so the two never deadlock."""
    table = RescoreRequest._meta.db_table
    served = sorted((contact_id, generation) for contact_id, _, generation in requests)
    with connection.cursor() as cursor:
        for start in range(0, len(served), 500):
            batch = served[start : start + 500]
            matching = f"(contact_id, generation) IN (VALUES {', '.join(['(%s, %s)'] * len(batch))})"
            params = [value for pair in batch for value in pair]
            if connection.features.has_select_for_update:
                cursor.execute(f"SELECT 1 FROM {table} WHERE {matching} ORDER BY contact_id FOR UPDATE", params)
            cursor.execute(f"DELETE FROM {table} WHERE {matching}", params)


def rescore_requests_sweep() -> int:
    """Queue a drain for the rescores requested longer than RESCORE_CLAIM_TIMEOUT ago, whose
    task must have been lost (beat, every minute); returns how many contacts. They are
    stamped as requested now, so the next minute's sweep does not count them again."""
    from ..tasks import score_pending

    stale = RescoreRequest.objects.filter(requested_at__lt=timezone.now() - claim_timeout())
    count = stale.update(requested_at=timezone.now())
    if count:
        score_pending.delay()
    return count
