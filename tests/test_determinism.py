"""A run is a pure function of (config, task, cycles, seed): serial, threaded, subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import engine
from engine import RunConfig

TASK = "easy-hard-easy"
CYCLES = 30000
CONFIG = RunConfig(log_every=100)


@pytest.fixture(scope="module")
def reference():
    return engine.run(CONFIG, TASK, CYCLES, 3)


def _same(a, b):
    assert a.status == b.status == "ok"
    assert a.traces.dtype == b.traces.dtype and a.events.dtype == b.events.dtype
    assert np.array_equal(a.traces, b.traces)
    assert np.array_equal(a.events, b.events)
    assert a.final_loss == b.final_loss and a.final_neurons == b.final_neurons
    assert a.run_id == b.run_id


def test_same_seed_same_records(reference):
    assert len(reference.traces) == CYCLES // 100
    assert len(reference.events) > 1  # structure changes happen: the comparison is not empty
    _same(reference, engine.run(CONFIG, TASK, CYCLES, 3))


def test_different_seeds_differ(reference):
    other = engine.run(CONFIG, TASK, CYCLES, 4)
    assert not np.array_equal(reference.traces["smoothed_loss"], other.traces["smoothed_loss"])
    assert other.run_id != reference.run_id


def test_chunking_does_not_change_the_run(reference):
    seen = []
    chunked = engine.run(
        CONFIG, TASK, CYCLES, 3, chunk_cycles=777, progress=lambda done, *rest: seen.append(done)
    )
    _same(reference, chunked)
    assert seen[-1] == CYCLES and seen == sorted(seen) and len(seen) == -(-CYCLES // 777)


def test_concurrent_threads_are_bit_identical(reference):
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(engine.run, CONFIG, TASK, CYCLES, 3) for _ in range(2)]
        results = [f.result() for f in futures]
    for result in results:
        _same(reference, result)


def test_subprocess_is_bit_identical(reference, tmp_path):
    code = textwrap.dedent(f"""
        import numpy as np, engine
        r = engine.run(engine.RunConfig(log_every=100), {TASK!r}, {CYCLES}, 3)
        np.save({str(tmp_path / "traces.npy")!r}, r.traces)
        np.save({str(tmp_path / "events.npy")!r}, r.events)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert np.array_equal(np.load(tmp_path / "traces.npy"), reference.traces)
    assert np.array_equal(np.load(tmp_path / "events.npy"), reference.events)


def test_run_id_is_stable():
    a = engine.run_id(RunConfig(l1_strength=0), "easy", 10, 1)
    assert a == engine.run_id(RunConfig(l1_strength=0.0), "easy", 10, 1)
    assert a != engine.run_id(RunConfig(l1_strength=0.0), "easy", 10, 2)
    assert a != engine.run_id(RunConfig(l1_strength=0.0), "hard", 10, 1)


def test_float32_runs():
    config = RunConfig(dtype="float32", log_every=500)
    a = engine.run(config, "easy", 8000, 1, keep_network=True)
    b = engine.run(config, "easy", 8000, 1)
    assert a.status == "ok"
    assert a.network.Whh.dtype == np.float32 and a.network.multipliers.dtype == np.float32
    assert np.all(np.isfinite(a.traces["smoothed_loss"]))
    assert a.final_loss < 12.0  # it learns (starts at 40 ln 4 = 55.45)
    assert np.array_equal(a.traces, b.traces) and np.array_equal(a.events, b.events)
    # float32 and float64 start from the same weights and see the same data
    c = engine.run(config.replace(dtype="float64"), "easy", 8000, 1)
    assert abs(c.final_loss - a.final_loss) < 0.5
    assert a.run_id != c.run_id


def test_divergence_is_reported():
    config = RunConfig(learning_rate=50.0, grad_clip=1e6, init_scale=3.0, hidden_size=20)
    result = engine.run(config, "hard", 2000, 0)
    assert result.status == "diverged"
    assert result.cycles_done < 2000 and "non-finite" in result.message
    assert len(result.traces) >= 1 and result.traces["cycle"][-1] == result.cycles_done
    assert not np.isfinite(result.traces["mean_loss"][-1])
