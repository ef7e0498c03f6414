"""Central finite differences against ``engine.kernels._forward_backward`` for every parameter."""

from __future__ import annotations

import numpy as np
import pytest
from entry import forward_backward as _forward_backward
from naive import GRAD_OF, load, random_state

from engine import RunConfig
from engine.state import allocate_scratch, make_hyper

VOCAB = 4
N = 5
SEQ_LEN = 7
CAPACITY = 8


def _setup(mode, seed, l1=0.0, vocab=VOCAB):
    rng = np.random.default_rng(seed)
    config = RunConfig(mode=mode, capacity=CAPACITY, seq_len=SEQ_LEN, l1_strength=l1)
    state = random_state(N, vocab, rng, variable=mode == "variable", scale=0.3)
    if mode == "variable":  # both signs, so that sign(m) matters below
        state["multipliers"] *= rng.choice([-1.0, 1.0], N)
    net = load(state, CAPACITY)
    s = allocate_scratch(CAPACITY, vocab, SEQ_LEN, "float64")
    hp = make_hyper(config, vocab)
    data = rng.integers(0, vocab, SEQ_LEN + 4).astype(np.int32)
    return net, s, hp, data


def _active(name, buf, n):
    if name == "Whh":
        return buf[:n, :n]
    if name == "Wxh":
        return buf[:n]
    if name == "Wiy":
        return buf[:, :n]
    if name == "by":
        return buf
    return buf[:n]


@pytest.mark.parametrize(
    ("mode", "start", "vocab"),
    [
        ("variable", 0, 4),
        ("variable", 3, 4),
        ("fixed", 0, 4),
        ("fixed", 3, 4),
        # vocabularies whose size is not a multiple of the unrolling and vector widths
        ("variable", 1, 3),
        ("variable", 2, 5),
        ("fixed", 1, 7),
        ("variable", 0, 29),
    ],
)
def test_gradients_match_finite_differences(mode, start, vocab):
    net, s, hp, data = _setup(mode, seed=11 + start + 100 * vocab, vocab=vocab)
    loss = _forward_backward(net, s, hp, data, start)
    assert np.isfinite(loss) and loss > 0
    names = list(GRAD_OF) if mode == "variable" else [k for k in GRAD_OF if k != "multipliers"]
    # copied now: every loss evaluation below overwrites the gradient buffers
    grads = {k: _active(k, getattr(s, GRAD_OF[k]), N).copy() for k in names}
    eps = 1e-6
    for name in names:
        analytic = grads[name]
        params = _active(name, getattr(net, name), N)  # a view: perturbed in place
        numeric = np.zeros_like(analytic)
        for idx in np.ndindex(params.shape):
            saved = params[idx]
            params[idx] = saved + eps
            up = _forward_backward(net, s, hp, data, start)
            params[idx] = saved - eps
            down = _forward_backward(net, s, hp, data, start)
            params[idx] = saved
            numeric[idx] = (up - down) / (2 * eps)
        # the gradients are O(1): central differences are good to ~1e-8 here
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7, err_msg=name)
        assert np.abs(analytic).max() > 1e-3, f"{name}: gradient suspiciously zero"
    # restoring every entry gives back the same loss and gradients, bit for bit
    assert _forward_backward(net, s, hp, data, start) == loss


def test_fixed_mode_has_no_multiplier_gradient():
    net, s, hp, data = _setup("fixed", seed=5)
    s.dmultipliers[:] = 123.0
    _forward_backward(net, s, hp, data, 0)
    assert np.all(s.dmultipliers[:N] == 0.0)


def test_l1_term_is_added_at_every_step():
    a = 0.01
    net, s, hp, data = _setup("variable", seed=3)
    net.multipliers[1] = 0.0  # sign(0) = 0: no L1 push on an exactly zero multiplier
    loss0 = _forward_backward(net, s, hp, data, 1)
    plain = {k: _active(k, getattr(s, v), N).copy() for k, v in GRAD_OF.items()}
    hp_l1 = hp._replace(l1_strength=np.float64(a))
    loss1 = _forward_backward(net, s, hp_l1, data, 1)
    assert loss1 == loss0  # the L1 term enters the gradient only, not the reported loss
    m = net.multipliers[:N]
    np.testing.assert_allclose(
        s.dmultipliers[:N] - plain["multipliers"], SEQ_LEN * a * np.sign(m), rtol=0, atol=1e-13
    )
    for k in GRAD_OF:
        if k != "multipliers":
            assert np.array_equal(_active(k, getattr(s, GRAD_OF[k]), N), plain[k]), k
