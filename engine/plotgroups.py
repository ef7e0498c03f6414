"""Grouping stored runs into the curves the figures draw: which runs form a group (same
config but the seed), their median and inter-quartile curves, and what a group's runs
share (task, phases and floors, size). Apart from ``engine.plots``, which draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import RunConfig, config_from_row, field_names
from .run import parse_model_task
from .tasks import entropy_floor

QUANTITIES = ("smoothed_loss", "neurons")
REFERENCE_SEQ_LEN = 40  # the paper's unit: nats per 40 characters
# columns that identify a group of runs besides the seed (config fields come on top)
IDENTITY = ("condition", "task", "cycles")
# config fields that never change a curve's meaning; they do not split groups
NOT_IDENTITY = ("log_every", "dtype")
FORMATS = ("png", "svg")


# -- grouping ------------------------------------------------------------------------------
def ok_runs(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Runs that finished (status ``ok``); diverged or failed runs have no full curve."""
    if "status" not in runs_df.columns:
        return runs_df
    return runs_df[runs_df["status"] == "ok"]


TASK_ORDER = ("easy", "hard", "easy-hard-easy", "hard-easy")


def sort_runs(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Runs in the paper's order: easy, hard, schedules, other tasks; variable size before
    fixed sizes (ascending); then condition name and seed. Groups keep this order."""
    if runs_df.empty:
        return runs_df.reset_index(drop=True)

    def rank(task):
        return TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER)

    keys = pd.DataFrame(
        {
            "task_rank": runs_df["task"].map(rank) if "task" in runs_df else 0,
            "task": runs_df["task"].astype(str) if "task" in runs_df else "",
            "fixed": (runs_df["mode"] == "fixed") if "mode" in runs_df else False,
            "size": runs_df["hidden_size"] if "hidden_size" in runs_df else 0,
            "condition": runs_df["condition"].astype(str) if "condition" in runs_df else "",
            "seed": runs_df["seed"] if "seed" in runs_df else 0,
        },
        index=runs_df.index,
    )
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return runs_df.loc[order].reset_index(drop=True)


def _key_columns(runs_df: pd.DataFrame) -> list[str]:
    names = [c for c in IDENTITY if c in runs_df.columns]
    names += [c for c in field_names() if c in runs_df.columns and c not in NOT_IDENTITY]
    return names


def clean_value(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_labels(runs_df: pd.DataFrame) -> pd.Series:
    """One label per run (indexed like ``runs_df``): runs sharing a label differ by seed only.

    The label is the condition name, followed by the parameters that vary between runs of
    that condition (a ``[grid]``), e.g. ``variable (l1_strength=1e-05)``. Runs without a
    condition are named after their task and mode.
    """
    if runs_df.empty:
        return pd.Series([], dtype=object, index=runs_df.index)
    base = []
    for _, row in runs_df.iterrows():
        condition = clean_value(row.get("condition"))
        if condition:
            base.append(str(condition))
        else:
            mode = clean_value(row.get("mode")) or "variable"
            size = f"-{clean_value(row.get('hidden_size'))}" if mode == "fixed" else ""
            base.append(f"{clean_value(row.get('task'))} {mode}{size}")
    base = pd.Series(base, index=runs_df.index)
    keys = [c for c in _key_columns(runs_df) if c != "condition"]
    labels = base.copy()
    for name, members in runs_df.groupby(base, sort=False):
        varying = [c for c in keys if members[c].astype(str).nunique() > 1]
        if not varying:
            continue
        for index, row in members.iterrows():
            extra = ", ".join(f"{c}={format_value(clean_value(row[c]))}" for c in varying)
            labels[index] = f"{name} ({extra})"
    return labels


def median_curves(
    runs_df: pd.DataFrame,
    traces_df: pd.DataFrame,
    by: str | Sequence[str] | None = None,
    *,
    only_ok: bool = True,
) -> pd.DataFrame:
    """Median and quartiles over runs, per group and per trace cycle.

    ``by``: None groups by :func:`group_labels` (condition plus varying parameters) into a
    column ``group``; otherwise the name(s) of runs columns to group by (e.g. ``"task"``).
    Returns one row per group and cycle with ``runs`` (how many runs have that cycle) and
    ``<q>_median``, ``<q>_q25``, ``<q>_q75`` for ``q`` in smoothed_loss and neurons.
    Quartiles are pandas' linear-interpolation quantiles; the median is the plain median.
    """
    runs = ok_runs(runs_df) if only_ok else runs_df
    if by is None:
        keys = ["group"]
        table = pd.DataFrame(
            {"run_id": runs["run_id"].to_numpy(), "group": group_labels(runs).to_numpy()}
        )
    else:
        keys = [by] if isinstance(by, str) else list(by)
        table = runs[["run_id", *keys]].copy()
    # one run id can be stored in several studies: join on the study too when both have it
    on = ["run_id"]
    if "study" in runs.columns and "study" in traces_df.columns and "study" not in keys:
        table["study"] = runs["study"].to_numpy()
        on.append("study")
    merged = traces_df[[*on, "cycle", *QUANTITIES]].merge(table, on=on, how="inner")
    columns = [*keys, "cycle", "runs"]
    columns += [f"{q}_{s}" for q in QUANTITIES for s in ("median", "q25", "q75")]
    if merged.empty:
        return pd.DataFrame(columns=columns)
    grouped = merged.groupby([*keys, "cycle"], sort=False)
    out = grouped["run_id"].nunique().rename("runs").to_frame()
    for q in QUANTITIES:
        values = grouped[q]
        out[f"{q}_median"] = values.median()
        out[f"{q}_q25"] = values.quantile(0.25)
        out[f"{q}_q75"] = values.quantile(0.75)
    out = out.reset_index()
    # groups in order of first appearance, cycles ascending
    order = {k: i for i, k in enumerate(dict.fromkeys(map(tuple, table[keys].to_numpy())))}
    out["_order"] = [order.get(tuple(k), 0) for k in out[keys].to_numpy()]
    out = out.sort_values(["_order", "cycle"], kind="stable").drop(columns="_order")
    return out[columns].reset_index(drop=True)


# -- what a group's runs share: task phases, floors, units ---------------------------------
@dataclass(frozen=True)
class GroupInfo:
    label: str
    task: str
    mode: str
    hidden_size: int
    cycles: int
    seq_len: int
    seeds: int  # finished runs
    failed: int  # runs not "ok"
    phases: tuple[tuple[str, int, int, float | None], ...]  # (task, start, end, floor)


def config_of(row: pd.Series | dict) -> RunConfig:
    """The RunConfig stored in a runs row (every config field is its own column)."""
    return config_from_row(row)


def phases_of(task: str, cycles: int, config: RunConfig, floors=None):
    """(task, start, end, floor) per phase of a run; floor None when unknown (files,
    digits). A feedforward run's floors are its own estimates (``floors``: for a group,
    the median over its runs, each seed having drawn its own teacher)."""
    from .run import parse_model_task

    phases = parse_model_task(task, cycles, config.model)
    ends = [p.start for p in phases[1:]] + [cycles]
    if floors is None:
        floors = [None if config.model == "mlp" else entropy_floor(p.task, config) for p in phases]
    return tuple(
        (p.task, p.start, end, floor) for p, end, floor in zip(phases, ends, floors, strict=True)
    )


def median_phase_floors(runs_df: pd.DataFrame, count: int) -> list[float | None]:
    """Per phase, the median of the runs' own floors (``phase_floors``; None if none)."""
    floors: list[float | None] = []
    for k in range(count):
        values = [
            float(f[k])
            for f in runs_df.get("phase_floors", pd.Series(dtype=object))
            if f is not None and len(f) > k and f[k] is not None and math.isfinite(float(f[k]))
        ]
        floors.append(float(np.median(values)) if values else None)
    return floors


def group_info(runs_df: pd.DataFrame) -> dict[str, GroupInfo]:
    """What each group's runs share, keyed by group label, in order of first appearance."""
    labels = group_labels(runs_df)
    infos = {}
    for label, members in runs_df.groupby(labels, sort=False):
        done = ok_runs(members)
        row = (done if len(done) else members).iloc[0]
        config = config_of(row)
        task, cycles = str(row["task"]), int(row["cycles"])
        infos[label] = GroupInfo(
            label=label,
            task=task,
            mode=config.mode,
            hidden_size=config.hidden_size,
            cycles=cycles,
            seq_len=config.seq_len if config.model == "rnn" else 0,
            seeds=len(done),
            failed=len(members) - len(done),
            phases=phases_of(
                task,
                cycles,
                config,
                median_phase_floors(done, len(parse_model_task(task, cycles, config.model)))
                if config.model == "mlp"
                else None,
            ),
        )
    return infos
