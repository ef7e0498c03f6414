"""Cycle speed: microseconds per training cycle against N, engine vs NumPy (vs PyTorch).

    python bench/cycle_speed.py              # several minutes on this machine kind
    python bench/cycle_speed.py --quick      # fewer cycles and repetitions (smoke test)
    python bench/cycle_speed.py --no-torch   # skip PyTorch even if it is installed
    python bench/cycle_speed.py --baseline REV   # the old engine to compare with
                                                 # (default 341bf3a; '' to skip)

What it measures, in this order:

1. parity (correctness, not speed): from the same state, one engine cycle
   (``engine.kernels._one_cycle``, structure step off) equals ``NumpyReference.cycle``
   (``structure=False``) to 1e-10 in float64, loss and every updated array (weights,
   multipliers, Adagrad memories, hidden state); from the engine's initial state and from
   a state after 200 engine cycles, N in {1, 5, 27, 100}. A failure stops the bench (exit 1).
2. compile: in a fresh subprocess with an empty ``NUMBA_CACHE_DIR`` (cold), then in a
   second subprocess with the same cache dir (from the cache), one dtype per process: the
   engine's import, then Numba's own one-time start-up (``numba.njit(lambda x: x + 1)(1)``:
   its registries and code generator), then ``engine.run.warm_up((dtype,))`` (the
   engine's compile or load); the compile time is the sum of the last two. Then the test
   suite's own compile: ``pytest tests/test_kernels.py tests/test_gradients.py`` in a
   subprocess with an empty cache dir and again on the same (now warm) cache dir; the
   difference of the two wall times is the compile time of the kernels the tests reach.
3. the engine's full variable-mode cycle (forward, BPTT, clip, Adagrad, multiplier floor,
   structure step) with N held constant (hidden_size=N, add_prob=0,
   spontaneous_add_prob=0, delete_prob=0, capacity=max(100, N+1)): the real run loop,
   ``engine.run(...).train_seconds / cycles`` on the hard task, after a warm-up run; the
   sweep runs in several fresh processes in turn, pooled. The same at N=27 and N=100,
   float64, with ``DIFFRNN_TARGET=host`` (compiled for this CPU, not the portable
   baseline), in its own cache dir.
4. ``NumpyReference.cycle(structure=False)`` (the published per-step NumPy style) and,
   if torch is importable, ``TorchReference.cycle`` (``torch.set_num_threads(1)``), same
   N, same hard-task data, carrying the hidden state like the run loop.
5. the cycle by part, N in {1, 10, 27, 50, 100} float64 and {27, 100} float32, from the
   state of a short run: forward (``engine.cycle._forward``), backward (``_backward``),
   weight gradients (``_weight_gradients``), update (``_update``), structure step
   (``engine.structure._structure_step``, draws cursor reset at each call), tanh alone
   and the Whh mat-vec alone over ``seq_len`` steps; each a loop of many calls inside one
   ``@kernel`` (the inner kernels have no Python wrapper), the minimum of 5 repetitions.
   Beside each part, its floor: flops at the core's peak, the sqrt+div throughput
   (update) or streaming Whh from L2 once per step (the chains, when Whh outgrows L1).
6. baseline: the engine at ``--baseline REV`` in a temporary ``git worktree``, in
   subprocesses on it (``PYTHONPATH``) with an empty cache dir: its cold compile (as in
   2) and its microseconds per cycle at N=27 and N=100 float64 (as in 3, 5 repetitions
   of about 0.5 s in one process, median). Skipped, with a note, without git or the commit.
7. a full 300,000-cycle ``hard`` run in variable mode with the paper's defaults, seed 0,
   kernels already compiled.

Then the targets (see ``TARGETS``), each shown as measured / target / met.

Noise: this is a shared 2-core VM. Each figure is the MEDIAN over repetitions of the
wall-clock time per cycle (``time.perf_counter``; for the engine that is the run's own
``train_seconds``); the JSON also keeps every repetition, the minimum and the median
process CPU time (``time.process_time``, which excludes time the process was descheduled).
The parts of 5 are minimums (a floor is compared with the fastest repetition). BLAS,
OpenMP and torch are limited to one thread; the load average is recorded at each step.

Writes OUT/cycle_speed.md and OUT/cycle_speed.json (``-quick`` suffix with --quick).
"""

from __future__ import annotations

import os

# one core for every library, set before numpy is imported (the NumPy reference's np.dot)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# the environment of every subprocess: as it was before the engine set Numba's variables
# for its own target (a host build or the baseline engine must not inherit them)
BASE_ENV = dict(os.environ)

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
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
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

SIZES = (1, 5, 10, 27, 50, 100)
DTYPES = ("float64", "float32")
PARITY_SIZES = (1, 5, 27, 100)
PARITY_TOLERANCE = 1e-10
FULL_RUN_CYCLES = 300_000
SEED = 0
VOCAB = 4  # the hard task's '()ab'
SEQ_LEN = 40
HOST_SIZES = (27, 100)  # the DIFFRNN_TARGET=host row, float64
BASELINE_SIZES = (27, 100)  # the baseline engine's cycle, float64
DEFAULT_BASELINE = "341bf3a"  # the last commit before the portable, batched engine
TEST_FILES = ("tests/test_kernels.py", "tests/test_gradients.py")
TARGETS = {
    "numpy_ratio_at_27": 68.0,  # NumPy / engine float64, at least
    "numpy_ratio_at_100": 14.0,
    "float32_over_float64": 1.0,  # float32 us / float64 us at every N, at most
    "cold_compile_over_baseline": 1 / 3,  # cold compile / the baseline's, at most
    "cached_load_seconds": 0.2,  # from the cache: Numba start-up + engine load, at most
}

