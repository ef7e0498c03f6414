"""Cycle speed: microseconds per training cycle against N, engine vs NumPy (vs PyTorch).

    python bench/cycle_speed.py              # about three minutes on this machine kind
    python bench/cycle_speed.py --quick      # fewer cycles and repetitions (smoke test)
    python bench/cycle_speed.py --no-torch   # skip PyTorch even if it is installed

What it measures, in this order:

1. parity (correctness, not speed): from the same state, one engine cycle
   (``engine.kernels._one_cycle``, structure step off) equals ``NumpyReference.cycle``
   (``structure=False``) to 1e-10 in float64, loss and every updated array (weights,
   multipliers, Adagrad memories, hidden state); from the engine's initial state and from
   a state after 200 engine cycles, N in {1, 5, 27, 100}. A failure stops the bench (exit 1).
2. compile: ``engine.run.warm_up((dtype,))`` in a fresh subprocess with an empty
   ``NUMBA_CACHE_DIR`` (cold), then in a second subprocess with the same cache dir (from
   the cache); one dtype per process.
3. the engine's full variable-mode cycle (forward, BPTT, clip, Adagrad, multiplier floor,
   structure step) with N held constant (hidden_size=N, add_prob=0,
   spontaneous_add_prob=0, delete_prob=0, capacity=max(100, N+1)): the real run loop,
   ``engine.run(...).train_seconds / cycles`` on the hard task, after a warm-up run; the
   sweep runs in several fresh processes in turn (the float64 speed at middle N depends on
   where the allocator puts the buffers, which differs between processes), pooled.
4. ``NumpyReference.cycle(structure=False)`` (the published per-step NumPy style) and,
   if torch is importable, ``TorchReference.cycle`` (``torch.set_num_threads(1)``), same
   N, same hard-task data, carrying the hidden state like the run loop.
5. a full 300,000-cycle ``hard`` run in variable mode with the paper's defaults, seed 0,
   kernels already compiled.

Noise: this is a shared 2-core VM. Each figure is the MEDIAN over repetitions of the
wall-clock time per cycle (``time.perf_counter``; for the engine that is the run's own
``train_seconds``); the JSON also keeps every repetition, the minimum and the median
process CPU time (``time.process_time``, which excludes time the process was descheduled).
BLAS, OpenMP and torch are limited to one thread; the load average is recorded at each step.

Writes OUT/cycle_speed.md and OUT/cycle_speed.json (``-quick`` suffix with --quick).
"""

from __future__ import annotations

import os

# one core for every library, set before numpy is imported (the NumPy reference's np.dot)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

SIZES = (1, 5, 10, 27, 50, 100)
DTYPES = ("float64", "float32")
PARITY_SIZES = (1, 5, 27, 100)
PARITY_TOLERANCE = 1e-10
FULL_RUN_CYCLES = 300_000
SEED = 0
TARGETS = {
    "f64_us_at_27": 21.0,
    "numpy_ratio_at_27": 40.0,
    "f64_us_at_100": 150.0,
    "full_run_seconds": 10.0,
    "cache_compile_seconds": 0.5,
}


