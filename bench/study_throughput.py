"""Study throughput: runs per hour at 1 and 2 workers, dispatch overhead, worker memory,
and the fixed cost of an invocation (start-up, dry-run).

    python bench/study_throughput.py            # about five minutes on 2 cores
    python bench/study_throughput.py --quick    # a smaller version, for a smoke test

Five measurements, with the loky backend (the default of ``diffrnn study``) unless said:

1. throughput: a fixed study (hard task, variable size, 20,000 cycles, SEEDS seeds) run
   with ``--jobs 1`` and ``--jobs 2``; runs per hour from the wall time of ``run_study``,
   start to end (warm-up, calibration and starting the worker processes included), and
   from the fan-out alone. With one job joblib runs the batches in this process.
2. overhead: (a) everything that is not a run, per run: (fan-out wall time x workers -
   sum of the runs' own wall times measured inside the workers) / runs; it includes
   starting the worker processes and loading the kernel cache in them, and workers idling
   while the last batch finishes. (b) dispatch proper, per run: the round trip of a batch
   through warm loky workers (timed with empty batches) plus the parent's Parquet write of
   a batch (timed during the study), divided by the runs per batch of the study.
3. memory: 1,000 short runs (1,000 cycles) on 2 workers in batches of 10; each worker's
   resident set size (VmRSS, /proc) after every batch, and its peak (VmHWM).
4. the fixed cost (issue 8): a study of 8 equal fixed-size runs (N=27, EIGHT_CYCLES cycles,
   about 1.7 s each), each invocation a fresh ``diffrnn study`` process
   (``timed_invocation.py``: the console script plus timers), with ``--jobs 1`` and
   ``--jobs 2``, the cost model warm; beside it, in the same rounds, the machine's own
   two-process speed-up: one plain process running one such run, then two side by side
   (2 x the time of one / the time of two). The study's speed-up should be at least
   TARGET_RATIO of it. Reported: the best of ROUNDS rounds, and the time at which each
   part of the best invocations ended (interpreter, imports, study file, kernels, store,
   cost model, workers, first batch, last batch, compaction, summary, exit).
5. dry-run: ``diffrnn study studies/paper-fig1.toml --dry-run`` on an empty store with a
   cold cost model (rates timed) and a warm one, and of a 2,000-run grid, warm; the best
   of 3 of each, with its parts (imports, study file, store check, cost model, estimate).

The bench keeps its cost model in a temporary DIFFRNN_CACHE_DIR (the user's is not read or
written). Writes bench/results/study_throughput.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numba

from engine import scheduler, store
from engine.costmodel import cpu_name
from engine.jit import ENGINE_VERSION
from engine.run import warm_up

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CYCLES = 20_000
EIGHT_CYCLES = 50_000  # about 1.7 s per run at N=27 on the 2-core EPYC of bench/README.md
EIGHT_HIDDEN = 27
ROUNDS = 3
TARGET_RATIO = 0.93  # issue 8: the study's 2-worker speed-up / the machine's own
GRID_SEEDS = 20  # the 2,000-run dry-run: 10 x 10 grid points x 20 seeds


def _study(name: str, seeds: int, cycles: int) -> scheduler.Study:
    return scheduler.parse_study(
        {"name": name, "task": "hard", "cycles": cycles, "seeds": seeds}, f"<{name}>"
    )


class _TimedStore:
    """Wraps store.write_batch to time the parent's writes."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.real = store.write_batch

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.real(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - t0)

    def __enter__(self):
        store.write_batch = self
        return self

    def __exit__(self, *exc):
        store.write_batch = self.real


def throughput(seeds: int, workers: int, root: Path) -> dict:
    study = _study(f"throughput-{workers}", seeds, CYCLES)
    out = root / f"throughput-{workers}"
    with _TimedStore() as timer:
        t0 = time.perf_counter()
        report = scheduler.run_study(study, out, jobs=workers, backend="loky")
        wall = time.perf_counter() - t0
    runs = report.done
    overhead = (report.seconds * workers - report.run_seconds) / runs
    mean_run = report.run_seconds / runs
    return {
        "workers": workers,
        "runs": runs,
        "batches": report.batches,
        "wall_seconds": wall,
        "fan_out_seconds": report.seconds,
        "warm_up_seconds": report.warm_up_seconds,
        "runs_per_hour": 3600 * runs / wall,
        "runs_per_hour_fan_out": 3600 * runs / report.seconds,
        "mean_run_seconds": mean_run,
        "overhead_per_run_ms": 1e3 * overhead,
        "overhead_percent": 100 * overhead / mean_run,
        "in_worker_overhead_per_run_ms": 1e3 * (report.worker_seconds - report.run_seconds) / runs,
        "store_ms_per_batch": 1e3 * statistics.median(timer.seconds),
        "store_ms_per_run": 1e3 * sum(timer.seconds) / runs,
    }


