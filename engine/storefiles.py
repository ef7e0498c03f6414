"""Which files of the store hold a study's rows, and the two questions a resume or a
dry-run asks of them (which runs are stored, by which build), answered with
``pyarrow.parquet`` alone.

Split from ``engine.store`` because that module imports pandas and ``pyarrow.dataset``
(which itself imports pandas): half a second of every dry-run of a study with stored runs
(``bench/store_scale.py``), for a question that needs one or two columns of a few files.
``engine.store`` re-exports everything here; the layout and the crash-safety rules are
described there.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .config import ConfigError
from .records import BUILD_COLUMNS

PARTITION = "study"
PART_PREFIX = "part-"  # one batch's file (level 0)
MERGED_PREFIX = "merged-"  # merged-<level>-<time>-<uuid>.parquet
COVERS_PREFIX = ".covers-"  # .covers-<merged file name>.json: what a merge replaces
LIST_RETRIES = 5  # a merge may delete a listed file before it is read: list again
BUILD_KEYS = ("engine_version", *BUILD_COLUMNS)  # what names a build (engine.jit.build_info)


class StoreError(ConfigError):
    """A bad store argument (unknown column, bad study name); one line."""


def file_level(path: Path | str) -> int:
    """0 for a batch's part file, the merge level for a merged file."""
    name = Path(path).name
    if name.startswith(MERGED_PREFIX):
        return int(name.split("-")[1])
    return 0


def study_dirs(root: Path, dataset: str, study: str | Sequence[str] | None) -> list[Path]:
    """The partition directories of ``study`` (one name, several, or every study)."""
    base = root / dataset
    if not base.is_dir():
        return []
    if study is None:
        return sorted(
            p for p in base.iterdir() if p.is_dir() and p.name.startswith(f"{PARTITION}=")
        )
    names = [study] if isinstance(study, str) else list(study)
    return [
        base / f"{PARTITION}={name}" for name in names if (base / f"{PARTITION}={name}").is_dir()
    ]


def covers_path(merged: Path) -> Path:
    return merged.parent / f"{COVERS_PREFIX}{merged.name}.json"


def unfinished_merges(directory: Path, names: set[str]) -> dict[str, list[str]]:
    """{merged file name: names it replaces} for merges whose list is still on disk and
    whose merged file is in place (the replaced files may or may not be gone yet)."""
    out = {}
    for name in names:
        if not (name.startswith(COVERS_PREFIX) and name.endswith(".json")):
            continue
        merged = name[len(COVERS_PREFIX) : -len(".json")]
        if merged not in names:
            continue  # killed before the rename: the merge never happened
        try:
            covered = json.loads((directory / name).read_text())
        except (OSError, ValueError):
            continue  # deleted meanwhile (the merge finished), or unreadable
        if isinstance(covered, list):
            out[merged] = [str(c) for c in covered]
    return out


def data_files(directory: Path) -> list[Path]:
    """The files of one study's dataset that hold its rows, each row once: temporaries,
    stray files and files already replaced by a merge left out; name order."""
    try:
        names = set(os.listdir(directory))
    except FileNotFoundError:
        return []
    covered: set[str] = set()
    if any(n.startswith(COVERS_PREFIX) for n in names):
        for replaced in unfinished_merges(directory, names).values():
            covered.update(replaced)
    return [
        directory / n
        for n in sorted(names - covered)
        if n.startswith((PART_PREFIX, MERGED_PREFIX)) and n.endswith(".parquet")
    ]


def part_files(
    results: str | os.PathLike, dataset: str, study: str | Sequence[str] | None = None
) -> list[Path]:
    """The stored files of a dataset (temporaries, stray files and files a merge has
    replaced excluded), name order."""
    files = []
    for directory in study_dirs(Path(results), dataset, study):
        files.extend(data_files(directory))
    return files


def read_columns(root: Path, dataset: str, study: str, columns: Sequence[str]) -> dict:
    """{column: list of values} of one study's rows, each column read from every file that
    has it (null for rows of files written before it existed).

    The same rules as the store's loaders: an unreadable file is skipped with a warning;
    a file deleted while it is read (a merge replaced it) makes the read start again from
    a new listing."""
    for attempt in range(LIST_RETRIES + 1):
        out: dict[str, list] = {name: [] for name in columns}
        gone = False
        for path in part_files(root, dataset, study):
            try:
                parquet = pq.ParquetFile(path)
                present = [c for c in columns if c in parquet.schema_arrow.names]
                table = parquet.read(columns=present)
            except (pa.ArrowException, OSError) as error:
                if not path.exists():
                    gone = True
                    break
                warnings.warn(f"skipping unreadable results file {path}: {error}", stacklevel=3)
                continue
            for name in columns:
                if name in present:
                    out[name].extend(table.column(name).to_pylist())
                else:
                    out[name].extend([None] * table.num_rows)
        if not gone:
            return out
        if attempt == LIST_RETRIES:
            break
    raise StoreError(f"{root / dataset}: files kept changing while being read; try again")


def stored_run_ids(results: str | os.PathLike, study: str) -> set[str]:
    """Ids of the runs stored for ``study`` (a run is stored once its runs row exists)."""
    return set(read_columns(Path(results), "runs", study, ["run_id"])["run_id"])


def same_build(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in BUILD_KEYS)


def build_text(build: dict) -> str:
    """One line naming a build: its compile target and versions."""
    target = build.get("compile_target") or "unknown (stored before schema 2: host CPU)"
    return (
        f"compile target {target}, engine {build.get('engine_version')}, "
        f"numba {build.get('numba_version')}, llvmlite {build.get('llvmlite_version')}, "
        f"numpy {build.get('numpy_version')}"
    )


def stored_builds(results: str | os.PathLike, study: str) -> list[dict]:
    """The distinct builds (compile target and versions) of a study's stored runs, in the
    order first stored."""
    values = read_columns(Path(results), "runs", study, BUILD_KEYS)
    distinct = dict.fromkeys(zip(*(values[k] for k in BUILD_KEYS), strict=True))
    return [dict(zip(BUILD_KEYS, build, strict=True)) for build in distinct]


def check_build(results: str | os.PathLike, study: str, current: dict) -> None:
    """Refuse to add runs of build ``current`` to a study stored by another build: its
    runs would not be the same bits as the stored ones (``--mix-builds`` allows it)."""
    for build in stored_builds(results, study):
        if not same_build(build, current):
            raise StoreError(
                f"{results}: study {study} has runs made by another build ({build_text(build)}) "
                f"than this one ({build_text(current)}), so the same run would give other "
                "bits; use a new results directory, or --mix-builds to add runs anyway"
            )
