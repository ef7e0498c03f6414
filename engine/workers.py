"""The worker side of a study: what a worker process runs (``run_batch``: its runs one after
the other, an exception stored as a run with status "error"), and how the workers are
started and stopped.

Kernels are compiled (or loaded from Numba's cache) in the study process, once: loky
workers start at the same time and import the engine, but wait at a ``_Gate`` for the
study process to have the kernels in the cache before they load them, so workers only
read the cache (``_WorkerStart``). On a Dask cluster, one worker per host compiles
(``_warm_up_cluster``).

Apart from ``engine.scheduler`` (the study process's side: plan, fan-out, store), which
re-exports everything here; a worker unpickling ``run_batch`` imports this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import ConfigError
from .mlp.state import MLP_EVENT_DTYPE, MLP_TRACE_DTYPE
from .run import RunResult, run, warm_up
from .state import EVENT_DTYPE, TRACE_DTYPE
from .studyfile import RunSpec
from .tasks import entropy_floor, parse_task


# -- in a worker -------------------------------------------------------------------------
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
    floor = None
    if spec.config.model == "rnn":  # a feedforward floor is estimated by the run itself
        try:
            phases = parse_task(spec.task, spec.cycles)
            floor = entropy_floor(phases[-1].task, spec.config)
        except ConfigError:
            pass
    mlp = spec.config.model == "mlp"
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
        traces=np.zeros(0, MLP_TRACE_DTYPE if mlp else TRACE_DTYPE),
        events=np.zeros(0, MLP_EVENT_DTYPE if mlp else EVENT_DTYPE),
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


# -- starting and stopping loky workers --------------------------------------------------
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


# -- Dask clusters -----------------------------------------------------------------------
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