def dispatch(batches: int = 200) -> dict:
    """Round trip of an empty batch through 2 warm loky workers (worker-time per batch)."""
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=2, batch_size=1, return_as="generator_unordered")
    list(parallel(delayed(scheduler.run_batch)([], os.getpid()) for _ in range(8)))  # warm
    t0 = time.perf_counter()
    list(parallel(delayed(scheduler.run_batch)([], os.getpid()) for _ in range(batches)))
    wall = time.perf_counter() - t0
    return {"batches": batches, "ms_per_batch": 1e3 * wall * 2 / batches}


def memory(runs: int, root: Path) -> dict:
    study = _study("memory", runs, 1000)
    report = scheduler.run_study(study, root / "memory", jobs=2, backend="loky", batch_size=10)
    workers = {}
    for pid, series in report.rss_kb.items():
        tenth = series[min(len(series) - 1, max(1, len(series) // 10))]
        workers[pid] = {
            "batches": len(series),
            "rss_first_mb": series[0] / 1024,
            "rss_after_10pct_mb": tenth / 1024,
            "rss_last_mb": series[-1] / 1024,
            "rss_max_mb": max(series) / 1024,
            "peak_hwm_mb": report.peak_rss_kb[pid] / 1024,
            "growth_after_10pct_mb": (series[-1] - tenth) / 1024,
        }
    return {
        "runs": report.done,
        "cycles": 1000,
        "batch_size": 10,
        "seconds": report.seconds,
        "workers": workers,
    }


# -- the fixed cost of an invocation (issue 8) ----------------------------------------------
EIGHT_STUDY = """
name = "eight"
description = "8 equal fixed-size runs: the fixed cost of an invocation (bench)"
task = "hard"
cycles = {cycles}
seeds = 8
[params]
mode = "fixed"
hidden_size = {hidden}
"""

# one such run in a plain process (no scheduler): what the machine gives two processes
PLAIN_RUN = """
import json, sys, time
t0 = time.perf_counter()
from engine import RunConfig, run, warm_up
warm_up()
t1 = time.perf_counter()
result = run(RunConfig(mode="fixed", hidden_size=int(sys.argv[3])), "hard", int(sys.argv[1]),
             int(sys.argv[2]))
print(json.dumps({"start_seconds": t1 - t0, "run_seconds": result.wall_seconds}))
"""


def _grid_study(path: Path) -> Path:
    values = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 3e-5, 5e-5, 1e-4, 2e-4, 5e-4]
    probs = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7]
    path.write_text(
        textwrap.dedent(f"""
        name = "grid2000"
        task = "hard"
        cycles = 300000
        seeds = {GRID_SEEDS}
        [grid]
        l1_strength = {values}
        delete_prob = {probs}
        """)
    )
    return path


def invoke(argv: list[str], root: Path) -> dict:
    """One ``diffrnn`` invocation in a fresh process (timed_invocation.py): its wall time
    and the end of each part, in seconds from the launch."""
    record_path = root / f"invocation-{time.monotonic_ns()}.json"
    load = os.getloadavg()[0]
    launched = time.time()
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(HERE / "timed_invocation.py"), str(record_path), *argv],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"diffrnn {' '.join(argv)} failed:\n{done.stderr[-4000:]}")
    record = json.loads(record_path.read_text())
    start = record["started_epoch"] - launched  # the interpreter's own start-up

    def at(seconds: float) -> float:
        return start + seconds

    marks = {"interpreter": start, "imports": at(record["imports"])}
    spans = record["spans"]
    marks["study_file"] = at(spans["load_study"][1])
    for name, seconds in sorted(record.get("phases", {}).items(), key=lambda kv: kv[1]):
        marks[name] = at(seconds)
    if "run_study" not in spans:  # a dry-run
        for span, name in (
            ("_nothing_stored", "store_checked"),
            ("study_rates", "rates_ready"),
            ("make_batches", "estimated"),
        ):
            if span in spans:
                marks[name] = at(spans[span][1])
    if "_print_summary" in spans:
        marks["summary"] = at(spans["_print_summary"][1])
    marks["main_returned"] = at(record["main"])
    marks["exit_handlers"] = at(record["exit_handlers"])
    marks["exited"] = wall
    return {"argv": argv, "wall": wall, "load_before": load, "marks": marks, **record}


