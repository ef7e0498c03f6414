"""Studies: TOML files expanded into runs, fanned out with joblib, stored as they finish.

A study file (``studies/*.toml``) names a task, a cycle count, seeds, base parameters, a grid
(cartesian product of lists) and optional named conditions; every condition is crossed with
every grid point and every seed. Everything is validated before any run starts.

Fan-out: runs are grouped into batches of one to five seconds of estimated work, largest
first (dispatch and storage cost per batch, some milliseconds, is then about 1% of the
runs' time or less, progress moves every few seconds, and the small batches at the end
keep workers from idling while the last ones finish). Batches go to joblib (``loky`` processes by
default, ``threading`` since the kernels release the GIL, or ``dask`` on an existing
cluster); each finished batch comes back to this process, which alone writes the store.
Kernels are compiled (or loaded from Numba's cache) here, once: loky workers start at the
same time and import the engine, but wait for this process to have the kernels in the
cache before they load them, so workers only read the cache.

Batch sizes and estimates come from a cost model of seconds per cycle, timed on this
machine and kept between invocations (``engine.costmodel``, ``study_rates``).

Each run depends only on its config, task, cycles and seed, so the results are the same
whatever the backend, the number of workers or the batching.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import names
from .config import ConfigError, RunConfig, check_field, field_names
from .costmodel import CostModel, Key
from .jit import ENGINE_VERSION, build_info
from .run import MAX_CYCLES, RunResult, check_run_args, kernel_variant, run, run_ids, warm_up
from .state import EVENT_DTYPE, TRACE_DTYPE
from .tasks import entropy_floor, parse_task, read_text_file

TOP_KEYS = ("name", "description", "task", "cycles", "seeds", "params", "grid", "conditions")
RUN_KEYS = ("task", "cycles")  # besides config fields, what a condition or the grid may set
DEFAULT_TASK = "hard"
DEFAULT_CYCLES = 300_000
MAX_SEED_COUNT = 1_000_000
MAX_RUNS = 1_000_000
BACKENDS = ("auto", "loky", "threading", "dask")
MAX_BATCH_SECONDS = 5.0  # estimated work per batch: progress moves every few seconds
MIN_BATCH_SECONDS = 1.0  # and dispatching a batch (~10-25 ms) stays near 1% of it
BATCHES_PER_WORKER = 3  # at least this many batches per worker when the study is small
# expected network size of a variable-size run, for time estimates only (REFERENCE.md's
# published results: about 7 neurons on easy, 27-35 on hard)
EXPECTED_NEURONS = {"easy": 8, "hard": 30}
EXPECTED_NEURONS_OTHER = 30
# what starting loky workers adds to a study's wall time: each new process imports the
# engine and loads the kernels, about 1.4 s of CPU; on 2 cores, beside this process's own
# start, the fan-out began 1.3-1.5 s later than with one job (bench/README.md)
WORKER_START_SECONDS = 1.5
# ``backend = "auto"`` (the default) runs a local study on threads (the kernels release the
# GIL) when its runs come to less than this per worker by the cost model, and on loky
# processes otherwise: a process start is paid where it is at most about 1% of the work,
# and buys a study whose runs are long their own memory and a crash that takes down one
# worker, not the study process. The bits are the same on every backend.
AUTO_THREADS_BELOW_SECONDS = 150.0
TIMING_REPEATS = 3  # a rate is the best of this many short timed runs


class StudyError(ConfigError):
    """A bad study file; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: everything that determines it, and its id."""

    study: str
    condition: str
    task: str
    cycles: int
    seed: int
    config: RunConfig
    run_id: str


@dataclass(frozen=True)
class Study:
    name: str
    path: str
    description: str
    conditions: tuple[str, ...]
    grid_points: int
    seeds: tuple[int, ...]
    specs: tuple[RunSpec, ...] = field(repr=False)


# -- parsing and validation ----------------------------------------------------------------
def load_study(path: str | os.PathLike) -> Study:
    """Read, validate and expand a study file; raises StudyError (one line) if bad."""
    where = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise StudyError(f"{where}: study file does not exist") from None
    except IsADirectoryError:
        raise StudyError(f"{where}: is a directory, not a study file") from None
    except OSError as error:
        raise StudyError(f"{where}: cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{where}: malformed TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise StudyError(f"{where}: malformed TOML: not UTF-8 ({error.reason})") from None
    return parse_study(data, where)


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _fail(where: str, text: str) -> StudyError:
    return StudyError(f"{where}: {text}")


def _check_value(where: str, section: str, name: str, value: Any) -> None:
    """Type and range of one value, alone (combinations are checked after expansion)."""
    prefix = f"{section} " if section else ""
    if name == "task":
        if not isinstance(value, str):
            raise _fail(
                where,
                f"{prefix}task = {value!r} has the wrong type: expected a "
                "string such as hard, easy, easy-hard-easy or file:PATH",
            )
        try:
            parse_task(value, 0)
        except ConfigError as error:
            raise _fail(where, f"{prefix}{error}") from None
        return
    if name == "cycles":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CYCLES:
            raise _fail(
                where,
                f"{prefix}cycles = {value!r} is out of range: an integer in [1, {MAX_CYCLES}]",
            )
        return
    try:
        check_field(RunConfig.__dataclass_fields__[name], value)
    except ConfigError as error:
        raise _fail(where, f"{prefix}{error}") from None


def _check_names(where: str, section: str, table: dict, extra: tuple[str, ...] = ()) -> None:
    allowed = field_names() + extra
    for name in table:
        if name not in allowed:
            raise _fail(
                where, f"{section} unknown parameter {name!r}: allowed are {', '.join(allowed)}"
            )


def _seeds(where: str, value: Any) -> tuple[int, ...]:
    allowed = (
        f"allowed a count in [1, {MAX_SEED_COUNT}] or a list of distinct integers in [0, 2**63)"
    )
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEED_COUNT:
            raise _fail(where, f"seeds = {value!r} is out of range: {allowed}")
        return tuple(range(value))
    if isinstance(value, list):
        if not value:
            raise _fail(where, f"seeds = [] is empty: {allowed}")
        for seed in value:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
                raise _fail(where, f"seeds: {seed!r} is out of range: {allowed}")
        if len(set(value)) != len(value):
            raise _fail(where, f"seeds = {value!r} has duplicates: {allowed}")
        return tuple(value)
    raise _fail(where, f"seeds = {value!r} has the wrong type ({_type_name(value)}): {allowed}")


def parse_study(data: dict[str, Any], where: str = "<study>") -> Study:
    """Validate a parsed study table and expand it into run specs (see module docstring)."""
    # names are checked by engine.names, not engine.store: a dry-run must not import pandas
    for key in data:
        if key not in TOP_KEYS:
            raise _fail(where, f"unknown key {key!r}: allowed are {', '.join(TOP_KEYS)}")
    if "name" not in data:
        raise _fail(where, "missing key 'name': the study's name, e.g. name = \"demo\"")
    name = data["name"]
    try:
        names.check_name(name)
    except ConfigError as error:
        raise _fail(where, f"name: {error}") from None
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(
            where, f"description has the wrong type ({_type_name(description)}): expected a string"
        )
    task = data.get("task", DEFAULT_TASK)
    _check_value(where, "", "task", task)
    cycles = data.get("cycles", DEFAULT_CYCLES)
    _check_value(where, "", "cycles", cycles)
    seeds = _seeds(where, data.get("seeds", 1))

    params = data.get("params", {})
    if not isinstance(params, dict):
        raise _fail(
            where,
            f"params has the wrong type ({_type_name(params)}): expected a "
            "table [params] of run-config values",
        )
    _check_names(where, "[params]", params)
    for key, value in params.items():
        _check_value(where, "[params]", key, value)

    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise _fail(
            where, f"grid has the wrong type ({_type_name(grid)}): expected a table [grid] of lists"
        )
    _check_names(where, "[grid]", grid, RUN_KEYS)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise _fail(
                where,
                f"[grid] {key} = {values!r} is not allowed: expected a non-empty list of values",
            )
        for value in values:
            _check_value(where, "[grid]", key, value)
        if len({(type(v), v) for v in values}) != len(values):
            raise _fail(where, f"[grid] {key} = {values!r} has duplicate values")
        if key in params:
            raise _fail(where, f"[grid] {key} is also set in [params]: set it in one place")

    raw_conditions = data.get("conditions", [{"name": names.DEFAULT_CONDITION}])
    if not isinstance(raw_conditions, list) or not all(isinstance(c, dict) for c in raw_conditions):
        raise _fail(where, "conditions has the wrong type: expected [[conditions]] tables")
    if not raw_conditions:
        raise _fail(where, "conditions is empty: give at least one [[conditions]] or none")
    conditions: list[tuple[str, dict]] = []
    for index, table in enumerate(raw_conditions, 1):
        if "name" not in table:
            raise _fail(where, f"[[conditions]] number {index} has no name")
        cname = table["name"]
        try:
            names.check_name(cname, "condition name")
        except ConfigError as error:
            raise _fail(where, f"[[conditions]] {error}") from None
        if cname in (c for c, _ in conditions):
            raise _fail(where, f"[[conditions]] name {cname!r} is used twice")
        section = f"[[conditions]] {cname!r}:"
        overrides = {k: v for k, v in table.items() if k != "name"}
        _check_names(where, section, overrides, RUN_KEYS)
        for key, value in overrides.items():
            _check_value(where, section, key, value)
            if key in grid:
                raise _fail(
                    where,
                    f"{section} {key} is also in [grid]: a key may be set by "
                    "the grid or by conditions, not both",
                )
        conditions.append((cname, overrides))

    keys = list(grid)
    points = list(itertools.product(*(grid[k] for k in keys)))
    total = len(conditions) * len(points) * len(seeds)
    if total > MAX_RUNS:
        raise _fail(where, f"the study has {total} runs: allowed at most {MAX_RUNS}")

    specs: list[RunSpec] = []
    owner: dict[str, str] = {}
    checked_tasks: set[tuple[str, int, int]] = set()
    for cname, overrides in conditions:
        for point in points:
            assigned = dict(zip(keys, point, strict=True))
            location = f"condition {cname!r}" + (
                ", grid " + ", ".join(f"{k}={v!r}" for k, v in assigned.items()) if keys else ""
            )
            values = {**params, **overrides, **assigned}
            run_task = values.pop("task", task)
            run_cycles = values.pop("cycles", cycles)
            try:
                config = RunConfig.from_dict(values)
            except ConfigError as error:
                raise _fail(where, f"{location}: {error}") from None
            _check_task(where, location, run_task, run_cycles, config, checked_tasks)
            for seed, rid in zip(seeds, run_ids(config, run_task, run_cycles, seeds)):
                if rid in owner:
                    raise _fail(
                        where,
                        f"{location}, seed {seed}: the same run as "
                        f"{owner[rid]} (identical config, task, cycles and "
                        "seed); make the conditions differ",
                    )
                owner[rid] = f"{location}, seed {seed}"
                specs.append(RunSpec(name, cname, run_task, run_cycles, seed, config, rid))
    return Study(
        name=name,
        path=where,
        description=description,
        conditions=tuple(c for c, _ in conditions),
        grid_points=len(points),
        seeds=seeds,
        specs=tuple(specs),
    )


def _check_task(where, location, task, cycles, config, checked) -> None:
    key = (task, cycles, config.seq_len)
    if key in checked:
        return
    checked.add(key)
    try:
        check_run_args(task, cycles, 0)
        for phase in parse_task(task, cycles):
            if phase.task.startswith("file:"):
                text = read_text_file(phase.task[5:])
                if len(text) < config.seq_len + 2:
                    raise ConfigError(
                        f"task file {phase.task[5:]!r} has {len(text)} "
                        f"characters: it needs at least seq_len + 2 = "
                        f"{config.seq_len + 2}"
                    )
    except ConfigError as error:
        raise _fail(where, f"{location}: {error}") from None


# -- time estimates and batches ------------------------------------------------------------
def expected_neurons(spec: RunSpec) -> int:
    """N used to estimate a run's cost: hidden_size (fixed) or the paper's typical N."""
    config = spec.config
    if not config.variable:
        return config.hidden_size
    guess = EXPECTED_NEURONS.get(spec.task, EXPECTED_NEURONS_OTHER)
    return max(config.hidden_size, min(guess, config.capacity - 1))


def cost_keys(specs: Sequence[RunSpec]) -> list[Key]:
    """The rates ``specs`` need: (dtype, seq_len, expected N) of each run."""
    return sorted({(s.config.dtype, s.config.seq_len, expected_neurons(s)) for s in specs})


def time_rates(keys: Sequence[Key], repeats: int = TIMING_REPEATS) -> dict[Key, float]:
    """Seconds per cycle of each key, timed here: the best of ``repeats`` short fixed-size
    runs (about 70 ms each), so that a moment of load on the machine does not stay in the
    cost model for a month. Kernels must be compiled already (``warm_up``)."""
    rates = {}
    for dtype, seq_len, neurons in keys:
        config = RunConfig(
            mode="fixed",
            hidden_size=neurons,
            capacity=max(neurons, RunConfig.capacity),  # the buffers' row stride matters
            dtype=dtype,
            seq_len=seq_len,
            log_every=10**6,
        )
        cycles = int(min(2000, max(50, 8e7 / ((neurons * neurons + 100) * seq_len))))
        run(config, "hard", 5, 0)  # first touch of the buffers is not part of the rate
        best = math.inf
        for _ in range(max(1, repeats)):
            result = run(config, "hard", cycles, 0)
            best = min(best, result.train_seconds / max(1, result.cycles_done))
        rates[(dtype, seq_len, neurons)] = best
    return rates


def calibrate(specs: Sequence[RunSpec]) -> dict[Key, float]:
    """Seconds per cycle at each rate ``specs`` need, timed now (no cost model)."""
    return time_rates(cost_keys(specs))


@dataclass
class StudyRates:
    """The rates a study needs, and where they came from."""

    rates: dict[Key, float]  # seconds per cycle
    timed: list[Key]  # timed by this call (missing, stale, or recalibrating)
    timed_at: dict[Key, float]  # epoch seconds when each rate taken from the model was timed
    path: str  # the cost model's file
    problem: str = ""  # why the file could not be read or written ("" if fine)


def study_rates(
    specs: Sequence[RunSpec],
    *,
    recalibrate: bool = False,
    before_timing: Callable[[], None] | None = None,
) -> StudyRates:
    """The rates ``specs`` need, from the cost model (``engine.costmodel``); only rates it
    lacks, older than its MAX_AGE_DAYS, or all of them with ``recalibrate`` are timed (after
    ``before_timing()``, once the kernels are loaded) and kept in it."""
    model = CostModel()
    found = model.lookup(cost_keys(specs), recalibrate=recalibrate)
    rates = dict(found.rates)
    if found.missing:
        if before_timing is not None:
            before_timing()
        warm_up(tuple(sorted({dtype for dtype, _, _ in found.missing})))
        timed = time_rates(found.missing)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        model.save(timed, load=load)
        rates.update(timed)
    return StudyRates(rates, found.missing, found.timed_at, str(model.path), model.problem)


def estimate_seconds(specs: Sequence[RunSpec], rates: dict[Key, float] | None = None) -> np.ndarray:
    """Estimated compute seconds of each run (one core), from the cost model's rates."""
    rates = study_rates(specs).rates if rates is None else rates
    return np.array(
        [s.cycles * rates[(s.config.dtype, s.config.seq_len, expected_neurons(s))] for s in specs],
        dtype=float,
    )


