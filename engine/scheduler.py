"""Studies: TOML files expanded into runs, fanned out with joblib, stored as they finish.

A study file is read, validated and expanded into runs by ``engine.studyfile``
(``load_study``); this module plans and runs it.

Fan-out: runs are grouped into batches of one to five seconds of estimated work, largest
first (``engine.planning.make_batches``). Batches go to joblib (``loky`` processes by
default, ``threading`` since the kernels release the GIL, or ``dask`` on an existing
cluster); each finished batch comes back to this process, which alone writes the store.
Kernels are compiled (or loaded from Numba's cache) here, once: loky workers start at the
same time and import the engine, but wait for this process to have the kernels in the
cache before they load them, so workers only read the cache (``engine.workers``, the
worker side).

Batch sizes and estimates come from a cost model of seconds per cycle, timed on this
machine and kept between invocations (``engine.costmodel``, ``study_rates``; the rate each
run needs and its timing are in ``engine.planning``).

Each run depends only on its config, task, cycles and seed, so the results are the same
whatever the backend, the number of workers or the batching.

Every name of ``engine.studyfile``, ``engine.planning`` and ``engine.workers`` is
re-exported here (``engine.scheduler`` is where the tests, the bench scripts and the CLI
find them).
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import ConfigError
from .costmodel import CostModel, Key
from .jit import ENGINE_VERSION, build_info
from .planning import (  # noqa: F401 (re-exported)
    BACKENDS,
    BATCHES_PER_WORKER,
    EXPECTED_NEURONS,
    EXPECTED_NEURONS_OTHER,
    MAX_BATCH_SECONDS,
    MIN_BATCH_SECONDS,
    MLP_KEY_PREFIX,
    TIMING_REPEATS,
    Plan,
    StudyRates,
    _check_backend,
    _mlp_timing_config,
    _workers,
    cost_key,
    cost_keys,
    expected_neurons,
    make_batches,
    time_rates,
)
from .run import kernel_variant, warm_up
from .studyfile import (  # noqa: F401 (re-exported)
    DEFAULT_CYCLES,
    DEFAULT_TASK,
    MAX_RUNS,
    MAX_SEED_COUNT,
    RUN_KEYS,
    TOP_KEYS,
    RunSpec,
    Study,
    StudyError,
    _check_names,
    _check_task,
    _check_value,
    _fail,
    _seeds,
    _type_name,
    load_study,
    parse_study,
)
from .workers import (  # noqa: F401 (re-exported)
    _WATCHDOG,
    BatchOutcome,
    _connect,
    _exit_with_parent,
    _Gate,
    _memory_kb,
    _wait_at_gate,
    _warm_up_cluster,
    _worker_start,
    _WorkerStart,
    error_result,
    run_batch,
    run_one,
    stop_workers,
)

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


# -- rates from the cost model, and estimates --------------------------------------------
def _warm_up_keys(keys: Sequence[Key]) -> None:
    variants = set()
    for key in keys:
        if key[0].startswith(MLP_KEY_PREFIX):
            variants.add(kernel_variant(_mlp_timing_config(key)))
        else:
            variants.add((key[0], "multiplier", "adagrad"))
    warm_up(tuple(sorted(variants)))


def calibrate(specs: Sequence[RunSpec]) -> dict[Key, float]:
    """Seconds per cycle at each rate ``specs`` need, timed now (no cost model)."""
    return time_rates(cost_keys(specs))


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
        _warm_up_keys(found.missing)
        timed = time_rates(found.missing)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        model.save(timed, load=load)
        rates.update(timed)
    return StudyRates(rates, found.missing, found.timed_at, str(model.path), model.problem)


def estimate_seconds(specs: Sequence[RunSpec], rates: dict[Key, float] | None = None) -> np.ndarray:
    """Estimated compute seconds of each run (one core), from the cost model's rates."""
    rates = study_rates(specs).rates if rates is None else rates
    return np.array(
        [s.cycles * rates[cost_key(s)] for s in specs],
        dtype=float,
    )


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


# -- the study process's side ------------------------------------------------------------
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