def plain_runs(count: int, cycles: int) -> dict:
    """``count`` plain processes started side by side, each running one run (seeds 0..)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PLAIN_RUN, str(cycles), str(seed), str(EIGHT_HIDDEN)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for seed in range(count)
    ]
    answers = []
    for child in children:
        out, err = child.communicate(timeout=600)
        if child.returncode != 0:
            raise RuntimeError(f"plain run failed:\n{err[-4000:]}")
        answers.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "processes": count,
        "wall": time.perf_counter() - t0,
        "load_before": load,
        "run_seconds": [a["run_seconds"] for a in answers],
        "start_seconds": [a["start_seconds"] for a in answers],
    }


def eight_runs(rounds: int, cycles: int, root: Path) -> dict:
    """The 8-equal-runs study at 1 and 2 workers beside the two-process yardstick."""
    study = root / "eight.toml"
    study.write_text(textwrap.dedent(EIGHT_STUDY.format(cycles=cycles, hidden=EIGHT_HIDDEN)))
    invoke(["study", str(study), "--dry-run", "--out", str(root / "none")], root)  # warm model
    rows = []
    for index in range(rounds):
        row = {"single": plain_runs(1, cycles), "pair": plain_runs(2, cycles)}
        for name, options in (
            ("jobs1", ["--jobs", "1"]),
            ("jobs2", ["--jobs", "2"]),  # the default backend, auto
            ("loky", ["--jobs", "2", "--backend", "loky"]),
            ("threading", ["--jobs", "2", "--backend", "threading"]),
        ):
            out = root / f"eight-{index}-{name}"
            row[name] = invoke(["study", str(study), *options, "--out", str(out)], root)
            shutil.rmtree(out, ignore_errors=True)
        row["speedup"] = row["jobs1"]["wall"] / row["jobs2"]["wall"]
        row["speedup_threading"] = row["jobs1"]["wall"] / row["threading"]["wall"]
        row["speedup_loky"] = row["jobs1"]["wall"] / row["loky"]["wall"]
        row["yardstick"] = 2 * row["single"]["wall"] / row["pair"]["wall"]
        rows.append(row)
        print(
            f"round {index + 1}: jobs 1 {row['jobs1']['wall']:.2f} s, jobs 2 "
            f"{row['jobs2']['wall']:.2f} s ({row['speedup']:.3f}x, "
            f"{row['jobs2']['report'].get('backend')}), loky {row['loky']['wall']:.2f} s "
            f"({row['speedup_loky']:.3f}x), threads "
            f"{row['threading']['wall']:.2f} s ({row['speedup_threading']:.3f}x); plain 1 "
            f"{row['single']['wall']:.2f} s, 2 {row['pair']['wall']:.2f} s "
            f"({row['yardstick']:.3f}x)",
            file=sys.stderr,
        )
    best1 = min((r["jobs1"] for r in rows), key=lambda r: r["wall"])
    best2 = min((r["jobs2"] for r in rows), key=lambda r: r["wall"])
    best_threads = min((r["threading"] for r in rows), key=lambda r: r["wall"])
    best_loky = min((r["loky"] for r in rows), key=lambda r: r["wall"])
    single = min(r["single"]["wall"] for r in rows)
    pair = min(r["pair"]["wall"] for r in rows)
    run_single = min(r["single"]["run_seconds"][0] for r in rows)
    run_pair = min(statistics.mean(r["pair"]["run_seconds"]) for r in rows)
    speedup = best1["wall"] / best2["wall"]
    yardstick = 2 * single / pair
    return {
        "cycles": cycles,
        "hidden_size": EIGHT_HIDDEN,
        "rounds": rows,
        "best_jobs1": best1,
        "best_jobs2": best2,
        "best_threading": best_threads,
        "best_loky": best_loky,
        "speedup_loky": best1["wall"] / best_loky["wall"],
        "ratio_loky": best1["wall"] / best_loky["wall"] / yardstick,
        "speedup": speedup,
        "speedup_threading": best1["wall"] / best_threads["wall"],
        "ratio_threading": best1["wall"] / best_threads["wall"] / yardstick,
        "plain_single": single,
        "plain_pair": pair,
        "yardstick": yardstick,
        "yardstick_in_run": 2 * run_single / run_pair,
        "run_single": run_single,
        "run_pair": run_pair,
        "ratio": speedup / yardstick,
        "ratio_in_run": speedup / (2 * run_single / run_pair),
        "ratios_by_round": [r["speedup"] / r["yardstick"] for r in rows],
        "target": TARGET_RATIO,
    }


def dry_runs(root: Path, repeats: int = 3) -> dict:
    """``--dry-run`` of paper-fig1 (cold and warm cost model) and of a 2,000-run grid."""
    fig1 = str(ROOT / "studies" / "paper-fig1.toml")
    grid = str(_grid_study(root / "grid2000.toml"))
    empty = str(root / "empty-store")
    out = {}
    cold = []
    for index in range(repeats):
        cache = root / f"cold-cache-{index}"
        os.environ["DIFFRNN_CACHE_DIR"] = str(cache)
        try:
            cold.append(invoke(["study", fig1, "--dry-run", "--out", empty], root))
        finally:
            os.environ["DIFFRNN_CACHE_DIR"] = str(root / "cache")
    out["paper_fig1_cold"] = cold
    for path in (fig1, grid):  # their rates into the warm model, once
        invoke(["study", path, "--dry-run", "--out", empty], root)
    for name, path in (("paper_fig1_warm", fig1), ("grid_2000_warm", grid)):
        out[name] = [
            invoke(["study", path, "--dry-run", "--out", empty], root) for _ in range(repeats)
        ]
    return out


# the parts of an invocation, in the order they end (StudyReport.phases and the dry-run's)
STUDY_PARTS = (
    ("interpreter", "Python started"),
    ("imports", "engine.cli imported (numpy, Numba, the engine)"),
    ("study_file", "study file read and expanded"),
    ("workers_spawned", "worker processes being started (in a thread)"),
    ("kernels_loaded", "kernels loaded here (Numba's cache), workers let load theirs"),
    ("store_imported", "joblib and the store (pandas, pyarrow) imported"),
    ("store_checked", "store locked, cleaned, stored runs and build checked"),
    ("rates_ready", "rates from the cost model, batches made"),
    ("workers_ready", "workers started: engine imported, kernels loaded"),
    ("first_dispatch", "first batch dispatched"),
    ("first_result", "first batch back and stored"),
    ("fan_out_done", "last batch back and stored"),
    ("compacted", "store compacted"),
    ("session_written", "session recorded"),
    ("summary", "summary table printed"),
    ("main_returned", "command done"),
    ("exit_handlers", "workers stopped, exit handlers run"),
    ("exited", "process exited"),
)
DRY_PARTS = (
    ("interpreter", "Python started"),
    ("imports", "engine.cli imported"),
    ("study_file", "study file read"),
    ("store_checked", "store checked"),
    ("rates_ready", "cost model"),
    ("estimated", "estimate"),
    ("exited", "process exited"),
)


def render_fixed_cost(eight: dict, dry: dict) -> list[str]:
    one, two = eight["best_jobs1"], eight["best_jobs2"]
    lines = [
        "",
        "## The fixed cost of an invocation (issue 8)",
        "",
        f"Study: 8 equal fixed-size runs (N={eight['hidden_size']}, hard task, "
        f"{eight['cycles']:,} cycles each), each invocation a fresh `diffrnn study` process "
        "(loky, cost model warm, empty store, summary printed); beside it the machine's own "
        "two-process speed-up: one plain Python process running one such run, then two side "
        f"by side. Best of {len(eight['rounds'])} rounds (wall seconds, launch to exit):",
        "",
        "| | 1 | 2 | speed-up |",
        "|---|---|---|---|",
        f"| `diffrnn study --jobs N` (8 runs; the default backend, auto: "
        f"{two['report'].get('backend')}) | {one['wall']:.2f} | {two['wall']:.2f} | "
        f"{eight['speedup']:.3f}x |",
        f"| `diffrnn study --jobs N --backend loky` | {one['wall']:.2f} | "
        f"{eight['best_loky']['wall']:.2f} | {eight['speedup_loky']:.3f}x |",
        f"| `diffrnn study --jobs N --backend threading` | {one['wall']:.2f} | "
        f"{eight['best_threading']['wall']:.2f} | {eight['speedup_threading']:.3f}x |",
        f"| plain processes side by side (1 run each) | {eight['plain_single']:.2f} | "
        f"{eight['plain_pair']:.2f} | {eight['yardstick']:.3f}x |",
        f"| the run alone, inside those processes | {eight['run_single']:.2f} | "
        f"{eight['run_pair']:.2f} (mean) | {eight['yardstick_in_run']:.3f}x |",
        "",
        f"Study speed-up / the machine's: **{eight['ratio']:.3f}** (target "
        f"{eight['target']}; against the runs alone {eight['ratio_in_run']:.3f}); by round: "
        + ", ".join(f"{r:.3f}" for r in eight["ratios_by_round"])
        + f". With loky named: {eight['ratio_loky']:.3f}; with threading named: "
        f"{eight['ratio_threading']:.3f}.",
        "",
        "When each part of the best invocations ended (seconds from the launch):",
        "",
        "| part | --jobs 1 | --jobs 2 (auto) | --jobs 2, loky | --jobs 2, threading |",
        "|---|---|---|---|---|",
    ]
    invocations = (one, two, eight["best_loky"], eight["best_threading"])
    for key, label in STUDY_PARTS:
        if any(key in i["marks"] for i in invocations):
            cells = [f"{i['marks'][key]:.2f}" if key in i["marks"] else "" for i in invocations]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = []
    for invocation in invocations:
        report, marks = invocation["report"], invocation["marks"]
        compute = report["run_seconds"] / report["workers"]
        cells.append(
            f"{invocation['wall'] - compute:.2f} ({marks['first_dispatch']:.2f} before the "
            f"fan-out, {marks['exited'] - marks['fan_out_done']:.2f} after)"
        )
    lines.append("| fixed cost: wall - runs' own time / workers | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Dry-run (`diffrnn study FILE --dry-run`, empty store), wall seconds, and when its "
        "parts ended in the best one:",
        "",
        "| study file, cost model | best | median | "
        + " | ".join(label for _, label in DRY_PARTS[1:-1])
        + " |",
        "|---|---|---|" + "---|" * (len(DRY_PARTS) - 2),
    ]
    for name, label in (
        ("paper_fig1_cold", "paper-fig1 (40 runs), cold: rates timed"),
        ("paper_fig1_warm", "paper-fig1 (40 runs), warm"),
        ("grid_2000_warm", "2,000-run grid, warm"),
    ):
        tries = dry[name]
        best = min(tries, key=lambda r: r["wall"])
        marks = best["marks"]
        cells = [f"{marks[k]:.2f}" if k in marks else "" for k, _ in DRY_PARTS[1:-1]]
        lines.append(
            f"| {label} | {best['wall']:.2f} | "
            f"{statistics.median(r['wall'] for r in tries):.2f} | " + " | ".join(cells) + " |"
        )
    return lines


def render(data: dict) -> str:
    one, two = data["throughput"]
    lines = [
        "# Study throughput (`bench/study_throughput.py`)",
        "",
        f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, Python "
        f"{data['machine']['python']}, Numba {data['machine']['numba']}, engine "
        f"{data['machine']['engine']}. Load average before the run: "
        f"{data['machine']['load_before']}.",
        "",
        f"Study: hard task, variable size, {CYCLES:,} cycles, {one['runs']} seeds, loky "
        "backend. With 1 job joblib runs the batches in the study process itself.",
        "",
        "| workers | runs | batches | wall s | runs/hour | runs/hour (fan-out only) | "
        "mean run s | non-run time/run ms | % of a run | store ms/batch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in (one, two):
        lines.append(
            f"| {row['workers']} | {row['runs']} | {row['batches']} | "
            f"{row['wall_seconds']:.1f} | {row['runs_per_hour']:,.0f} | "
            f"{row['runs_per_hour_fan_out']:,.0f} | {row['mean_run_seconds']:.3f} | "
            f"{row['overhead_per_run_ms']:.1f} | {row['overhead_percent']:.2f} | "
            f"{row['store_ms_per_batch']:.1f} |"
        )
    lines += [
        "",
        f"Speed-up of 2 workers over 1: {data['speedup']:.2f}x (whole study), "
        f"{data['speedup_fan_out']:.2f}x (fan-out only).",
        "",
        "Non-run time per run = (fan-out wall time x workers - sum of the runs' own wall "
        "times) / runs: worker start and kernel-cache load (once per worker), pickling, the "
        "parent's Parquet writes (fsync'd) and workers waiting for the last batch.",
        "",
        f"Dispatch proper: a batch's round trip through warm loky workers costs "
        f"{data['dispatch']['ms_per_batch']:.1f} ms of worker time (empty batches), the "
        f"parent's write of a batch {two['store_ms_per_batch']:.1f} ms; with "
        f"{two['runs'] / two['batches']:.1f} runs per batch that is "
        f"{data['dispatch']['ms_per_run']:.2f} ms per run, "
        f"{data['dispatch']['percent_of_run']:.2f}% of a {CYCLES:,}-cycle run.",
        "",
        f"Memory: {data['memory']['runs']:,} runs of {data['memory']['cycles']:,} cycles, "
        f"2 workers, batches of {data['memory']['batch_size']} "
        f"({data['memory']['seconds']:.1f} s).",
        "",
        "| worker | batches | RSS after 1st batch MB | after 10% MB | at the end MB | "
        "max MB | peak (VmHWM) MB | growth after 10% MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for index, row in enumerate(data["memory"]["workers"].values(), 1):
        lines.append(
            f"| {index} | {row['batches']} | {row['rss_first_mb']:.1f} | "
            f"{row['rss_after_10pct_mb']:.1f} | {row['rss_last_mb']:.1f} | "
            f"{row['rss_max_mb']:.1f} | {row['peak_hwm_mb']:.1f} | "
            f"{row['growth_after_10pct_mb']:+.1f} |"
        )
    lines += render_fixed_cost(data["eight_runs"], data["dry_run"])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller study and memory test")
    parser.add_argument("--out", default=str(HERE / "results"), help="where to write")
    args = parser.parse_args()
    seeds, memory_runs = (8, 100) if args.quick else (120, 1000)

    load = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="diffrnn-bench-"))
    # a cost model of the bench's own: the user's is neither read nor written
    os.environ["DIFFRNN_CACHE_DIR"] = str(root / "cache")
    warm_up(("float64",))
    try:
        # the fixed cost first, in fresh processes, while this one has no workers yet
        dry = dry_runs(root, repeats=1 if args.quick else 3)
        eight = eight_runs(
            1 if args.quick else ROUNDS, EIGHT_CYCLES // 5 if args.quick else EIGHT_CYCLES, root
        )
        rows = [throughput(seeds, workers, root) for workers in (1, 2)]
        trip = dispatch()
        mem = memory(memory_runs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    data = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numba": numba.__version__,
            "engine": ENGINE_VERSION,
            "load_before": " ".join(f"{x:.2f}" for x in load),
        },
        "throughput": rows,
        "speedup": rows[1]["runs_per_hour"] / rows[0]["runs_per_hour"],
        "speedup_fan_out": rows[1]["runs_per_hour_fan_out"] / rows[0]["runs_per_hour_fan_out"],
        "memory": mem,
        "dispatch": trip,
        "eight_runs": eight,
        "dry_run": dry,
    }
    two = rows[1]
    per_run = (trip["ms_per_batch"] + two["store_ms_per_batch"]) * two["batches"] / two["runs"]
    trip["ms_per_run"] = per_run
    trip["percent_of_run"] = 100 * per_run / (1e3 * two["mean_run_seconds"])
    text = render(data)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (out / f"study_throughput{suffix}.md").write_text(text)
    (out / f"study_throughput{suffix}.json").write_text(
        json.dumps(data, indent=1, default=str) + "\n"
    )
    print(f"written to {out}/study_throughput{suffix}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