def make_batches(
    specs: Sequence[RunSpec],
    costs: Sequence[float],
    workers: int,
    batch_size: int | None = None,
) -> list[list[RunSpec]]:
    """Consecutive runs grouped into batches, largest first (guided scheduling).

    Each batch gets about 1/BATCHES_PER_WORKER of a worker's share of the work still to
    batch, between MIN_BATCH_SECONDS (so that dispatch stays well under 1% of the batch)
    and MAX_BATCH_SECONDS (so that progress moves); the shrinking batches at the end keep
    workers from waiting long on the last one. A small study (under
    MIN_BATCH_SECONDS * BATCHES_PER_WORKER per worker) still gets BATCHES_PER_WORKER
    batches per worker. ``batch_size`` fixes the number of runs per batch instead.
    """
    specs = list(specs)
    if batch_size is not None:
        return [specs[i : i + batch_size] for i in range(0, len(specs), batch_size)]
    share = BATCHES_PER_WORKER * max(1, workers)
    remaining = float(np.sum(costs))
    floor = min(MIN_BATCH_SECONDS, remaining / share)
    batches: list[list[RunSpec]] = []
    current: list[RunSpec] = []
    load = target = 0.0
    for spec, cost in zip(specs, costs, strict=True):
        if not current:
            target = min(MAX_BATCH_SECONDS, max(floor, remaining / share))
        current.append(spec)
        load += cost
        if load >= target * (1 - 1e-9):
            batches.append(current)
            remaining -= load
            current, load = [], 0.0
    if current:
        batches.append(current)
    return batches