# section 5: the parts, their sizes and the machine model of their floors
PROFILE_CASES = tuple((n, "float64") for n in (1, 10, 27, 50, 100)) + tuple(
    (n, "float32") for n in (27, 100)
)
PARTS = (
    "forward",
    "backward",
    "weight gradients",
    "update",
    "structure step",
    "tanh alone",
    "Whh mat-vec alone",
)
CYCLE_PARTS = PARTS[:5]  # what one cycle is made of
PART_REPS = 5
PEAK_FLOPS_PER_CYCLE = {"float64": 16, "float32": 32}  # two 256-bit FMA pipes
TANH_FLOPS = 40  # per lane computed: range reduction, degree-13 polynomial, the quotient
VECTOR_BYTES = 32  # 256-bit vectors: 4 float64, 8 float32
SQRT_DIV_CYCLES = 4.5  # one sqrt and one division per vector, throughput
L1_BYTES = 32 * 1024
L2_BYTES_PER_CYCLE = 32


class Settings:
    """How much to measure: full (the default) or --quick."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        # engine: repetitions in each of several fresh processes
        self.engine_processes = 2 if quick else 5
        self.engine_reps = 2
        self.engine_rep_seconds = 0.1 if quick else 0.5  # target length of one repetition
        self.engine_warm_cycles = 500 if quick else 2000
        self.python_reps = 2 if quick else 5  # NumPy and torch
        self.python_rep_seconds = 0.1 if quick else 0.5
        self.python_warm_cycles = 5 if quick else 20
        self.cold_reps = 1 if quick else 2
        self.cache_reps = 2 if quick else 3
        self.part_rep_seconds = 0.02 if quick else 0.1  # one repetition of a part's loop
        self.baseline_reps = 2 if quick else 5
        self.baseline_rep_seconds = 0.1 if quick else 0.5
        self.full_run_cycles = 30_000 if quick else FULL_RUN_CYCLES
        self.full_run_reps = 1 if quick else 3


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpuinfo(field: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


def _cpu_mhz() -> float | None:
    """The clock the floors assume: /proc/cpuinfo's "cpu MHz" of the first core."""
    value = _cpuinfo("cpu MHz")
    return float(value) if value else None


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        return done.stdout.strip() if done.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _target_label() -> str:
    """The compile target of this process's engine."""
    try:
        from engine.jit import TARGET
    except ImportError:  # an engine from before the compile targets (a baseline)
        return "host (Numba's default)"
    return TARGET.label


def _engine_identity() -> dict:
    """Which engine this process imports (the baseline children check it is theirs)."""
    import engine

    return {"engine_file": engine.__file__, "engine_version": engine.__version__}