class Settings:
    """How much to measure: full (the default) or --quick."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        # engine: repetitions in each of several fresh processes (the speed at a given N
        # moves by up to ~15% from one process to the next, with where the buffers land)
        self.engine_processes = 2 if quick else 5
        self.engine_reps = 2
        self.engine_rep_seconds = 0.1 if quick else 0.5  # target length of one repetition
        self.engine_warm_cycles = 500 if quick else 2000
        self.python_reps = 2 if quick else 5  # NumPy and torch
        self.python_rep_seconds = 0.1 if quick else 0.5
        self.python_warm_cycles = 5 if quick else 20
        self.cold_reps = 1 if quick else 2
        self.cache_reps = 2 if quick else 3
        self.full_run_cycles = 30_000 if quick else FULL_RUN_CYCLES
        self.full_run_reps = 1 if quick else 3


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(torch_version: str | None) -> dict:
    import llvmlite
    import numba
    from llvmlite import binding

    from engine.run import ENGINE_VERSION

    dirty = _git("status", "--porcelain", "--", "engine")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "llvm_host_cpu": binding.get_host_cpu_name(),
        "torch": torch_version,
        "engine": ENGINE_VERSION,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "engine_modified_since_commit": bool(dirty),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def hard_data(cycles: int, seed: int = SEED) -> np.ndarray:
    """The hard task's characters (int32 codes, vocabulary '()ab'), as a run would build them."""
    from engine import RunConfig
    from engine.run import generators
    from engine.tasks import build_task_data, parse_task

    task = build_task_data(
        parse_task("hard", cycles), RunConfig(), cycles, generators(seed)["data"]
    )
    assert task.vocab_size == 4
    return task.data


def _constant_n_config(n: int, dtype: str = "float64"):
    from engine import RunConfig

    return RunConfig(
        hidden_size=n,
        capacity=max(100, n + 1),
        add_prob=0.0,
        spontaneous_add_prob=0.0,
        delete_prob=0.0,
        dtype=dtype,
    )


# ---------------------------------------------------------------------------------------
# 1. parity


class ParityError(AssertionError):
    pass


_PAIRS = (  # engine field, NumpyReference attribute
    ("Wxh", "Wxh"),
    ("Whh", "Whh"),
    ("Wiy", "Wiy"),
    ("bh", "bh"),
    ("by", "by"),
    ("multipliers", "m"),
    ("mem_Wxh", "mWxh"),
    ("mem_Whh", "mWhh"),
    ("mem_Wiy", "mWiy"),
    ("mem_bh", "mbh"),
    ("mem_by", "mby"),
    ("mem_multipliers", "mm"),
    ("hidden", "h"),
)


def parity_check() -> list[dict]:
    """One engine cycle against NumpyReference.cycle from the same state; raises on mismatch."""
    from reference_numpy import NumpyReference

    from engine.kernels import _one_cycle
    from engine.run import generators
    from engine.state import (
        EVENT_DTYPE,
        N_ACTIVE,
        active_view,
        allocate_scratch,
        init_network,
        make_hyper,
    )

    data = hard_data(400)
    rows = []
    for n in PARITY_SIZES:
        config = _constant_n_config(n)
        net = init_network(config, 4, generators(SEED)["init"])
        s = allocate_scratch(config.capacity, 4, config.seq_len, config.dtype)
        hp = make_hyper(config, 4)
        rng = np.random.default_rng(SEED)
        events = np.zeros(16, EVENT_DTYPE)
        fill = np.zeros(2, np.int64)
        cycle = 0
        for stage, before in (("initial state", 0), ("after 200 cycles", 200)):
            for _ in range(before):  # train the engine to a state with memories and a hidden
                start = (cycle * config.seq_len) % (data.size - config.seq_len - 1)
                cycle += 1
                _one_cycle(net, s, hp, data, start, rng, cycle, events, fill, False)
            state = active_view(net)
            ref = NumpyReference(4, n, "variable", rng=np.random.default_rng(SEED))
            for field, attr in _PAIRS:
                setattr(ref, attr, state[field].astype(np.float64))
            start = (cycle * config.seq_len) % (data.size - config.seq_len - 1)
            cycle += 1
            inputs = data[start : start + config.seq_len]
            targets = data[start + 1 : start + config.seq_len + 1]
            loss_ref = ref.cycle(inputs, targets, structure=False)
            loss_eng = _one_cycle(net, s, hp, data, start, rng, cycle, events, fill, False)
            after = active_view(net)
            if int(net.counters[N_ACTIVE]) != n or fill[1] != 0:
                raise ParityError(f"N={n}: the engine cycle changed the structure")
            diffs = {"loss": abs(float(loss_eng) - float(loss_ref))}
            for field, attr in _PAIRS:
                mine, theirs = after[field], np.asarray(getattr(ref, attr))
                if mine.shape != theirs.shape:
                    raise ParityError(
                        f"N={n}, {stage}: {field} shape {mine.shape} != {theirs.shape}"
                    )
                diffs[field] = float(np.max(np.abs(mine - theirs))) if mine.size else 0.0
            worst = max(diffs, key=diffs.get)
            row = {
                "N": n,
                "stage": stage,
                "loss_engine": float(loss_eng),
                "loss_numpy": float(loss_ref),
                "max_abs_diff": diffs[worst],
                "worst": worst,
                "diffs": diffs,
            }
            rows.append(row)
            bad = {k: v for k, v in diffs.items() if not v <= PARITY_TOLERANCE}
            if bad:
                raise ParityError(
                    f"PARITY FAILED at N={n}, {stage}: engine and NumPy reference differ by more "
                    f"than {PARITY_TOLERANCE:g}: "
                    + ", ".join(f"{k} {v:.3g}" for k, v in sorted(bad.items()))
                )
    return rows


