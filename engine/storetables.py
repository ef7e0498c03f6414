"""The store's rows: finished runs as Arrow tables in each dataset's file schema (no
``study`` column: it lives in the directory name), and rows of older schema versions
brought to today's form.

Apart from ``engine.store`` because both its writers and its loaders (``engine.storeread``)
need them; ``engine.store`` re-exports everything here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import ADDED_FIELDS
from .jit import build_info
from .records import (
    BUILD_COLUMNS,
    EVENTS_SCHEMA,
    RENAMED_COLUMNS,
    RUNS_SCHEMA,
    SCHEMA_VERSION,
    SESSIONS_SCHEMA,
    TRACES_SCHEMA,
)
from .run import RunResult
from .storefiles import PARTITION

DATASETS = ("runs", "traces", "events")


_FILE_SCHEMAS = {
    "runs": pa.schema(
        [f for f in RUNS_SCHEMA if f.name != PARTITION], metadata=RUNS_SCHEMA.metadata
    ),
    "traces": TRACES_SCHEMA,
    "events": EVENTS_SCHEMA,
    "sessions": SESSIONS_SCHEMA,
}


RUNS_FILE_SCHEMA = _FILE_SCHEMAS["runs"]


# -- finished runs as tables -------------------------------------------------------------
def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def runs_table(items: Sequence[tuple[str, RunResult]]) -> pa.Table:
    """One row per (condition, result), in the on-disk schema (no ``study`` column)."""
    rows = []
    for condition, result in items:
        row = {
            "run_id": result.run_id,
            "condition": condition,
            "task": result.task,
            "seed": int(result.seed),
            "cycles": int(result.cycles),
        }
        row.update(result.config.to_dict())
        row.update(
            status=result.status,
            error=result.message or None,
            cycles_done=int(result.cycles_done),
            final_loss=float(result.final_loss),
            final_neurons=int(result.final_neurons),
            entropy_floor=_float_or_none(result.entropy_floor),
            final_blocks=result.final_blocks,
            final_widths=None if result.final_widths is None else list(result.final_widths),
            test_loss=_float_or_none(result.test_loss),
            test_accuracy=_float_or_none(result.test_accuracy),
            phase_floors=None
            if result.phase_floors is None
            else [_float_or_none(f) for f in result.phase_floors],
            wall_seconds=float(result.wall_seconds),
            cycles_per_second=float(result.cycles_per_second),
            schema_version=SCHEMA_VERSION,
        )
        build = result.build or build_info()
        row["engine_version"] = build["engine_version"]
        row.update({name: build[name] for name in BUILD_COLUMNS})
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=RUNS_FILE_SCHEMA)


def _records_table(
    arrays: Sequence[np.ndarray], run_ids: Sequence[str], schema: pa.Schema
) -> pa.Table:
    """The records of several runs as one table; the runs of each record dtype (the
    recurrent model's, the feedforward model's) are converted together, the columns a
    dtype lacks are null."""
    groups: dict[np.dtype, list[int]] = {}
    for i, array in enumerate(arrays):
        groups.setdefault(array.dtype, []).append(i)
    if len(groups) > 1:
        parts = [
            _records_table([arrays[i] for i in members], [run_ids[i] for i in members], schema)
            for members in groups.values()
        ]
        return pa.concat_tables(parts)
    counts = [len(a) for a in arrays]
    merged = np.concatenate(arrays) if arrays else None
    columns = {
        "run_id": pa.array(np.repeat(np.asarray(run_ids, dtype=object), counts), type=pa.string())
    }
    for column in schema:
        if column.name == "run_id":
            continue
        if merged is None:
            values = pa.array([], type=column.type)
        elif column.name in merged.dtype.names:
            values = pa.array(np.ascontiguousarray(merged[column.name]), type=column.type)
        else:
            values = pa.nulls(len(merged), type=column.type)
        columns[column.name] = values
    return pa.Table.from_pydict(columns, schema=schema)


def traces_table(items: Sequence[tuple[str, RunResult]]) -> pa.Table:
    return _records_table([r.traces for _, r in items], [r.run_id for _, r in items], TRACES_SCHEMA)


def events_table(items: Sequence[tuple[str, RunResult]]) -> pa.Table:
    return _records_table([r.events for _, r in items], [r.run_id for _, r in items], EVENTS_SCHEMA)


# -- rows of older schema versions -------------------------------------------------------
def _with_old_names(dataset: str, schema: pa.Schema) -> pa.Schema:
    """``schema`` plus the old names of renamed columns (null in newer files)."""
    for new, old in RENAMED_COLUMNS.get(dataset, {}).items():
        if new in schema.names and old not in schema.names:
            schema = schema.append(pa.field(old, schema.field(new).type))
    return schema


def _upgrade(dataset: str, table: pa.Table) -> pa.Table:
    """Rows of older schema versions in today's form: a renamed column's values under its
    new name; in runs, the fields added since (null in older rows) at the value that
    version ran with (``config.ADDED_FIELDS``)."""
    for new, old in RENAMED_COLUMNS.get(dataset, {}).items():
        if old in table.column_names:
            if new in table.column_names:
                index = table.column_names.index(new)
                merged = pc.coalesce(table.column(new), table.column(old))
                table = table.set_column(index, new, merged)
            table = table.drop_columns([old])
    if dataset == "runs":
        for name, value in ADDED_FIELDS.items():
            if value is not None and name in table.column_names:
                column = table.column(name)
                if column.null_count:
                    index = table.column_names.index(name)
                    filled = pc.fill_null(column, pa.scalar(value, column.type))
                    table = table.set_column(index, name, filled)
    return table
