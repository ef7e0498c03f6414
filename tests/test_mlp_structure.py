"""Sequences of neuron and block insertions and deletions in the feedforward buffers
(hypothesis): after every structure step, every active buffer (parameters, optimizer
memories, ids, births, widths, depth) equals the NumPy twin's, which keeps each unit's
values with it by construction (``np.delete``, appends)."""

from __future__ import annotations

import naive_mlp as T
import numpy as np
from entry import mlp_structure_step
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mlp_bridge import (
    assert_same_network,
    from_engine,
    from_twin,
    to_engine,
    twin_config,
    twin_events,
)

from engine.config import RunConfig
from engine.mlp.state import MLP_EVENT_DTYPE, N_BLOCKS, make_mlp_hyper
from engine.state import Draws

D, S, C = 3, 4, 3


def _config(criterion, keep_below, order):
    values = dict(
        model="mlp",
        criterion=criterion,
        stream_width=S,
        input_dim=D,
        capacity=5,
        max_blocks=4,
        keep_below=keep_below,
        deletion_threshold=0.3,
        add_prob=0.6,
        delete_prob=0.6,
        spontaneous_add_prob=0.3,
        init_scale=0.5,
        deletion_order=order,
    )
    if criterion == "multiplier":
        values["min_multiplier"] = 0.01
    return RunConfig(**values)


@settings(deadline=None, max_examples=60)
@given(
    criterion=st.sampled_from(["multiplier", "outgoing"]),
    keep_below=st.integers(0, 2),
    widths=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**31),
    # per step: which units to push below threshold (strength scaled by 0.05)
    weaken=st.lists(st.lists(st.integers(0, 20), max_size=4), min_size=1, max_size=12),
)
# found by hypothesis: k = 0 and new neurons of equal strength (the later method starts
# each at T_D / 2), whose strengths the twin and the kernels round differently in the last
# bit; the rule spares the last one tried, not the strongest, so that no tie decides
@example(criterion="outgoing", keep_below=0, widths=[1], seed=91148, weaken=[[]] * 7)
def test_structure_sequences_keep_every_buffer(criterion, keep_below, widths, seed, weaken):
    """Random-order deletion (the twin's rule) with k in 0..2: a sequence of structure
    steps, each after weakening some neurons and blocks, keeps every buffer equal to the
    twin's; no layer and no network is ever emptied; ids are never reused."""
    config = _config(criterion, keep_below, "random")
    rng = np.random.default_rng(seed)
    state = T.random_state(rng, criterion, D, S, C, widths, scale=0.6)
    net, scratch = to_engine(state, config, C)
    hyper = make_mlp_hyper(config)
    uniforms, normals = rng.random(4000), rng.standard_normal(4000)
    twin_draws = T.Draws(uniforms, normals)
    draws = Draws(uniforms.copy(), normals.copy(), np.zeros(2, np.int64))
    events = np.zeros(2000, MLP_EVENT_DTYPE)
    fill = np.zeros(2, np.int64)
    twin = twin_config(config)
    born = set(int(i) for ids in state.neuron_ids for i in ids)
    for step, picks in enumerate(weaken):
        units = [(b, j) for b in range(state.n_blocks) for j in range(state.widths[b])]
        for pick in picks:  # weaken a neuron (or, past the neurons, a block)
            if pick < len(units):
                b, j = units[pick]
                if criterion == "multiplier":
                    state.params.m[b][j] *= 0.05
                    net.m[b, j] *= 0.05
                else:
                    state.params.W2[b][:, j] *= 0.05
                    net.W2[b, j] *= 0.05
            elif pick - len(units) < state.n_blocks:
                b = pick - len(units)
                state.params.mu[b] *= 0.05
                net.mu[b] *= 0.05
        before = int(fill[1])
        mlp_structure_step(net, scratch, hyper, draws, step, events, fill)
        state.step = step
        expected = T.structure_step(state, twin, twin_draws)
        assert twin_events(events[before : fill[1]]) == expected
        assert tuple(draws.cursor) == (twin_draws.used_uniforms, twin_draws.used_normals)
        assert_same_network(from_engine(net, criterion), from_twin(state), rtol=1e-15, atol=0)
        assert int(net.counters[N_BLOCKS]) >= 1 and min(state.widths) >= 1
        for event in expected:
            if event.kind == "add":
                assert event.neuron_id not in born
                born.add(event.neuron_id)


@settings(deadline=None, max_examples=40)
@given(
    order=st.sampled_from(["oldest", "youngest", "weakest"]),
    keep_below=st.integers(0, 2),
    seed=st.integers(0, 2**31),
    steps=st.integers(1, 15),
)
def test_ordered_deletion_keeps_the_reserve_by_its_order(order, keep_below, seed, steps):
    """The deletion orders, which the twin does not model (the rule itself is tested on
    the recurrent network, tests/test_variants.py): after every structure step each
    surviving neuron's weights and memories moved with it, no layer is emptied, and ids
    stay unique."""
    config = _config("multiplier", keep_below, order)
    rng = np.random.default_rng(seed)
    state = T.random_state(rng, "multiplier", D, S, C, [3, 2, 4], scale=0.6)
    for b in range(state.n_blocks):
        state.neuron_birth[b] = rng.integers(0, 50, state.widths[b])
        state.params.m[b] = state.params.m[b] * rng.choice([0.05, 1.0], state.widths[b])
    state.block_birth = rng.integers(0, 50, state.n_blocks)
    net, scratch = to_engine(state, config, C)
    hyper = make_mlp_hyper(config)
    draws = Draws(rng.random(4000), rng.standard_normal(4000), np.zeros(2, np.int64))
    events = np.zeros(2000, MLP_EVENT_DTYPE)
    fill = np.zeros(2, np.int64)
    for step in range(steps):
        rows = {
            int(net.neuron_id[b, j]): (net.W1[b, j].copy(), net.mem_W1[b, j].copy())
            for b in range(int(net.counters[N_BLOCKS]))
            for j in range(int(net.width[b]))
        }
        mlp_structure_step(net, scratch, hyper, draws, 100 + step, events, fill)
        for b in range(int(net.counters[N_BLOCKS])):
            assert net.width[b] >= 1
            for j in range(int(net.width[b])):
                neuron = int(net.neuron_id[b, j])
                if neuron in rows:  # a survivor: its row moved with it
                    np.testing.assert_array_equal(net.W1[b, j], rows[neuron][0])
                    np.testing.assert_array_equal(net.mem_W1[b, j], rows[neuron][1])
        ids = [
            int(i)
            for b in range(int(net.counters[N_BLOCKS]))
            for i in net.neuron_id[b, : net.width[b]]
        ]
        assert len(ids) == len(set(ids))
