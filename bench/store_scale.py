"""Store scale: the results store's queries at 1,000, 10,000 and 50,000 runs.

    python bench/store_scale.py            # 1,000, 10,000 and 50,000 runs: about 20 minutes
    python bench/store_scale.py --quick    # 200 and 1,000 runs, for a smoke test
    python bench/store_scale.py --sizes 1000,10000 --keep /tmp/stores

For each size, a study of 8 conditions (hard and easy task, two ``l1_strength`` and two
``delete_prob`` values) x size/8 seeds, 1,000 cycles, ``log_every = 10`` (100 trace
records per run), expanded by ``scheduler.parse_study`` so that run ids, conditions and
configs are real. Its results are synthetic: each run gets a ``RunResult`` with the same
schema and sizes as a real one (plausible losses, network sizes, 100 trace records, 20 to
40 births and deaths, about 1% of runs diverged and cut short) and goes through the same
write path (``store.write_batch``). Running 10,000 real runs would take about ten minutes
per store state and say nothing more about the store.

Three states of the store per size:

- per-run files: one ``write_batch`` per run, never merged: what engine 0.2.0 left (one
  file per run and dataset). Not built at 50,000 runs: 150,000 files, queries of a minute
  each, and nothing to learn beyond the 10,000-run column (time grows with the files).
- during a study: one ``write_batch`` per batch followed by ``store.merge_small_files``,
  as ``scheduler.run_study`` does; one run per batch (the worst case: most files), five
  per batch at 50,000 runs to keep the build time reasonable (``--batch-runs``).
- compacted: ``store.compact_study`` on the previous state (one file per dataset); timed
  with ``durable=True`` as a study does it. Building uses ``durable=False``: the fsync
  cost of writing is not what is measured here (``study_throughput.py`` times writes).

Queries, each timed as the best of 3 repetitions on a warm page cache (the files have just
been written): ``pd.read_parquet(RESULTS / "runs")``, ``store.load_runs``,
``store.summary``, ``store.load_traces`` of one condition and of a list of 20 run ids
(spread over the study, so over the compacted file's row groups), the store part of a
dry run or resume (``store.stored_run_ids`` + ``store.check_build``), and the whole
``diffrnn study FILE --out RESULTS --dry-run`` in a fresh process: on the complete store
(nothing to run: no calibration), on a resume (the study file with one more seed per
condition: 8 runs to do, so it calibrates like a dry run on an empty store), and on an
empty store with that same file; "resume - empty" is what the stored runs add to a dry
run. Each dry-run command is run once untimed first (Numba's cache, the page cache).

Memory: in a fresh process, ``store.load_traces(RESULTS)`` of every trace of the
compacted study; peak resident set (VmHWM) minus the resident set after the imports, and
the DataFrame's own size (``memory_usage(deep=True)``).

Writes bench/results/store_scale.md and .json (``--quick``: store_scale-quick.*).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow

from engine import scheduler, store
from engine.costmodel import cpu_name
from engine.jit import ENGINE_VERSION, build_info
from engine.run import RunResult
from engine.state import BIRTH, DEATH, EVENT_DTYPE, TRACE_DTYPE
from engine.tasks import entropy_floor

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STUDY = "scale"
CYCLES = 1000
LOG_EVERY = 10  # 100 trace records per run, as the targets assume
SIZES = (1000, 10_000, 50_000)
QUICK_SIZES = (200, 1000)
PER_RUN_MAX = 10_000  # per-run-files stores are built up to this size only
TARGET_SIZE = 10_000  # the size the targets are stated for
REPEATS = 3
SELECTED_RUNS = 20
# the 8 conditions: task x l1_strength x delete_prob
CONDITIONS = [
    (f"{task}-l1-{l1:g}-del-{delete:g}", task, l1, delete)
    for task in ("hard", "easy")
    for l1 in (1e-5, 3e-5)
    for delete in (0.1, 0.25)
]
STATES = ("per_run", "during", "compacted")
STATE_TITLES = {
    "per_run": "per-run files (as 0.2.0 left them)",
    "during": "during a study",
    "compacted": "compacted",
}
# (key, label, target during a study, target compacted) in seconds; None: no target
QUERIES = [
    ("read_parquet_runs", '`pd.read_parquet(RESULTS/"runs")`', 3.0, 0.5),
    ("load_runs", "`load_runs`", 3.0, 0.5),
    ("summary", "`summary`", 3.0, 1.0),
    ("traces_condition", "`load_traces(condition=one of 8)`", 3.0, 1.0),
    ("traces_run_ids", f"`load_traces(run_id=[{SELECTED_RUNS} ids])`", 3.0, 1.0),
    ("stored_check", "`stored_run_ids` + `check_build`", 3.0, 0.5),
    ("dry_run_complete", "`diffrnn study --dry-run`, complete store", None, None),
    ("dry_run_resume", "`diffrnn study --dry-run`, resume (8 to run)", None, None),
    ("dry_run_extra", "resume - empty store", 3.0, 0.5),
]


# -- the machine ---------------------------------------------------------------------------
def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- the study and its synthetic results ---------------------------------------------------
def study_text(runs: int, extra_seeds: int = 0) -> str:
    """The study file of ``runs`` runs (8 conditions x runs/8 seeds), as TOML."""
    lines = [
        f'name = "{STUDY}"',
        f'description = "store_scale.py: {runs} runs, synthetic results"',
        f"cycles = {CYCLES}",
        f"seeds = {runs // len(CONDITIONS) + extra_seeds}",
        "[params]",
        f"log_every = {LOG_EVERY}",
    ]
    for name, task, l1, delete in CONDITIONS:
        lines += [
            "[[conditions]]",
            f'name = "{name}"',
            f'task = "{task}"',
            f"l1_strength = {l1!r}",
            f"delete_prob = {delete!r}",
        ]
    return "\n".join(lines) + "\n"


def write_study(path: Path, runs: int, extra_seeds: int = 0) -> scheduler.Study:
    """Write the study file and expand it exactly as ``diffrnn study`` will."""
    path.write_text(study_text(runs, extra_seeds))
    return scheduler.load_study(path)


def _fill(
    dtype: np.dtype, n: int, values: dict[str, np.ndarray], other: Callable[[], np.ndarray]
) -> np.ndarray:
    """A record array of ``dtype``: the named fields from ``values``, the rest ``other()``
    (the record dtypes may gain or rename fields; the bench should not break on that)."""
    out = np.zeros(n, dtype=dtype)
    for name in dtype.names:
        out[name] = values[name] if name in values else other()
    return out


def synthetic_result(spec: scheduler.RunSpec, build: dict[str, str]) -> RunResult:
    """A RunResult with the schema, sizes and plausible values of a real run of ``spec``.

    Seeded by the run id, so that every store state of a size holds the same rows.
    """
    rng = np.random.default_rng(int(spec.run_id, 16))
    config = spec.config
    records = spec.cycles // config.log_every
    diverged = rng.random() < 0.01
    done = spec.cycles
    if diverged:  # a diverged run stops early: fewer records
        done = config.log_every * int(rng.integers(5, records))
    n = done // config.log_every
    final_neurons = int(rng.integers(5, 61))
    final_loss = float(rng.uniform(9.0, 20.0))

    cycle = config.log_every * np.arange(1, n + 1, dtype=np.int64)
    start_loss = config.seq_len * math.log(5.0)  # an untrained net on a 5-letter alphabet
    decay = np.exp(-cycle / (0.2 * spec.cycles))
    smoothed = final_loss + (start_loss - final_loss) * decay
    if diverged:
        smoothed[-1] = np.inf
    neurons = np.clip(
        np.rint(1 + (final_neurons - 1) * (1 - decay) + rng.normal(0, 1.5, n)),
        1,
        config.capacity - 1,
    )
    trace_values = {
        "cycle": cycle,
        "phase": np.zeros(n),
        "smoothed_loss": smoothed,
        "mean_loss": smoothed * rng.uniform(0.9, 1.1, n),
        "neurons": neurons,
        "below_threshold": rng.integers(0, 3, n),
        "data_position": cycle * config.seq_len,
    }
    # fields not named above (a sum of multipliers or strengths, or a field added later)
    # get a per-neuron figure times N: same type and size, plausible enough
    traces = _fill(TRACE_DTYPE, n, trace_values, lambda: neurons * rng.uniform(0.3, 1.0, n))

    count = int(rng.integers(20, 41))
    event_cycle = np.zeros(count, dtype=np.int64)  # the first event: a birth at cycle 0
    event_cycle[1:] = np.sort(rng.integers(1, done + 1, count - 1))
    kind = np.where(rng.random(count) < 0.6, BIRTH, DEATH)
    kind[0] = BIRTH
    event_values = {
        "cycle": event_cycle,
        "neuron_id": np.arange(count),
        "kind": kind,
        "age": np.where(kind == DEATH, rng.integers(10, 500, count), 0),
    }
    events = _fill(EVENT_DTYPE, count, event_values, lambda: rng.uniform(0.0, 1.0, count))

    train = done * rng.uniform(25e-6, 40e-6)  # ~30 us per cycle at these sizes
    return RunResult(
        run_id=spec.run_id,
        config=config,
        task=spec.task,
        seed=spec.seed,
        cycles=spec.cycles,
        cycles_done=done,
        status="diverged" if diverged else "ok",
        message=f"loss became non-finite at cycle {done}" if diverged else "",
        final_loss=math.nan if diverged else final_loss,
        final_neurons=final_neurons,
        entropy_floor=entropy_floor(spec.task, config),
        wall_seconds=train + 0.002,
        train_seconds=train,
        traces=traces,
        events=events,
        build=build,
    )


def _batches(specs: Sequence[scheduler.RunSpec], size: int) -> Iterator[list]:
    build = build_info()
    for start in range(0, len(specs), size):
        yield [(s.condition, synthetic_result(s, build)) for s in specs[start : start + size]]


def build_store(root: Path, study: scheduler.Study, batch_runs: int, merge: bool) -> float:
    """Write every run of ``study`` into ``root``, ``batch_runs`` per batch; with ``merge``,
    merge small files after every batch as the scheduler does. Returns the seconds spent
    in the store (writes and merges)."""
    seconds = 0.0
    for items in _batches(study.specs, batch_runs):
        t0 = time.perf_counter()  # the store's work only, not making the synthetic records
        store.write_batch(root, study.name, items, durable=False)
        if merge:
            store.merge_small_files(root, study.name, durable=False)
        seconds += time.perf_counter() - t0
    return seconds


def disk(root: Path) -> dict[str, Any]:
    """Files and bytes per dataset, of every file under it (what ``du`` would count)."""
    out: dict[str, Any] = {}
    for dataset in store.DATASETS:
        files = [p for p in (root / dataset).rglob("*") if p.is_file()]
        out[dataset] = {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    out["bytes"] = sum(out[d]["bytes"] for d in store.DATASETS)
    return out


# -- timing ---------------------------------------------------------------------------------
def best_of(fn: Callable[[], Any], repeats: int = REPEATS) -> dict[str, Any]:
    """Best wall time of ``repeats`` calls (every time kept), and the size of the result."""
    times = []
    result = None
    for _ in range(repeats):
        result = None  # the previous result is freed before the next call, not during it
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    rows = len(result) if hasattr(result, "__len__") else None
    return {"seconds": min(times), "all": times, "rows": rows}


def _dry_run(study_file: Path, root: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "engine", "study", str(study_file), "--out", str(root)]
    # a cost-model cache of the bench's own (beside the stores): the untimed first dry run
    # fills it, as a user's first dry run fills theirs, and theirs is left alone
    env = {**os.environ, "DIFFRNN_CACHE_DIR": str(root.parent / "cache")}
    done = subprocess.run(
        [*command, "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"dry run failed ({done.returncode}): {done.stderr.strip()}")
    return done


def time_dry_run(study_file: Path, root: Path, expect_stored: int) -> dict[str, Any]:
    """Best of 3 of a whole ``diffrnn study --dry-run`` process, after one untimed run."""
    output = _dry_run(study_file, root).stdout  # warms Numba's cache and the page cache
    match = re.search(r"already stored in .*: (\d+); to run: (\d+)", output)
    if not match or int(match.group(1)) != expect_stored:
        raise RuntimeError(f"dry run: expected {expect_stored} stored, got: {output.strip()}")
    result = best_of(lambda: _dry_run(study_file, root))
    result["rows"] = None
    result["stored"], result["to_run"] = int(match.group(1)), int(match.group(2))
    return result


def time_queries(
    root: Path,
    study: scheduler.Study,
    files: dict[str, Path],
    empty_dry_run: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Every query of the table on the store at ``root``."""
    condition = CONDITIONS[0][0]
    step = max(1, len(study.specs) // SELECTED_RUNS)
    ids = [s.run_id for s in study.specs[::step][:SELECTED_RUNS]]
    current = build_info()

    def stored_check() -> set[str]:
        stored = store.stored_run_ids(root, study.name)
        store.check_build(root, study.name, current)
        return stored

    out = {
        "read_parquet_runs": best_of(lambda: pd.read_parquet(root / "runs")),
        "load_runs": best_of(lambda: store.load_runs(root)),
        "summary": best_of(lambda: store.summary(root)),
        "traces_condition": best_of(lambda: store.load_traces(root, condition=condition)),
        "traces_run_ids": best_of(lambda: store.load_traces(root, run_id=ids)),
        "stored_check": best_of(stored_check),
        "dry_run_complete": time_dry_run(files["complete"], root, len(study.specs)),
        "dry_run_resume": time_dry_run(files["resume"], root, len(study.specs)),
    }
    extra = out["dry_run_resume"]["seconds"] - empty_dry_run["seconds"]
    out["dry_run_extra"] = {"seconds": extra, "all": [], "rows": None}
    # the answers must be the same whatever the state: a check that the bench is sound
    runs = len(study.specs)
    expected = {
        "read_parquet_runs": runs,
        "load_runs": runs,
        "summary": len(CONDITIONS),
        "stored_check": runs,
    }
    for key, rows in expected.items():
        if out[key]["rows"] != rows:
            raise RuntimeError(f"{key}: {out[key]['rows']} rows, expected {rows}")
    return out


MEMORY_SCRIPT = """
import json, sys
def status():
    fields = {}
    for line in open("/proc/self/status"):
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields
import pandas, pyarrow, pyarrow.dataset
from engine import store
before = status()
frame = store.load_traces(sys.argv[1])
after = status()
print(json.dumps({
    "rows": len(frame),
    "frame_bytes": int(frame.memory_usage(deep=True).sum()),
    "rss_after_imports_kb": before["VmRSS"],
    "peak_kb": after["VmHWM"],
    "rss_after_kb": after["VmRSS"],
}))
"""


def traces_memory(root: Path) -> dict[str, Any]:
    """Peak memory of loading every trace of the store, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout)
    data["peak_over_imports_mb"] = (data["peak_kb"] - data["rss_after_imports_kb"]) / 1024
    data["frame_mb"] = data["frame_bytes"] / 2**20
    return data


# -- one size ---------------------------------------------------------------------------------
def measure_size(runs: int, work: Path, batch_runs: int, keep: bool) -> dict[str, Any]:
    """Build the size's stores, time the queries in each state, compact, measure memory."""
    print(f"[{runs:,} runs] load {_load()}", file=sys.stderr)
    base = work / f"n{runs}"
    base.mkdir(parents=True, exist_ok=True)
    files = {"complete": base / "study.toml", "resume": base / "study-resume.toml"}
    study = write_study(files["complete"], runs)
    write_study(files["resume"], runs, extra_seeds=1)
    empty = base / "empty"
    empty.mkdir()
    empty_dry_run = time_dry_run(files["resume"], empty, 0)
    result: dict[str, Any] = {
        "runs": runs,
        "batch_runs": batch_runs,
        "empty_dry_run": empty_dry_run,
        "states": {},
    }

    if runs <= PER_RUN_MAX:
        root = base / "per-run"
        seconds = build_store(root, study, 1, merge=False)
        print(f"  per-run files built in {seconds:.0f} s", file=sys.stderr)
        result["states"]["per_run"] = {
            "build_seconds": seconds,
            "batch_runs": 1,
            "disk": disk(root),
            "queries": time_queries(root, study, files, empty_dry_run),
        }
        if not keep:
            shutil.rmtree(root)

    root = base / "study"
    seconds = build_store(root, study, batch_runs, merge=True)
    print(f"  during-study store built in {seconds:.0f} s", file=sys.stderr)
    result["states"]["during"] = {
        "build_seconds": seconds,
        "batch_runs": batch_runs,
        "disk": disk(root),
        "queries": time_queries(root, study, files, empty_dry_run),
    }

    report = store.compact_study(root, study.name)  # durable, as at the end of a study
    print(f"  compacted in {report.seconds:.1f} s", file=sys.stderr)
    result["compaction"] = {
        "seconds": report.seconds,
        "files_before": report.files_before,
        "files_after": report.files_after,
        "bytes_before": report.bytes_before,
        "bytes_after": report.bytes_after,
        "rows": report.rows,
    }
    result["states"]["compacted"] = {
        "disk": disk(root),
        "queries": time_queries(root, study, files, empty_dry_run),
    }
    result["memory"] = traces_memory(root)
    if not keep:
        shutil.rmtree(base)
    return result


# -- the report ---------------------------------------------------------------------------
def _seconds(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _met(value: float, target: float) -> str:
    return "yes" if value <= target else f"**no** ({value / target:.1f}x the target)"


def size_table(entry: dict[str, Any]) -> list[str]:
    runs = entry["runs"]
    states = [s for s in STATES if s in entry["states"]]
    targets = runs == TARGET_SIZE
    head = ["query (best of 3, seconds)"] + [STATE_TITLES[s] for s in states]
    if targets:
        head += ["target during / compacted", "met during / compacted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, during, compacted in QUERIES:
        cells = [label]
        for state in states:
            cells.append(_seconds(entry["states"][state]["queries"][key]["seconds"]))
        if targets:
            if during is None:
                cells += ["", ""]
            else:
                queries = {s: entry["states"][s]["queries"][key]["seconds"] for s in states}
                cells.append(f"{during:g} / {compacted:g}")
                cells.append(
                    f"{_met(queries['during'], during)} / {_met(queries['compacted'], compacted)}"
                )
        lines.append("| " + " | ".join(cells) + " |")
    pad = ["", ""] if targets else []
    lines.append(
        "| `diffrnn study --dry-run`, empty store (reference) | "
        + " | ".join(_seconds(entry["empty_dry_run"]["seconds"]) for _ in states)
        + " |"
        + "".join(f" {p} |" for p in pad)
    )
    for dataset in store.DATASETS:
        cells = [f"files in {dataset}"]
        cells += [f"{entry['states'][s]['disk'][dataset]['files']:,}" for s in states]
        lines.append("| " + " | ".join(cells + pad) + " |")
    cells = ["disk MB (3 datasets)"]
    cells += [f"{entry['states'][s]['disk']['bytes'] / 1e6:.1f}" for s in states]
    lines.append("| " + " | ".join(cells + pad) + " |")
    cells = ["store build s (durable=False)"]
    for state in states:
        info = entry["states"][state]
        if "build_seconds" in info:
            cells.append(f"{info['build_seconds']:.0f} ({info['batch_runs']} run/batch)")
        else:
            cells.append("compaction below")
    lines.append("| " + " | ".join(cells + pad) + " |")
    return lines


def render(data: dict[str, Any]) -> str:
    machine = data["machine"]
    lines = [
        "# Store scale (`bench/store_scale.py`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"pandas {machine['pandas']}, pyarrow {machine['pyarrow']}, engine "
        f"{machine['engine']}. Load average before: {machine['load_before']}, after: "
        f"{machine['load_after']}. Total bench time {data['seconds'] / 60:.1f} min.",
        "",
        f"Study: {len(CONDITIONS)} conditions (hard/easy x 2 l1_strength x 2 delete_prob) x "
        f"runs/8 seeds, {CYCLES:,} cycles, log_every {LOG_EVERY}: 100 trace records and 20-40 "
        "events per run. The records are synthetic (same schema, sizes and write path as "
        "real runs; real runs would take about 10 minutes per 10,000) and written with "
        "durable=False (fsync is not what is measured here); compaction is timed durable, "
        "as at the end of a study. Every query is the best of 3 on a warm page cache; "
        "dry runs are whole processes, run once untimed first. 'resume - empty store': a "
        "dry run of the study file with one more seed per condition (8 runs to do) on "
        "the store minus the same on an empty store: what the stored runs add. Per-run "
        f"files are not built above {PER_RUN_MAX:,} runs (the time grows with the files).",
    ]
    for entry in data["sizes"]:
        lines += ["", f"## {entry['runs']:,} runs", ""]
        if entry["batch_runs"] > 1:
            lines += [
                f"During a study: {entry['batch_runs']} runs per batch (to keep the build "
                "short), merged after every batch.",
                "",
            ]
        lines += size_table(entry)
    lines += [
        "",
        "## Compaction (`compact_study`, durable)",
        "",
        "| runs | seconds | files before -> after (runs/traces/events) | MB before -> after |",
        "|---|---|---|---|",
    ]
    for entry in data["sizes"]:
        c = entry["compaction"]
        before = "/".join(str(c["files_before"][d]) for d in store.DATASETS)
        after = "/".join(str(c["files_after"][d]) for d in store.DATASETS)
        mb_before = sum(c["bytes_before"].values()) / 1e6
        mb_after = sum(c["bytes_after"].values()) / 1e6
        lines.append(
            f"| {entry['runs']:,} | {c['seconds']:.2f} | {before} -> {after} | "
            f"{mb_before:.1f} -> {mb_after:.1f} |"
        )
    lines += [
        "",
        "## Memory of `load_traces(RESULTS)` (every trace, compacted store, fresh process)",
        "",
        "| runs | rows | peak RSS over the imports MB | DataFrame MB | RSS after imports MB |",
        "|---|---|---|---|---|",
    ]
    for entry in data["sizes"]:
        m = entry["memory"]
        lines.append(
            f"| {entry['runs']:,} | {m['rows']:,} | {m['peak_over_imports_mb']:.0f} | "
            f"{m['frame_mb']:.0f} | {m['rss_after_imports_kb'] / 1024:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _sizes(text: str) -> tuple[int, ...]:
    sizes = []
    for part in text.split(","):
        value = int(part)
        if value < len(CONDITIONS) or value % len(CONDITIONS):
            raise argparse.ArgumentTypeError(
                f"size {value} is not allowed: a positive multiple of {len(CONDITIONS)}"
            )
        sizes.append(value)
    return tuple(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} only")
    parser.add_argument("--sizes", type=_sizes, default=None, help="comma-separated run counts")
    parser.add_argument(
        "--batch-runs",
        type=int,
        default=None,
        help="runs per batch of the during-study store (default 1; 5 at 50,000 runs and up)",
    )
    parser.add_argument("--keep", default=None, metavar="DIR", help="build the stores in DIR, keep")
    parser.add_argument("--out", default=str(HERE / "results"), help="where to write the results")
    args = parser.parse_args()
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)

    load_before = _load()
    started = time.perf_counter()
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="diffrnn-store-scale-"))
    entries = []
    try:
        for runs in sizes:
            batch_runs = args.batch_runs or (5 if runs >= 50_000 else 1)
            entries.append(measure_size(runs, work, batch_runs, keep=bool(args.keep)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    data = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "pandas": pd.__version__,
            "pyarrow": pyarrow.__version__,
            "engine": ENGINE_VERSION,
            "load_before": load_before,
            "load_after": _load(),
        },
        "seconds": time.perf_counter() - started,
        "synthetic": True,
        "cycles": CYCLES,
        "log_every": LOG_EVERY,
        "conditions": [c[0] for c in CONDITIONS],
        "sizes": entries,
    }
    text = render(data)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # a run of some sizes only keeps the full table beside it
    suffix = "-quick" if args.quick else ""
    if args.sizes and not args.quick:
        suffix = "-" + "-".join(str(entry["runs"]) for entry in entries)
    (out / f"store_scale{suffix}.md").write_text(text)
    (out / f"store_scale{suffix}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"written to {out}/store_scale{suffix}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
