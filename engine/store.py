"""The results store: three Parquet datasets that survive a kill, and their loaders.

Layout (hive-partitioned by study, readable as is by ``pd.read_parquet`` and duckdb)::

    RESULTS/runs/study=NAME/*.parquet      one row per run (RUNS_SCHEMA)
    RESULTS/traces/study=NAME/*.parquet    log records (TRACES_SCHEMA)
    RESULTS/events/study=NAME/*.parquet    births and deaths (EVENTS_SCHEMA)
    RESULTS/sessions/study=NAME/*.parquet  one row per invocation (SESSIONS_SCHEMA)

The ``study`` column lives only in the directory name (the hive partition key), so files
hold ``RUNS_SCHEMA`` without ``study``; every reader adds it back from the path.

Files: one batch of runs gives one ``part-<batch>.parquet`` in each dataset, all with the
same name. Parquet is fast on few large files and slow on many small ones (about 1.5 ms
per file opened), so parts are merged as a study goes (``merge_small_files``, after every
batch: every MERGE_FANIN files of one level become one file of the next level,
``merged-<level>-<name>.parquet``; a study of B batches keeps at most about
MERGE_FANIN * log_MERGE_FANIN(B) files per dataset), and when it finishes every file of
the study is rewritten into one file per dataset (``compact_study``; also
``diffrnn results compact``), sorted by run id (then cycle, as written) in row groups
small enough that a filter on run ids reads little more than the runs asked for.

Crash safety:
- a file is written under a temporary name beginning with ``.`` (pyarrow, pandas and the
  loaders below skip such names), flushed to disk, then renamed (``os.replace``, atomic);
- a batch writes its traces and events files first and its runs file last: a run counts as
  stored only once its runs row exists. A kill in between leaves traces/events files
  without a runs row (orphans); loaders ignore rows whose run is not in ``runs``, and
  ``clean_study`` (called when a study starts) deletes such files and stale temporaries;
- ``stored_run_ids`` reads ``runs`` only, so a resumed study re-runs exactly the runs whose
  runs row is missing. Loaders also drop duplicate rows defensively;
- a merge writes the merged file under a temporary name, then a small list of the files it
  replaces (``.covers-<merged name>.json``, atomically), renames the merged file into
  place, deletes the files it replaces, and last the list. Whenever the list exists beside
  its merged file, the loaders leave the listed files out (so they never count a row
  twice), and the next ``clean_study`` or merge of the study deletes them; a list without
  its merged file (a kill before the rename) is deleted with the temporary. Only a reader
  that ignores the list (a plain ``pd.read_parquet`` of the directory) can see rows twice,
  and only between the rename and the deletions: milliseconds, or until the next start
  after a kill in that window. A reader whose file is deleted under it by a merge (the
  loaders retry, listing again) sees an error, never a partial result.

Single runs of ``diffrnn run --out DIR`` go to the study ``adhoc`` (condition ``default``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from . import names
from .config import ADDED_FIELDS, ConfigError, field_names
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
from .storefiles import (  # noqa: F401 (the file layout and the light readers, re-exported)
    BUILD_KEYS,
    COVERS_PREFIX,
    LIST_RETRIES,
    MERGED_PREFIX,
    PART_PREFIX,
    PARTITION,
    StoreError,
    build_text,
    check_build,
    covers_path,
    data_files,
    file_level,
    part_files,
    same_build,
    stored_builds,
    stored_run_ids,
    study_dirs,
    unfinished_merges,
)

DATASETS = ("runs", "traces", "events")
ADHOC_STUDY = "adhoc"
DEFAULT_CONDITION = names.DEFAULT_CONDITION
# columns of ``runs`` that depend on the machine's speed, not on the run's config and seed
TIMING_COLUMNS = ("wall_seconds", "cycles_per_second")

_FILE_SCHEMAS = {
    "runs": pa.schema(
        [f for f in RUNS_SCHEMA if f.name != PARTITION], metadata=RUNS_SCHEMA.metadata
    ),
    "traces": TRACES_SCHEMA,
    "events": EVENTS_SCHEMA,
    "sessions": SESSIONS_SCHEMA,
}
RUNS_FILE_SCHEMA = _FILE_SCHEMAS["runs"]
# natural keys: unique within one study (used to drop duplicate rows on load)
_KEYS = {
    "runs": ["study", "run_id"],
    "traces": ["study", "run_id", "cycle"],
    "events": ["study", "run_id", "cycle", "neuron_id", "kind"],
}
CONFIG_NAMES = field_names()


def check_name(name: Any, what: str = "study name") -> str:
    """Study and condition names (``engine.names``' rule), refused with a StoreError."""
    try:
        return names.check_name(name, what)
    except ConfigError as error:
        raise StoreError(str(error)) from None


# -- writing ------------------------------------------------------------------------------
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
    counts = [len(a) for a in arrays]
    merged = np.concatenate(arrays) if arrays else None
    columns = {
        "run_id": pa.array(np.repeat(np.asarray(run_ids, dtype=object), counts), type=pa.string())
    }
    for column in schema:
        if column.name == "run_id":
            continue
        values = np.ascontiguousarray(merged[column.name]) if merged is not None else []
        columns[column.name] = pa.array(values, type=column.type)
    return pa.Table.from_pydict(columns, schema=schema)


def traces_table(items: Sequence[tuple[str, RunResult]]) -> pa.Table:
    return _records_table([r.traces for _, r in items], [r.run_id for _, r in items], TRACES_SCHEMA)


def events_table(items: Sequence[tuple[str, RunResult]]) -> pa.Table:
    return _records_table([r.events for _, r in items], [r.run_id for _, r in items], EVENTS_SCHEMA)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(table: pa.Table, directory: Path, name: str, durable: bool) -> Path:
    """Write ``directory/name`` so that it either exists complete or not at all."""
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        if durable:  # the new directories' entries reach the disk too
            _fsync_dir(directory.parent)
            _fsync_dir(directory.parent.parent)
    final = directory / name
    temporary = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temporary, "wb") as handle:
            pq.write_table(table, handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return final


def new_part_name() -> str:
    """A unique, time-ordered file name shared by the three files of one batch."""
    return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"


def write_batch(
    results: str | os.PathLike,
    study: str,
    items: Sequence[tuple[str, RunResult]],
    *,
    durable: bool = True,
) -> str | None:
    """Store a batch of finished runs, given as (condition, RunResult) pairs.

    Traces and events are written first and the runs file last, each atomically, so that
    after a kill at any instant a run is either fully stored (its runs row exists) or not
    at all (loaders and ``clean_study`` ignore or remove what it left). Returns the part
    name (None for an empty batch).
    """
    check_name(study)
    if not items:
        return None
    root = Path(results)
    name = new_part_name()
    partition = f"{PARTITION}={study}"
    dirs = []
    for dataset, make in (("traces", traces_table), ("events", events_table)):
        table = make(items)
        if table.num_rows:
            dirs.append(_write_atomic(table, root / dataset / partition, name, durable).parent)
    if durable:
        for directory in dirs:  # the renames above reach the disk before the runs file
            _fsync_dir(directory)
    final = _write_atomic(runs_table(items), root / "runs" / partition, name, durable)
    if durable:
        _fsync_dir(final.parent)
    return name


def write_session(results: str | os.PathLike, study: str, record: dict[str, Any]) -> Path:
    """Store one study invocation's timing (``SESSIONS_SCHEMA`` fields), atomically."""
    check_name(study)
    table = pa.Table.from_pylist([record], schema=SESSIONS_SCHEMA)
    directory = Path(results) / "sessions" / f"{PARTITION}={study}"
    return _write_atomic(table, directory, new_part_name(), durable=True)


def load_sessions(results: str | os.PathLike, study: str | None = None) -> pd.DataFrame:
    """One row per ``diffrnn study`` invocation that ran runs: when, how long, how many."""
    root = Path(results)
    table = _read(root, "sessions", study, None, None)
    frame = table.to_pandas()
    frame["study"] = frame["study"].astype(str)
    return frame.sort_values(["study", "started_at"], ignore_index=True)


# -- discovery ------------------------------------------------------------------------------
MERGE_FANIN = 16  # this many files of one level are merged into one of the next level
COMPACT_LEVEL = 9  # the level of a study's fully compacted files (merges stop below it)
# rows per row group of merged files: small enough that a filter on a few run ids reads
# little more than their rows (16,384 trace rows = 164 runs of 100 records), large enough
# that a full read is not slowed by per-group overhead
ROW_GROUP_ROWS = {"runs": 65_536, "traces": 16_384, "events": 16_384}


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


def _remove(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def _finish_merges(directory: Path) -> int:
    """Complete what killed merges left: delete the files a merged file in place replaces,
    and every list of replaced files (also those of merges killed before the rename).
    Returns the number of data files deleted."""
    try:
        names = set(os.listdir(directory))
    except FileNotFoundError:
        return 0
    removed = 0
    for replaced in unfinished_merges(directory, names).values():
        removed += sum(_remove(directory / name) for name in replaced)
    if removed:
        _fsync_dir(directory)
    for name in names:
        if name.startswith(COVERS_PREFIX) and name.endswith(".json"):
            _remove(directory / name)
    return removed


def clean_study(results: str | os.PathLike, study: str, *, min_age: float = 0.0) -> int:
    """Delete what a killed writer or merge of ``study`` left: temporaries, files that a
    merged file already holds, and orphan batches.

    An orphan is a traces or events part whose runs are not all stored (its batch was
    killed before its runs file was written); a part whose batch has a runs part of the
    same name is never one, the others are checked by their rows (their runs part may
    have been merged). Only call this while no other process writes or merges the same
    study (``study_lock`` makes sure of that). Returns the number of files removed.
    """
    check_name(study)
    root = Path(results)
    partition = f"{PARTITION}={study}"
    now = time.time()

    def old_enough(path: Path) -> bool:
        try:
            return now - path.stat().st_mtime >= min_age
        except FileNotFoundError:
            return False

    removed = 0
    for dataset in DATASETS:
        directory = root / dataset / partition
        if not directory.is_dir():
            continue
        removed += _finish_merges(directory)
        for path in directory.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp") and old_enough(path):
                removed += _remove(path)
    runs_names = {p.name for p in data_files(root / "runs" / partition)}
    stored: set[str] | None = None
    for dataset in ("traces", "events"):
        for path in data_files(root / dataset / partition):
            if not path.name.startswith(PART_PREFIX) or path.name in runs_names:
                continue
            if stored is None:
                stored = stored_run_ids(root, study)
            try:
                ids = pq.read_table(path, columns=["run_id"]).column("run_id").unique()
            except (pa.ArrowException, OSError):
                continue  # unreadable: the loaders skip it with a warning
            if not set(ids.to_pylist()) <= stored and old_enough(path):
                removed += _remove(path)
    return removed


# -- merging and compaction -----------------------------------------------------------------
def _merge(directory: Path, dataset: str, files: list[Path], level: int, durable: bool) -> Path:
    """Rewrite ``files`` (one study's, one dataset's) as one file of ``level``, sorted by
    run id, then delete them; safe against a kill at any point (module docstring)."""
    schema = _FILE_SCHEMAS[dataset]
    # the fixed schema: rows of older schema versions are upgraded (``_upgrade``)
    readable = _with_old_names(dataset, schema)
    table = ds.dataset([str(p) for p in files], schema=readable, format="parquet").to_table()
    table = _upgrade(dataset, table).select(schema.names)
    # a stable sort, so that each run's rows keep their order (cycle, then event order)
    table = table.take(pc.sort_indices(table, sort_keys=[("run_id", "ascending")]))
    table = table.replace_schema_metadata(schema.metadata)
    name = f"{MERGED_PREFIX}{level}-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"
    final = directory / name
    temporary = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    covers = covers_path(final)
    try:
        with open(temporary, "wb") as handle:
            pq.write_table(table, handle, row_group_size=ROW_GROUP_ROWS[dataset])
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        listing = json.dumps([p.name for p in files]).encode()
        covers_temporary = directory / f".{covers.name}.{uuid.uuid4().hex[:8]}.tmp"
        with open(covers_temporary, "wb") as handle:
            handle.write(listing)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(covers_temporary, covers)
        os.replace(temporary, final)
    except BaseException:
        _remove(temporary)
        if not final.exists():
            _remove(covers)
        raise
    if durable:  # the merged file is on disk before any file it replaces goes
        _fsync_dir(directory)
    for path in files:
        _remove(path)
    if durable:
        _fsync_dir(directory)
    _remove(covers)
    return final


def merge_small_files(
    results: str | os.PathLike, study: str, *, durable: bool = True, fanin: int = MERGE_FANIN
) -> int:
    """In each of the study's datasets, merge the files of a level that holds ``fanin`` or
    more into one file of the next level, until no level does (cheap when none does: one
    directory listing per dataset). Called after every batch, a level never holds more
    than ``fanin`` files. Call it while holding ``study_lock``. Returns the number of
    merges done."""
    check_name(study)
    if fanin < 2:
        raise StoreError(f"fanin = {fanin!r} is out of range: allowed [2, inf)")
    partition = f"{PARTITION}={study}"
    merges = 0
    for dataset in DATASETS:
        directory = Path(results) / dataset / partition
        while True:
            levels: dict[int, list[Path]] = {}
            for path in data_files(directory):
                levels.setdefault(file_level(path), []).append(path)
            full = [
                level
                for level, files in sorted(levels.items())
                if len(files) >= fanin and level < COMPACT_LEVEL - 1
            ]
            if not full:
                break
            _merge(directory, dataset, levels[full[0]], full[0] + 1, durable)
            merges += 1
    return merges


@dataclass
class CompactReport:
    """What ``compact_study`` did, per dataset: files and bytes before and after."""

    study: str
    files_before: dict[str, int] = field(default_factory=dict)
    files_after: dict[str, int] = field(default_factory=dict)
    bytes_before: dict[str, int] = field(default_factory=dict)
    bytes_after: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    cleaned: int = 0  # leftovers of killed writers removed first
    seconds: float = 0.0


def _size(paths: Iterable[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def compact_study(
    results: str | os.PathLike, study: str, *, durable: bool = True, take_lock: bool = True
) -> CompactReport:
    """Rewrite each dataset of ``study`` into one file, sorted by run id, in row groups
    sized for filtered reads (``ROW_GROUP_ROWS``); first removes what killed writers left.

    Safe against a kill at any point and against concurrent readers (module docstring);
    a study resumed afterwards adds parts beside the compacted file as before. Holds the
    study's lock unless ``take_lock=False`` (the caller holds it already). The rows of a
    dataset are held in memory while it is rewritten.
    """
    check_name(study)
    t0 = time.perf_counter()
    lock = study_lock(results, study) if take_lock else contextlib.nullcontext()
    report = CompactReport(study)
    partition = f"{PARTITION}={study}"
    with lock:
        report.cleaned = clean_study(results, study)
        for dataset in ("traces", "events", "runs"):  # runs last, as a batch is written
            directory = Path(results) / dataset / partition
            files = data_files(directory)
            report.files_before[dataset] = len(files)
            report.bytes_before[dataset] = _size(files)
            if len(files) > 1 or (files and file_level(files[0]) != COMPACT_LEVEL):
                files = [_merge(directory, dataset, files, COMPACT_LEVEL, durable)]
            report.files_after[dataset] = len(files)
            report.bytes_after[dataset] = _size(files)
            report.rows[dataset] = sum(pq.read_metadata(p).num_rows for p in files)
    report.seconds = time.perf_counter() - t0
    return report


def stored_studies(results: str | os.PathLike) -> list[str]:
    """Names of the studies with a directory in any dataset."""
    names = set()
    for dataset in DATASETS:
        for directory in study_dirs(Path(results), dataset, None):
            names.add(directory.name.split("=", 1)[1])
    return sorted(names)


@contextlib.contextmanager
def study_lock(results: str | os.PathLike, study: str) -> Iterator[None]:
    """Hold an exclusive lock on (RESULTS, study); released by the OS even on SIGKILL."""
    import fcntl

    check_name(study)
    root = Path(results)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".lock-{PARTITION}={study}"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"study {study!r} is already being run into {str(root)!r} by another process"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# -- loading --------------------------------------------------------------------------------
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
        for name in ("final_neurons", "final_loss"):
            values = ok[name].astype(float)
            q25, median, q75 = (
                values.quantile([0.25, 0.5, 0.75]).tolist() if len(values) else [math.nan] * 3
            )
            row.update({f"{name}_median": median, f"{name}_q25": q25, f"{name}_q75": q75})
        row["entropy_floor"] = _floor(part["entropy_floor"])
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + stats)