# -- the worker side -----------------------------------------------------------------------
@dataclass
class BatchOutcome:
    """What a worker sends back for one batch."""

    items: list[tuple[str, RunResult]]
    pid: int
    peak_rss_kb: int  # VmHWM of the worker process after the batch (0 if unknown)
    rss_kb: int  # VmRSS after the batch
    seconds: float  # wall time of the batch inside the worker


def _memory_kb() -> tuple[int, int]:
    """(peak, current) resident set size of this process, from /proc (Linux)."""
    peak = current = 0
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    current = int(line.split()[1])
    except OSError:
        pass
    return peak, current


def error_result(spec: RunSpec, message: str, wall_seconds: float = 0.0) -> RunResult:
    """The stored form of a run that raised: status "error" and the message."""
    try:
        phases = parse_task(spec.task, spec.cycles)
        floor = entropy_floor(phases[-1].task, spec.config)
    except ConfigError:
        floor = None
    return RunResult(
        run_id=spec.run_id,
        config=spec.config,
        task=spec.task,
        seed=spec.seed,
        cycles=spec.cycles,
        cycles_done=0,
        status="error",
        message=message,
        final_loss=math.nan,
        final_neurons=0,
        entropy_floor=floor,
        wall_seconds=wall_seconds,
        train_seconds=0.0,
        traces=np.zeros(0, TRACE_DTYPE),
        events=np.zeros(0, EVENT_DTYPE),
    )


