"""Coalesced tasks: while one waits in the queue, nobody queues another.

A burst of commits that each need the same draining task (a rescore drain, an account
rollup, an outbox send) costs one task. The flag is shared (the cache: Redis, or the
database), never process memory. The task clears it before it reads its work, so work
committed after that queues a task of its own; the flag expires, so a task the broker lost
holds nothing back for longer than RESCORE_DRAIN_FLAG_SECONDS.
"""

from django.conf import settings
from django.core.cache import cache


def task_queue_once(flag: str, task, **options) -> None:
    """Queue `task` (apply_async `options`) unless `flag` says one is queued already."""
    if not cache.add(flag, 1, timeout=settings.RESCORE_DRAIN_FLAG_SECONDS):
        return
    try:
        task.apply_async(**options)
    except Exception:
        cache.delete(flag)  # not queued: the next commit tries again
        raise


def task_started(flag: str) -> None:
    """Called by the task before it reads its work: a commit from now on queues another."""
    cache.delete(flag)
