"""The later method's cycle (criterion outgoing) beside the first method's (multiplier).

    python bench/criteria_speed.py            # about 5 minutes on this machine
    python bench/criteria_speed.py --quick    # a smoke test

What it measures (float64, the portable build, seeds fixed, warm-ups never timed):

1. **Cycle**: the whole variable-mode cycle of each criterion (forward, BPTT, the
   optimizer, the criterion's step after it, the structure step with its strengths) with N
   held constant (addition and deletion probabilities 0, so every cycle computes the
   strengths and finds nothing to do), timed as the real run loop
   (``run(...).train_seconds / cycles``, ``hard`` task) at N = 1, 10, 27, 50, 100. Both
   criteria in each of PROCESSES fresh processes, their repetitions interleaved (so that
   the machine's drift hits both alike); medians over every repetition of every process.
   Each run must end with N unchanged and a finite loss, or the bench stops.
2. **Compile**: a fresh process with an empty ``NUMBA_CACHE_DIR`` compiles the run loop of
   one criterion (``warm_up`` of that variant); the time is Numba's own start-up plus the
   compile, as in ``cycle_speed.py``. Then a second process compiles the other criterion
   on top of the first one's cache: what a study using both adds.

Targets (issue 9): the outgoing cycle within 15% of the multiplier cycle at N = 27; a run
of one criterion compiles in at most 2 s more than a multiplier run.

Writes bench/results/criteria_speed.md and .json.
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

from engine.costmodel import cpu_name

HERE = Path(__file__).resolve().parent
SIZES = (1, 10, 27, 50, 100)
CRITERIA = ("multiplier", "outgoing")
SEED = 1
TARGET_RATIO_AT_27 = 1.15
TARGET_COMPILE_GROWTH = 2.0  # seconds


def constant_n_config(n: int, criterion: str):
    """Variable mode with N held constant under ``criterion`` (its own defaults else)."""
    from engine import RunConfig

    return RunConfig(
        criterion=criterion,
        mode="variable",
        hidden_size=n,
        capacity=max(100, n + 1),
        add_prob=0.0,
        spontaneous_add_prob=0.0,
        delete_prob=0.0,
    )


def _child(args: list[str], env: dict | None = None) -> dict:
    from children import run_child

    return run_child(__file__, args, env if env is not None else dict(os.environ), timeout=3600)


# -- 1. the cycle ------------------------------------------------------------------------
def cycle_child(sizes: list[int], reps: int, rep_seconds: float) -> None:
    """In a fresh process: for each N, both criteria, repetitions interleaved."""
    from engine.run import run

    out = {}
    for n in sizes:
        configs = {c: constant_n_config(n, c) for c in CRITERIA}
        lengths = {}
        for criterion, config in configs.items():  # warm-up (not timed): sizes the reps
            warm = run(config, "hard", 1000, SEED)
            lengths[criterion] = warm.train_seconds / warm.cycles_done
        cycles = int(min(200_000, max(2000, rep_seconds / max(lengths.values()))))
        cycles = -(-cycles // 1000) * 1000
        walls = {c: [] for c in CRITERIA}
        for rep in range(reps):
            for criterion, config in configs.items():
                result = run(config, "hard", cycles, SEED + rep)
                if result.status != "ok" or result.final_neurons != n:
                    raise RuntimeError(f"{criterion} N={n}: {result.summary()}")
                walls[criterion].append(result.train_seconds / cycles)
        out[str(n)] = {"cycles": cycles, "walls": walls}
    print(json.dumps(out))


def cycle_times(sizes: list[int], processes: int, reps: int, rep_seconds: float, say) -> dict:
    pooled: dict[str, dict[str, list[float]]] = {}
    args = ["--cycle-child", ",".join(map(str, sizes)), str(reps), str(rep_seconds)]
    for index in range(processes):
        got = _child(args)
        for n, row in got.items():
            for criterion, walls in row["walls"].items():
                pooled.setdefault(n, {}).setdefault(criterion, []).extend(walls)
        row = got[str(27 if 27 in sizes else sizes[0])]["walls"]
        say(
            f"process {index + 1}/{processes}: "
            + ", ".join(f"{c} {1e6 * statistics.median(w):.2f} us" for c, w in row.items())
        )
    out = {}
    for n, by in pooled.items():
        us = {c: 1e6 * statistics.median(w) for c, w in by.items()}
        mins = {c: 1e6 * min(w) for c, w in by.items()}
        out[n] = {
            "us": us,
            "us_min": mins,
            "ratio": us["outgoing"] / us["multiplier"],
            "ratio_min": mins["outgoing"] / mins["multiplier"],
            "reps": len(by["multiplier"]),
        }
    return out


# -- 2. compile ----------------------------------------------------------------------------
def compile_child(criterion: str) -> None:
    """In a fresh process: Numba's start-up, then warm_up of one criterion's variant."""
    t0 = time.perf_counter()
    from engine.run import warm_up

    imported = time.perf_counter() - t0
    t0 = time.perf_counter()
    import numba

    numba.njit(lambda x: x + 1)(1)
    startup = time.perf_counter() - t0
    optimizer = "adagrad" if criterion == "multiplier" else "rmsprop"
    seconds = warm_up((("float64", criterion, optimizer),))
    print(json.dumps({"import": imported, "startup": startup, "compile": seconds}))


def compile_times(reps: int, say) -> dict:
    out: dict[str, list[float]] = {c: [] for c in CRITERIA}
    second: dict[str, list[float]] = {c: [] for c in CRITERIA}
    for rep in range(reps):
        for first in CRITERIA if rep % 2 == 0 else CRITERIA[::-1]:
            other = CRITERIA[1] if first == CRITERIA[0] else CRITERIA[0]
            cache = Path(tempfile.mkdtemp(prefix="diffrnn-criteria-cache-"))
            try:
                env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
                got = _child(["--compile-child", first], env)
                out[first].append(got["startup"] + got["compile"])
                then = _child(["--compile-child", other], env)
                second[other].append(then["startup"] + then["compile"])
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            say(
                f"cold compile {first}: {out[first][-1]:.1f} s; "
                f"then {other}: {second[other][-1]:.1f} s"
            )
    return {
        "cold_seconds": {c: statistics.median(v) for c, v in out.items()},
        "cold_all": out,
        "second_seconds": {c: statistics.median(v) for c, v in second.items()},
    }


# -- report --------------------------------------------------------------------------------
def render(data: dict) -> str:
    cycle, comp = data["cycle"], data["compile"]
    lines = [
        "# The later method's cycle beside the first's (`bench/criteria_speed.py`)",
        "",
        f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores; Python "
        f"{data['machine']['python']}; load average before: {data['machine']['load']}; "
        f"{data['machine']['date']}. float64, portable build, N held constant; medians "
        f"(minimums in brackets) over {next(iter(cycle.values()))['reps']} repetitions in "
        f"{data['settings']['processes']} fresh processes.",
        "",
        "| N | multiplier us/cycle | outgoing us/cycle | outgoing / multiplier |",
        "|---|---|---|---|",
    ]
    for n, row in cycle.items():
        lines.append(
            f"| {n} | {row['us']['multiplier']:.2f} [{row['us_min']['multiplier']:.2f}] | "
            f"{row['us']['outgoing']:.2f} [{row['us_min']['outgoing']:.2f}] | "
            f"{row['ratio']:.3f} [{row['ratio_min']:.3f}] |"
        )
    cold = comp["cold_seconds"]
    lines += [
        "",
        "| compile (fresh process, empty cache; Numba start-up included) | multiplier | outgoing |",
        "|---|---|---|",
        f"| a run of one criterion | {cold['multiplier']:.1f} s | {cold['outgoing']:.1f} s |",
        f"| the other criterion, after the first one's (a study using both) | "
        f"{comp['second_seconds']['multiplier']:.1f} s | "
        f"{comp['second_seconds']['outgoing']:.1f} s |",
        "",
        "| target (issue 9) | measured | met? |",
        "|---|---|---|",
    ]
    for row in data["targets"]:
        lines.append(
            f"| {row['target']} | {row['measured']} | {'met' if row['met'] else 'not met'} |"
        )
    return "\n".join(lines) + "\n"


def targets(data: dict) -> list[dict]:
    at27 = data["cycle"].get("27")
    cold = data["compile"]["cold_seconds"]
    out = []
    if at27:
        out.append(
            {
                "target": f"outgoing cycle at N=27 within {TARGET_RATIO_AT_27 - 1:.0%} "
                "of multiplier",
                "measured": f"{at27['ratio']:.3f}x",
                "met": at27["ratio"] <= TARGET_RATIO_AT_27,
            }
        )
    growth = cold["outgoing"] - cold["multiplier"]
    out.append(
        {
            "target": f"a run of one criterion compiles in at most {TARGET_COMPILE_GROWTH:.0f} s "
            "more than a multiplier run",
            "measured": f"outgoing {cold['outgoing']:.1f} s vs multiplier "
            f"{cold['multiplier']:.1f} s ({growth:+.1f} s)",
            "met": growth <= TARGET_COMPILE_GROWTH,
        }
    )
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cycle-child":
        cycle_child([int(x) for x in sys.argv[2].split(",")], int(sys.argv[3]), float(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--compile-child":
        compile_child(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--out", default=str(HERE / "results"), help="where to write")
    args = parser.parse_args()
    processes, reps, rep_seconds, compile_reps = (1, 2, 0.05, 1) if args.quick else (3, 3, 0.5, 2)
    sizes = [1, 27] if args.quick else list(SIZES)

    def say(text: str) -> None:
        print(f"[criteria_speed] {text}", file=sys.stderr, flush=True)

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    # kernels of both criteria in the default cache first, so that the cycle children load
    _child(["--compile-child", "multiplier"])
    _child(["--compile-child", "outgoing"])
    data = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load": load,
            "date": time.strftime("%Y-%m-%d"),
        },
        "settings": {"processes": processes, "reps": reps, "rep_seconds": rep_seconds},
        "cycle": cycle_times(sizes, processes, reps, rep_seconds, say),
        "compile": compile_times(compile_reps, say),
    }
    data["targets"] = targets(data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "criteria_speed-quick" if args.quick else "criteria_speed"
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1))
    (out / f"{stem}.md").write_text(render(data))
    print(render(data))


if __name__ == "__main__":
    main()