def run_one(spec: RunSpec) -> RunResult:
    """Run one spec; an exception becomes a result with status "error" (never raises)."""
    started = time.perf_counter()
    try:
        return run(spec.config, spec.task, spec.cycles, spec.seed)
    except Exception as error:  # noqa: BLE001 - stored, and the study goes on
        text = " ".join(f"{type(error).__name__}: {error}".split())[:2000]
        return error_result(spec, text, time.perf_counter() - started)


_WATCHDOG: list[threading.Thread] = []


def _exit_with_parent(parent: int) -> None:
    """In a worker process started by the study process (loky), exit as soon as that
    process is gone (killed with SIGKILL, for instance) instead of finishing batches whose
    results nobody can store."""
    if _WATCHDOG or os.getpid() == parent or os.getppid() != parent:
        return  # the study process itself (threading, sequential), or a Dask worker

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    thread = threading.Thread(target=watch, name="diffrnn-parent-watch", daemon=True)
    thread.start()
    _WATCHDOG.append(thread)


def run_batch(specs: Sequence[RunSpec], parent: int | None = None) -> BatchOutcome:
    """Worker entry point: run a batch of specs one after the other."""
    started = time.perf_counter()
    if parent is not None:
        _exit_with_parent(parent)
    items = [(spec.condition, run_one(spec)) for spec in specs]
    peak, current = _memory_kb()
    return BatchOutcome(items, os.getpid(), peak, current, time.perf_counter() - started)


