"""Deletion, addition and the structure step on the fixed-capacity buffers."""

from __future__ import annotations

import numpy as np
import pytest
from entry import add_neuron, compact, draws_from, structure_step
from entry import forward_backward as engine_forward_backward
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import GRAD_OF, delete, forward_backward, load, random_state

import engine
import engine.state
from engine import RunConfig
from engine.state import (
    BIRTH,
    DEATH,
    EVENT_DTYPE,
    N_ACTIVE,
    NEXT_ID,
    active_view,
    allocate_scratch,
    make_hyper,
)

VOCAB = 4
SEQ_LEN = 12


def _kit(capacity, **changes):
    config = RunConfig(capacity=capacity, seq_len=SEQ_LEN, **changes)
    return (
        config,
        make_hyper(config, VOCAB),
        allocate_scratch(capacity, VOCAB, SEQ_LEN, "float64"),
        np.zeros(4 * capacity + 8, EVENT_DTYPE),
        np.zeros(2, np.int64),
    )


def _engine_grads(net, s, n):
    return {
        "Wxh": s.dWxh[:n].copy(),
        "Whh": s.dWhh[:n, :n].copy(),
        "Wiy": s.dWiy[:, :n].copy(),
        "bh": s.dbh[:n].copy(),
        "by": s.dby.copy(),
        "multipliers": s.dmultipliers[:n].copy(),
    }


def _compact_mask(net, keep_active, capacity):
    n = int(net.counters[N_ACTIVE])
    keep = np.ones(capacity, np.bool_)
    keep[:n] = keep_active
    compact(net, keep, np.zeros(capacity, np.int64), n)


def _assert_same(view, model):
    assert set(view) >= set(model)
    for k in model:
        assert view[k].shape == model[k].shape, k
        assert np.array_equal(view[k], model[k]), k


# -- (a) deletion is np.delete, and the compacted network computes as a smaller one ---------
@pytest.mark.parametrize("i", [0, 3, 5])
def test_compact_equals_numpy_delete_and_computes_the_same(i):
    capacity, n = 9, 6
    _, hp, s, _, _ = _kit(capacity, l1_strength=0.0)
    rng = np.random.default_rng(i)
    state = random_state(n, VOCAB, rng)
    state["neuron_id"] = np.array([3, 7, 8, 10, 11, 20], np.int64)
    state["birth_cycle"] = rng.integers(0, 1000, n)
    data = rng.integers(0, VOCAB, SEQ_LEN + 1).astype(np.int32)
    net = load(state, capacity)
    _compact_mask(net, np.arange(n) != i, capacity)
    smaller = delete(state, i)
    _assert_same(active_view(net), smaller)  # bitwise, memories included
    loss = engine_forward_backward(net, s, hp, data, 0)
    ref_loss, ref_grads, _ = forward_backward(smaller, data, 0, SEQ_LEN, True)
    assert abs(loss - ref_loss) <= 1e-12
    for k, g in _engine_grads(net, s, n - 1).items():
        assert np.max(np.abs(g - ref_grads[k])) <= 1e-12, k


def test_deleting_a_disconnected_neuron_changes_nothing():
    """No output weight and no outgoing recurrent weight: the neuron cannot matter."""
    capacity, n, i = 8, 5, 2
    _, hp, s, _, _ = _kit(capacity)
    rng = np.random.default_rng(1)
    state = random_state(n, VOCAB, rng)
    state["Wiy"][:, i] = 0.0
    state["Whh"][np.arange(n) != i, i] = 0.0  # what it sends to the others
    data = rng.integers(0, VOCAB, SEQ_LEN + 1).astype(np.int32)
    net = load(state, capacity)
    loss = engine_forward_backward(net, s, hp, data, 0)
    before = _engine_grads(net, s, n)
    assert np.any(state["Whh"][i] != 0.0)  # it still listens to the others
    _compact_mask(net, np.arange(n) != i, capacity)
    after_loss = engine_forward_backward(net, s, hp, data, 0)
    after = _engine_grads(net, s, n - 1)
    assert abs(after_loss - loss) <= 1e-12
    shrunk = delete(before, i)
    for k in GRAD_OF:
        assert np.max(np.abs(after[k] - shrunk[k])) <= 1e-12, k