def machine_info(torch_version: str | None) -> dict:
    import llvmlite
    import numba
    from llvmlite import binding

    from engine.version import ENGINE_VERSION

    dirty = _git("status", "--porcelain", "--", "engine")
    return {
        "cpu": _cpu_model(),
        "cpu_mhz": _cpu_mhz(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "llvm_host_cpu": binding.get_host_cpu_name(),
        "compile_target": _target_label(),
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
    assert task.vocab_size == VOCAB
    return task.data


def _constant_n_config(n: int, dtype: str = "float64"):
    """Variable mode with N held constant: nothing is ever added or deleted."""
    from engine import RunConfig

    return RunConfig(
        mode="variable",
        hidden_size=n,
        capacity=max(100, n + 1),
        add_prob=0.0,
        spontaneous_add_prob=0.0,
        delete_prob=0.0,
        dtype=dtype,
    )


def _child_env(**extra: str) -> dict:
    return dict(BASE_ENV, **extra)


def _child(args: list[str], env: dict, cwd: Path | None = None) -> dict:
    """Run this script with ``args`` in a fresh process; its last stdout line, as JSON."""
    from children import run_child

    return run_child(__file__, args, env, timeout=3600, cwd=cwd)


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
        allocate_draws,
        allocate_scratch,
        init_network,
        make_hyper,
        refill_draws,
    )

    data = hard_data(400)
    rows = []
    for n in PARITY_SIZES:
        config = _constant_n_config(n)
        net = init_network(config, VOCAB, generators(SEED)["init"])
        s = allocate_scratch(config.capacity, VOCAB, config.seq_len, config.dtype)
        hp = make_hyper(config, VOCAB)
        rng = np.random.default_rng(SEED)
        draws = allocate_draws(config.capacity, VOCAB)  # unused: the structure step is off
        refill_draws(draws, rng, rng)
        events = np.zeros(16, EVENT_DTYPE)
        fill = np.zeros(2, np.int64)
        cycle = 0
        for stage, before in (("initial state", 0), ("after 200 cycles", 200)):
            for _ in range(before):  # train the engine to a state with memories and a hidden
                start = (cycle * config.seq_len) % (data.size - config.seq_len - 1)
                cycle += 1
                _one_cycle(net, s, hp, data, start, draws, cycle, events, fill, False)
            state = active_view(net)
            ref = NumpyReference(VOCAB, n, "variable", rng=np.random.default_rng(SEED))
            for field, attr in _PAIRS:
                setattr(ref, attr, state[field].astype(np.float64))
            start = (cycle * config.seq_len) % (data.size - config.seq_len - 1)
            cycle += 1
            inputs = data[start : start + config.seq_len]
            targets = data[start + 1 : start + config.seq_len + 1]
            loss_ref = ref.cycle(inputs, targets, structure=False)
            loss_eng = _one_cycle(net, s, hp, data, start, draws, cycle, events, fill, False)
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
    """Runs in a subprocess: time importing the engine, Numba's own start-up (a one-line
    function, after the engine's import, which chooses Numba's target), and
    warm_up((dtype,))."""
    t0 = time.perf_counter()
    from engine.run import warm_up

    imported = time.perf_counter() - t0
    t0 = time.perf_counter()
    import numba

    numba.njit(lambda x: x + 1)(1)
    startup = time.perf_counter() - t0
    seconds = warm_up((dtype,))
    out = {
        "dtype": dtype,
        "import_seconds": imported,
        "numba_startup_seconds": startup,
        "warm_up_seconds": seconds,
        "target": _target_label(),
    }
    print(json.dumps(dict(out, **_engine_identity())))


def _compile_subprocess(dtype: str, cache_dir: Path) -> dict:
    """One compile child; ``seconds`` = Numba's start-up + warm_up (the compile, or load)."""
    out = _child(["--compile-child", dtype], _child_env(NUMBA_CACHE_DIR=str(cache_dir)))
    out["seconds"] = out["numba_startup_seconds"] + out["warm_up_seconds"]
    return out


def compile_times(settings: Settings) -> dict:
    out = {}
    for dtype in DTYPES:
        cold, cached, startups, engine_loads, imports, files = [], [], [], [], [], []
        for _ in range(settings.cold_reps):
            cache = Path(tempfile.mkdtemp(prefix="diffrnn-numba-cache-"))
            try:
                cold.append(_compile_subprocess(dtype, cache)["seconds"])
                files.append(sum(1 for p in cache.rglob("*") if p.is_file()))
                for _ in range(settings.cache_reps):
                    again = _compile_subprocess(dtype, cache)
                    cached.append(again["seconds"])
                    startups.append(again["numba_startup_seconds"])
                    engine_loads.append(again["warm_up_seconds"])
                    imports.append(again["import_seconds"])
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        out[dtype] = {
            "cold_seconds": statistics.median(cold),
            "cached_seconds": statistics.median(cached),
            "cached_numba_startup_seconds": statistics.median(startups),
            "cached_engine_seconds": statistics.median(engine_loads),
            "cold_all": cold,
            "cached_all": cached,
            "import_seconds": statistics.median(imports),
            "cache_files": files,
        }
    return out


def tests_compile(say) -> dict:
    """The test files in a fresh pytest process on an empty cache dir, then again on the
    same cache: the difference is the compile of every kernel they reach."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_FILES]
    out = {"command": " ".join(["python", *command[1:]]), "files": list(TEST_FILES)}
    cache = Path(tempfile.mkdtemp(prefix="diffrnn-numba-cache-"))
    walls = []
    try:
        for label in ("empty cache", "warm cache"):
            t0 = time.perf_counter()
            done = subprocess.run(
                command,
                cwd=ROOT,
                env=_child_env(NUMBA_CACHE_DIR=str(cache)),
                capture_output=True,
                text=True,
                timeout=3600,
            )
            walls.append(time.perf_counter() - t0)
            lines = done.stdout.strip().splitlines()
            out["summary"] = lines[-1] if lines else ""
            if done.returncode != 0:
                out["error"] = f"pytest exited with {done.returncode} ({label}): {out['summary']}"
                return out
            say(f"tests, {label}: {walls[-1]:.1f} s ({out['summary']})")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out.update(cold_seconds=walls[0], warm_seconds=walls[1], compile_seconds=walls[0] - walls[1])
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


def time_engine(n: int, dtype: str, reps: int, rep_seconds: float, warm_cycles: int) -> dict:
    """In this process: a warm-up run, then ``reps`` timed runs of about ``rep_seconds``."""
    from engine.run import run

    config = _constant_n_config(n, dtype)
    warm = run(config, "hard", warm_cycles, SEED)  # not timed
    estimate = warm.train_seconds / warm.cycles_done
    cycles = int(min(300_000, max(2000, rep_seconds / estimate)))
    cycles = -(-cycles // 1000) * 1000
    walls, cpus = [], []
    for rep in range(reps):
        with _CpuTimedTrain() as cpu:
            result = run(config, "hard", cycles, SEED + rep)
        if result.status != "ok" or result.final_neurons != n or result.cycles_done != cycles:
            raise RuntimeError(f"engine run N={n} {dtype}: {result.summary()}")
        walls.append(result.train_seconds / cycles)
        cpus.append(cpu.seconds / cycles)
    return {"walls": walls, "cpus": cpus, "cycles": cycles}


def engine_child(sizes: list[int], dtypes: list[str], quick: bool, baseline: bool) -> None:
    """Runs in a subprocess: every (N, dtype) asked for, printed as one JSON line. The
    baseline's engine: ``baseline_reps`` of ``baseline_rep_seconds``, else the sweep's."""
    settings = Settings(quick)
    reps, seconds = (
        (settings.baseline_reps, settings.baseline_rep_seconds)
        if baseline
        else (settings.engine_reps, settings.engine_rep_seconds)
    )
    timings = {
        f"{n}/{dtype}": time_engine(n, dtype, reps, seconds, settings.engine_warm_cycles)
        for n in sizes
        for dtype in dtypes
    }
    out = {"target": _target_label(), "timings": timings}
    print(json.dumps(dict(out, **_engine_identity())))


def engine_sweep(
    sizes: list[int], settings: Settings, say, dtypes=DTYPES, env: dict | None = None
) -> tuple[dict, str]:
    """The sweep in ``engine_processes`` fresh processes, one after the other (one core);
    the kernels should be in the cache already (else the first warm-up run compiles them).
    Pools every repetition of every process; returns the pooled figures and the target."""
    runs = []
    args = ["--engine-child", ",".join(map(str, sizes)), "--dtypes", ",".join(dtypes)]
    args += ["--quick"] if settings.quick else []
    for index in range(settings.engine_processes):
        runs.append(_child(args, env if env is not None else _child_env()))
        key = f"{27 if 27 in sizes else sizes[0]}/{dtypes[0]}"
        say(
            f"engine process {index + 1}/{settings.engine_processes} "
            f"({runs[-1]['target']}): {key} "
            f"{1e6 * statistics.median(runs[-1]['timings'][key]['walls']):.2f} us"
        )
    out = {}
    for key in runs[0]["timings"]:
        per_run = [r["timings"][key] for r in runs]
        walls = [w for r in per_run for w in r["walls"]]
        cpus = [c for r in per_run for c in r["cpus"]]
        summary = _summary(walls, cpus, per_run[0]["cycles"])
        summary["processes"] = len(runs)
        summary["us_per_process"] = [round(1e6 * statistics.median(r["walls"]), 3) for r in per_run]
        out[key] = summary
    return out, runs[0]["target"]


def host_build(settings: Settings, say) -> dict:
    """The engine sweep's method at HOST_SIZES, float64, compiled for this CPU
    (``DIFFRNN_TARGET=host``), in its own cache dir (the first warm-up run compiles)."""
    cache = Path(tempfile.mkdtemp(prefix="diffrnn-numba-cache-"))
    try:
        env = _child_env(NUMBA_CACHE_DIR=str(cache), DIFFRNN_TARGET="host")
        timings, target = engine_sweep(list(HOST_SIZES), settings, say, ("float64",), env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"target": target, "timings": timings}


# ---------------------------------------------------------------------------------------
# 4. NumPy and torch references


def _time_python_cycles(
    model, data: np.ndarray, settings: Settings, seq_len: int = SEQ_LEN
) -> dict:
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

        self.ref = NumpyReference(VOCAB, n, "variable", rng=np.random.default_rng(SEED))

    def cycle(self, inputs, targets) -> float:
        return self.ref.cycle(inputs, targets, structure=False)

    def reset_hidden(self) -> None:
        self.ref.reset_hidden()


class _TorchModel:
    def __init__(self, n: int) -> None:
        from reference_torch import TorchReference

        self.ref = TorchReference(VOCAB, n, "variable", seed=SEED)

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
# 5. the cycle by part

# The timing loops, compiled by part_kernels() with the engine's policy: the inner kernels
# have no Python wrapper, so they are called from kernels. The engine's modules are bound
# there, not imported at the top (the compile children time the engine's import, and the
# baseline's children import another engine).
_cycle = _structure = None


def _forward_loop(net, s, hp, data, start, calls):
    loss = 0.0
    for _ in range(calls):
        loss += _cycle._forward(net, s, hp, data, start)
    return loss


def _backward_loop(net, s, hp, data, start, probs, calls):
    """_backward turns the probabilities into output errors in place: they are put back
    (seq_len x vocab copies) before each call."""
    flat = s.probs_flat
    for _ in range(calls):
        for k in range(probs.size):
            flat[k] = probs[k]
        _cycle._backward(net, s, hp, data, start)


def _weight_gradients_loop(net, s, hp, data, start, calls):
    for _ in range(calls):
        _cycle._weight_gradients(net, s, hp, data, start)


def _update_loop(net, s, hp, calls):
    for _ in range(calls):
        _cycle._update(hp.optimizer, net, s, hp)


def _structure_loop(net, s, hp, draws, events, fill, calls):
    for c in range(calls):
        draws.cursor[:] = 0  # the pools never run out
        _structure._structure_step(net, s, hp, draws, c + 1, events, fill)


def _tanh_loop(rows, steps, width, calls):
    for _ in range(calls):
        for t in range(steps):
            _cycle._tanh_in_place(rows[t + 1], width)


def _matvec_loop(W, hs, out, steps, n, calls):
    for _ in range(calls):
        for t in range(steps):
            _cycle._add_matvec(W, hs[t], out[t + 1], n, n)


@functools.cache
def part_kernels() -> dict:
    global _cycle, _structure
    from engine import cycle, structure
    from engine.jit import kernel

    _cycle, _structure = cycle, structure
    loops = {
        "forward": _forward_loop,
        "backward": _backward_loop,
        "weight gradients": _weight_gradients_loop,
        "update": _update_loop,
        "structure step": _structure_loop,
        "tanh alone": _tanh_loop,
        "Whh mat-vec alone": _matvec_loop,
    }
    return {part: kernel(loop) for part, loop in loops.items()}


def _time_part(loop, args: tuple, rep_seconds: float) -> float:
    """Microseconds per call of ``loop(*args, calls)``: the minimum of PART_REPS loops of
    about ``rep_seconds``, after the calls that compile it and size the loop."""
    loop(*args, 1)  # compiles, or loads from the cache
    calls = 1
    while True:
        t0 = time.perf_counter()
        loop(*args, calls)
        seconds = time.perf_counter() - t0
        if seconds >= rep_seconds / 10:
            break
        calls *= 10
    calls = max(calls, round(calls * rep_seconds / seconds))
    best = math.inf
    for _ in range(PART_REPS):
        t0 = time.perf_counter()
        loop(*args, calls)
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best / calls


def part_floors(n: int, dtype: str, mhz: float) -> dict[str, tuple[float | None, str]]:
    """Each part's floor in microseconds per cycle and what sets it (see render)."""
    from engine.state import padded

    hz = 1e6 * mhz
    itemsize = np.dtype(dtype).itemsize
    width = padded(n)  # tanh runs over whole vectors: padded(N) lanes
    matvec, outputs, tanh = 2 * n * n, 2 * n * VOCAB, TANH_FLOPS * width
    whh_bytes = n * n * itemsize

    def flops(count: int, tanh_count: int = 0) -> tuple[float, str]:
        """``count`` flops in the run's dtype, ``tanh_count`` in float64 (``_tanh``
        computes in float64 whatever the dtype), each at its peak."""
        cycles = count / PEAK_FLOPS_PER_CYCLE[dtype]
        cycles += tanh_count / PEAK_FLOPS_PER_CYCLE["float64"]
        return 1e6 * cycles / hz, "flops"

    def chain(count: int, tanh_count: int = 0) -> tuple[float, str]:
        """A part that streams Whh once per step: L2 bandwidth when Whh outgrows L1."""
        floor = flops(count, tanh_count)
        if whh_bytes > L1_BYTES:
            l2 = 1e6 * SEQ_LEN * whh_bytes / L2_BYTES_PER_CYCLE / hz
            if l2 > floor[0]:
                floor = (l2, "L2 bandwidth")
        return floor

    params = n * n + 2 * n * VOCAB + 2 * n + VOCAB
    vectors = math.ceil(params * itemsize / VECTOR_BYTES)
    return {
        "forward": chain(SEQ_LEN * (matvec + outputs), SEQ_LEN * tanh),
        "backward": chain(SEQ_LEN * (matvec + outputs)),
        "weight gradients": flops(SEQ_LEN * (matvec + outputs)),
        "update": (1e6 * vectors * SQRT_DIV_CYCLES / hz, "sqrt+div"),
        "structure step": (None, "-"),
        "tanh alone": flops(0, SEQ_LEN * tanh),
        "Whh mat-vec alone": chain(SEQ_LEN * matvec),
    }


def profile_parts(settings: Settings, say) -> dict:
    """Microseconds per cycle of each part, from the state of a short run (realistic
    weights, memories and multipliers), with its floor."""
    from engine.run import run
    from engine.state import (
        EVENT_DTYPE,
        allocate_draws,
        allocate_scratch,
        make_hyper,
        padded,
        refill_draws,
    )

    loops = part_kernels()
    mhz = _cpu_mhz()
    data = hard_data(400)
    rows = []
    for n, dtype in PROFILE_CASES:
        config = _constant_n_config(n, dtype)
        trained = run(config, "hard", settings.engine_warm_cycles, SEED, keep_network=True)
        net = trained.network
        s = allocate_scratch(config.capacity, VOCAB, config.seq_len, dtype)
        hp = make_hyper(config, VOCAB)
        draws = allocate_draws(config.capacity, VOCAB)
        rng = np.random.default_rng(SEED)
        refill_draws(draws, rng, rng)
        events = np.zeros(16 + config.capacity, EVENT_DTYPE)
        fill = np.zeros(2, np.int64)
        start = 0
        loops["forward"](net, s, hp, data, start, 1)  # the hidden states and probabilities
        probs = s.probs_flat.copy()
        hs = s.hs.copy()  # tanh's own rows
        out = np.zeros_like(s.hs)  # the mat-vec's own outputs
        args = {  # in timing order: update last, it moves the weights
            "forward": (net, s, hp, data, start),
            "backward": (net, s, hp, data, start, probs),
            "weight gradients": (net, s, hp, data, start),
            "tanh alone": (hs, config.seq_len, padded(n)),
            "Whh mat-vec alone": (net.Whh, s.hs, out, config.seq_len, n),
            "structure step": (net, s, hp, draws, events, fill),
            "update": (net, s, hp),
        }
        us = {
            part: _time_part(loops[part], a, settings.part_rep_seconds) for part, a in args.items()
        }
        if fill[1] != 0 or trained.final_neurons != n:
            raise RuntimeError(f"profile N={n} {dtype}: the structure changed")
        floors = part_floors(n, dtype, mhz) if mhz else {}
        for part in PARTS:
            floor, kind = floors.get(part, (None, "-"))
            rows.append(
                {
                    "N": n,
                    "dtype": dtype,
                    "part": part,
                    "us": us[part],
                    "floor_us": floor,
                    "floor_kind": kind,
                    "ratio": us[part] / floor if floor else None,
                }
            )
        say(
            f"parts N={n} {dtype}: "
            + ", ".join(f"{part} {us[part]:.2f}" for part in CYCLE_PARTS)
            + " us"
        )
    return {
        "clock_mhz": mhz,
        "assumptions": {
            "peak_flops_per_cycle": PEAK_FLOPS_PER_CYCLE,
            "tanh_flops_per_lane": TANH_FLOPS,
            "sqrt_div_cycles_per_vector": SQRT_DIV_CYCLES,
            "vector_bytes": VECTOR_BYTES,
            "l1_bytes": L1_BYTES,
            "l2_bytes_per_cycle": L2_BYTES_PER_CYCLE,
        },
        "reps": PART_REPS,
        "timing": "minimum over repetitions of a loop of calls inside one kernel",
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------
# 6. baseline


def baseline(rev: str, settings: Settings, say) -> dict:
    """The engine at ``rev``, in a temporary git worktree: its cold compile and its speed
    at BASELINE_SIZES, each in a fresh process that imports it (``PYTHONPATH``)."""
    out = {"rev": rev}
    if not rev:
        return dict(out, skipped="no baseline asked for")
    commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if not commit:
        return dict(out, skipped=f"git or the commit {rev!r} is unavailable")
    out["commit"] = commit
    work = Path(tempfile.mkdtemp(prefix="diffrnn-baseline-"))
    tree, cache = work / "tree", work / "numba-cache"
    try:
        added = subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as error:
        added = subprocess.CompletedProcess([], 1, "", str(error))
    if added.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        return dict(out, skipped=f"git worktree add failed: {added.stderr.strip()}")
    try:
        env = _child_env(NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(tree))
        colds = []  # as many cold compiles as the engine's, each on an empty cache
        for rep in range(settings.cold_reps):
            shutil.rmtree(cache, ignore_errors=True)
            say(f"baseline {rev}: cold compile {rep + 1}/{settings.cold_reps}")
            compiled = _child(["--compile-child", "float64"], env, cwd=tree)
            if not Path(compiled["engine_file"]).resolve().is_relative_to(tree.resolve()):
                raise RuntimeError(f"the baseline child imported {compiled['engine_file']}")
            colds.append(compiled["numba_startup_seconds"] + compiled["warm_up_seconds"])
        say(f"baseline {rev}: cycle speed")
        args = ["--engine-child", ",".join(map(str, BASELINE_SIZES)), "--dtypes", "float64"]
        args += ["--baseline-timing"] + (["--quick"] if settings.quick else [])
        timed = _child(args, env, cwd=tree)
    except (RuntimeError, subprocess.SubprocessError, json.JSONDecodeError) as error:
        return dict(out, skipped=f"the baseline's measurement failed: {error}")
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)],
            cwd=ROOT,
            capture_output=True,
            timeout=300,
        )
        shutil.rmtree(work, ignore_errors=True)
    out.update(
        engine_version=compiled["engine_version"],
        target=compiled["target"],
        cold_seconds=statistics.median(colds),
        cold_all=colds,
        cold_compile=compiled,
        timings={
            key: _summary(t["walls"], t["cpus"], t["cycles"]) for key, t in timed["timings"].items()
        },
    )
    return out


