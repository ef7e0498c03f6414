"""The fixed, versioned schema of everything a run stores (Parquet via pyarrow).

Three datasets, one row type each:
- ``runs``: one row per run: identity, every config field as its own column, outcome, and
  the build that made it (compile target, engine/numba/llvmlite/numpy versions).
- ``traces``: one row per ``log_every`` cycles (``engine.state.TRACE_DTYPE`` + run_id;
  the feedforward model's ``engine.mlp.state.MLP_TRACE_DTYPE`` adds its own columns).
- ``events``: one row per neuron birth or death (``engine.state.EVENT_DTYPE`` + run_id;
  ``MLP_EVENT_DTYPE`` adds the block and whether the event is a block's).
- ``sessions``: one row per ``diffrnn study`` invocation that ran something: its wall time.
Record arrays leave the kernels with those dtypes; each field maps to one column here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from .config import RunConfig
from .mlp.state import MLP_EVENT_DTYPE, MLP_TRACE_DTYPE

# 2: the build columns (compile_target and package versions); 3: the criterion, the
# optimizer's fields and the deletion variants (deletion_order, inherit_deleted) in runs,
# traces' multiplier_sum renamed strength_sum and events' multiplier renamed strength
# (the loaders read older files under the new names); 4: the feedforward model: its config
# fields, its outcome in runs (final_blocks, final_widths, test_loss, test_accuracy,
# phase_floors), its trace columns (blocks, blocks_below, test_loss, test_accuracy) and
# the block of each event (block_id, level); null in rows of the recurrent model
SCHEMA_VERSION = 4
# columns renamed since an earlier schema: {dataset: {new name: old name}}
RENAMED_COLUMNS = {
    "traces": {"strength_sum": "multiplier_sum"},
    "events": {"strength": "multiplier"},
}


def _arrow_type(kind) -> pa.DataType:
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}[kind]


def _from_numpy(dtype: np.dtype) -> list[pa.Field]:
    return [pa.field(name, pa.from_numpy_dtype(dtype[name])) for name in dtype.names]


# what, besides the config, can change a run's bits (engine.jit.build_info); engine_version
# is the sixth. Null in rows stored before schema 2 (kernels compiled for the host CPU).
BUILD_COLUMNS = ("compile_target", "numba_version", "llvmlite_version", "numpy_version")
BUILD_FIELDS = [pa.field(name, pa.string()) for name in BUILD_COLUMNS]

CONFIG_FIELDS = [
    pa.field(f.name, _arrow_type(f.metadata["kind"])) for f in dataclasses.fields(RunConfig)
]

RUNS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("study", pa.string()),
        pa.field("condition", pa.string()),
        pa.field("task", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("cycles", pa.int64()),
    ]
    + CONFIG_FIELDS
    + [
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("cycles_done", pa.int64()),
        pa.field("final_loss", pa.float64()),
        pa.field("final_neurons", pa.int64()),
        pa.field("entropy_floor", pa.float64()),
        pa.field("final_blocks", pa.int64()),
        pa.field("final_widths", pa.list_(pa.int64())),
        pa.field("test_loss", pa.float64()),
        pa.field("test_accuracy", pa.float64()),
        pa.field("phase_floors", pa.list_(pa.float64())),
        pa.field("wall_seconds", pa.float64()),
        pa.field("cycles_per_second", pa.float64()),
        pa.field("engine_version", pa.string()),
        pa.field("schema_version", pa.int32()),
    ]
    + BUILD_FIELDS,
    metadata={"schema_version": str(SCHEMA_VERSION)},
)
TRACES_SCHEMA = pa.schema(
    # the feedforward records are the recurrent ones plus columns of their own
    [pa.field("run_id", pa.string())] + _from_numpy(MLP_TRACE_DTYPE),
    metadata={"schema_version": str(SCHEMA_VERSION)},
)
EVENTS_SCHEMA = pa.schema(
    [pa.field("run_id", pa.string())] + _from_numpy(MLP_EVENT_DTYPE),
    metadata={"schema_version": str(SCHEMA_VERSION)},
)
SESSIONS_SCHEMA = pa.schema(
    [
        pa.field("started_at", pa.string()),
        pa.field("wall_seconds", pa.float64()),
        pa.field("warm_up_seconds", pa.float64()),
        pa.field("runs_done", pa.int64()),
        pa.field("runs_skipped", pa.int64()),
        pa.field("runs_total", pa.int64()),
        pa.field("workers", pa.int64()),
        pa.field("backend", pa.string()),
        pa.field("engine_version", pa.string()),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)
