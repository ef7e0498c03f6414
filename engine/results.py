"""Loaders of a results directory as pandas DataFrames (see ``engine.store``), and the
adaptability metrics of runs whose task changes (``engine.metrics``)."""

from .metrics import adaptability, adaptability_summary
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
    "adaptability",
    "adaptability_summary",
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
