"""``_one_cycle`` (no structure step) against the NumPy twin in ``naive.py``; ``_tanh``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from entry import draws_from, tanh_of
from naive import PARAMS, cast, cycle, forward_backward, load, random_state

from engine import RunConfig
from engine.kernels import _one_cycle
from engine.state import EVENT_DTYPE, N_ACTIVE, active_view, allocate_scratch, make_hyper

VOCAB = 4
CAPACITY = 9
COMPARED = PARAMS + tuple("mem_" + k for k in PARAMS) + ("hidden",)


def _run_cycles(config, state, starts, data, dtype):
    """Engine cycles from ``state``; yields (loss, active view) after each."""
    vocab = state["by"].size
    net = load(cast(state, dtype), config.capacity, dtype)
    s = allocate_scratch(config.capacity, vocab, config.seq_len, dtype)
    hp = make_hyper(config, vocab)
    draws = draws_from(np.random.default_rng(0), config.capacity)
    events = np.zeros(8, EVENT_DTYPE)
    fill = np.zeros(2, np.int64)
    n = state["bh"].size
    for c, start in enumerate(starts):
        loss = _one_cycle(net, s, hp, data, start, draws, c + 1, events, fill, False)
        assert net.counters[N_ACTIVE] == n
        yield loss, active_view(net), net
    assert fill[1] == 0  # no structure step, no event


def _naive_cycles(config, state, starts, data):
    variable = config.mode == "variable"
    for start in starts:
        loss, state = cycle(
            state,
            data,
            start,
            config.seq_len,
            variable,
            l1=config.l1_strength if variable else 0.0,
            lr=config.learning_rate,
            clip=config.grad_clip,
        )
        yield loss, state


def _case(mode, n, clip, seed, vocab=VOCAB):
    rng = np.random.default_rng(seed)
    config = RunConfig(mode=mode, capacity=CAPACITY, grad_clip=clip, l1_strength=1e-3)
    state = random_state(n, vocab, rng, variable=mode == "variable", scale=0.3)
    data = rng.integers(0, vocab, 5 * config.seq_len).astype(np.int32)
    starts = [0, 41, 17]
    return config, state, data, starts


@pytest.mark.parametrize("clip", [5.0, 0.5])
@pytest.mark.parametrize(
    ("mode", "n"),
    [
        ("variable", 1),
        ("variable", 4),
        ("variable", CAPACITY - 1),
        ("fixed", 1),
        ("fixed", 4),
        ("fixed", CAPACITY),
    ],
)
def test_one_cycle_matches_naive_float64(mode, n, clip):
    config, state, data, starts = _case(mode, n, clip, seed=100 * n + int(clip * 10))
    engine = _run_cycles(config, state, starts, data, "float64")
    naive = _naive_cycles(config, state, starts, data)
    for (loss, view, net), (ref_loss, ref) in zip(engine, naive, strict=True):
        assert abs(loss - ref_loss) <= 1e-10
        for k in COMPARED:
            assert view[k].shape == ref[k].shape, k
            diff = np.max(np.abs(view[k] - ref[k]))
            assert diff <= 1e-10, f"{k}: max abs diff {diff:.3g}"
        if mode == "fixed":  # fixed mode: multipliers stay 1, their memory is untouched
            assert np.all(view["multipliers"] == 1.0)
            assert np.array_equal(view["mem_multipliers"], state["mem_multipliers"])
        # nothing past N is read or written: the NaN filling is intact
        assert np.all(np.isnan(net.Whh[n:])) and np.all(np.isnan(net.Whh[:, n:]))
        assert np.all(np.isnan(net.Wxh[n:])) and np.all(np.isnan(net.Wiy[:, n:]))
        assert np.all(np.isnan(net.bh[n:])) and np.all(np.isnan(net.hidden[n:]))
        assert np.all(np.isnan(net.mem_Whh[n:])) and np.all(np.isnan(net.multipliers[n:]))
        assert np.array_equal(view["neuron_id"], state["neuron_id"])


# the vocabulary of a real text: this project's README (letters, digits, punctuation)
README_VOCAB = len(set((Path(__file__).resolve().parents[1] / "README.md").read_text()))


@pytest.mark.parametrize("vocab", [3, 5, 7, README_VOCAB])
@pytest.mark.parametrize(("mode", "n"), [("variable", 5), ("fixed", CAPACITY), ("variable", 1)])
def test_one_cycle_matches_naive_at_other_vocabularies(mode, n, vocab):
    """Vocabularies of any size: the unrolled and vectorised loops over outputs have
    remainders that a vocabulary of 4 never takes."""
    config, state, data, starts = _case(mode, n, 5.0, seed=31 * vocab + n, vocab=vocab)
    engine = _run_cycles(config, state, starts, data, "float64")
    naive = _naive_cycles(config, state, starts, data)
    for (loss, view, _), (ref_loss, ref) in zip(engine, naive, strict=True):
        assert abs(loss - ref_loss) <= 1e-10 * max(1.0, abs(ref_loss))
        for k in COMPARED:
            diff = np.max(np.abs(view[k] - ref[k]))
            assert diff <= 1e-10, f"{k}: max abs diff {diff:.3g}"


def test_small_clip_case_really_clips():
    """The clip=0.5 cases above exercise clipping (some gradient is beyond the clip)."""
    config, state, data, starts = _case("variable", 4, 0.5, seed=405)
    _, grads, _ = forward_backward(state, data, 0, config.seq_len, True, config.l1_strength)
    assert max(np.abs(g).max() for g in grads.values()) > 0.5


@pytest.mark.parametrize(("mode", "n"), [("variable", 1), ("variable", 5), ("fixed", 6)])
def test_one_cycle_float32_close_to_float64_naive(mode, n):
    config, state, data, starts = _case(mode, n, 5.0, seed=7 + n)
    config = config.replace(dtype="float32")
    state32 = cast(state, np.float32)  # both sides start from the same float32 values
    engine = _run_cycles(config, state32, starts, data, "float32")
    naive = _naive_cycles(config, cast(state32, np.float64), starts, data)
    for (loss, view, _), (ref_loss, ref) in zip(engine, naive, strict=True):
        assert abs(loss - ref_loss) <= 1e-4 * abs(ref_loss)
        for k in COMPARED:
            assert view[k].dtype == np.float32, k
            scale = max(1.0, np.max(np.abs(ref[k])))
            diff = np.max(np.abs(view[k] - ref[k]))
            assert diff <= 1e-4 * scale, f"{k}: max abs diff {diff:.3g}"


def _tanh(x):
    values = np.atleast_1d(np.asarray(x, dtype=np.float64))
    out = np.empty_like(values)
    tanh_of(values, out)
    return out if np.ndim(x) else out[0]


def test_tanh_within_4_ulp_of_numpy():
    xs = np.concatenate(
        [
            np.linspace(-25.0, 25.0, 40001),
            np.geomspace(1e-300, 40.0, 4000),
            -np.geomspace(1e-300, 40.0, 4000),
            [
                0.0,
                -0.0,
                5e-324,
                -5e-324,
                2.2e-308,
                1e-17,
                1e-9,
                0.34657359,
                0.5493061443,
                18.0,
                19.06,
                20.0,
                20.5,
                700.0,
                1e300,
                -1e300,
                np.finfo(float).max,
            ],
        ]
    )
    got = _tanh(xs)
    ref = np.tanh(xs)
    ulp = np.spacing(np.abs(ref))
    err = np.abs(got - ref) / ulp
    worst = int(np.argmax(err))
    assert err.max() <= 4.0, f"tanh({xs[worst]!r}) = {got[worst]!r}, numpy {ref[worst]!r}"
    assert np.all(np.abs(got) <= 1.0)
    assert np.array_equal(np.sign(got), np.sign(ref))


def test_tanh_special_values():
    assert _tanh(0.0) == 0.0
    assert _tanh(-0.0) == 0.0
    assert _tanh(np.inf) == 1.0
    assert _tanh(-np.inf) == -1.0
    assert np.isnan(_tanh(np.nan))
    assert np.isnan(_tanh(-np.nan))
    assert _tanh(1e-300) == 1e-300
    assert _tanh(-5e-324) == -5e-324
    # odd function, bit for bit
    for x in (1e-5, 0.1, 0.7, 3.3, 12.0):
        assert _tanh(-x) == -_tanh(x)