# -- the parent side -----------------------------------------------------------------------
@dataclass
class StudyProgress:
    """Passed to the progress callback after the start and after every stored batch."""

    total: int  # runs this invocation has to run (already stored ones excluded)
    done: int = 0
    diverged: int = 0
    errors: int = 0
    skipped: int = 0  # already stored before this invocation
    elapsed: float = 0.0
    remaining: float | None = None  # seconds, estimated
    workers: int = 1
    backend: str = ""  # the backend the runs go to ("auto" resolved)

    @property
    def failed(self) -> int:
        return self.diverged + self.errors

    @property
    def runs_per_minute(self) -> float:
        return 60.0 * self.done / self.elapsed if self.elapsed > 0 and self.done else 0.0


@dataclass
class StudyReport:
    study: str
    results: str
    total: int  # runs in the study
    skipped: int  # already stored before this invocation
    workers: int
    backend: str
    done: int = 0  # runs run (and stored) by this invocation
    diverged: int = 0
    errors: int = 0
    batches: int = 0
    seconds: float = 0.0  # wall time of the fan-out (after warm-up and calibration)
    warm_up_seconds: float = 0.0  # from the call to the fan-out: kernels, store, rates
    worker_seconds: float = 0.0  # sum of batch times measured inside the workers
    run_seconds: float = 0.0  # sum of the runs' own wall times
    peak_rss_kb: dict[int, int] = field(default_factory=dict)  # worker pid -> VmHWM
    rss_kb: dict[int, list[int]] = field(default_factory=dict)  # pid -> VmRSS per batch
    # seconds from the call to the end of each part of the start and the end (run_study)
    phases: dict[str, float] = field(default_factory=dict)
    compaction: Any = None  # store.CompactReport of the final compaction (None if stopped)


@dataclass
class Plan:
    study: Study
    stored: int
    todo: list[RunSpec]
    workers: int
    estimated_seconds: float  # wall time, todo runs spread over the workers
    rates: dict[tuple[str, int, int], float]
    build_conflict: str = ""  # why running would stop: stored runs of another build
    cost_model: StudyRates | None = None  # where the rates came from
    backend: str = ""  # the backend it would run on ("auto" resolved)


def _check_worker_build(outcome: BatchOutcome, current: dict) -> None:
    from . import store

    for _, result in outcome.items:
        build = result.build
        if build and not store.same_build(build, current):
            raise store.StoreError(
                f"a worker (pid {outcome.pid}) runs another build ({store.build_text(build)}) "
                f"than this process ({store.build_text(current)}): its runs would not be "
                "the same bits; give every worker the same packages and DIFFRNN_TARGET, or "
                "pass --mix-builds"
            )


def _check_backend(backend: str, scheduler: str | None) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not allowed: one of {', '.join(BACKENDS)}")
    if backend == "dask" and not scheduler:
        raise ConfigError(
            "--backend dask needs --scheduler ADDRESS (start a cluster with "
            "`dask scheduler` and `dask worker ADDRESS`)"
        )
    if backend != "dask" and scheduler:
        raise ConfigError("--scheduler is only used with --backend dask")


def choose_backend(backend: str, specs: Sequence[RunSpec], workers: int) -> str:
    """The backend ``backend`` stands for: itself, unless it is ``"auto"``, which means
    threads for one worker or for runs estimated under AUTO_THREADS_BELOW_SECONDS per
    worker, and loky otherwise (also when the cost model lacks a rate the runs need: their
    length is unknown, and timing it would cost more than the choice is worth)."""
    if backend != "auto":
        return backend
    if workers <= 1 or not specs:
        return "threading"
    found = CostModel().lookup(cost_keys(specs))
    if found.missing:
        return "loky"
    per_worker = float(np.sum(estimate_seconds(specs, found.rates))) / workers
    return "threading" if per_worker < AUTO_THREADS_BELOW_SECONDS else "loky"


def _workers(backend: str, jobs: int | None, client=None) -> int:
    if backend == "dask":
        return max(1, sum(client.ncores().values()))
    if jobs is not None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ConfigError(f"jobs = {jobs!r} is out of range: allowed [1, inf)")
        return jobs
    return max(1, os.cpu_count() or 1)


