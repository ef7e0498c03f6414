"""Loaders of a results directory as pandas DataFrames (see ``engine.store``)."""

from .store import (
    ADHOC_STUDY,
    DEFAULT_CONDITION,
    TIMING_COLUMNS,
    load_events,
    load_runs,
    load_sessions,
    load_traces,
    stored_run_ids,
    summary,
)

__all__ = [
    "ADHOC_STUDY",
    "DEFAULT_CONDITION",
    "TIMING_COLUMNS",
    "load_events",
    "load_runs",
    "load_sessions",
    "load_traces",
    "stored_run_ids",
    "summary",
]
