"""Study throughput: runs per hour at 1 and 2 workers, dispatch overhead, worker memory.

    python bench/study_throughput.py            # about two minutes on 2 cores
    python bench/study_throughput.py --quick    # a smaller version, for a smoke test

Three measurements, all with the loky backend (the default of ``diffrnn study``):

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

Writes bench/results/study_throughput.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numba

from engine import scheduler, store
from engine.jit import ENGINE_VERSION
from engine.run import warm_up

HERE = Path(__file__).resolve().parent
CYCLES = 20_000


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller study and memory test")
    parser.add_argument("--out", default=str(HERE / "results"), help="where to write")
    args = parser.parse_args()
    seeds, memory_runs = (8, 100) if args.quick else (120, 1000)

    load = os.getloadavg()
    warm_up(("float64",))
    root = Path(tempfile.mkdtemp(prefix="diffrnn-bench-"))
    try:
        rows = [throughput(seeds, workers, root) for workers in (1, 2)]
        trip = dispatch()
        mem = memory(memory_runs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    data = {
        "machine": {
            "cpu": _cpu(),
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
