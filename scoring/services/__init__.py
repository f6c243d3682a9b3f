"""Writes for scoring: engagement aggregates, scores, MQL transitions, account rollups,
rescore requests, full rescore runs and draft previews, one module each. Callers import from here."""

from .accounts import (
    ACCOUNT_PROFILE,
    ROLLUP_DELAY_SECONDS,
    ROLLUP_QUEUED_FLAG,
    account_rollups_drain,
    account_rollups_queue,
    account_rollups_request,
    account_rollups_sweep,
    accounts_rescore,
)
from .engagement import (
    MATCHER_LOCKS,
    engagement_fold,
    engagement_rebuild,
    engagement_record,
    matcher_backfill,
    matcher_for_rule,
    matcher_for_type,
    matchers_prepare,
)
from .previews import PREVIEW_FRESH, draft_preview_get_or_start, draft_preview_run
from .requests import (
    DRAIN_QUEUED_FLAG,
    rescore_drain_queue,
    rescore_requests_drain,
    rescore_requests_record,
    rescore_requests_sweep,
)
from .runs import (
    MQL_DIGEST_LISTED,
    mql_digests_send,
    rescore_chunk_run,
    rescore_run_start,
    rescore_run_to_end,
    rescore_runs_sweep,
    scores_refresh_start,
)
from .scores import QUALIFYING_STAGES, STORED_SCORE_FIELDS, contacts_rescore

__all__ = [
    "ACCOUNT_PROFILE",
    "DRAIN_QUEUED_FLAG",
    "MATCHER_LOCKS",
    "MQL_DIGEST_LISTED",
    "PREVIEW_FRESH",
    "QUALIFYING_STAGES",
    "ROLLUP_DELAY_SECONDS",
    "ROLLUP_QUEUED_FLAG",
    "STORED_SCORE_FIELDS",
    "account_rollups_drain",
    "account_rollups_queue",
    "account_rollups_request",
    "account_rollups_sweep",
    "accounts_rescore",
    "contacts_rescore",
    "draft_preview_get_or_start",
    "draft_preview_run",
    "engagement_fold",
    "engagement_rebuild",
    "engagement_record",
    "matcher_backfill",
    "matcher_for_rule",
    "matcher_for_type",
    "matchers_prepare",
    "mql_digests_send",
    "rescore_chunk_run",
    "rescore_drain_queue",
    "rescore_requests_drain",
    "rescore_requests_record",
    "rescore_requests_sweep",
    "rescore_run_start",
    "rescore_run_to_end",
    "rescore_runs_sweep",
    "scores_refresh_start",
]
