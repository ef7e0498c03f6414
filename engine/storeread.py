"""The store's loaders: runs, traces, events and sessions as pandas DataFrames, selected by
study, condition or any runs column, and ``summary`` (median and inter-quartile range per
group).

The loaders' rules (files under temporary names skipped, rows of runs never fully stored
left out, duplicates dropped, a file deleted by a merge while it is read answered by a new
listing) are part of the store's crash safety, described in ``engine.store``, which
re-exports everything here. Apart from it because reading needs none of the writing,
merging and locking: the two halves of the store meet only in the file layout
(``engine.storefiles``) and the rows (``engine.storetables``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .config import ADDED_FIELDS, field_names
from .records import RENAMED_COLUMNS, RUNS_SCHEMA
from .storefiles import LIST_RETRIES, PARTITION, StoreError, part_files, study_dirs
from .storetables import _FILE_SCHEMAS, DATASETS, _upgrade, _with_old_names

# natural keys: unique within one study (used to drop duplicate rows on load)
_KEYS = {
    "runs": ["study", "run_id"],
    "traces": ["study", "run_id", "cycle"],
    "events": ["study", "run_id", "cycle", "neuron_id", "kind", "block_id"],
}


CONFIG_NAMES = field_names()


# -- reading files -----------------------------------------------------------------------
def _read(
    root: Path,
    dataset: str,
    study: str | Sequence[str] | None,
    columns: list[str] | None,
    filter_expr: ds.Expression | None,
) -> pa.Table:
    """Read a dataset's files with the fixed schema plus ``study`` from the path.

    A file that cannot be read (truncated by a disk failure, foreign) is skipped with a
    warning instead of failing the whole load. A file deleted while it is read (a merge
    replaced it) makes the read start again from a new listing.
    """
    schema = _FILE_SCHEMAS[dataset]
    partitioning = ds.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive")
    full = schema.append(pa.field(PARTITION, pa.string()))
    if columns is not None:
        columns = [c for c in full.names if c in set(columns)]
    empty = full.empty_table() if columns is None else full.empty_table().select(columns)
    readable = _with_old_names(dataset, full)
    wanted = columns
    if columns is not None:  # a renamed column is read under both names
        renamed = RENAMED_COLUMNS.get(dataset, {})
        wanted = columns + [renamed[c] for c in columns if c in renamed]

    def load(paths: list[Path]) -> pa.Table:
        dataset_ = ds.dataset(
            [str(p) for p in paths],
            schema=readable,
            format="parquet",
            partitioning=partitioning,
            partition_base_dir=str(root / dataset),
        )
        return _upgrade(dataset, dataset_.to_table(columns=wanted, filter=filter_expr))

    for attempt in range(LIST_RETRIES + 1):
        files = part_files(root, dataset, study)
        if not files:
            return empty
        try:
            return load(files)
        except (pa.ArrowException, OSError):
            if not all(p.exists() for p in files) and attempt < LIST_RETRIES:
                continue  # a merge replaced some files: list again
        tables = []
        gone = False
        for path in files:
            try:
                tables.append(load([path]))
            except (pa.ArrowException, OSError) as error:
                if not path.exists():
                    gone = True
                    break
                warnings.warn(f"skipping unreadable results file {path}: {error}", stacklevel=3)
        if gone and attempt < LIST_RETRIES:
            continue
        return pa.concat_tables(tables) if tables else empty
    raise StoreError(f"{root / dataset}: files kept changing while being read; try again")


def stored_studies(results: str | os.PathLike) -> list[str]:
    """Names of the studies with a directory in any dataset."""
    names = set()
    for dataset in DATASETS:
        for directory in study_dirs(Path(results), dataset, None):
            names.add(directory.name.split("=", 1)[1])
    return sorted(names)


def load_sessions(results: str | os.PathLike, study: str | None = None) -> pd.DataFrame:
    """One row per ``diffrnn study`` invocation that ran runs: when, how long, how many."""
    root = Path(results)
    table = _read(root, "sessions", study, None, None)
    frame = table.to_pandas()
    frame["study"] = frame["study"].astype(str)
    return frame.sort_values(["study", "started_at"], ignore_index=True)


# -- loading -----------------------------------------------------------------------------
RUN_COLUMNS = tuple(RUNS_SCHEMA.names)


# rows of load_runs come in this order (completion order varies with the backend)
_RUN_ORDER = ("study", "condition", "task", "cycles", *CONFIG_NAMES, "seed", "run_id")


def _values(value: Any) -> list:
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Index, pd.Series)):
        return list(value)
    return [value]


def _filter_expression(condition, filters: dict[str, Any]) -> ds.Expression | None:
    expression = None
    if condition is not None:
        filters = {"condition": condition, **filters}
    for name, value in filters.items():
        if name not in RUN_COLUMNS or name == PARTITION:
            raise StoreError(
                f"cannot filter on {name!r}: not a column of runs; columns are "
                f"{', '.join(c for c in RUN_COLUMNS if c != PARTITION)}"
            )
        values = _values(value)
        if any(isinstance(v, float) and math.isnan(v) for v in values):
            raise StoreError(f"cannot filter {name!r} on NaN")
        if any(v is None for v in values):
            raise StoreError(f"cannot filter {name!r} on None: load the runs and use isna()")
        term = pc.field(name).isin(values) if len(values) != 1 else pc.field(name) == values[0]
        if ADDED_FIELDS.get(name) is not None and ADDED_FIELDS[name] in values:
            term = term | pc.field(name).is_null()  # rows stored before the field existed
        expression = term if expression is None else expression & term
    return expression


def load_runs(
    results: str | os.PathLike,
    study: str | Sequence[str] | None = None,
    condition: str | Sequence[str] | None = None,
    *,
    columns: Sequence[str] | None = None,
    **param_filters: Any,
) -> pd.DataFrame:
    """The stored runs as a DataFrame, one row per run, columns in RUNS_SCHEMA order.

    ``study``/``condition`` and any other runs column given as a keyword
    (``mode="fixed"``, ``l1_strength=[1e-5, 3e-5]``) select rows; a list means any of.
    """
    root = Path(results)
    wanted = None
    if columns is not None:
        unknown = [c for c in columns if c not in RUN_COLUMNS]
        if unknown:
            raise StoreError(f"unknown runs column {unknown[0]!r}")
        wanted = list(dict.fromkeys(["run_id", PARTITION, *columns]))
    expression = _filter_expression(condition, param_filters)
    table = _read(root, "runs", study, wanted, expression)
    frame = table.to_pandas()
    frame = frame[[c for c in RUN_COLUMNS if c in frame.columns]]
    frame = frame.drop_duplicates(subset=_KEYS["runs"], keep="first")
    order = [c for c in _RUN_ORDER if c in frame.columns]
    frame = frame.sort_values(order, kind="stable") if order else frame
    if columns is not None:
        frame = frame[list(columns)]
    return frame.reset_index(drop=True)


def _load_records(dataset: str, results, study, condition, run_columns, param_filters):
    root = Path(results)
    run_columns = list(run_columns)
    runs = load_runs(
        root,
        study,
        condition,
        columns=list(dict.fromkeys(["run_id", PARTITION, *run_columns])),
        **param_filters,
    )
    studies = sorted(set(runs[PARTITION])) if len(runs) else []
    expression = pc.field("run_id").isin(sorted(set(runs["run_id"]))) if len(runs) else None
    table = _read(root, dataset, studies, None, expression)
    frame = table.to_pandas()
    # orphans (traces of a run whose runs row was never written) fall out of the join
    frame = frame.drop_duplicates(subset=_KEYS[dataset], keep="first")
    extra = [c for c in run_columns if c not in ("run_id", PARTITION)]
    frame = frame.merge(
        runs[["run_id", PARTITION, *extra]], on=["run_id", PARTITION], how="inner", sort=False
    )
    order = ["run_id", PARTITION, *extra] + [
        c for c in _FILE_SCHEMAS[dataset].names if c != "run_id"
    ]
    frame = frame[order].sort_values([PARTITION, "run_id"], kind="stable")
    return frame.reset_index(drop=True)


def load_traces(
    results: str | os.PathLike,
    study: str | Sequence[str] | None = None,
    condition: str | Sequence[str] | None = None,
    *,
    run_columns: Sequence[str] = ("condition", "task", "seed"),
    **param_filters: Any,
) -> pd.DataFrame:
    """Trace records of the selected runs, with ``run_columns`` of their runs row.

    Rows of runs that were never fully stored (a kill between files) are left out.
    """
    return _load_records("traces", results, study, condition, run_columns, param_filters)


def load_events(
    results: str | os.PathLike,
    study: str | Sequence[str] | None = None,
    condition: str | Sequence[str] | None = None,
    *,
    run_columns: Sequence[str] = ("condition", "task", "seed"),
    **param_filters: Any,
) -> pd.DataFrame:
    """Birth (kind 0) and death (kind 1) events of the selected runs; see load_traces."""
    return _load_records("events", results, study, condition, run_columns, param_filters)


# -- summary -----------------------------------------------------------------------------
def _floor(values: pd.Series) -> float:
    distinct = values.dropna().unique()
    return float(distinct[0]) if len(distinct) == 1 else math.nan


def summary(
    results: str | os.PathLike,
    by: str | Iterable[str] = ("condition",),
    study: str | Sequence[str] | None = None,
    **param_filters: Any,
) -> pd.DataFrame:
    """Median and inter-quartile range of final N and final loss per group.

    Statistics are over runs with status ``ok``; ``n_runs`` counts every stored run,
    ``n_diverged`` and ``n_error`` the others. ``entropy_floor`` is the task's floor (NaN
    when the group mixes floors or the task has none, as for ``file:`` tasks).

    When feedforward runs are among them, their own outcome too: the final depth
    (``final_blocks``), the loss above each run's own floor (``excess_loss``: a teacher's
    floor is estimated per run, since each seed draws its own teacher; then
    ``entropy_floor`` is the group's median floor) and the test accuracy (digits).
    """
    keys = [b.strip() for b in by.split(",")] if isinstance(by, str) else list(by)
    keys = [k for k in keys if k]
    if not keys:
        raise StoreError("summary needs at least one column to group by")
    for key in keys:
        if key not in RUN_COLUMNS:
            raise StoreError(
                f"cannot group by {key!r}: not a column of runs; columns are "
                f"{', '.join(RUN_COLUMNS)}"
            )
    runs = load_runs(results, study, **param_filters)
    stats = ["n_runs", "n_ok", "n_diverged", "n_error"]
    for name in ("final_neurons", "final_loss"):
        stats += [f"{name}_median", f"{name}_q25", f"{name}_q75"]
    stats.append("entropy_floor")
    feedforward = "model" in runs.columns and bool((runs["model"] == "mlp").any())
    outcome = ("final_blocks", "excess_loss", "test_accuracy") if feedforward else ()
    for name in outcome:
        stats += [f"{name}_median", f"{name}_q25", f"{name}_q75"]
    if feedforward:
        runs = runs.assign(excess_loss=runs["final_loss"] - runs["entropy_floor"])
    if runs.empty:
        return pd.DataFrame(columns=keys + stats)
    rows = []
    for group, part in runs.groupby(keys, dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        ok = part[part["status"] == "ok"]
        row = dict(zip(keys, group, strict=True))
        row.update(
            n_runs=len(part),
            n_ok=len(ok),
            n_diverged=int((part["status"] == "diverged").sum()),
            n_error=int((part["status"] == "error").sum()),
        )
        for name in ("final_neurons", "final_loss") + outcome:
            values = ok[name].astype(float).dropna()
            q25, median, q75 = (
                values.quantile([0.25, 0.5, 0.75]).tolist() if len(values) else [math.nan] * 3
            )
            row.update({f"{name}_median": median, f"{name}_q25": q25, f"{name}_q75": q75})
        if feedforward and (part["model"] == "mlp").all():
            row["entropy_floor"] = float(part["entropy_floor"].median())
        else:
            row["entropy_floor"] = _floor(part["entropy_floor"])
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + stats)