def _connect(scheduler: str):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "--backend dask needs dask.distributed: pip install 'diffrnn[dask]'"
        ) from None
    from distributed.comm import parse_address, parse_host_port

    try:
        parse_host_port(parse_address(scheduler)[1])
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"--scheduler {scheduler!r} is not an address: expected tcp://HOST:PORT ({error})"
        ) from None
    try:
        return Client(scheduler, timeout=20, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {scheduler!r}: {' '.join(str(error).split())}"
        ) from None


def _warm_up_cluster(client, dtypes: tuple[str, ...]) -> None:
    """Compile on one worker per host (the others then read that host's cache)."""
    from distributed.comm import get_address_host

    one_per_host: dict[str, str] = {}
    for address in client.ncores():
        one_per_host.setdefault(get_address_host(address), address)
    try:
        client.run(warm_up, dtypes, workers=list(one_per_host.values()))
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"Dask workers cannot import {error.name!r}: install diffrnn on "
            "every worker machine (pip install -e . in the same environment)"
        ) from None


def _dtypes(specs: Sequence[RunSpec]) -> tuple[tuple[str, str, str], ...]:
    """The compiled variants the specs need (``run.kernel_variant``: dtype, criterion,
    optimizer): each is its own machine code, compiled once in the parent by ``warm_up``."""
    return tuple(sorted({kernel_variant(s.config) for s in specs}))


