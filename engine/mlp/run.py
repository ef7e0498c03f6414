"""The driver of one feedforward run: validate, allocate, seed, call the loop, assemble.

``engine.run.run`` hands a config with ``model = "mlp"`` here; the result is the same
``RunResult`` as a recurrent run's (with the feedforward outcome fields filled), so the
scheduler, the store and the summaries treat both models alike.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..config import RunConfig
from ..fftasks import (
    TEACHER_CLASSES,
    DigitsData,
    FFPhase,
    Teacher,
    build_phase_sources,
    fill_batches,
    teacher_floor,
)
from ..state import BIRTH, Draws, refill_draws
from . import loop as L
from .state import (
    BATCH,
    BLOCK_LEVEL,
    CYCLE,
    MLP_EVENT_DTYPE,
    MLP_TRACE_DTYPE,
    N_BLOCKS,
    PHASE,
    PHASE_CYCLES,
    SMOOTHED,
    TEST_ACCURACY,
    TEST_LOSS,
    init_mlp,
    make_mlp_hyper,
    neuron_strengths,
    widths,
)

# minibatches drawn at a time: a constant, so that a run's data (which interleaves the
# inputs' and the labels' draws pool by pool) never depends on how it is driven
POOL_BATCHES = 256
EVENT_BUFFER = 4096
# the purposes' generators, spawned from the run's seed in this order: the recurrent
# model's four, then the Monte Carlo estimate of each teacher's floor (its own stream, so
# that estimating it never moves the data)
MLP_STREAMS = ("init", "data", "structure", "new_weights", "floor")


def draws_pool_sizes(config: RunConfig) -> tuple[int, int]:
    """A few thousand cycles of structure draws, and at least one worst-case cycle."""
    K, cap, S = config.max_blocks, config.capacity, config.stream_width
    return 4096 + K * (2 * cap + 2) + 2 * K + 2, 1024 + 2 * S * (K + 1)


def phase_floors(
    phases: tuple[FFPhase, ...], sources: tuple, rng: np.random.Generator
) -> list[float | None]:
    """Each phase's floor: the teacher's conditional entropy (``teacher_floor``, standard
    error 1e-3 nats), estimated once per distinct teacher in order of first appearance;
    None for digits, whose floor is unknown."""
    estimated: dict[int, float] = {}
    floors: list[float | None] = []
    for source in sources:
        if isinstance(source, Teacher):
            if id(source) not in estimated:
                estimated[id(source)] = teacher_floor(source, rng).value
            floors.append(estimated[id(source)])
        else:
            floors.append(None)
    return floors


def run_mlp(
    config: RunConfig,
    task: str,
    cycles: int,
    seed: int,
    phases: tuple[FFPhase, ...],
    *,
    progress=None,
    chunk_cycles: int = 5000,
    keep_network: bool = False,
):
    """Train one feedforward network (arguments already checked by ``engine.run.run``)."""
    from ..jit import build_info
    from ..run import RunResult, generators, run_id

    started = time.perf_counter()
    rngs = generators(seed, MLP_STREAMS)
    sources = build_phase_sources(
        phases, rngs["data"], input_dim=config.input_dim, classes=TEACHER_CLASSES
    )
    floors = phase_floors(phases, sources, rngs["floor"])
    input_dim, classes = _shape_of(sources[0])
    real = np.dtype(config.dtype)
    net, scratch = init_mlp(config, input_dim, classes, rngs["init"])
    hyper = make_mlp_hyper(config)
    net.accum[SMOOTHED] = math.log(classes)

    B = config.batch_size
    x_pool = np.zeros((POOL_BATCHES, B, input_dim), dtype=real)
    y_pool = np.zeros((POOL_BATCHES, B), dtype=np.int64)
    filled = np.zeros(1, dtype=np.int64)
    if isinstance(sources[0], DigitsData):
        x_test = np.ascontiguousarray(sources[0].x_test, dtype=real)
        y_test = np.ascontiguousarray(sources[0].y_test, dtype=np.int64)
    else:
        x_test = np.zeros((0, input_dim), dtype=real)
        y_test = np.zeros(0, dtype=np.int64)
    data = (x_pool, y_pool, filled, x_test, y_test)
    starts = [p.start for p in phases] + [cycles]

    def refill_data() -> None:
        c = int(net.counters[CYCLE])
        phase = max(i for i, p in enumerate(phases) if p.start <= c)
        if phase != int(net.counters[PHASE]):
            net.counters[PHASE] = phase
            net.counters[PHASE_CYCLES] = 0
        count = min(POOL_BATCHES, starts[phase + 1] - c)
        fill_batches(sources[phase], rngs["data"], x_pool[:count], y_pool[:count])
        filled[0] = count
        net.counters[BATCH] = 0

    chunk = max(1, int(chunk_cycles))
    trace_buffer = np.zeros(chunk // config.log_every + 2, dtype=MLP_TRACE_DTYPE)
    per_cycle = config.max_blocks * (config.capacity + 2) + 2
    event_buffer = np.zeros(EVENT_BUFFER + per_cycle, dtype=MLP_EVENT_DTYPE)
    fill = np.zeros(2, dtype=np.int64)
    traces, events = [], [_initial_events(net, config)]

    n_uniform, n_normal = draws_pool_sizes(config)
    # empty pools (cursor at the end): the first refill_draws fills them
    draws = Draws(
        np.zeros(n_uniform), np.zeros(n_normal), np.array([n_uniform, n_normal], np.int64)
    )
    if config.learns_width or config.learns_depth:
        refill_draws(draws, rngs["structure"], rngs["new_weights"])
    status = L.FINISHED
    train_seconds = 0.0
    while net.counters[CYCLE] < cycles:
        end = min(int(net.counters[CYCLE]) + chunk, cycles)
        fill[:] = 0
        t0 = time.perf_counter()
        while True:
            status = L._train_mlp(
                net,
                scratch,
                hyper,
                data,
                draws,
                end - int(net.counters[CYCLE]),
                trace_buffer,
                event_buffer,
                fill,
            )
            if status == L.NEED_DRAWS:
                refill_draws(draws, rngs["structure"], rngs["new_weights"])
            elif status == L.NEED_DATA:
                refill_data()
            else:
                break
        train_seconds += time.perf_counter() - t0
        traces.append(trace_buffer[: fill[0]].copy())
        events.append(event_buffer[: fill[1]].copy())
        if progress is not None:
            progress(
                int(net.counters[CYCLE]),
                cycles,
                sum(widths(net)),
                float(net.accum[SMOOTHED]),
                train_seconds,
            )
        if status == L.DIVERGED:
            break

    L._final_evaluation(net, scratch, hyper, x_test, y_test)
    diverged = status == L.DIVERGED
    done = int(net.counters[CYCLE])
    final_phase = int(net.counters[PHASE])
    test_loss = float(net.accum[TEST_LOSS])
    test_accuracy = float(net.accum[TEST_ACCURACY])
    return RunResult(
        run_id=run_id(config, task, cycles, seed),
        config=config,
        task=task,
        seed=seed,
        cycles=cycles,
        cycles_done=done,
        status="diverged" if diverged else "ok",
        message=f"loss became non-finite at cycle {done}" if diverged else "",
        final_loss=float(net.accum[SMOOTHED]),
        final_neurons=sum(widths(net)),
        entropy_floor=floors[final_phase],
        wall_seconds=time.perf_counter() - started,
        train_seconds=train_seconds,
        traces=np.concatenate(traces) if traces else np.zeros(0, MLP_TRACE_DTYPE),
        events=np.concatenate(events),
        network=net if keep_network else None,
        build=build_info(),
        final_blocks=int(net.counters[N_BLOCKS]),
        final_widths=tuple(widths(net)),
        test_loss=None if math.isnan(test_loss) else test_loss,
        test_accuracy=None if math.isnan(test_accuracy) else test_accuracy,
        phase_floors=tuple(floors),
    )


def _shape_of(source: Teacher | DigitsData) -> tuple[int, int]:
    return source.input_dim, source.classes


def _initial_events(net, config: RunConfig) -> np.ndarray:
    """The initial blocks and neurons, born at cycle 0: each block's event, then its
    neurons'."""
    rows = []
    for b in range(int(net.counters[N_BLOCKS])):
        block = int(net.block_id[b])
        rows.append((0, -1, BIRTH, 0, abs(float(net.mu[b])), block, BLOCK_LEVEL))
        strengths = neuron_strengths(net, config, b)
        for j in range(int(net.width[b])):
            rows.append((0, int(net.neuron_id[b, j]), BIRTH, 0, float(strengths[j]), block, 0))
    return np.array(rows, dtype=MLP_EVENT_DTYPE)


def warm_up_mlp(dtype: str, criterion: str, optimizer: str) -> None:
    """Compile (or load) the feedforward loop of one variant: a 3-cycle run on the
    smallest teacher, every mechanism on."""
    from ..run import run

    config = RunConfig(
        model="mlp", dtype=dtype, criterion=criterion, optimizer=optimizer, log_every=1
    )
    run(config, "teacher:1x1", 3, 0)
