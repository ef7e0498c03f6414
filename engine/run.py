"""The driver of one run: validate, allocate, seed, call the kernels, assemble records.

``run`` is the public entry point used by ``diffrnn run``, the scheduler and the tests.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import kernels as K
from .config import ConfigError, RunConfig
from .jit import build_info, check_target
from .state import (
    BIRTH,
    CYCLE,
    EVENT_DTYPE,
    N_ACTIVE,
    PHASE,
    SMOOTHED,
    TRACE_DTYPE,
    Network,
    allocate_draws,
    allocate_scratch,
    init_network,
    initial_strengths,
    make_hyper,
    refill_draws,
)
from .tasks import TaskData, build_task_data, parse_task

# one generator per purpose, in this spawn order: initial weights, generated data, the
# structure step's uniform draws, new neurons' weights
STREAMS = ("init", "data", "structure", "new_weights")
MAX_CYCLES = 10**9
EVENT_BUFFER = 4096


@dataclass
class RunResult:
    """What one run produced. ``traces`` and ``events`` are arrays of the record dtypes."""

    run_id: str
    config: RunConfig
    task: str
    seed: int
    cycles: int  # requested
    cycles_done: int
    status: str  # "ok" or "diverged"
    message: str
    final_loss: float
    final_neurons: int
    entropy_floor: float | None
    wall_seconds: float
    train_seconds: float
    traces: np.ndarray = field(repr=False)
    events: np.ndarray = field(repr=False)
    network: Network | None = field(default=None, repr=False)
    # the build that ran it (engine.jit.build_info): compile target and versions
    build: dict[str, str] = field(default_factory=dict, repr=False)
    # the feedforward model's outcome (None for the recurrent model): blocks and the
    # width of each at the end, the digits test set's loss and accuracy, each phase's floor
    final_blocks: int | None = None
    final_widths: tuple[int, ...] | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    phase_floors: tuple[float | None, ...] | None = None

    @property
    def cycles_per_second(self) -> float:
        return self.cycles_done / self.train_seconds if self.train_seconds > 0 else float("nan")

    def summary(self) -> dict:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "final_loss": self.final_loss,
            "final_neurons": self.final_neurons,
            "cycles": self.cycles_done,
            "wall_seconds": round(self.wall_seconds, 3),
            "cycles_per_second": round(self.cycles_per_second, 1),
            "entropy_floor": self.entropy_floor,
            "task": self.task,
            "seed": self.seed,
            "message": self.message,
            "compile_target": self.build.get("compile_target"),
            **(
                {}
                if self.final_blocks is None
                else {
                    "final_blocks": self.final_blocks,
                    "final_widths": list(self.final_widths or ()),
                    "test_loss": self.test_loss,
                    "test_accuracy": self.test_accuracy,
                }
            ),
        }


def run_id(config: RunConfig, task: str, cycles: int, seed: int) -> str:
    """Stable id of a run: a hash of everything that determines its result (fields added
    since engine 0.2.0 count only when they differ from that version's behaviour, so that
    earlier ids stay valid: ``RunConfig.identity``)."""
    return run_ids(config, task, cycles, [seed])[0]


def run_ids(config: RunConfig, task: str, cycles: int, seeds: Sequence[int]) -> list[str]:
    """``run_id`` of each seed: the hash of ``json.dumps({"config": config.identity(),
    "task": task, "cycles": cycles, "seed": seed}, sort_keys=True)``, with the config turned
    into JSON once (a study file of thousands of runs spent most of its expansion there)."""
    # that text with sorted keys is {"config": ..., "cycles": ..., "seed": ..., "task": ...}
    head = json.dumps({"config": config.identity(), "cycles": cycles}, sort_keys=True)[:-1]
    tail = ', "task": ' + json.dumps(task) + "}"
    return [
        hashlib.sha256(f'{head}, "seed": {json.dumps(seed)}{tail}'.encode()).hexdigest()[:16]
        for seed in seeds
    ]


def generators(seed: int, streams: Sequence[str] = STREAMS) -> dict[str, np.random.Generator]:
    """One independent generator per purpose, all derived from the run's seed, spawned in
    the order of ``streams`` (a longer list keeps the first ones' generators)."""
    children = np.random.SeedSequence(seed).spawn(len(streams))
    return {
        name: np.random.Generator(np.random.PCG64(child)) for name, child in zip(streams, children)
    }


def check_run_args(task: str, cycles: int, seed: int, model: str = "rnn") -> None:
    if isinstance(cycles, bool) or not isinstance(cycles, int) or not 1 <= cycles <= MAX_CYCLES:
        raise ConfigError(f"cycles = {cycles!r} is out of range: allowed [1, {MAX_CYCLES}]")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed = {seed!r} is out of range: allowed [0, 2**63)")
    parse_model_task(task, cycles, model)


def parse_model_task(task: str, cycles: int, model: str = "rnn") -> tuple:
    """The phases of ``task`` for ``model``: ``engine.tasks.parse_task`` (rnn) or
    ``engine.fftasks.parse_ff_task`` (mlp); a task of the other model is refused in one
    line that says which model it needs."""
    from .fftasks import parse_ff_task

    if model == "mlp":
        try:
            return parse_ff_task(task, cycles)
        except ConfigError:
            if _is_rnn_task(task):
                raise ConfigError(
                    f"task = {task!r} is a task of the recurrent model: model = 'mlp' takes "
                    "teacher:WxD, digits or a schedule of them"
                ) from None
            raise
    try:
        return parse_task(task, cycles)
    except ConfigError:
        if isinstance(task, str) and any(
            part.strip().startswith(("teacher:", "digits")) for part in task.split(",")
        ):
            raise ConfigError(
                f"task = {task!r} is a task of the feedforward model: set model = 'mlp' "
                "(--set model=mlp)"
            ) from None
        raise


def _is_rnn_task(task: object) -> bool:
    try:
        parse_task(task, 0)  # type: ignore[arg-type]
    except ConfigError:
        return False
    return True


def _task_tuple(task_data: TaskData):
    return (
        task_data.data,
        task_data.stream_offset,
        task_data.stream_length,
        task_data.phase_start,
        task_data.phase_stream,
    )


ProgressFn = Callable[[int, int, int, float, float], None]


def run(
    config: RunConfig,
    task: str = "hard",
    cycles: int = 300_000,
    seed: int = 0,
    *,
    progress: ProgressFn | None = None,
    chunk_cycles: int = 5000,
    keep_network: bool = False,
) -> RunResult:
    """Train one network and return its records.

    ``progress(cycles_done, cycles, N, smoothed_loss, train_seconds)`` is called between
    kernel calls (every ``chunk_cycles`` cycles). Bad arguments raise ``ConfigError``
    before any work starts.
    """
    started = time.perf_counter()
    check_target()
    if not isinstance(config, RunConfig):
        raise ConfigError(f"config must be a RunConfig, got {type(config).__name__}")
    check_run_args(task, cycles, seed, config.model)
    if config.model == "mlp":
        from .mlp.run import run_mlp

        phases = parse_model_task(task, cycles, "mlp")
        return run_mlp(
            config,
            task,
            cycles,
            seed,
            phases,
            progress=progress,
            chunk_cycles=chunk_cycles,
            keep_network=keep_network,
        )
    phases = parse_task(task, cycles)
    rngs = generators(seed)
    task_data = build_task_data(phases, config, cycles, rngs["data"])
    vocab = task_data.vocab_size

    net = init_network(config, vocab, rngs["init"])
    scratch = allocate_scratch(config.capacity, vocab, config.seq_len, config.dtype)
    hyper = make_hyper(config, vocab)
    net.accum[SMOOTHED] = config.seq_len * math.log(vocab)

    chunk = max(1, int(chunk_cycles))
    trace_buffer = np.zeros(chunk // config.log_every + 2, dtype=TRACE_DTYPE)
    event_buffer = np.zeros(EVENT_BUFFER + config.capacity, dtype=EVENT_DTYPE)
    fill = np.zeros(2, dtype=np.int64)
    traces, events = [], []
    # the initial neurons are born at cycle 0
    first = np.zeros(config.hidden_size, dtype=EVENT_DTYPE)
    first["neuron_id"] = np.arange(config.hidden_size)
    first["kind"] = BIRTH
    first["strength"] = initial_strengths(net, config)
    events.append(first)

    draws = allocate_draws(config.capacity, vocab)
    if config.variable:
        refill_draws(draws, rngs["structure"], rngs["new_weights"])
    task_tuple = _task_tuple(task_data)
    status = K.FINISHED
    train_seconds = 0.0
    while net.counters[CYCLE] < cycles:
        end = min(int(net.counters[CYCLE]) + chunk, cycles)
        fill[:] = 0
        t0 = time.perf_counter()
        while True:
            status = K._train(
                net,
                scratch,
                hyper,
                task_tuple,
                draws,
                end - int(net.counters[CYCLE]),
                trace_buffer,
                event_buffer,
                fill,
            )
            if status != K.NEED_DRAWS:
                break
            refill_draws(draws, rngs["structure"], rngs["new_weights"])
        train_seconds += time.perf_counter() - t0
        traces.append(trace_buffer[: fill[0]].copy())
        events.append(event_buffer[: fill[1]].copy())
        if progress is not None:
            progress(
                int(net.counters[CYCLE]),
                cycles,
                int(net.counters[N_ACTIVE]),
                float(net.accum[SMOOTHED]),
                train_seconds,
            )
        if status == K.DIVERGED:
            break

    trace_array = np.concatenate(traces) if traces else np.zeros(0, TRACE_DTYPE)
    diverged = status == K.DIVERGED
    done = int(net.counters[CYCLE])
    # the final phase's floor is the one the final loss should be compared with
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
        final_neurons=int(net.counters[N_ACTIVE]),
        entropy_floor=task_data.phase_floor[int(net.counters[PHASE])],
        wall_seconds=time.perf_counter() - started,
        train_seconds=train_seconds,
        traces=trace_array,
        events=np.concatenate(events),
        network=net if keep_network else None,
        build=build_info(),
    )


def kernel_variant(config: RunConfig) -> tuple[str, ...]:
    """What selects the compiled run loop: (dtype, criterion, optimizer), and "mlp" last
    for the feedforward model. Runs of one variant share their machine code; each variant
    is compiled (and cached) on its own."""
    variant = (config.dtype, config.criterion, config.optimizer)
    return variant + ("mlp",) if config.model == "mlp" else variant


def warm_up(variants: tuple = ("float64",)) -> float:
    """Compile (or load from the cache) every kernel the runs of ``variants`` use: each a
    dtype name (the first method) or a ``kernel_variant`` tuple. Returns seconds taken.

    Call it once in the parent before fanning out, so that workers only read the cache.
    """
    t0 = time.perf_counter()
    for variant in variants:
        if isinstance(variant, str):
            variant = (variant, "multiplier", "adagrad")
        dtype, criterion, optimizer = variant[:3]
        if variant[3:] == ("mlp",):
            from .mlp.run import warm_up_mlp

            warm_up_mlp(dtype, criterion, optimizer)
            continue
        config = RunConfig(dtype=dtype, criterion=criterion, optimizer=optimizer, log_every=1)
        run(config, "easy-hard-easy", 3, 0)
    return time.perf_counter() - t0
