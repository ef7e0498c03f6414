"""Adaptability metrics of runs whose task changes (easy-hard-easy, hard-easy, schedules).

Computed from the store (runs and traces), one row per run, by ``adaptability``; summarised
per group (medians and inter-quartile ranges) by ``adaptability_summary`` and
``diffrnn results adaptability``. Definitions, for a run whose task has phases
1..P (``engine.tasks.parse_task``), with the trace records of each phase (``phase``):

- ``n_phase<k>``: neurons at the last trace record of phase k;
- the **hard phase** is the first phase of task ``hard``; for the feedforward model's
  teacher schedules, the first phase of the largest teacher (W x D); otherwise the phase
  at whose end the network is largest: the one that needed most neurons; not the
  highest floor: the easy task's floor, 9.61 nats, is above the hard task's, 8.96;
  ``growth`` = N at its end minus N at the end of the phase before it (or the
  initial size if it comes first); ``shrinkage`` = (N at the end of the hard phase - N at
  the end of the run) / growth: the share of the growth given back (null when growth <= 0
  or the hard phase is the last);
- ``hard_excess``: the mean of ``mean_loss`` over the trace records of the last 10% of the
  hard phase, divided by the hard task's floor, minus 1 (0.05: 5% above the floor);
  ``easy_excess`` likewise for the last phase (null without a floor, as for ``file:``);
- ``recovery_cycles_<k>``, for the switch into phase k+1 (k = 1..P-1): cycles from the
  switch until ``mean_loss`` first comes within 5% of that phase's final value (the mean
  over its last 10%, as above); null if it never does.

``settle_cycles`` gives the same "cycles to within 5% of the final value" for any span
(a single-phase run as a whole, for instance).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .config import config_from_row
from .tasks import entropy_floor

TAIL = 0.10  # the last 10% of a phase: its "final" value
WITHIN = 0.05  # "within 5%" of it


def _tail_mean(cycles: np.ndarray, losses: np.ndarray, start: int, end: int) -> float:
    """Mean of the records of the last TAIL of [start, end) (at least the last record)."""
    inside = (cycles > start) & (cycles <= end)
    if not inside.any():
        return math.nan
    cut = end - TAIL * (end - start)
    tail = inside & (cycles > cut)
    if not tail.any():
        tail = inside & (cycles == cycles[inside].max())
    return float(np.mean(losses[tail]))


def settle_cycles(cycles: np.ndarray, losses: np.ndarray, start: int, end: int) -> float:
    """Cycles after ``start`` until the loss first comes within WITHIN of its final value
    (the mean over the last TAIL of the span ``(start, end]``); NaN if it never does."""
    cycles, losses = np.asarray(cycles), np.asarray(losses, dtype=float)
    final = _tail_mean(cycles, losses, start, end)
    if not math.isfinite(final):
        return math.nan
    inside = (cycles > start) & (cycles <= end)
    close = inside & (np.abs(losses - final) <= WITHIN * abs(final))
    if not close.any():
        return math.nan
    return float(cycles[close].min() - start)


def run_adaptability(row: pd.Series, trace: pd.DataFrame) -> dict[str, Any]:
    """The metrics of one run (its runs row and its trace records, in cycle order)."""
    from .run import parse_model_task

    config = config_from_row(row)
    phases = parse_model_task(row["task"], int(row["cycles"]), config.model)
    ends = [p.start for p in phases[1:]] + [int(row["cycles"])]
    if config.model == "mlp":  # each run estimates its own teachers' floors
        stored = row.get("phase_floors")
        stored = [] if stored is None else list(stored)
        floors = [
            float(f) if f is not None and math.isfinite(float(f)) else None for f in stored
        ] + [None] * (len(phases) - len(stored))
    else:
        floors = [entropy_floor(p.task, config) for p in phases]
    cycles = trace["cycle"].to_numpy()
    losses = trace["mean_loss"].to_numpy(dtype=float)
    neurons = trace["neurons"].to_numpy()
    phase_of = trace["phase"].to_numpy()
    out: dict[str, Any] = {}
    n_end = []
    for k in range(len(phases)):
        mine = np.flatnonzero(phase_of == k)
        n_end.append(float(neurons[mine[-1]]) if mine.size else math.nan)
        out[f"n_phase{k + 1}"] = n_end[-1]
    named = [k for k, p in enumerate(phases) if p.task == "hard"]
    teachers = [(p.width or 0) * (p.depth or 0) for p in phases] if config.model == "mlp" else []
    if named:
        hard = named[0]
    elif teachers and max(teachers) > 0 and len(set(teachers)) > 1:
        hard = teachers.index(max(teachers))
    else:
        sizes = [n if math.isfinite(n) else -math.inf for n in n_end]
        hard = int(np.argmax(sizes))
    initial = config.hidden_size * (config.initial_blocks if config.model == "mlp" else 1)
    before = float(initial) if hard == 0 else n_end[hard - 1]
    growth = n_end[hard] - before
    out["growth"] = growth
    last = len(phases) - 1
    out["shrinkage"] = (
        (n_end[hard] - n_end[last]) / growth if growth > 0 and hard < last else math.nan
    )

    def excess(k: int) -> float:
        floor = floors[k]
        if floor is None or floor <= 0:
            return math.nan
        return _tail_mean(cycles, losses, phases[k].start, ends[k]) / floor - 1.0

    out["hard_excess"] = excess(hard)
    out["easy_excess"] = excess(last)
    for k in range(1, len(phases)):
        out[f"recovery_cycles_{k}"] = settle_cycles(cycles, losses, phases[k].start, ends[k])
    return out


def adaptability(
    results: str | os.PathLike,
    study: str | Sequence[str] | None = None,
    condition: str | Sequence[str] | None = None,
    *,
    run_columns: Sequence[str] = ("condition", "task", "seed", "criterion"),
    **filters: Any,
) -> pd.DataFrame:
    """One row per stored run with status ``ok`` whose task has two or more phases: its
    ``run_columns`` and the metrics of the module docstring. Filters as ``load_runs``."""
    from .store import load_runs, load_traces

    runs = load_runs(results, study, condition, **filters)
    runs = runs[runs["status"] == "ok"]
    models = runs["model"] if "model" in runs else ["rnn"] * len(runs)
    phased = [
        _phase_count(t, c, m) > 1
        for t, c, m in zip(runs["task"], runs["cycles"], models, strict=True)
    ]
    multi = runs[np.array(phased, dtype=bool)] if len(runs) else runs
    columns = ["run_id", "study", *[c for c in run_columns if c not in ("run_id", "study")]]
    if multi.empty:
        return pd.DataFrame(columns=columns)
    traces = load_traces(results, list(set(multi["study"])), run_id=list(multi["run_id"]))
    by_run = {key: part for key, part in traces.groupby(["study", "run_id"], sort=False)}
    rows = []
    for _, row in multi.iterrows():
        trace = by_run.get((row["study"], row["run_id"]))
        if trace is None:
            continue
        record = {c: row[c] for c in columns}
        record.update(run_adaptability(row, trace.sort_values("cycle", kind="stable")))
        rows.append(record)
    frame = pd.DataFrame(rows)
    metric_order = [c for c in frame.columns if c not in columns]
    return frame[columns + metric_order].reset_index(drop=True)


def _phase_count(task: str, cycles: int, model: Any = "rnn") -> int:
    from .run import parse_model_task

    model = model if model in ("rnn", "mlp") else "rnn"  # null in rows stored before mlp
    try:
        return len(parse_model_task(task, int(cycles), model))
    except ValueError:
        return 1


def adaptability_summary(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group: the number of runs, and median, 25th and 75th percentile of every metric."""
    keys = list(by)
    metrics = [
        c
        for c in frame.columns
        if c.startswith(("n_phase", "recovery_cycles_"))
        or c in ("growth", "shrinkage", "hard_excess", "easy_excess")
    ]
    rows = []
    for group, part in frame.groupby(keys, dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        row = dict(zip(keys, group, strict=True))
        row["n_runs"] = len(part)
        for name in metrics:
            values = part[name].astype(float).dropna()
            q25, median, q75 = (
                values.quantile([0.25, 0.5, 0.75]).tolist() if len(values) else [math.nan] * 3
            )
            row.update({f"{name}_median": median, f"{name}_q25": q25, f"{name}_q75": q75})
        rows.append(row)
    return pd.DataFrame(rows)