def _nothing_stored(results: str | os.PathLike, study: str) -> bool:
    """True when ``study`` surely has no stored run in ``results``: its ``runs`` partition
    (``RESULTS/runs/study=NAME``, the store's documented layout) is absent or holds only
    hidden files (temporaries). Lets a dry-run skip importing the store (pandas and
    pyarrow, half a second) and a study start its workers before that import."""
    try:
        with os.scandir(os.path.join(results, "runs", f"study={study}")) as entries:
            return all(entry.name.startswith(".") for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False  # let the store look, and report what is wrong


class _Gate:
    """Where starting worker processes wait until this process has the kernels in the cache.

    A file lock: this process holds it exclusively from the start; a worker blocks on a
    shared lock of the same file until ``open``, then reads whether the kernels are ready
    ("ok"). The system releases the lock if this process dies, and the file then does not
    say "ok", so a worker never compiles on its own (Numba's cache is compiled here, once)."""

    def __init__(self) -> None:
        import fcntl

        fd, self.path = tempfile.mkstemp(prefix="diffrnn-gate-")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            os.unlink(self.path)
            raise
        self._fd: int | None = fd

    def open(self, kernels_ready: bool) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            if kernels_ready:
                os.write(self._fd, b"ok")
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.open(False)
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _wait_at_gate(path: str) -> bool:
    """In a worker: wait until the study process opens the gate; True if kernels are ready."""
    try:
        import fcntl

        with open(path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            return handle.read() == b"ok"
    except (ImportError, OSError):
        return False  # no file locks, or the gate is gone: load at the first batch instead


def _worker_start(gate: str | None, dtypes: tuple) -> int:
    """A loky worker's first task. Unpickling it imported the engine; the worker then
    waits at the gate for the study process to have the kernels in the cache and loads
    them, so that its first batch starts at once."""
    if gate is not None and _wait_at_gate(gate):
        warm_up(dtypes)
    return os.getpid()


class _WorkerStart:
    """Start the loky worker processes while this process goes on.

    In a thread: joblib starts ``workers`` processes, each imports the engine and waits at a
    ``_Gate``; once this process has compiled (or loaded) the kernels (``kernels_ready``),
    they load them from the cache, at the same time as this process checks the store.
    The fan-out then reuses the same processes (joblib's reusable loky executor).
    """

    def __init__(self, workers: int, dtypes: tuple) -> None:
        try:
            self.gate: _Gate | None = _Gate()
        except (ImportError, OSError):
            self.gate = None  # no file locks here: workers load the kernels at their first batch
        self.ready_at: float | None = None  # perf_counter when every worker had started
        self.thread = threading.Thread(
            target=self._start, args=(workers, dtypes), name="diffrnn-start-workers", daemon=True
        )
        self.thread.start()

    def _start(self, workers: int, dtypes: tuple) -> None:
        from joblib import Parallel, delayed

        gate = self.gate.path if self.gate is not None else None
        try:
            Parallel(n_jobs=workers, backend="loky")(
                delayed(_worker_start)(gate, dtypes) for _ in range(workers)
            )
        except Exception:  # noqa: BLE001 - only a head start; the fan-out reports errors
            pass
        self.ready_at = time.perf_counter()

    def kernels_ready(self) -> None:
        if self.gate is not None:
            self.gate.open(True)

    def join(self) -> None:
        self.thread.join()

    def close(self) -> None:
        if self.gate is not None:
            self.gate.remove()


def stop_workers() -> None:
    """Stop joblib's loky worker processes now, if any were started (idle once
    ``run_study`` has returned: every batch is stored). At the interpreter's exit loky would
    instead let each go through Python's own teardown, 0.5-1 s with the kernels loaded. A
    later fan-out starts new ones."""
    reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(reusable, "_executor", None)  # joblib's process pool, once started
    if executor is not None:
        with contextlib.suppress(Exception):
            executor.shutdown(wait=True, kill_workers=True)


def plan_study(
    study: Study,
    results: str | os.PathLike,
    *,
    jobs: int | None = None,
    backend: str = "auto",
    scheduler: str | None = None,
    recalibrate: bool = False,
) -> Plan:
    """What ``run_study`` would do: runs stored, runs to do, estimated wall time.

    The estimate uses the cost model (``study_rates``: rates timed on this machine with
    short fixed-size runs, kept between invocations), so it says nothing about the speed
    of a remote cluster. With every rate known and nothing stored, it loads no kernels and
    does not import the store.
    """
    _check_backend(backend, scheduler)
    conflict = ""
    if _nothing_stored(results, study.name):
        todo = list(study.specs)
    else:
        from . import storefiles  # not the store: pandas alone would double a dry-run

        stored_ids = storefiles.stored_run_ids(results, study.name)
        todo = [s for s in study.specs if s.run_id not in stored_ids]
        if todo:
            try:
                storefiles.check_build(results, study.name, build_info())
            except storefiles.StoreError as error:
                conflict = str(error)
    if backend == "dask":
        client = _connect(scheduler)
        try:
            workers = _workers(backend, jobs, client)
        finally:
            client.close()
    else:
        workers = _workers(backend, jobs)
    backend = choose_backend(backend, todo, workers)
    found = StudyRates({}, [], {}, "")
    seconds = 0.0
    if todo:
        found = study_rates(todo, recalibrate=recalibrate)
        costs = estimate_seconds(todo, found.rates)
        batches = make_batches(todo, costs, workers)
        # greedy list scheduling of the batches on the workers
        loads = [0.0] * min(workers, len(batches))
        index = 0
        for batch in batches:
            cost = float(np.sum(costs[index : index + len(batch)]))
            index += len(batch)
            loads[loads.index(min(loads))] += cost
        seconds = max(loads) if loads else 0.0
        if backend == "loky" and workers > 1:
            seconds += WORKER_START_SECONDS
    return Plan(
        study,
        len(study.specs) - len(todo),
        todo,
        workers,
        seconds,
        found.rates,
        conflict,
        found,
        backend,
    )


ProgressCallback = Callable[[StudyProgress], None]


def run_study(
    study: Study,
    results: str | os.PathLike,
    *,
    jobs: int | None = None,
    backend: str = "auto",
    scheduler: str | None = None,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    durable: bool = True,
    mix_builds: bool = False,
    recalibrate: bool = False,
) -> StudyReport:
    """Run every run of ``study`` not yet stored in ``results``, storing each batch as it
    finishes. Safe to kill at any moment and to re-run (see ``engine.store``).

    Every run records its build (compile target and package versions). A study whose
    stored runs come from another build than this process's, or a worker that runs
    another build (a Dask worker with other packages or ``DIFFRNN_TARGET``), stops with
    ``StoreError`` before storing anything of it, unless ``mix_builds``.

    The start is overlapped where it can be (``bench/study_throughput.py`` times it by
    part): loky workers start first and import the engine while this process loads the
    kernels, then load them while this process checks the store; the rates come from the
    cost model (timed only when it lacks them, or with ``recalibrate``)."""
    _check_backend(backend, scheduler)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConfigError(f"batch_size = {batch_size!r} is out of range: allowed [1, inf)")
    results = str(results)
    t0 = time.perf_counter()
    phases: dict[str, float] = {}

    def mark(phase: str) -> None:
        phases[phase] = time.perf_counter() - t0

    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    starting: _WorkerStart | None = None
    loaded: tuple[tuple[str, str, str], ...] = ()  # kernel variants warmed up here
    try:
        fresh = bool(study.specs) and _nothing_stored(results, study.name)
        if backend == "auto" and fresh:
            backend = choose_backend(backend, study.specs, _workers(backend, jobs))
        if backend == "loky" and fresh:
            # a new study: every run is to do, so the workers can start before the store
            # is even imported, and import the engine while this process loads the kernels
            workers = _workers(backend, jobs)
            if workers > 1:
                loaded = _dtypes(study.specs)
                starting = _WorkerStart(workers, loaded)
                mark("workers_spawned")
                warm_up(loaded)  # compile into the cache here, once, before any worker runs
                starting.kernels_ready()
                mark("kernels_loaded")
        from joblib import Parallel, delayed, parallel_config

        from . import store

        mark("store_imported")
        with store.study_lock(results, study.name):
            store.clean_study(results, study.name)
            stored_ids = store.stored_run_ids(results, study.name)
            todo = [s for s in study.specs if s.run_id not in stored_ids]
            skipped = len(study.specs) - len(todo)
            current = build_info()
            if todo and not mix_builds:
                store.check_build(results, study.name, current)
            mark("store_checked")
            client = _connect(scheduler) if backend == "dask" else None
            try:
                workers = _workers(backend, jobs, client)
                backend = choose_backend(backend, todo, workers)
                state = StudyProgress(
                    total=len(todo), skipped=skipped, workers=workers, backend=backend
                )
                report = StudyReport(
                    study=study.name,
                    results=results,
                    total=len(study.specs),
                    skipped=skipped,
                    workers=workers,
                    backend=backend,
                    phases=phases,
                )
                if not todo:
                    # a study stopped during its final compaction has nothing left to run
                    report.compaction = store.compact_study(
                        results, study.name, durable=durable, take_lock=False
                    )
                    if progress:
                        progress(state)
                    return report
                dtypes = _dtypes(todo)
                if starting is None and backend == "loky" and workers > 1:
                    starting = _WorkerStart(workers, dtypes)
                    mark("workers_spawned")
                if set(dtypes) - set(loaded):
                    warm_up(dtypes)  # compile into the cache here, once, before any worker runs
                    mark("kernels_loaded")
                if starting is not None:
                    starting.kernels_ready()
                if client is not None:
                    _warm_up_cluster(client, dtypes)
                # rates from the cost model; timing a missing one waits for the workers to
                # have started: starting up on the other core slowed the timed runs by up to
                # 2x, and the cost model would keep that for a month
                rates = study_rates(
                    todo,
                    recalibrate=recalibrate,
                    before_timing=starting.join if starting is not None else None,
                ).rates
                costs = estimate_seconds(todo, rates)
                batches = make_batches(todo, costs, workers, batch_size)
                cost_of = dict(zip((s.run_id for s in todo), costs, strict=True))
                total_cost = float(np.sum(costs))
                mark("rates_ready")
                report.batches = len(batches)
                state.remaining = total_cost / min(workers, len(batches))
                if progress:
                    progress(state)
                if starting is not None:
                    # one Parallel call at a time on joblib's executor; the workers are
                    # about ready by now, having started first
                    starting.join()
                    if starting.ready_at is not None:
                        phases["workers_ready"] = starting.ready_at - t0
                report.warm_up_seconds = time.perf_counter() - t0

                started = time.perf_counter()
                done_cost = 0.0
                config = (
                    dict(backend="dask", client=client)
                    if client is not None
                    else dict(backend=backend)
                )
                n_jobs = -1 if client is not None else workers
                with parallel_config(**config):
                    parallel = Parallel(
                        n_jobs=n_jobs,
                        batch_size=1,
                        pre_dispatch="2*n_jobs",
                        return_as="generator_unordered",
                    )
                    mark("first_dispatch")
                    for outcome in parallel(
                        delayed(run_batch)(batch, os.getpid()) for batch in batches
                    ):
                        if "first_result" not in phases:
                            mark("first_result")
                        if not mix_builds:
                            _check_worker_build(outcome, current)
                        store.write_batch(results, study.name, outcome.items, durable=durable)
                        # keep the number of files small while the study runs (few opens
                        # for anyone reading the store meanwhile)
                        store.merge_small_files(results, study.name, durable=durable)
                        for _, result in outcome.items:
                            state.done += 1
                            state.diverged += result.status == "diverged"
                            state.errors += result.status == "error"
                            done_cost += cost_of[result.run_id]
                            report.run_seconds += result.wall_seconds
                        report.worker_seconds += outcome.seconds
                        report.peak_rss_kb[outcome.pid] = max(
                            outcome.peak_rss_kb, report.peak_rss_kb.get(outcome.pid, 0)
                        )
                        report.rss_kb.setdefault(outcome.pid, []).append(outcome.rss_kb)
                        state.elapsed = time.perf_counter() - started
                        left = total_cost - done_cost
                        state.remaining = (
                            state.elapsed * left / done_cost if done_cost > 0 else None
                        )
                        if progress:
                            progress(state)
                report.seconds = time.perf_counter() - started
                mark("fan_out_done")
                report.done, report.diverged, report.errors = (
                    state.done,
                    state.diverged,
                    state.errors,
                )
                # every run is stored: one file per dataset, sorted by run id, for fast queries
                report.compaction = store.compact_study(
                    results, study.name, durable=durable, take_lock=False
                )
                mark("compacted")
                store.write_session(
                    results,
                    study.name,
                    dict(
                        started_at=started_at,
                        wall_seconds=time.perf_counter() - t0,
                        warm_up_seconds=report.warm_up_seconds,
                        runs_done=report.done,
                        runs_skipped=skipped,
                        runs_total=len(study.specs),
                        workers=workers,
                        backend=backend,
                        engine_version=ENGINE_VERSION,
                    ),
                )
                mark("session_written")
                return report
            finally:
                if client is not None:
                    client.close()
    finally:
        if starting is not None:
            starting.close()
