"""Celery tasks of the CRM core: thin wrappers that take ids and call services."""

from celery import shared_task

from .importing import import_job_fail, import_job_run_next_chunk


@shared_task(bind=True, max_retries=3, acks_late=True)
def import_job_run(self, job_id: int) -> None:
    """Import one chunk, then queue the next: progress is visible between chunks and a
    worker restart loses at most the chunk in flight, whose transaction rolls back.
    Safe to run twice (the chunk service locks the job and resumes from stored progress).
    """
    try:
        more = import_job_run_next_chunk(job_id=job_id)
    except Exception as error:  # noqa: BLE001 - recorded on the job for the marketer to read
        if self.request.retries < self.max_retries:
            raise self.retry(exc=error, countdown=2**self.request.retries) from error
        import_job_fail(job_id=job_id, error=f"{type(error).__name__}: {error}")
        return
    if more:
        import_job_run.delay(job_id)


@shared_task
def mql_sla_check() -> dict:
    """Beat, every 10 minutes: SLA reminders and expiries (see leads.handoff.mqls_sla_check)."""
    from .handoff import mqls_sla_check

    return mqls_sla_check()


@shared_task(acks_late=True, max_retries=5, autoretry_for=(Exception,), retry_backoff=True)
def mql_handoffs() -> int:
    """Hand off the new MQLs whose qualification asked for it after commit (see
    leads.handoff.mqls_hand_off_after_commit). Safe to run twice: a second run finds the
    requests gone, and a lead that left the queue meanwhile is not handed off."""
    from .handoff import handoff_requests_drain

    return handoff_requests_drain()


@shared_task
def handoff_sweep() -> int:
    """Beat, every minute: queue the hand-offs whose task was lost."""
    from .handoff import handoff_requests_sweep

    return handoff_requests_sweep()
