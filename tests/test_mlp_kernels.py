"""The feedforward kernels against the NumPy twin (tests/naive_mlp.py) and against finite
differences: the minibatch step, the update of every parameter kind, the structure step
(neurons and blocks, with the same draws), to 1e-10."""

from __future__ import annotations

import naive_mlp as T
import numpy as np
import pytest
from mlp_bridge import (
    assert_same_network,
    from_engine,
    from_twin,
    to_engine,
    twin_config,
    twin_events,
)

from engine.config import RunConfig
from engine.mlp import loop as L
from engine.mlp.state import MLP_EVENT_DTYPE, allocate_mlp, init_mlp, make_mlp_hyper
from engine.state import Draws

D, S, C, B = 4, 5, 3, 6


def _config(criterion: str, **changes) -> RunConfig:
    values = dict(
        model="mlp",
        criterion=criterion,
        batch_size=B,
        stream_width=S,
        input_dim=D,
        capacity=6,
        max_blocks=5,
        keep_below=1,
        deletion_threshold=0.3,
        add_prob=0.5,
        delete_prob=0.5,
        spontaneous_add_prob=0.2,
        init_scale=0.3,
    )
    if criterion == "multiplier":
        values["min_multiplier"] = 0.01
    values.update(changes)
    return RunConfig(**values)


def _batch(rng):
    return rng.standard_normal((B, D)), rng.integers(0, C, B)


def _pools(seed):
    rng = np.random.default_rng(seed)
    return rng.random(20_000), rng.standard_normal(20_000)