# ---------------------------------------------------------------------------------------
# 2. compile time


def compile_child(dtype: str) -> None:
    """Runs in a subprocess: time importing the engine and warm_up((dtype,))."""
    t0 = time.perf_counter()
    from engine.run import warm_up

    imported = time.perf_counter() - t0
    seconds = warm_up((dtype,))
    print(json.dumps({"dtype": dtype, "import_seconds": imported, "warm_up_seconds": seconds}))


def _compile_subprocess(dtype: str, cache_dir: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--compile-child", dtype],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"compile subprocess ({dtype}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compile_times(settings: Settings) -> dict:
    out = {}
    for dtype in ("float64", "float32"):
        cold, cached, imports, files = [], [], [], []
        for _ in range(settings.cold_reps):
            cache = Path(tempfile.mkdtemp(prefix="diffrnn-numba-cache-"))
            try:
                first = _compile_subprocess(dtype, cache)
                cold.append(first["warm_up_seconds"])
                files.append(sum(1 for p in cache.rglob("*") if p.is_file()))
                for _ in range(settings.cache_reps):
                    again = _compile_subprocess(dtype, cache)
                    cached.append(again["warm_up_seconds"])
                    imports.append(again["import_seconds"])
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        out[dtype] = {
            "cold_seconds": statistics.median(cold),
            "cached_seconds": statistics.median(cached),
            "cold_all": cold,
            "cached_all": cached,
            "import_seconds": statistics.median(imports),
            "cache_files": files,
        }
    return out


# ---------------------------------------------------------------------------------------
# 3. engine


class _CpuTimedTrain:
    """Wraps engine.kernels._train (looked up by engine.run at each call) to add up the
    process CPU time of the kernel calls; one Python call per chunk of 5,000 cycles."""

    def __init__(self) -> None:
        from engine import kernels

        self.kernels = kernels
        self.real = kernels._train
        self.seconds = 0.0

    def __call__(self, *args):
        t0 = time.process_time()
        try:
            return self.real(*args)
        finally:
            self.seconds += time.process_time() - t0

    def __enter__(self):
        self.kernels._train = self
        return self

    def __exit__(self, *exc):
        self.kernels._train = self.real


def _summary(walls: list[float], cpus: list[float], cycles: int) -> dict:
    return {
        "us": 1e6 * statistics.median(walls),
        "us_min": 1e6 * min(walls),
        "us_cpu": 1e6 * statistics.median(cpus),
        "us_all": [round(1e6 * w, 3) for w in walls],
        "cycles_per_rep": cycles,
        "reps": len(walls),
    }


def time_engine(n: int, dtype: str, settings: Settings) -> dict:
    """In this process: a warm-up run, then ``engine_reps`` timed runs of the same length."""
    from engine.run import run

    config = _constant_n_config(n, dtype)
    warm = run(config, "hard", settings.engine_warm_cycles, SEED)  # not timed
    estimate = warm.train_seconds / warm.cycles_done
    cycles = int(min(300_000, max(2000, settings.engine_rep_seconds / estimate)))
    cycles = -(-cycles // 1000) * 1000
    walls, cpus = [], []
    for rep in range(settings.engine_reps):
        with _CpuTimedTrain() as cpu:
            result = run(config, "hard", cycles, SEED + rep)
        if result.status != "ok" or result.final_neurons != n or result.cycles_done != cycles:
            raise RuntimeError(f"engine run N={n} {dtype}: {result.summary()}")
        walls.append(result.train_seconds / cycles)
        cpus.append(cpu.seconds / cycles)
    return {"walls": walls, "cpus": cpus, "cycles": cycles}


def engine_child(sizes: list[int], quick: bool) -> None:
    """Runs in a subprocess: every (N, dtype) of the sweep, printed as one JSON line."""
    settings = Settings(quick)
    out = {f"{n}/{dtype}": time_engine(n, dtype, settings) for n in sizes for dtype in DTYPES}
    print(json.dumps(out))


def engine_sweep(sizes: list[int], settings: Settings, say) -> dict:
    """The sweep in ``engine_processes`` fresh processes, one after the other (one core);
    the kernels must be in the cache already. Pools every repetition of every process."""
    runs = []
    command = [sys.executable, str(Path(__file__).resolve()), "--engine-child"]
    command += [",".join(map(str, sizes))] + (["--quick"] if settings.quick else [])
    for index in range(settings.engine_processes):
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"engine timing subprocess failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        key = f"{27 if 27 in sizes else sizes[0]}/float64"
        say(
            f"engine process {index + 1}/{settings.engine_processes}: {key} "
            f"{1e6 * statistics.median(runs[-1][key]['walls']):.2f} us"
        )
    out = {}
    for key in runs[0]:
        walls = [w for r in runs for w in r[key]["walls"]]
        cpus = [c for r in runs for c in r[key]["cpus"]]
        summary = _summary(walls, cpus, runs[0][key]["cycles"])
        summary["processes"] = len(runs)
        summary["us_per_process"] = [
            round(1e6 * statistics.median(r[key]["walls"]), 3) for r in runs
        ]
        out[key] = summary
    return out


# ---------------------------------------------------------------------------------------
# 4. NumPy and torch references


def _time_python_cycles(model, data: np.ndarray, settings: Settings, seq_len: int = 40) -> dict:
    """Time ``model.cycle`` over consecutive windows of ``data``, the hidden state carried."""
    position = 0

    def cycles(count: int) -> None:
        nonlocal position
        for _ in range(count):
            if position + seq_len + 1 >= data.size:
                position = 0
                model.reset_hidden()
            model.cycle(
                data[position : position + seq_len], data[position + 1 : position + seq_len + 1]
            )
            position += seq_len

    t0 = time.perf_counter()
    cycles(settings.python_warm_cycles)  # not timed, except to size the repetitions
    estimate = (time.perf_counter() - t0) / settings.python_warm_cycles
    count = int(max(20, settings.python_rep_seconds / estimate))
    walls, cpus = [], []
    for _ in range(settings.python_reps):
        w0, c0 = time.perf_counter(), time.process_time()
        cycles(count)
        walls.append((time.perf_counter() - w0) / count)
        cpus.append((time.process_time() - c0) / count)
    return _summary(walls, cpus, count)


class _NumpyModel:
    def __init__(self, n: int) -> None:
        from reference_numpy import NumpyReference

        self.ref = NumpyReference(4, n, "variable", rng=np.random.default_rng(SEED))

    def cycle(self, inputs, targets) -> float:
        return self.ref.cycle(inputs, targets, structure=False)

    def reset_hidden(self) -> None:
        self.ref.reset_hidden()


class _TorchModel:
    def __init__(self, n: int) -> None:
        from reference_torch import TorchReference

        self.ref = TorchReference(4, n, "variable", seed=SEED)

    def cycle(self, inputs, targets) -> float:
        return self.ref.cycle(inputs, targets)

    def reset_hidden(self) -> None:
        self.ref.h = self.ref.torch.zeros_like(self.ref.h)


def torch_version(disabled: bool) -> str | None:
    if disabled or importlib.util.find_spec("torch") is None:
        return None
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    return torch.__version__


# ---------------------------------------------------------------------------------------
# 5. one full run


def full_run(settings: Settings) -> dict:
    from engine import RunConfig
    from engine.run import run

    config = RunConfig()  # the paper's defaults: variable mode, one neuron at the start
    reps = []
    for _ in range(settings.full_run_reps):
        with _CpuTimedTrain() as cpu:
            result = run(config, "hard", settings.full_run_cycles, SEED)
        if result.status != "ok":
            raise RuntimeError(f"full run: {result.summary()}")
        reps.append(
            {
                "wall_seconds": result.wall_seconds,
                "train_seconds": result.train_seconds,
                "cpu_train_seconds": cpu.seconds,
                "final_neurons": result.final_neurons,
                "final_loss": result.final_loss,
                "run_id": result.run_id,
            }
        )
    finals = {(r["final_neurons"], r["final_loss"]) for r in reps}
    if len(finals) != 1:
        raise RuntimeError(f"the same seed gave different results: {sorted(finals)}")
    return {
        "cycles": settings.full_run_cycles,
        "seed": SEED,
        "task": "hard",
        "wall_seconds": statistics.median(r["wall_seconds"] for r in reps),
        "train_seconds": statistics.median(r["train_seconds"] for r in reps),
        "cpu_train_seconds": statistics.median(r["cpu_train_seconds"] for r in reps),
        "final_neurons": reps[0]["final_neurons"],
        "final_loss": reps[0]["final_loss"],
        "reps": reps,
    }


# ---------------------------------------------------------------------------------------
# report


def targets(data: dict) -> list[dict]:
    rows = {row["N"]: row for row in data["table"]}
    full = data["full_run"]
    out = []

    def add(name, measured, limit, op, unit):
        met = {"<=": measured <= limit, "<": measured < limit, ">=": measured >= limit}[op]
        out.append(
            {
                "target": name,
                "measured": measured,
                "op": op,
                "limit": limit,
                "met": met,
                "unit": unit,
            }
        )

    if 27 in rows:
        add("float64 at N=27", rows[27]["float64"]["us"], TARGETS["f64_us_at_27"], "<=", "us")
        ratio = rows[27]["numpy_ratio"]
        add("NumPy / engine float64 at N=27", ratio, TARGETS["numpy_ratio_at_27"], ">=", "x")
    if 100 in rows:
        add("float64 at N=100", rows[100]["float64"]["us"], TARGETS["f64_us_at_100"], "<=", "us")
    if full["cycles"] == FULL_RUN_CYCLES:  # not judged on --quick's shorter run
        wall = full["wall_seconds"]
        add("300,000-cycle hard run, wall", wall, TARGETS["full_run_seconds"], "<", "s")
    for dtype, row in data["compile"].items():
        limit = TARGETS["cache_compile_seconds"]
        add(f"compile from cache, {dtype}", row["cached_seconds"], limit, "<", "s")
    return out


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def render(data: dict) -> str:
    m = data["machine"]
    torch_on = data["torch"] is not None
    lines = [
        "# Cycle speed (`bench/cycle_speed.py`)" + (" -- QUICK" if data["quick"] else ""),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared VM), {m['platform']}; Python "
        f"{m['python']}, NumPy {m['numpy']}, Numba {m['numba']} (llvmlite {m['llvmlite']}, "
        f"LLVM host CPU `{m['llvm_host_cpu']}`), "
        f"torch {m['torch'] or 'not used'}; engine {m['engine']} at git {m['git_commit']}"
        + (" (engine/ modified since)" if m["engine_modified_since_commit"] else "")
        + f"; {m['date']}.",
        "",
        "Load average (1, 5, 15 min; this bench itself keeps one core busy): at the start "
        f"{data['load']['start']}, before the engine timings {data['load']['engine']}, after "
        f"them {data['load']['after_engine']}, at the end {data['load']['end']}.",
        "",
        "Microseconds per 40-character cycle, one core. Each figure is the median over "
        "repetitions of the wall time per cycle (engine: `run(...).train_seconds / cycles`, "
        "the real run loop on the hard task after a warm-up run; NumPy and torch: a loop "
        "of `cycle` calls on the same data, hidden state carried). Engine: the full "
        "variable-mode cycle (forward, BPTT, clip, Adagrad, multiplier floor, structure "
        "step) with N held constant. NumPy and torch: forward, BPTT, clip, Adagrad (no "
        "structure step), float64.",
        "",
    ]
    head = "| N | engine f64 | engine f32 | NumPy f64 | NumPy / engine f64 |"
    rule = "|---|---|---|---|---|"
    if torch_on:
        head += " torch f64 | torch / engine f64 |"
        rule += "---|---|"
    lines += [head, rule]
    for row in data["table"]:
        line = (
            f"| {row['N']} | {_us(row['float64']['us'])} | {_us(row['float32']['us'])} | "
            f"{_us(row['numpy']['us'])} | {row['numpy_ratio']:.0f}x |"
        )
        if torch_on:
            line += f" {_us(row['torch']['us'])} | {row['torch_ratio']:.0f}x |"
        lines.append(line)
    first = data["table"][0]["float64"]
    lines += [
        "",
        f"Spread, us per cycle. Engine: {first['processes']} fresh processes x "
        f"{first['reps'] // first['processes']} repetitions each, pooled; the range of the "
        "per-process medians shows how much the speed moves from one process to the next. "
        "min = fastest repetition; cpu = median process CPU time (`time.process_time`) per "
        "cycle, which leaves out time the process was descheduled.",
        "",
        "| N | engine f64 per-process range | f64 min / cpu | engine f32 per-process range | "
        "f32 min / cpu | NumPy min / cpu |" + (" torch min / cpu |" if torch_on else ""),
        "|---|---|---|---|---|---|" + ("---|" if torch_on else ""),
    ]
    for row in data["table"]:
        cells = []
        for dtype in DTYPES:
            c = row[dtype]
            per = c["us_per_process"]
            cells.append(f"{_us(min(per))} - {_us(max(per))}")
            cells.append(f"{_us(c['us_min'])} / {_us(c['us_cpu'])}")
        for name in ("numpy", "torch") if torch_on else ("numpy",):
            cells.append(f"{_us(row[name]['us_min'])} / {_us(row[name]['us_cpu'])}")
        lines.append(f"| {row['N']} | " + " | ".join(cells) + " |")
    comp = data["compile"]
    lines += [
        "",
        "Compile (`engine.run.warm_up((dtype,))` in a fresh process; cold = empty "
        "`NUMBA_CACHE_DIR`, cached = a second process on the same cache dir; medians):",
        "",
        "| dtype | cold s | from cache s | engine import s |",
        "|---|---|---|---|",
    ]
    for dtype, row in comp.items():
        lines.append(
            f"| {dtype} | {row['cold_seconds']:.2f} | {row['cached_seconds']:.3f} | "
            f"{row['import_seconds']:.2f} |"
        )
    full = data["full_run"]
    lines += [
        "",
        f"Full run: `hard`, {full['cycles']:,} cycles, variable mode, paper defaults, seed "
        f"{full['seed']}, kernels already compiled (median of {len(full['reps'])}): wall "
        f"{full['wall_seconds']:.2f} s (run loop {full['train_seconds']:.2f} s, "
        f"{full['cycles'] / full['train_seconds']:,.0f} cycles/s); final N "
        f"{full['final_neurons']}, final smoothed loss {full['final_loss']:.2f}.",
        "",
        "Parity (float64, one cycle from the same state, engine `_one_cycle` vs "
        f"`NumpyReference.cycle`, tolerance {PARITY_TOLERANCE:g}): passed; largest difference "
        f"{max(r['max_abs_diff'] for r in data['parity']):.2g} "
        f"(N in {list(PARITY_SIZES)}, initial state and after 200 cycles).",
        "",
        "| target | measured | limit | met |",
        "|---|---|---|---|",
    ]
    for t in data["targets"]:
        lines.append(
            f"| {t['target']} | {t['measured']:.3g} {t['unit']} | {t['op']} {t['limit']:g} "
            f"{t['unit']} | {'met' if t['met'] else 'NOT met'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cycles and repetitions")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    parser.add_argument("--out", default=str(HERE / "results"), help="where to write")
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES)),
        help="comma-separated N (default: %(default)s)",
    )
    parser.add_argument("--compile-child", help=argparse.SUPPRESS)
    parser.add_argument("--engine-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_child:
        compile_child(args.compile_child)
        return
    if args.engine_child:
        engine_child([int(x) for x in args.engine_child.split(",")], args.quick)
        return
    settings = Settings(args.quick)
    sizes = [int(x) for x in args.sizes.split(",")]
    torch_ver = torch_version(args.no_torch)
    load = {"start": _load()}

    def say(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {_load()[0]:.2f}] {text}", file=sys.stderr)

    say("parity check")
    try:
        parity = parity_check()
    except ParityError as error:
        print(f"\n*** {error}\n", file=sys.stderr)
        sys.exit(1)
    say(f"parity ok, largest difference {max(r['max_abs_diff'] for r in parity):.2g}")

    say("compile times (subprocesses)")
    compile_ = compile_times(settings)

    from engine.run import warm_up

    warm_up(("float64", "float32"))
    load["engine"] = _load()
    say(f"engine sweep in {settings.engine_processes} processes")
    engine = engine_sweep(sizes, settings, say)
    load["after_engine"] = _load()
    table = []
    data = hard_data(20_000)
    for n in sizes:
        row = {"N": n}
        for dtype in DTYPES:
            row[dtype] = engine[f"{n}/{dtype}"]
        row["numpy"] = _time_python_cycles(_NumpyModel(n), data, settings)
        row["numpy_ratio"] = row["numpy"]["us"] / row["float64"]["us"]
        say(f"numpy N={n}: {row['numpy']['us']:.0f} us")
        if torch_ver is not None:
            row["torch"] = _time_python_cycles(_TorchModel(n), data, settings)
            row["torch_ratio"] = row["torch"]["us"] / row["float64"]["us"]
            say(f"torch N={n}: {row['torch']['us']:.0f} us")
        row["load"] = _load()
        table.append(row)

    say(f"full run, {settings.full_run_cycles:,} cycles")
    full = full_run(settings)
    load["end"] = _load()

    result = {
        "quick": settings.quick,
        "machine": machine_info(torch_ver),
        "torch": torch_ver,
        "load": load,
        "timing": "median over repetitions of wall time per cycle (perf_counter); "
        "us_min = minimum, us_cpu = median of process_time per cycle; engine: repetitions "
        "pooled over several fresh processes, us_per_process = each process's median",
        "table": table,
        "compile": compile_,
        "full_run": full,
        "parity": parity,
    }
    result["targets"] = targets(result)
    text = render(result)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if settings.quick else ""
    (out / f"cycle_speed{suffix}.md").write_text(text)
    (out / f"cycle_speed{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out}/cycle_speed{suffix}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
