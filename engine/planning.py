"""A study's plan, in the parts that need neither the cost model's file nor the fan-out:
the rate each run needs (``cost_key``: dtype, sequence length and expected network size),
the timing of a rate on this machine (``time_rates``), batches (``make_batches``), the
backend and worker checks, and the records ``plan_study`` and ``study_rates`` return.

Batches: runs are grouped into batches of one to five seconds of estimated work, largest
first (dispatch and storage cost per batch, some milliseconds, is then about 1% of the
runs' time or less, progress moves every few seconds, and the small batches at the end
keep workers from idling while the last ones finish).

Apart from ``engine.scheduler``, which re-exports everything here. What looks rates up in
the cost model or times them stays there (``study_rates``, ``calibrate``, and what calls
them: ``estimate_seconds``, ``choose_backend``, ``plan_study``): tests and
``bench/timed_invocation.py`` replace ``time_rates``, ``warm_up``, ``study_rates`` and
``make_batches`` in the scheduler's namespace, and those callers must see the replacements.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import ConfigError, RunConfig
from .costmodel import Key
from .run import run
from .studyfile import RunSpec, Study

BACKENDS = ("auto", "loky", "threading", "dask")
MAX_BATCH_SECONDS = 5.0  # estimated work per batch: progress moves every few seconds
MIN_BATCH_SECONDS = 1.0  # and dispatching a batch (~10-25 ms) stays near 1% of it
BATCHES_PER_WORKER = 3  # at least this many batches per worker when the study is small
# expected network size of a variable-size run, for time estimates only (REFERENCE.md's
# published results: about 7 neurons on easy, 27-35 on hard)
EXPECTED_NEURONS = {"easy": 8, "hard": 30}
EXPECTED_NEURONS_OTHER = 30
TIMING_REPEATS = 3  # a rate is the best of this many short timed runs


# -- cost keys and rates -----------------------------------------------------------------
def expected_neurons(spec: RunSpec) -> int:
    """N used to estimate a run's cost: hidden_size (fixed) or the paper's typical N."""
    config = spec.config
    if config.model == "mlp":  # all blocks' neurons: fixed, or a guess of 16 per block
        blocks = config.initial_blocks
        if not config.learns_width:
            return config.hidden_size * blocks
        return blocks * max(config.hidden_size, min(16, config.capacity - 1))
    if not config.variable:
        return config.hidden_size
    guess = EXPECTED_NEURONS.get(spec.task, EXPECTED_NEURONS_OTHER)
    return max(config.hidden_size, min(guess, config.capacity - 1))


MLP_KEY_PREFIX = "mlp-"


def cost_key(spec: RunSpec) -> Key:
    """The rate a run needs: (dtype, seq_len, expected N); for the feedforward model
    ("mlp-DTYPE-bBATCH-sSTREAM", 0, expected neurons of all blocks)."""
    config = spec.config
    if config.model == "mlp":
        name = f"{MLP_KEY_PREFIX}{config.dtype}-b{config.batch_size}-s{config.stream_width}"
        return (name, 0, expected_neurons(spec))
    return (config.dtype, config.seq_len, expected_neurons(spec))


def cost_keys(specs: Sequence[RunSpec]) -> list[Key]:
    """The rates ``specs`` need (``cost_key`` of each run)."""
    return sorted({cost_key(s) for s in specs})


def _mlp_timing_config(key: Key) -> RunConfig:
    """The fixed feedforward network a rate of ``key`` is timed on: one block of N."""
    dtype, batch, stream = key[0][len(MLP_KEY_PREFIX) :].split("-")
    return RunConfig(
        model="mlp",
        mode="fixed",
        hidden_size=key[2],
        capacity=max(key[2], RunConfig.capacity),
        dtype=dtype,
        batch_size=int(batch[1:]),
        stream_width=int(stream[1:]),
        log_every=10**6,
    )


def time_rates(keys: Sequence[Key], repeats: int = TIMING_REPEATS) -> dict[Key, float]:
    """Seconds per cycle of each key, timed here: the best of ``repeats`` short fixed-size
    runs (about 70 ms each), so that a moment of load on the machine does not stay in the
    cost model for a month. Kernels must be compiled already (``warm_up``)."""
    rates = {}
    for key in keys:
        dtype, seq_len, neurons = key
        if dtype.startswith(MLP_KEY_PREFIX):
            config = _mlp_timing_config(key)
            cycles = 2000
            run(config, "teacher:8x1", 5, 0)
            best = math.inf
            for _ in range(max(1, repeats)):
                result = run(config, "teacher:8x1", cycles, 0)
                best = min(best, result.train_seconds / max(1, result.cycles_done))
            rates[key] = best
            continue
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


@dataclass
class StudyRates:
    """The rates a study needs, and where they came from."""

    rates: dict[Key, float]  # seconds per cycle
    timed: list[Key]  # timed by this call (missing, stale, or recalibrating)
    timed_at: dict[Key, float]  # epoch seconds when each rate taken from the model was timed
    path: str  # the cost model's file
    problem: str = ""  # why the file could not be read or written ("" if fine)


# -- batches -----------------------------------------------------------------------------
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


# -- backends and workers ----------------------------------------------------------------
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


def _workers(backend: str, jobs: int | None, client=None) -> int:
    if backend == "dask":
        return max(1, sum(client.ncores().values()))
    if jobs is not None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ConfigError(f"jobs = {jobs!r} is out of range: allowed [1, inf)")
        return jobs
    return max(1, os.cpu_count() or 1)


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