# -- (b) random add/delete sequences against np.insert / np.delete -------------------------
def _append(model, view, n):
    """np.insert at index n of the new neuron's values, read from the engine."""
    out = {}
    for k, v in model.items():
        new = view[k]
        base = k[4:] if k.startswith("mem_") else k
        if base == "by":
            out[k] = v
        elif base == "Whh":
            grown = np.insert(v, n, new[:n, n], axis=1)
            out[k] = np.insert(grown, n, new[n, : n + 1], axis=0)
        elif base == "Wiy":
            out[k] = np.insert(v, n, new[:, n], axis=1)
        else:
            out[k] = np.insert(v, n, new[n], axis=0)
    return out


CAP = 7
OPS = st.lists(
    st.one_of(
        st.just(("add", None)),
        st.tuples(st.just("delete"), st.lists(st.booleans(), min_size=CAP, max_size=CAP)),
    ),
    min_size=1,
    max_size=20,
)


@settings(deadline=None, max_examples=50)
@given(n0=st.integers(1, CAP - 1), ops=OPS, seed=st.integers(0, 2**32 - 1))
def test_random_add_delete_sequences_match_numpy(n0, ops, seed):
    config, hp, _, events, fill = _kit(CAP)
    rng = np.random.default_rng(seed)
    model = random_state(n0, VOCAB, rng)
    model["birth_cycle"] = rng.integers(0, 50, n0)
    net = load(model, CAP)
    issued = set(model["neuron_id"].tolist())
    for cycle, (op, mask) in enumerate(ops, start=100):
        n = int(net.counters[N_ACTIVE])
        if op == "add":
            if n >= CAP - 1:
                continue
            next_id = int(net.counters[NEXT_ID])
            add_neuron(net, hp, draws_from(rng, CAP), cycle, events, fill)
            view = active_view(net)
            assert net.counters[N_ACTIVE] == n + 1
            new_id = int(view["neuron_id"][n])
            assert new_id == next_id and new_id not in issued
            issued.add(new_id)
            assert view["birth_cycle"][n] == cycle
            assert view["multipliers"][n] == config.deletion_threshold
            assert view["bh"][n] == 0.0 and view["hidden"][n] == 0.0
            for k in ("mem_Wxh", "mem_bh", "mem_multipliers"):
                assert np.all(view[k][n] == 0.0), k
            assert np.all(view["mem_Whh"][n] == 0.0) and np.all(view["mem_Whh"][:, n] == 0.0)
            assert np.all(view["mem_Wiy"][:, n] == 0.0)
            fresh = np.concatenate(
                [view["Wxh"][n], view["Whh"][n], view["Whh"][:, n], view["Wiy"][:, n]]
            )
            assert np.all(np.isfinite(fresh))  # every new entry written (the rest is NaN)
            assert np.all(np.abs(fresh) < 10 * config.init_scale)
            assert np.all(fresh != 0.0)
            e = events[fill[1] - 1]
            assert (e["cycle"], e["neuron_id"], e["kind"], e["age"]) == (cycle, new_id, BIRTH, 0)
            assert e["strength"] == config.deletion_threshold
            model = _append(model, view, n)
        else:
            keep = np.array(mask[:n], dtype=np.bool_)
            _compact_mask(net, keep, CAP)
            gone = np.flatnonzero(~keep)
            model = {
                k: (
                    v
                    if k in ("by", "mem_by")
                    else np.delete(np.delete(v, gone, 0), gone, 1)
                    if k in ("Whh", "mem_Whh")
                    else np.delete(v, gone, 1)
                    if k in ("Wiy", "mem_Wiy")
                    else np.delete(v, gone, 0)
                )
                for k, v in model.items()
            }
        _assert_same(active_view(net), model)
        ids = model["neuron_id"]
        assert np.all(np.diff(ids) > 0)  # stable order, never reused


def test_network_never_exceeds_capacity_minus_one():
    capacity = 12
    config, hp, s, events, fill = _kit(
        capacity, add_prob=1.0, spontaneous_add_prob=1.0, delete_prob=0.0
    )
    rng = np.random.default_rng(0)
    net = load(random_state(1, VOCAB, rng), capacity)
    sizes = []
    for cycle in range(1, 4 * capacity):
        structure_step(net, s, hp, draws_from(rng, capacity), cycle, events, fill)
        sizes.append(int(net.counters[N_ACTIVE]))
    assert max(sizes) == capacity - 1
    assert sizes[-1] == capacity - 1
    assert fill[1] == capacity - 2  # births only


