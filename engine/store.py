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
  loaders skip such names), flushed to disk, then renamed (``os.replace``, atomic);
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

Modules: this one holds every step that changes files (writing a batch, merging,
compacting, cleaning up after a kill) and the study lock, so that the crash-safety rules
above are kept in one place (and the crash tests, which replace its ``_write_atomic``,
``_remove`` and ``_fsync_dir`` to stop it at every step, reach every step). The rows are
made by ``engine.storetables``; the loaders and ``summary`` are in ``engine.storeread``;
the file layout and the light readers (stored run ids and builds, without pandas) in
``engine.storefiles``. Everything of those three is re-exported here: ``engine.store`` is
the store's one public face.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from . import names
from .config import ConfigError
from .records import SESSIONS_SCHEMA
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
from .storeread import (  # noqa: F401 (the loaders, re-exported)
    _KEYS,
    _RUN_ORDER,
    CONFIG_NAMES,
    RUN_COLUMNS,
    _filter_expression,
    _floor,
    _load_records,
    _read,
    _values,
    load_events,
    load_runs,
    load_sessions,
    load_traces,
    stored_studies,
    summary,
)
from .storetables import (  # noqa: F401 (the rows, re-exported)
    _FILE_SCHEMAS,
    DATASETS,
    RUNS_FILE_SCHEMA,
    _float_or_none,
    _records_table,
    _upgrade,
    _with_old_names,
    events_table,
    runs_table,
    traces_table,
)

ADHOC_STUDY = "adhoc"
DEFAULT_CONDITION = names.DEFAULT_CONDITION


# columns of ``runs`` that depend on the machine's speed, not on the run's config and seed
TIMING_COLUMNS = ("wall_seconds", "cycles_per_second")


def check_name(name: Any, what: str = "study name") -> str:
    """Study and condition names (``engine.names``' rule), refused with a StoreError."""
    try:
        return names.check_name(name, what)
    except ConfigError as error:
        raise StoreError(str(error)) from None


# -- writing -----------------------------------------------------------------------------
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


# -- cleaning up after a kill ------------------------------------------------------------
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


# -- merging and compaction --------------------------------------------------------------
MERGE_FANIN = 16  # this many files of one level are merged into one of the next level


COMPACT_LEVEL = 9  # the level of a study's fully compacted files (merges stop below it)


# rows per row group of merged files: small enough that a filter on a few run ids reads
# little more than their rows (16,384 trace rows = 164 runs of 100 records), large enough
# that a full read is not slowed by per-group overhead
ROW_GROUP_ROWS = {"runs": 65_536, "traces": 16_384, "events": 16_384}


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


# -- the study lock ----------------------------------------------------------------------
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
