"""Celery tasks for scoring: thin, take ids, safe to run twice."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, max_retries=5, autoretry_for=(Exception,), retry_backoff=True)
def score_contacts(contact_ids: list[int], reason: str = "new activity") -> int:
    """Recompute these contacts' scores (after an ingest). Idempotent: the score is a
    function of the stored aggregates, and a score change is recorded only when the
    total really changes (under a row lock)."""
    return services.contacts_rescore(contact_ids=contact_ids, reason=reason)


@shared_task(acks_late=True, max_retries=5, autoretry_for=(Exception,), retry_backoff=True)
def score_pending() -> int:
    """Rescore the contacts whose data changed (their RescoreRequest rows), oldest first.
    Idempotent: a second delivery finds the requests gone, or rescoring them again changes
    nothing."""
    return services.rescore_requests_drain()


@shared_task(acks_late=True, max_retries=5, autoretry_for=(Exception,), retry_backoff=True)
def rescore_chunk(chunk_id: int) -> bool:
    return services.rescore_chunk_run(chunk_id=chunk_id)


@shared_task(acks_late=True, max_retries=5, autoretry_for=(Exception,), retry_backoff=True)
def account_rollups() -> int:
    """Roll up the accounts whose contacts' scores changed (AccountRollupRequest). Idempotent:
    a rollup is a function of the committed contact scores."""
    return services.account_rollups_drain()


@shared_task
def rescore_sweep() -> int:
    """Beat, every minute: re-queue rescore chunks whose worker died, and contact rescores,
    account rollups and draft previews whose task was lost."""
    return (
        services.rescore_runs_sweep()
        + services.rescore_requests_sweep()
        + services.account_rollups_sweep()
        + services.draft_previews_sweep()
    )


@shared_task
def scores_refresh() -> None:
    """Beat, daily: apply decay and look-back windows to stored scores."""
    services.scores_refresh_start()


@shared_task(acks_late=True)
def suggest_model(suggestion_id: int) -> bool:
    """Fit a suggested scorecard. Claimed with a conditional update, so a second delivery
    of the same message does nothing."""
    from .tuning.suggest import suggestion_run

    return suggestion_run(suggestion_id=suggestion_id)


@shared_task(acks_late=True)
def preview_draft(preview_id: int) -> bool:
    """Compute a draft's preview. Claimed with a conditional update, so a second delivery
    of the same message does nothing."""
    return services.draft_preview_run(preview_id=preview_id)