@pytest.mark.parametrize("criterion", ["multiplier", "outgoing"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_steps_match_the_twin_with_structure(criterion, seed):
    """40 steps of a 3-block network with frequent additions and deletions: every
    parameter, memory, id, birth, event and the loss equal the twin's to 1e-10 (a strong
    weight penalty, so that the later method deletes blocks too)."""
    config = _config(criterion, **({"weight_penalty": 0.02} if criterion == "outgoing" else {}))
    rng = np.random.default_rng(100 + seed)
    state = T.random_state(rng, criterion, D, S, C, [3, 1, 2], scale=0.6)
    net, scratch = to_engine(state, config, C)
    hyper = make_mlp_hyper(config)
    uniforms, normals = _pools(seed)
    twin_draws = T.Draws(uniforms, normals)
    draws = Draws(uniforms.copy(), normals.copy(), np.zeros(2, np.int64))
    events = np.zeros(4096, MLP_EVENT_DTYPE)
    fill = np.zeros(2, np.int64)
    seen_kinds = set()
    twin = twin_config(config)
    for step in range(40):
        x, y = _batch(rng)
        before = int(fill[1])
        cycle = state.step
        loss = L._mlp_step(net, scratch, hyper, x, y, draws, cycle, events, fill, True)
        twin_loss, twin_events_ = T.train_step(state, x, y, twin, twin_draws)
        assert loss == pytest.approx(twin_loss, rel=1e-12), step
        assert twin_events(events[before : fill[1]]) == twin_events_, step
        seen_kinds.update((e.kind, e.level) for e in twin_events_)
        assert tuple(draws.cursor) == (twin_draws.used_uniforms, twin_draws.used_normals)
        assert_same_network(from_engine(net, criterion), from_twin(state))
    # the test exercised every kind of structural change
    every_kind = {("add", "neuron"), ("delete", "neuron"), ("add", "block"), ("delete", "block")}
    assert seen_kinds == every_kind


@pytest.mark.parametrize("criterion", ["multiplier", "outgoing"])
def test_fixed_structure_learns_no_multiplier(criterion):
    """With fixed widths and depth the step is the twin's update of everything except
    the multipliers, which stay 1 (and no draw is taken)."""
    config = _config(criterion, fixed_width=True, fixed_depth=True)
    rng = np.random.default_rng(7)
    state = T.random_state(rng, criterion, D, S, C, [3, 2], scale=0.6)
    if state.params.m is not None:
        state.params.m = [np.ones_like(m) for m in state.params.m]
    state.params.mu = np.ones_like(state.params.mu)
    net, scratch = to_engine(state, config, C)
    hyper = make_mlp_hyper(config)
    draws = Draws(np.zeros(0), np.zeros(0), np.zeros(2, np.int64))
    events = np.zeros(16, MLP_EVENT_DTYPE)
    fill = np.zeros(2, np.int64)
    twin = twin_config(config)
    for _ in range(10):
        x, y = _batch(rng)
        L._mlp_step(net, scratch, hyper, x, y, draws, 0, events, fill, True)

        def copies(arrays):
            return None if arrays is None else [a.copy() for a in arrays]

        saved = (
            copies(state.params.m),
            copies(state.mem.m),
            state.params.mu.copy(),
            state.mem.mu.copy(),
        )
        twin_loss, cache = T.forward(state, x, y)
        grads = T.backward(state, cache, y, l1_strength=0.0)
        penalty = twin.weight_penalty
        T.update(state, grads, twin.replace(weight_penalty=0.0))
        if penalty:  # the L1 step on the outgoing weights, not on the held mu
            for b in range(state.n_blocks):
                state.params.W2[b] = state.params.W2[b] - penalty * np.sign(state.params.W2[b])
            state.params.W_out = state.params.W_out - penalty * np.sign(state.params.W_out)
        state.params.m, state.mem.m, state.params.mu, state.mem.mu = saved
    assert fill[1] == 0 and tuple(draws.cursor) == (0, 0)
    assert np.all(net.mu[:2] == 1.0) and np.all(net.m[0, :3] == 1.0) and np.all(net.m[1, :2] == 1.0)
    assert_same_network(from_engine(net, criterion), from_twin(state))


# -- finite differences -------------------------------------------------------------------
def _loss(net, scratch, hyper, x, y):
    loss, _ = L._mlp_loss(net, scratch, hyper, x, y)
    return loss


@pytest.mark.parametrize("criterion", ["multiplier", "outgoing"])
def test_gradients_match_finite_differences(criterion):
    """Every parameter kind of a 2-block network (block 0's W1, c, W2, m; both blocks'
    mu; W_in, b_in, W_out, b_out): the gradients the step leaves in the scratch equal
    central differences of the loss (step 1e-6, tolerance 1e-7 relative)."""
    # no L1 (its terms are not the loss's) and no L1 step after the update
    penalty = {"multiplier": "l1_strength", "outgoing": "weight_penalty"}[criterion]
    config = _config(criterion, **{penalty: 0.0})
    config = config.replace(learning_rate=1e-300)  # the step leaves the weights as they were
    rng = np.random.default_rng(11)
    state = T.random_state(rng, criterion, D, S, C, [3, 2], scale=0.7)
    net, scratch = to_engine(state, config, C)
    hyper = make_mlp_hyper(config)._replace(learn_width=False, learn_depth=True)
    hyper = hyper._replace(learn_multipliers=criterion == "multiplier")
    x, y = _batch(rng)
    draws = Draws(np.zeros(0), np.zeros(0), np.zeros(2, np.int64))
    events = np.zeros(16, MLP_EVENT_DTYPE)
    L._mlp_step(net, scratch, hyper, x, y, draws, 0, events, np.zeros(2, np.int64), False)
    checks = [
        (net.W_in, scratch.dW_in),
        (net.b_in, scratch.db_in),
        (net.W_out, scratch.dW_out),
        (net.b_out, scratch.db_out),
        (net.W1[0, :3], scratch.dW1[:3]),
        (net.c[0, :3], scratch.dc[:3]),
        (net.W2[0, :3], scratch.dW2[:3]),
        (net.mu[:2], scratch.dmu[:2]),
    ]
    if criterion == "multiplier":
        checks.append((net.m[0, :3], scratch.dm[:3]))
    h = 1e-6
    for weights, analytic in checks:
        analytic = analytic.copy()
        numeric = np.zeros_like(analytic)
        for index in np.ndindex(weights.shape):
            saved = weights[index]
            weights[index] = saved + h
            up = _loss(net, scratch, hyper, x, y)
            weights[index] = saved - h
            down = _loss(net, scratch, hyper, x, y)
            weights[index] = saved
            numeric[index] = (up - down) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


def test_initial_network_matches_the_twin():
    """init_mlp draws the twin's initial_state weights in the same order."""
    config = RunConfig(model="mlp", hidden_size=3, initial_blocks=2, stream_width=S, input_dim=D)
    net, _ = init_mlp(config, D, C, np.random.default_rng(5))
    state = T.initial_state(twin_config(config), np.random.default_rng(5), D, S, C, [3, 3])
    assert_same_network(from_engine(net, "multiplier"), from_twin(state), rtol=0, atol=0)


def test_buffers_are_allocated_once():
    """allocate_mlp's buffers have the capacity's shapes, whatever the active sizes."""
    config = _config("multiplier")
    net, scratch = allocate_mlp(config, D, C)
    assert net.W1.shape == (5, 6, S) and net.W2.shape == (5, 6, S) and net.mu.shape == (5,)
    assert scratch.streams.shape == (6, B, S)