@pytest.mark.parametrize("seed", [0, 1])
def test_run_with_add_prob_one_stays_below_capacity(seed):
    config = RunConfig(capacity=10, add_prob=1.0, spontaneous_add_prob=0.5, log_every=1)
    result = engine.run(config, "hard", 3000, seed, keep_network=True)
    assert result.status == "ok"
    assert result.traces["neurons"].max() == 9
    assert result.final_neurons <= 9
    assert result.network.counters[N_ACTIVE] == result.final_neurons


def _below_state(rng, n_above, n_below, multipliers_below):
    n = n_above + n_below
    state = random_state(n, VOCAB, rng)
    m = rng.uniform(0.06, 1.0, n)
    below = np.sort(rng.choice(n, n_below, replace=False))
    m[below] = multipliers_below
    state["multipliers"] = m
    state["neuron_id"] = np.arange(n, dtype=np.int64) * 3 + 5
    state["birth_cycle"] = rng.integers(0, 400, n)
    return state, below


# threshold 0.05 and floor 0.025: the floor lifts the last four; |m| = T_D counts as below
BELOW_VALUES = [0.05, 0.049, 0.03, 0.025, 0.04, 0.026, 0.05, 0.031, -0.7, 0.0, 0.01, -0.03]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_deletion_keeps_exactly_k_below_threshold(k):
    capacity, n_above, n_below, cycle = 24, 8, len(BELOW_VALUES), 1000
    config, hp, s, events, fill = _kit(
        capacity, keep_below=k, delete_prob=1.0, add_prob=0.0, spontaneous_add_prob=0.0
    )
    kept_sets = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        state, below = _below_state(rng, n_above, n_below, BELOW_VALUES)
        net = load(state, capacity)
        fill[:] = 0
        structure_step(net, s, hp, draws_from(rng, capacity), cycle, events, fill)
        view = active_view(net)
        assert net.counters[N_ACTIVE] == n_above + k
        is_below = np.abs(view["multipliers"]) <= config.deletion_threshold
        assert is_below.sum() == k
        above_ids = np.delete(state["neuron_id"], below)
        assert set(above_ids) <= set(view["neuron_id"])
        kept_sets.add(tuple(view["neuron_id"][is_below]))
        # the survivors are the original neurons, untouched but for the floor
        dead = np.setdiff1d(state["neuron_id"], view["neuron_id"])
        expected = state
        for i in sorted(np.searchsorted(state["neuron_id"], dead), reverse=True):
            expected = delete(expected, i)
        expected["multipliers"] = np.maximum(expected["multipliers"], config.min_multiplier)
        _assert_same(view, expected)
        # (c) one death event per deleted neuron: id, age, floored multiplier
        ev = events[: fill[1]]
        assert fill[1] == n_below - k
        assert np.all(ev["kind"] == DEATH) and np.all(ev["cycle"] == cycle)
        assert sorted(ev["neuron_id"]) == sorted(dead)
        where = np.searchsorted(state["neuron_id"], ev["neuron_id"])
        assert np.array_equal(ev["age"], cycle - state["birth_cycle"][where])
        assert np.array_equal(
            ev["strength"], np.maximum(state["multipliers"][where], config.min_multiplier)
        )
    if k:  # which below-threshold neurons stay is random (shuffled), not always the first
        assert len(kept_sets) > 1


def test_delete_probability_is_applied_per_candidate():
    capacity, n_below, trials = 40, 30, 200
    _, hp, s, events, fill = _kit(
        capacity, delete_prob=0.25, add_prob=0.0, spontaneous_add_prob=0.0
    )
    rng = np.random.default_rng(3)
    state, _ = _below_state(rng, 2, n_below, 0.03)
    deleted = []
    for _ in range(trials):
        net = load(state, capacity)
        fill[:] = 0
        structure_step(net, s, hp, draws_from(rng, capacity), 1, events, fill)
        deleted.append(2 + n_below - int(net.counters[N_ACTIVE]))
    # 29 candidates (k = 1), each deleted with probability 0.25: mean 7.25, sd 0.17 here
    assert abs(np.mean(deleted) - 0.25 * (n_below - 1)) < 0.7


def test_multiplier_floor():
    capacity = 10
    config, hp, s, events, fill = _kit(
        capacity, delete_prob=0.0, add_prob=0.0, spontaneous_add_prob=0.0
    )
    state = random_state(7, VOCAB, np.random.default_rng(0))
    state["multipliers"] = np.array([-0.5, 0.0, 0.01, 0.0249, 0.025, 0.3, 1.0])
    net = load(state, capacity)
    structure_step(net, s, hp, draws_from(np.random.default_rng(0), capacity), 1, events, fill)
    m = config.min_multiplier
    assert np.array_equal(net.multipliers[:7], [m, m, m, m, m, 0.3, 1.0])
    assert fill[1] == 0 and net.counters[N_ACTIVE] == 7


