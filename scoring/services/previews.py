"""Draft previews: what publishing a version would do, computed by a worker with its progress."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from leads.models import Contact

from ..models import DraftPreview, ModelVersion
from ..selectors import active_version, preview_version, ruleset_for
from .engagement import matchers_prepare

# A preview shows the stored scores of its moment; after this long the page computes it
# again. One still unfinished this long after a worker took it lost its worker (the sweep).
PREVIEW_FRESH = timedelta(minutes=10)
PREVIEW_FAILED = "An error stopped it; the details are in the worker's log."
PREVIEW_ABANDONED = "Its worker stopped before it finished."
# Not started after this long, a preview's task is presumed lost and queued again: a marketer
# is watching its page. A task that was only waiting behind others is then delivered twice,
# and its claim turns the second delivery away.
PREVIEW_LOST_AFTER = timedelta(minutes=1)


def draft_preview_get_or_start(*, version: ModelVersion, user=None, again: bool = False) -> DraftPreview:
    """The version's preview for its rules as they are now, started (queued after commit)
    when there is none from the last PREVIEW_FRESH, or the marketer asks `again` (the stored
    scores have moved since, or the last one failed). Opening the preview page asks for it:
    otherwise at most one is computed per rule set at a time. A failed one is shown as
    failed until asked again: a page that started it over would loop on a lasting error."""
    from ..tasks import preview_draft

    fingerprint = _rules_fingerprint(version)
    recent = DraftPreview.objects.filter(
        version=version, rules=fingerprint, created_at__gte=timezone.now() - PREVIEW_FRESH
    ).first()
    if recent is not None and not (again and recent.is_finished):
        return recent
    preview = DraftPreview.objects.create(
        version=version, rules=fingerprint, total_contacts=Contact.objects.count(), requested_by=user
    )
    transaction.on_commit(lambda: preview_draft.delay(preview.pk))
    return preview


def _rules_fingerprint(version: ModelVersion) -> str:
    """Changes with every edit of the version's rules, levels and settings, and with the
    active version the preview compares against."""
    active = active_version()
    text = f"{ruleset_for(version)!r}|{active.pk if active else None}"
    return hashlib.sha256(text.encode()).hexdigest()


def draft_preview_run(*, preview_id: int) -> bool:
    """Claim the preview and compute it; False if it is done or another worker has it.
    Safe to run twice: the claim is a conditional update."""
    # Only a preview no worker took: one whose worker died is ended by the sweep
    # (draft_previews_sweep), and "Compute again" starts a new one.
    unclaimed = DraftPreview.objects.filter(pk=preview_id, started_at__isnull=True, finished_at__isnull=True)
    if not unclaimed.update(started_at=timezone.now()):
        return False
    preview = DraftPreview.objects.select_related("version").get(pk=preview_id)
    try:
        matchers_prepare(version=preview.version)  # new property filters need their aggregates first
        summary = preview_version(preview.version, progress=lambda done, total: _progress(preview_id, done, total))
    except Exception:
        # The marketer sees that it failed and can compute it again; the error and its
        # traceback go to the worker's log (raised), not to the page.
        DraftPreview.objects.filter(pk=preview_id).update(failure=PREVIEW_FAILED, finished_at=timezone.now())
        raise
    # A preview the sweep gave up on that finishes after all shows its figures.
    DraftPreview.objects.filter(pk=preview_id).update(result=_as_json(summary), failure="", finished_at=timezone.now())
    return True


def draft_previews_sweep() -> int:
    """Beat, every minute: re-queue previews whose task was lost (not started after
    PREVIEW_LOST_AFTER), and end those whose worker died (taken longer than PREVIEW_FRESH
    ago; the slowest, at a million contacts, takes about a minute) as failed, so that a page
    still polling one says it stopped. Returns how many were touched."""
    from ..tasks import preview_draft

    now = timezone.now()
    unfinished = DraftPreview.objects.filter(finished_at__isnull=True)
    abandoned = unfinished.filter(started_at__lt=now - PREVIEW_FRESH).update(failure=PREVIEW_ABANDONED, finished_at=now)
    # Older ones are no longer shown: opening the page starts a new preview instead.
    lost = list(
        unfinished.filter(
            started_at__isnull=True, created_at__lt=now - PREVIEW_LOST_AFTER, created_at__gte=now - PREVIEW_FRESH
        ).values_list("pk", flat=True)
    )
    for preview_id in lost:
        preview_draft.delay(preview_id)
    return abandoned + len(lost)


def _progress(preview_id: int, done: int, total: int) -> None:
    DraftPreview.objects.filter(pk=preview_id).update(done_contacts=done, total_contacts=total)


def _as_json(summary: dict) -> dict:
    """Totals as text: exact decimals, as the page shows them."""
    examples = {
        key: [
            {**example, "old_total": str(example["old_total"]), "new_total": str(example["new_total"])}
            for example in summary[key]
        ]
        for key in ("new_examples", "drop_examples")
    }
    return {**summary, **examples}


__all__ = [
    "PREVIEW_ABANDONED",
    "PREVIEW_FAILED",
    "PREVIEW_FRESH",
    "draft_preview_get_or_start",
    "draft_preview_run",
    "draft_previews_sweep",
]
