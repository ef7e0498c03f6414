"""The trade-off tables of a study whose runs have phases (easy-hard-easy, hard-easy, any
schedule): the adaptability metrics of each run (``engine.metrics``) joined with its
stored config (``tradeoff_frame``), summarised per setting, a setting being a condition
and grid point (``setting_summary``); the Pareto front of the hard-phase loss against the
shrinkage; one-factor sweeps around a ``published`` condition and grid variants; and how
soon runs settle after each task switch.

They are the points the trade-off figures draw (``engine.plots_tradeoff``) and the tables
``studies/make_tradeoff.py`` writes, so that both can be checked against the store. Apart
from the drawing, which re-exports everything here: no figure is made in this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .config import field_names
from .plots import NOT_IDENTITY, clean_value, format_value
from .tasks import parse_task

# The adaptability metrics (engine.metrics) of each run, per *setting* (the runs that differ
# by seed only), as medians with inter-quartile ranges: the Pareto front of the hard-phase
# loss against the share of the growth given back, and every metric per setting (and, for
# one-factor sweeps around a ``published`` condition, against each parameter's level).
TRADEOFF_METRICS = (
    "hard_excess",
    "shrinkage",
    "growth",
    "n_phase1",
    "n_phase2",
    "n_phase3",
    "easy_excess",
)


PUBLISHED = "published"  # the condition at a method's published settings: sweeps' centre


# -- settings and the Pareto front -------------------------------------------------------
def tradeoff_metrics(frame: pd.DataFrame) -> list[str]:
    """The trade-off metrics a frame has (a two-phase task has no ``n_phase3``)."""
    return [m for m in TRADEOFF_METRICS if m in frame.columns]


def tradeoff_frame(metrics: pd.DataFrame, runs_df: pd.DataFrame) -> pd.DataFrame:
    """Per-run adaptability metrics (``engine.metrics.adaptability``) joined with the runs'
    stored rows, so that every config column is there to name settings and levels."""
    on = [c for c in ("study", "run_id") if c in metrics.columns and c in runs_df.columns]
    mine = [c for c in metrics.columns if c in on or c not in runs_df.columns]
    return metrics[mine].merge(runs_df, on=on, how="inner").reset_index(drop=True)


def setting_summary(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``engine.metrics.adaptability_summary`` per setting, settings in order of first
    appearance in ``frame`` (so that a caller's ordering carries into tables and figures)."""
    from .metrics import adaptability_summary

    keys = list(by)
    summary = adaptability_summary(frame, keys)
    if summary.empty:
        return summary
    first = {}
    for position, key in enumerate(map(tuple, frame[keys].astype(object).to_numpy())):
        first.setdefault(key, position)
    rank = [first.get(tuple(k), len(first)) for k in summary[keys].astype(object).to_numpy()]
    return (
        summary.assign(_rank=rank)
        .sort_values("_rank", kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def pareto_front(
    summary: pd.DataFrame, x: str = "shrinkage_median", y: str = "hard_excess_median"
) -> np.ndarray:
    """Which rows are non-dominated when ``x`` is to be high and ``y`` low: no other row
    has ``x`` at least as high and ``y`` at least as low, and one of them strictly.
    Rows where either is NaN (no growth, so no shrinkage) are never on the front."""
    xs = summary[x].to_numpy(dtype=float)
    ys = summary[y].to_numpy(dtype=float)
    valid = np.isfinite(xs) & np.isfinite(ys)
    front = np.zeros(len(summary), dtype=bool)
    for i in np.flatnonzero(valid):
        better = valid & (xs >= xs[i]) & (ys <= ys[i]) & ((xs > xs[i]) | (ys < ys[i]))
        front[i] = not better.any()
    return front


def pareto_rows(
    summary: pd.DataFrame, x: str = "shrinkage_median", y: str = "hard_excess_median"
) -> pd.DataFrame:
    """The rows on the front, lowest ``y`` first (ties: highest ``x``), numbered from 1 in
    ``front_rank``: the numbers :func:`draw_pareto` writes beside the front's points."""
    front = summary[pareto_front(summary, x, y)]
    front = front.sort_values([y, x], ascending=[True, False], kind="stable")
    return front.assign(front_rank=np.arange(1, len(front) + 1)).reset_index(drop=True)


def _families(summary: pd.DataFrame, family: str | None) -> list:
    if family is None or family not in summary.columns:
        return [None]
    return list(dict.fromkeys(summary[family].tolist()))


# -- sweeps and grid variants ------------------------------------------------------------
def variant_columns(frame: pd.DataFrame) -> list[str]:
    """Config fields that vary between runs of one condition: a study's ``[grid]``."""
    if "condition" not in frame.columns or frame.empty:
        return []
    keys = [c for c in field_names() if c in frame.columns and c not in NOT_IDENTITY]
    counts = frame.groupby("condition")[keys].nunique(dropna=False)
    return [c for c in keys if (counts[c] > 1).any()]


def variant_label(row: pd.Series | dict, columns: Sequence[str]) -> str:
    """A grid point in a few words: values joined, a true flag by its name, a false one
    left out (``random``, ``weakest, inherit_deleted``)."""
    parts = []
    for column in columns:
        value = clean_value(row[column])
        if isinstance(value, bool):
            if value:
                parts.append(column)
        elif value is not None:
            parts.append(format_value(value))
    return ", ".join(parts) or "(default)"


def sweep_runs(frame: pd.DataFrame, family: str | None = None) -> pd.DataFrame:
    """The runs of one-factor-at-a-time sweeps, one row per run and swept parameter.

    A condition named ``<field>_<anything>`` (``delete_prob_0.5``) sweeps that config
    field; the runs of the ``published`` condition of the same family (e.g. criterion)
    belong to every sweep of that family, at the published level. ``level`` is the
    field's stored value; ``published`` marks the centre. Empty without sweeps."""
    parts = []
    fields = sorted(
        (c for c in field_names() if c in frame.columns), key=len, reverse=True
    )  # longest first: ``delete_prob`` before a field that is a prefix of another
    for value in _families(frame, family):
        mine = frame if value is None else frame[frame[family] == value]
        centre = mine[mine["condition"] == PUBLISHED]
        if centre.empty:
            continue
        swept = {}
        for condition in dict.fromkeys(mine["condition"]):
            for field in fields:
                if condition != PUBLISHED and str(condition).startswith(field + "_"):
                    swept.setdefault(field, []).append(condition)
                    break
        for field, conditions in swept.items():
            members = pd.concat([centre, mine[mine["condition"].isin(conditions)]])
            levels = pd.to_numeric(members[field], errors="coerce").astype(float)
            parts.append(
                members.assign(
                    parameter=field,
                    level=levels.to_numpy(),
                    published=(members["condition"] == PUBLISHED).to_numpy(),
                )
            )
    if not parts:
        return frame.iloc[:0].assign(parameter=[], level=[], published=[])
    return pd.concat(parts, ignore_index=True)


def sweep_summary(frame: pd.DataFrame, family: str | None = None) -> pd.DataFrame:
    """Medians and quartiles per family, swept parameter and level (``sweep_runs``)."""
    runs = sweep_runs(frame, family)
    if runs.empty:
        return pd.DataFrame()
    keys = ([family] if family else []) + ["parameter", "level"]
    summary = setting_summary(runs.sort_values(keys, kind="stable"), keys)
    published = runs.groupby(keys)["published"].any()
    summary["published"] = [bool(published.loc[tuple(k)]) for k in summary[keys].to_numpy()]
    return summary


def variant_summary(
    frame: pd.DataFrame, family: str | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Medians and quartiles per family and grid point (``variant``: ``variant_label``),
    over every condition: a crossed grid gives each variant the same conditions."""
    columns = list(columns) if columns is not None else variant_columns(frame)
    if not columns:
        return pd.DataFrame()
    runs = frame.assign(variant=[variant_label(r, columns) for _, r in frame.iterrows()])
    keys = ([family] if family else []) + ["variant"]
    return setting_summary(runs, keys)


# -- settling after a switch -------------------------------------------------------------
def settle_fractions(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run and switch k: ``recovery_cycles_k`` over the length of phase k+1, and
    whether the run settled before that phase's last 10% (over which its final value is
    measured). Columns ``switch``, ``phase_cycles``, ``recovery_cycles``, ``fraction``."""
    from .metrics import TAIL

    rows = []
    for _, run in frame.iterrows():
        phases = parse_task(str(run["task"]), int(run["cycles"]))
        ends = [p.start for p in phases[1:]] + [int(run["cycles"])]
        for k in range(1, len(phases)):
            column = f"recovery_cycles_{k}"
            if column not in frame.columns:
                continue
            length = ends[k] - phases[k].start
            value = float(run[column]) if clean_value(run[column]) is not None else math.nan
            rows.append(
                dict(
                    study=run.get("study"),
                    run_id=run["run_id"],
                    switch=k,
                    phase_cycles=length,
                    recovery_cycles=value,
                    fraction=value / length if length > 0 else math.nan,
                    settled=bool(math.isfinite(value) and value < (1 - TAIL) * length),
                )
            )
    return pd.DataFrame(rows)