# ---------------------------------------------------------------------------------------
# 7. one full run


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
    out = []

    def add(name, measured, limit, op, unit):
        met = {"<=": measured <= limit, ">=": measured >= limit}[op]
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

    for n in (27, 100):
        if n in rows:
            limit = TARGETS[f"numpy_ratio_at_{n}"]
            add(f"NumPy / engine float64 at N={n}", rows[n]["numpy_ratio"], limit, ">=", "x")
    for n, row in rows.items():
        ratio = row["float32"]["us"] / row["float64"]["us"]
        add(f"float32 / float64 at N={n}", ratio, TARGETS["float32_over_float64"], "<=", "x")
    base = data["baseline"]
    for dtype, row in data["compile"].items():
        if "cold_seconds" in base:
            limit = TARGETS["cold_compile_over_baseline"] * base["cold_seconds"]
            name = f"cold compile, {dtype} (baseline's / 3)"
            add(name, row["cold_seconds"], limit, "<=", "s")
    for dtype, row in data["compile"].items():
        name = f"load from cache, {dtype} (engine part {row['cached_engine_seconds']:.3f} s)"
        add(name, row["cached_seconds"], TARGETS["cached_load_seconds"], "<=", "s")
    return out


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f}"
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _figure(value: float) -> str:
    """A target's figure, with enough digits to tell 1.003 from 1."""
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _render_engine(data: dict) -> list[str]:
    torch_on = data["torch"] is not None
    lines = [
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
    host = data["host"]
    portable = data["machine"]["compile_target"]
    rows = {row["N"]: row for row in data["table"]}
    lines += [
        "",
        f"Host build: `DIFFRNN_TARGET=host`, compiled for `{host['target']}` instead of "
        f"the portable `{portable}`; the sweep's method, float64, medians:",
        "",
        f"| N | portable `{portable}` us | host `{host['target']}` us | portable / host |",
        "|---|---|---|---|",
    ]
    for key, timing in host["timings"].items():
        n = int(key.split("/")[0])
        mine = rows[n]["float64"]["us"] if n in rows else None
        ratio = f"{mine / timing['us']:.2f}" if mine else "-"
        lines.append(f"| {n} | {_us(mine)} | {_us(timing['us'])} | {ratio} |")
    return lines


def _render_compile(data: dict) -> list[str]:
    lines = [
        "",
        "Compile, in a fresh process per figure (cold = empty `NUMBA_CACHE_DIR`, from cache "
        "= a second process on the same cache dir; medians). Each is Numba's own one-time "
        "start-up (`numba.njit(lambda x: x + 1)(1)`, timed first, after the engine's "
        "import: Numba's registries and code generator) plus the engine's part "
        "(`engine.run.warm_up((dtype,))` after it):",
        "",
        "| dtype | cold s | from cache s | of which Numba start-up s | engine load s | "
        "engine import s |",
        "|---|---|---|---|---|---|",
    ]
    for dtype, row in data["compile"].items():
        lines.append(
            f"| {dtype} | {row['cold_seconds']:.2f} | {row['cached_seconds']:.3f} | "
            f"{row['cached_numba_startup_seconds']:.3f} | {row['cached_engine_seconds']:.3f} | "
            f"{row['import_seconds']:.2f} |"
        )
    tests = data["tests_compile"]
    lines.append("")
    if "error" in tests:
        lines.append(f"Test suite's own compile: not measured, {tests['error']}.")
    else:
        lines.append(
            f"Test suite's own compile: `{tests['command']}` took {tests['cold_seconds']:.1f} s "
            f"with an empty cache dir, {tests['warm_seconds']:.1f} s again on that cache: "
            f"{tests['compile_seconds']:.1f} s of compile (the tests' kernels of "
            f"`tests/entry.py` and the engine's kernels they reach); {tests['summary']}."
        )
    return lines


def _render_baseline(data: dict) -> list[str]:
    base = data["baseline"]
    if "skipped" in base:
        return ["", f"Baseline {base['rev']!r}: skipped ({base['skipped']})."]
    rows = {row["N"]: row for row in data["table"]}
    lines = [
        "",
        f"Baseline: the engine at `{base['rev']}` (engine {base['engine_version']}, "
        f"compiled for {base['target']}) from a temporary git worktree, in fresh processes "
        "with an empty cache dir: cold compile as above, float64 (median of "
        f"{len(base.get('cold_all', [1]))}: "
        f"{', '.join(f'{x:.2f}' for x in base.get('cold_all', [base['cold_seconds']]))} s); "
        "speed as the sweep, "
        f"median of {base['timings'][next(iter(base['timings']))]['reps']} repetitions in "
        "one process. Now = this run's figures.",
        "",
        "| | baseline | now | ratio |",
        "|---|---|---|---|",
    ]
    old = base["cold_seconds"]
    for dtype, row in data["compile"].items():
        now = row["cold_seconds"]
        lines.append(
            f"| cold compile {dtype}, s (baseline: float64) | {old:.2f} | {now:.2f} | "
            f"now / baseline {now / old:.2f} |"
        )
    for key, timing in base["timings"].items():
        n = int(key.split("/")[0])
        now = rows[n]["float64"]["us"] if n in rows else None
        ratio = f"speed-up baseline / now {timing['us'] / now:.2f}x" if now else "-"
        lines.append(
            f"| us per cycle, N={n} float64 | {_us(timing['us'])} | {_us(now)} | {ratio} |"
        )
    return lines


def _render_profile(data: dict) -> list[str]:
    prof = data["profile"]
    mhz = prof["clock_mhz"]
    peak = PEAK_FLOPS_PER_CYCLE
    lines = [
        "",
        f"The cycle by part: microseconds per cycle ({SEQ_LEN} steps) of each part, the "
        f"minimum of {prof['reps']} repetitions of a loop of calls inside one kernel, from "
        "the state after a short run. Floors, at the clock of /proc/cpuinfo "
        + (f"({mhz:.0f} MHz)" if mhz else "(not found: no floors)")
        + f": flops = the part's flops at the core's peak, {peak['float64']} float64 / "
        f"{peak['float32']} float32 flops per cycle (two 256-bit FMA pipes), counted from "
        "the code per step: forward 2N^2 + 2NV plus tanh at ~40 flops per lane (padded(N) "
        "lanes, in float64 whatever the dtype, as `_tanh` computes), backward and weight "
        "gradients 2N^2 + 2NV each; sqrt+div = update's floor instead of its ~10 flops "
        "per parameter (N^2 + 2NV + 2N + V of them): one sqrt and one division per "
        f"parameter at one per {SQRT_DIV_CYCLES} cycles per {8 * VECTOR_BYTES}-bit vector; "
        "L2 bandwidth = Whh (N*N*itemsize bytes) streamed from L2 once per step at "
        f"{L2_BYTES_PER_CYCLE} bytes per cycle, for the chains once Whh outgrows the "
        f"{L1_BYTES // 1024} KiB L1. The structure step has no floor (bookkeeping, no "
        "arithmetic to speak of). cycle = the five parts' sum.",
        "",
        "| N | dtype | part | us | floor us | floor kind | part/floor |",
        "|---|---|---|---|---|---|---|",
    ]

    def line(n, dtype, part, us, floor, kind):
        ratio = f"{us / floor:.1f}x" if floor else "-"
        return f"| {n} | {dtype} | {part} | {_us(us)} | {_us(floor)} | {kind} | {ratio} |"

    cases: dict[tuple[int, str], list[dict]] = {}
    for row in prof["rows"]:
        cases.setdefault((row["N"], row["dtype"]), []).append(row)
    for (n, dtype), rows in cases.items():
        for r in rows:
            lines.append(line(n, dtype, r["part"], r["us"], r["floor_us"], r["floor_kind"]))
        parts = [r for r in rows if r["part"] in CYCLE_PARTS]
        total = sum(r["us"] for r in parts)
        floor = sum(r["floor_us"] or 0.0 for r in parts) or None
        lines.append(line(n, dtype, "**cycle**", total, floor, "sum"))
    small = cases.get((min(n for n, _ in cases), "float64"), [])
    forward = next((r for r in small if r["part"] == "forward"), None)
    if forward and mhz:
        per_step = forward["us"] * mhz / SEQ_LEN
        lines += [
            "",
            "At small N the gap to the floor is the latency of the serial chain, not "
            "throughput: each step waits for the previous one (one mat-vec reduction plus "
            "one tanh, ~100+ cycles of dependent operations); measured, the forward at "
            f"N={forward['N']} takes {per_step:.0f} cycles per step.",
        ]
    return lines


def render(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# Cycle speed (`bench/cycle_speed.py`)" + (" -- QUICK" if data["quick"] else ""),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared VM), {m['platform']}; Python "
        f"{m['python']}, NumPy {m['numpy']}, Numba {m['numba']} (llvmlite {m['llvmlite']}, "
        f"LLVM host CPU `{m['llvm_host_cpu']}`, compile target `{m['compile_target']}`), "
        f"torch {m['torch'] or 'not used'}; engine {m['engine']} at git {m['git_commit']}"
        + (" (engine/ modified since)" if m["engine_modified_since_commit"] else "")
        + f"; {m['date']}.",
        "",
        "Load average (1, 5, 15 min; this bench itself keeps one core busy): at the start "
        f"{data['load']['start']}, before the engine timings {data['load']['engine']}, after "
        f"them {data['load']['after_engine']}, at the end {data['load']['end']}.",
        "",
    ]
    lines += _render_engine(data)
    lines += _render_compile(data)
    lines += _render_baseline(data)
    lines += _render_profile(data)
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
        "| target | measured | target | met? |",
        "|---|---|---|---|",
    ]
    for t in data["targets"]:
        lines.append(
            f"| {t['target']} | {_figure(t['measured'])} {t['unit']} | {t['op']} "
            f"{_figure(t['limit'])} {t['unit']} | {'met' if t['met'] else 'NOT met'} |"
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
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        metavar="REV",
        help="git revision of the engine to compare with ('' to skip; default: %(default)s)",
    )
    parser.add_argument("--compile-child", help=argparse.SUPPRESS)
    parser.add_argument("--engine-child", help=argparse.SUPPRESS)
    parser.add_argument("--dtypes", default=",".join(DTYPES), help=argparse.SUPPRESS)
    parser.add_argument("--baseline-timing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_child:
        compile_child(args.compile_child)
        return
    if args.engine_child:
        sizes = [int(x) for x in args.engine_child.split(",")]
        engine_child(sizes, args.dtypes.split(","), args.quick, args.baseline_timing)
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
    say("the tests' compile (pytest subprocesses)")
    tests = tests_compile(say)

    from engine.run import warm_up

    warm_up(DTYPES)
    load["engine"] = _load()
    say(f"engine sweep in {settings.engine_processes} processes")
    engine, _ = engine_sweep(sizes, settings, say)
    load["after_engine"] = _load()
    say("host build (DIFFRNN_TARGET=host; the first process compiles)")
    host = host_build(settings, say)
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

    say("the cycle by part")
    profile = profile_parts(settings, say)
    say(f"baseline {args.baseline!r}")
    base = baseline(args.baseline, settings, say)
    if "skipped" in base:
        say(f"baseline skipped: {base['skipped']}")

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
        "pooled over several fresh processes, us_per_process = each process's median; "
        "profile: minimum over repetitions",
        "table": table,
        "host": host,
        "compile": compile_,
        "tests_compile": tests,
        "baseline": base,
        "profile": profile,
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