def test_addition_only_without_reserve():
    capacity = 10
    config, hp, s, events, fill = _kit(
        capacity, add_prob=1.0, delete_prob=0.0, spontaneous_add_prob=0.0
    )
    state = random_state(4, VOCAB, np.random.default_rng(0))
    state["birth_cycle"][:] = 0
    net = load(state, capacity)
    rng = np.random.default_rng(1)
    structure_step(
        net, s, hp, draws_from(rng, capacity), 7, events, fill
    )  # all above threshold: one birth
    assert net.counters[N_ACTIVE] == 5 and fill[1] == 1
    e = events[0]
    assert (e["cycle"], e["neuron_id"], e["kind"], e["age"]) == (7, 4, BIRTH, 0)
    assert e["strength"] == config.deletion_threshold
    for cycle in range(8, 20):  # the newcomer sits at T_D: it is the reserve, no more births
        structure_step(net, s, hp, draws_from(rng, capacity), cycle, events, fill)
    assert net.counters[N_ACTIVE] == 5 and fill[1] == 1


def test_run_events_are_consistent_with_the_network():
    result = engine.run(RunConfig(), "hard", 20000, 4, keep_network=True)
    ev = result.events
    births, deaths = ev[ev["kind"] == BIRTH], ev[ev["kind"] == DEATH]
    assert len(deaths) > 0 and len(births) > 1
    assert len(np.unique(births["neuron_id"])) == len(births)
    assert len(np.unique(deaths["neuron_id"])) == len(deaths)
    born_at = dict(zip(births["neuron_id"].tolist(), births["cycle"].tolist(), strict=True))
    assert births["neuron_id"].tolist() == sorted(born_at)  # ids issued in order
    for d in deaths:
        assert d["age"] == d["cycle"] - born_at[int(d["neuron_id"])]
        assert d["cycle"] >= born_at[int(d["neuron_id"])]
    cfg = result.config
    assert np.all(deaths["strength"] >= cfg.min_multiplier)
    assert np.all(deaths["strength"] <= cfg.deletion_threshold)
    assert np.all(births["strength"][births["cycle"] > 0] == cfg.deletion_threshold)
    alive = sorted(set(born_at) - set(deaths["neuron_id"].tolist()))
    view = active_view(result.network)
    assert view["neuron_id"].tolist() == alive
    assert result.final_neurons == len(alive) == result.traces["neurons"][-1]
    assert np.array_equal(view["birth_cycle"], [born_at[i] for i in alive])
    # the last trace record (cycle 20000) describes the final network
    last = result.traces[-1]
    assert last["cycle"] == 20000
    m = view["multipliers"]
    assert last["strength_sum"] == pytest.approx(np.abs(m).sum(), rel=1e-12)
    assert last["below_threshold"] == np.sum(np.abs(m) <= cfg.deletion_threshold)
    assert np.all(m >= cfg.min_multiplier)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_initial_network(dtype):
    config = RunConfig(hidden_size=60, capacity=80, dtype=dtype)
    net = engine.state.init_network(config, VOCAB, np.random.default_rng(0))
    view = active_view(net)
    assert net.counters[N_ACTIVE] == 60 and net.counters[NEXT_ID] == 60
    for k in ("Wxh", "Whh", "Wiy"):
        assert view[k].dtype == np.dtype(dtype)
        assert abs(view[k].std() - config.init_scale) < 0.05 * config.init_scale, k
        assert abs(view[k].mean()) < 0.1 * config.init_scale, k
    for k in (
        "bh",
        "by",
        "hidden",
        "mem_Wxh",
        "mem_Whh",
        "mem_Wiy",
        "mem_bh",
        "mem_by",
        "mem_multipliers",
    ):
        assert np.all(view[k] == 0.0), k
    assert np.all(view["multipliers"] == 1.0)
    assert np.array_equal(view["neuron_id"], np.arange(60))
    # both dtypes start from the same draws
    other = engine.state.init_network(
        config.replace(dtype="float64"), VOCAB, np.random.default_rng(0)
    )
    assert np.array_equal(view["Whh"], other.Whh[:60, :60].astype(dtype))
