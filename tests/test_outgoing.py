"""The later method (``criterion="outgoing"``, REFERENCE-LATER.md) against its NumPy twin.

What ``tests/test_kernels.py``, ``test_gradients.py`` and ``test_structure.py`` check for the
first method, here for the later one: one cycle (RMSProp with a clipped step, the L1 step on
Why and Whh) against ``naive.later_cycle``; hundreds of cycles with additions and deletions
against ``naive.outgoing_structure_step`` from the same pre-drawn random numbers; finite
differences; hypothesis sequences of add/delete; the strengths in traces and events; bad
input; and one short run that must grow on the hard task and shrink after it.
"""

from __future__ import annotations

import numpy as np
import pytest
from entry import (
    add_neuron,
    after_update,
    compact,
    draws_from,
    draws_pool,
    record_trace,
    strengths,
    structure_step,
)
from entry import forward_backward as engine_forward_backward
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import (
    GRAD_OF,
    LATER_PARAMS,
    NEW_MEMORY,
    Stream,
    add_outgoing_neuron,
    birth_strength,
    delete,
    event_tuples,
    forward_backward,
    later_cycle,
    load,
    outgoing_strengths,
    outgoing_structure_step,
    random_state,
)

import engine
from engine import ConfigError, RunConfig
from engine.cli import main
from engine.kernels import _one_cycle
from engine.run import generators
from engine.state import (
    BIRTH,
    DEATH,
    EVENT_DTYPE,
    N_ACTIVE,
    NEXT_ID,
    TRACE_DTYPE,
    active_view,
    allocate_scratch,
    init_network,
    initial_strengths,
    make_hyper,
)

# every array the later method writes, and the multipliers it must leave alone
COMPARED = (
    LATER_PARAMS
    + tuple("mem_" + k for k in LATER_PARAMS)
    + ("hidden", "multipliers", "mem_multipliers")
)
# float64 implementations of the same arithmetic in another order (NumPy's pairwise sums
# and libm's tanh/exp against the engine's unrolled loops, fastmath and own tanh) differ by
# rounding only: measured here at most 3e-14 on a loss of about 50 and 2e-14 on weights
# and memories, after one cycle as after 300. 1e-10 leaves a margin of 10^4 for other CPUs
# and is far below any real mistake (the smallest terms of the update, the L1 step and
# the clipped steps, are 1e-3 here).
TOL = 1e-10


def _outgoing(**changes):
    return RunConfig(criterion="outgoing", **changes)


def _max_diff(a, b):
    return float(np.max(np.abs(a - b), initial=0.0))


def _assert_views_close(view, ref, keys, tol=TOL, where=""):
    for k in keys:
        assert view[k].shape == ref[k].shape, f"{where}{k}: {view[k].shape} != {ref[k].shape}"
        diff = _max_diff(view[k], ref[k])
        assert diff <= tol, f"{where}{k}: max abs diff {diff:.3g}"


def _assert_events_close(engine_events, twin_events, where=""):
    assert len(engine_events) == len(twin_events), f"{where}{engine_events} != {twin_events}"
    for got, want in zip(engine_events, twin_events):
        assert got[:4] == tuple(int(x) for x in want[:4]), f"{where}{got} != {want}"
        assert abs(got[4] - want[4]) <= TOL, f"{where}strength {got[4]!r} != {want[4]!r}"


# -- one cycle, no structure step ------------------------------------------------------------
CAPACITY = 29  # room for N = 27 in variable mode, and NaN past N in every case


def _one_cycle_case(mode, n, vocab, step_clip, grad_clip, seed):
    rng = np.random.default_rng(seed)
    config = _outgoing(
        mode=mode,
        capacity=CAPACITY,
        hidden_size=n,
        step_clip=step_clip,
        grad_clip=grad_clip,
        weight_penalty=1e-3,  # ten times the default: its effect is plainly above TOL
    )
    # weights of 0.3 give gradients of order 1 (so that both clips bite); memories in
    # [0.1, 2] as after some training; multipliers 1.0, as the later method keeps them.
    # Whh at most 0.8 / sqrt(N): a spectral radius below 1. At 0.3 and N = 27 (radius 1.6)
    # the 40 steps are chaotic and amplify the two sides' rounding differences from one
    # cycle to the next, up to 2e-11 on the hidden state by the third cycle (measured),
    # which would test the machine's rounding instead of the arithmetic.
    state = random_state(n, vocab, rng, variable=False, scale=0.3)
    state["Whh"] *= min(1.0, 0.8 / (0.3 * np.sqrt(n)))
    # and a quarter of the memories at 0, as Whh's, Why's and by's at the start: there
    # the step is about -lr sign(g) / 0.1, and eps (1e-8) matters for small gradients
    for k in LATER_PARAMS:
        mem = state["mem_" + k]
        mem[rng.random(mem.shape) < 0.25] = 0.0
    data = rng.integers(0, vocab, 5 * config.seq_len).astype(np.int32)
    return config, state, data, [0, 41, 17]


@pytest.mark.parametrize("grad_clip", [0.0, 0.5])
@pytest.mark.parametrize("step_clip", [0.0, 0.002])
@pytest.mark.parametrize("vocab", [4, 5])
@pytest.mark.parametrize("n", [1, 5, 27])
@pytest.mark.parametrize("mode", ["variable", "fixed"])
def test_one_cycle_matches_the_twin(mode, n, vocab, step_clip, grad_clip):
    """Three cycles of ``_one_cycle`` (no structure step) against ``naive.later_cycle``,
    every updated array, the loss; the multipliers and whatever lies past N untouched."""
    seed = 1000 * n + 100 * vocab + int(1000 * step_clip) + int(10 * grad_clip)
    config, state, data, starts = _one_cycle_case(mode, n, vocab, step_clip, grad_clip, seed)
    net = load(state, CAPACITY)
    s = allocate_scratch(CAPACITY, vocab, config.seq_len, "float64")
    hp = make_hyper(config, vocab)
    assert not hp.learn_multipliers  # no multiplier gradient under outgoing, variable or not
    draws = draws_from(np.random.default_rng(0), CAPACITY, vocab)
    events, fill = np.zeros(8, EVENT_DTYPE), np.zeros(2, np.int64)
    ref = state
    for c, start in enumerate(starts, start=1):
        loss = _one_cycle(net, s, hp, data, start, draws, c, events, fill, False)
        ref_loss, ref = later_cycle(ref, data, start, config)
        assert abs(loss - ref_loss) <= TOL * max(1.0, abs(ref_loss))
        view = active_view(net)
        _assert_views_close(view, ref, COMPARED, where=f"cycle {c}: ")
        assert np.all(view["multipliers"] == 1.0)
        assert np.array_equal(view["mem_multipliers"], state["mem_multipliers"])
        assert np.array_equal(view["neuron_id"], state["neuron_id"])
    assert net.counters[N_ACTIVE] == n and fill[1] == 0 and draws.cursor.tolist() == [0, 0]
    # nothing past N is read or written: the NaN filling is intact
    for buf in (net.Whh[n:], net.Whh[:, n:], net.Wxh[n:], net.Wiy[:, n:], net.mem_Whh[n:]):
        assert np.all(np.isnan(buf))
    assert np.all(np.isnan(net.bh[n:])) and np.all(np.isnan(net.hidden[n:]))
    assert np.all(np.isnan(net.multipliers[n:])) and np.all(np.isnan(net.mem_Wiy[:, n:]))


def test_the_small_clips_really_clip():
    """The clipped cases above exercise both clips: in the first cycle some gradients lie
    beyond grad_clip = 0.5 and some RMSProp steps beyond step_clip = 0.002, but not all."""
    for n, vocab in ((5, 4), (27, 5)):
        config, state, data, _ = _one_cycle_case("variable", n, vocab, 0.002, 0.5, seed=3)
        _, grads, _ = forward_backward(state, data, 0, config.seq_len, variable=False)
        g = np.concatenate([grads[k].ravel() for k in LATER_PARAMS])
        assert 0 < np.sum(np.abs(g) > 0.5) < g.size
        steps = []
        for k in LATER_PARAMS:
            gk = np.clip(grads[k], -0.5, 0.5)
            mem = state["mem_" + k] + 0.01 * (gk * gk - state["mem_" + k])
            steps.append((config.learning_rate * gk / np.sqrt(mem + 1e-8)).ravel())
        steps = np.abs(np.concatenate(steps))
        assert 0 < np.sum(steps > 0.002) < steps.size


def test_initial_network_has_the_later_memories():
    """RMSProp's memories start at 0.01 for Wxh and bh, 0 for Whh, Why and by; no
    multipliers (1.0 everywhere): REFERENCE-LATER.md, fixed and variable."""
    for config in (_outgoing(), _outgoing(mode="fixed", hidden_size=20, capacity=20)):
        net = init_network(config, 4, np.random.default_rng(0))
        view = active_view(net)
        assert np.all(view["mem_Wxh"] == NEW_MEMORY) and np.all(view["mem_bh"] == NEW_MEMORY)
        for k in ("mem_Whh", "mem_Wiy", "mem_by", "bh", "by", "hidden"):
            assert np.all(view[k] == 0.0), k
        assert np.all(net.multipliers == 1.0)


# -- many cycles with additions and deletions ------------------------------------------------
MANY = 300
SMALL_CAPACITY = 7  # N reaches capacity - 1 = 6 in every case below: the cap is exercised


@pytest.mark.parametrize(
    ("vocab", "keep_below", "threshold", "grad_clip", "step_clip", "seed"),
    [
        (4, 1, 0.5, 0.0, 0.01, 0),  # the later defaults for k and the clips
        (5, 2, 1.0, 0.5, 0.003, 1),  # both clips active, a larger reserve
        (4, 0, 0.5, 0.0, 0.01, 2),  # no reserve: the network empties (N = 0) and refills
    ],
)
def test_many_cycles_with_additions_and_deletions_match_the_twin(
    vocab, keep_below, threshold, grad_clip, step_clip, seed
):
    """300 cycles with the structure step, engine and twin each on its own trajectory from
    the same state and the same pre-drawn pools: after every cycle the same N, the same
    neuron ids and birth cycles, the same events, the same number of draws consumed, and
    every array within TOL.

    The trajectories are compared whole, not re-synchronised each cycle: with RMSProp's
    clipped steps they do not diverge (measured: 2e-15 apart after 300 cycles), unlike
    Adagrad's (PERFORMANCE.md). Large P_add, P_del, P_spontaneous, a large penalty and a
    threshold near the neurons' strengths make about 30 births and 30 deaths per run.
    """
    config = _outgoing(
        capacity=SMALL_CAPACITY,
        hidden_size=5,
        seq_len=20,
        keep_below=keep_below,
        deletion_threshold=threshold,
        weight_penalty=1e-3,
        add_prob=0.5,
        delete_prob=0.5,
        spontaneous_add_prob=0.1,
        init_scale=0.3,  # new neurons' incoming weights as large as the others'
        grad_clip=grad_clip,
        step_clip=step_clip,
    )
    rng = np.random.default_rng(seed)
    state = random_state(5, vocab, rng, variable=False, scale=0.3)
    data = rng.integers(0, vocab, 2000).astype(np.int32)
    net = load(state, SMALL_CAPACITY)
    s = allocate_scratch(SMALL_CAPACITY, vocab, config.seq_len, "float64")
    hp = make_hyper(config, vocab)
    draws = draws_pool(rng, 20_000, 20_000)  # enough for 300 cycles without a refill
    stream = Stream(draws)  # the twin reads the same numbers from its own copy
    events, fill = np.zeros(4 * SMALL_CAPACITY, EVENT_DTYPE), np.zeros(2, np.int64)
    ref, next_id = state, 5
    sizes, kinds = [], {BIRTH: 0, DEATH: 0}
    for c in range(1, MANY + 1):
        start = int(rng.integers(0, data.size - config.seq_len - 1))
        fill[:] = 0
        loss = _one_cycle(net, s, hp, data, start, draws, c, events, fill, True)
        ref_loss, ref = later_cycle(ref, data, start, config)
        ref, ref_events, next_id = outgoing_structure_step(ref, stream, c, next_id, config)
        where = f"cycle {c}: "
        assert abs(loss - ref_loss) <= TOL * max(1.0, abs(ref_loss)), where
        view = active_view(net)
        assert view["neuron_id"].tolist() == ref["neuron_id"].tolist(), where
        assert np.array_equal(view["birth_cycle"], ref["birth_cycle"]), where
        assert int(net.counters[NEXT_ID]) == next_id, where
        assert draws.cursor.tolist() == stream.cursor, where
        _assert_views_close(view, ref, COMPARED, where=where)
        _assert_events_close(event_tuples(events, fill[1]), ref_events, where=where)
        assert np.all(view["multipliers"] == 1.0), where
        sizes.append(view["bh"].size)
        for e in ref_events:
            kinds[e[2]] += 1
    # the run exercised what it is meant to: many births and deaths, the cap, shrinking
    assert kinds[BIRTH] >= 15 and kinds[DEATH] >= 15, kinds
    assert max(sizes) == SMALL_CAPACITY - 1
    assert min(sizes) <= keep_below + 1


# -- finite differences ----------------------------------------------------------------------
FD_N, FD_SEQ, FD_CAPACITY = 5, 7, 8


def _active(name, buf, n):
    if name == "Whh":
        return buf[:n, :n]
    if name == "Wiy":
        return buf[:, :n]
    if name == "by":
        return buf
    return buf[:n]


@pytest.mark.parametrize(
    ("mode", "start", "vocab"),
    [("variable", 0, 4), ("variable", 3, 5), ("fixed", 1, 4), ("fixed", 2, 5)],
)
def test_gradients_match_finite_differences(mode, start, vocab):
    """The gradient ``_forward``/``_backward``/``_weight_gradients`` compute with the
    outgoing Hyper, every parameter the later method learns, against central differences
    of the loss; no multiplier gradient (its buffer is zeroed, not left stale)."""
    rng = np.random.default_rng(7 + start + 10 * vocab)
    config = _outgoing(mode=mode, capacity=FD_CAPACITY, hidden_size=FD_N, seq_len=FD_SEQ)
    state = random_state(FD_N, vocab, rng, variable=False, scale=0.3)
    net = load(state, FD_CAPACITY)
    s = allocate_scratch(FD_CAPACITY, vocab, FD_SEQ, "float64")
    hp = make_hyper(config, vocab)
    data = rng.integers(0, vocab, FD_SEQ + 4).astype(np.int32)
    s.dmultipliers[:] = 123.0
    loss = engine_forward_backward(net, s, hp, data, start)
    assert np.isfinite(loss) and loss > 0
    assert np.all(s.dmultipliers[:FD_N] == 0.0)
    # copied now: every loss evaluation below overwrites the gradient buffers
    grads = {k: _active(k, getattr(s, GRAD_OF[k]), FD_N).copy() for k in LATER_PARAMS}
    # and the twin's gradients (no multipliers: output Wiy h) agree to rounding
    ref_loss, ref_grads, _ = forward_backward(state, data, start, FD_SEQ, variable=False)
    assert abs(loss - ref_loss) <= 1e-12
    for k in LATER_PARAMS:
        assert _max_diff(grads[k], ref_grads[k]) <= 1e-12, k
    eps = 1e-6
    for name in LATER_PARAMS:
        params = _active(name, getattr(net, name), FD_N)  # a view: perturbed in place
        numeric = np.zeros_like(grads[name])
        for idx in np.ndindex(params.shape):
            saved = params[idx]
            params[idx] = saved + eps
            up = engine_forward_backward(net, s, hp, data, start)
            params[idx] = saved - eps
            down = engine_forward_backward(net, s, hp, data, start)
            params[idx] = saved
            numeric[idx] = (up - down) / (2 * eps)
        # O(1) gradients: central differences are good to ~1e-8 at eps = 1e-6
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-7, err_msg=name)
        assert np.abs(grads[name]).max() > 1e-3, f"{name}: gradient suspiciously zero"
    assert engine_forward_backward(net, s, hp, data, start) == loss


# -- add/delete sequences (hypothesis) -------------------------------------------------------
CAP = 7
T_D = 0.5
OPS = st.lists(
    st.one_of(
        st.just(("add", None)),
        st.tuples(st.just("delete"), st.lists(st.booleans(), min_size=CAP, max_size=CAP)),
        # the whole structure step at a threshold of this run: deletions by the draws
        st.tuples(st.just("step"), st.floats(0.05, 2.0)),
    ),
    min_size=1,
    max_size=20,
)


@settings(deadline=None, max_examples=100)
@given(n0=st.integers(1, CAP - 1), ops=OPS, seed=st.integers(0, 2**32 - 1))
def test_random_add_delete_sequences_match_numpy(n0, ops, seed):
    """Additions, compactions and whole structure steps (deletions by the draws) in any
    order, against the NumPy model: after every operation every buffer (weights, RMSProp
    memories, multipliers, hidden state, ids, birth cycles) is bitwise the model's; a new
    neuron is what the twin draws and rescales from the same normals (its rescaled weights
    to 1e-14 relative, see ``_adopt_rescaled``), with the strength the rescaling gives."""
    config = _outgoing(
        capacity=CAP,
        seq_len=12,
        deletion_threshold=T_D,
        add_prob=0.5,
        delete_prob=0.5,
        spontaneous_add_prob=0.3,
        init_scale=0.3,
    )
    hp = make_hyper(config, 4)
    s = allocate_scratch(CAP, 4, config.seq_len, "float64")
    events, fill = np.zeros(4 * CAP + 8, EVENT_DTYPE), np.zeros(2, np.int64)
    rng = np.random.default_rng(seed)
    model = random_state(n0, 4, rng, variable=False, scale=0.3)
    model["birth_cycle"] = rng.integers(0, 50, n0)
    net = load(model, CAP)
    next_id = n0
    for cycle, (op, arg) in enumerate(ops, start=100):
        n = model["bh"].size
        draws = draws_from(rng, CAP)
        stream = Stream(draws)
        fill[:] = 0
        if op == "add":
            if n >= CAP - 1:
                continue
            add_neuron(net, hp, draws, cycle, events, fill)
            model, birth = add_outgoing_neuron(model, stream, cycle, next_id, config)
            next_id += 1
            view = active_view(net)
            _adopt_rescaled(model, view, n)
            _check_new_neuron(view, n, config)
            (got,) = event_tuples(events, fill[1])
            assert got[:4] == (cycle, next_id - 1, BIRTH, 0)
            assert got[4] == pytest.approx(birth[4], rel=1e-14)
            assert got[4] == pytest.approx(birth_strength(n, T_D), rel=1e-14)
            assert got[4] == pytest.approx(outgoing_strengths(model)[n], rel=1e-14)
            # no uniform drawn; 2 V + 2 n + 1 normals: Wxh row, Whh row, column, Why
            assert draws.cursor.tolist() == [0, 2 * 4 + 2 * n + 1] == stream.cursor
        elif op == "delete":
            keep = np.array(arg[:n], dtype=np.bool_)
            full = np.ones(CAP, np.bool_)
            full[:n] = keep
            compact(net, full, np.zeros(CAP, np.int64), n)
            model = delete(model, np.flatnonzero(~keep))
        else:
            step_hp = hp._replace(
                deletion_threshold=arg, rule=hp.rule._replace(deletion_threshold=arg)
            )
            step_config = config.replace(deletion_threshold=arg)
            structure_step(net, s, step_hp, draws, cycle, events, fill)
            model, ref_events, next_id = outgoing_structure_step(
                model, stream, cycle, next_id, step_config
            )
            view = active_view(net)
            if ref_events and ref_events[-1][2] == BIRTH:
                _adopt_rescaled(model, view, model["bh"].size - 1)
            _assert_events_close(event_tuples(events, fill[1]), ref_events)
            assert draws.cursor.tolist() == stream.cursor
        view = active_view(net)
        assert set(view) == set(model)
        for k in model:  # every buffer, bitwise: neurons are moved, never recomputed
            assert view[k].shape == model[k].shape, k
            assert np.array_equal(view[k], model[k]), k
        assert int(net.counters[N_ACTIVE]) == model["bh"].size <= CAP - 1
        assert int(net.counters[NEXT_ID]) == next_id
        assert np.all(np.diff(model["neuron_id"]) > 0)  # stable order, ids never reused
        assert np.all(model["multipliers"] == 1.0)


def _adopt_rescaled(model, view, n):
    """The rescaled outgoing weights of new neuron n: the engine's within 1e-14 (relative)
    of the twin's, then the engine's copied into the model. Its fastmath may round the
    rescaling factor one ulp apart (seen here); adopting the engine's keeps every later
    comparison of moved entries bitwise."""
    for k in ("Whh", "Wiy"):
        np.testing.assert_allclose(view[k][:, n], model[k][:, n], rtol=1e-14, atol=0, err_msg=k)
        model[k][:, n] = view[k][:, n]


def _check_new_neuron(view, n, config):
    """Neuron n just added: what REFERENCE-LATER.md says of it."""
    half = 0.5 * config.deletion_threshold
    # output weights of L1 norm T_D / 2; recurrent column with 4 sum|col| / N_old = T_D / 2
    assert np.abs(view["Wiy"][:, n]).sum() == pytest.approx(half, rel=1e-14)
    assert 4 * np.abs(view["Whh"][:, n]).sum() / max(n, 1) == pytest.approx(half, rel=1e-14)
    assert np.all(view["Whh"][:, n] != 0.0) and np.all(view["Wiy"][:, n] != 0.0)
    # incoming weights N(0, init_scale^2), unscaled
    fresh = np.concatenate([view["Wxh"][n], view["Whh"][n, :n]])
    assert np.all(fresh != 0.0) and np.all(np.abs(fresh) < 10 * config.init_scale)
    # every memory of it 0.01; bias and hidden state 0; multiplier 1.0 (unused)
    assert np.all(view["mem_Wxh"][n] == NEW_MEMORY) and np.all(view["mem_Wiy"][:, n] == NEW_MEMORY)
    assert np.all(view["mem_Whh"][n] == NEW_MEMORY) and np.all(view["mem_Whh"][:, n] == NEW_MEMORY)
    assert view["mem_bh"][n] == NEW_MEMORY and view["mem_multipliers"][n] == NEW_MEMORY
    assert view["bh"][n] == 0.0 and view["hidden"][n] == 0.0 and view["multipliers"][n] == 1.0
    # it starts below threshold, in the reserve
    assert outgoing_strengths(view)[n] <= config.deletion_threshold


# -- the penalty, strengths, traces, events --------------------------------------------------
def _penalty_state(rng, n, vocab, a):
    """Random weights with exact zeros and weights smaller than the step (which cross 0)."""
    state = random_state(n, vocab, rng, variable=False, scale=0.3)
    for k in ("Wiy", "Whh", "Wxh"):
        w = state[k]
        flat = w.reshape(-1)
        flat[0] = 0.0
        flat[1] = 0.3 * a
        flat[2] = -0.7 * a
    return state


@pytest.mark.parametrize("a", [1e-4, 0.05])
def test_penalty_is_an_l1_step_on_why_and_whh_only(a):
    """One ``_after_update`` equals w - A sign(w) on Why and Whh (bitwise; zeros stay,
    small weights cross zero as the formula says), and touches nothing else."""
    n, vocab, capacity = 6, 5, 9
    rng = np.random.default_rng(int(a * 1e5))
    state = _penalty_state(rng, n, vocab, a)
    net = load(state, capacity)
    after_update(net, make_hyper(_outgoing(capacity=capacity, weight_penalty=a), vocab))
    view = active_view(net)
    for k in ("Wiy", "Whh"):
        assert np.array_equal(view[k], state[k] - a * np.sign(state[k])), k
    for k in state:
        if k not in ("Wiy", "Whh"):
            assert np.array_equal(view[k], state[k]), k
    assert np.all(np.isnan(net.Whh[n:])) and np.all(np.isnan(net.Whh[:, n:]))
    assert np.all(np.isnan(net.Wiy[:, n:]))
    # without a penalty, and under the multiplier criterion, nothing changes
    for config in (_outgoing(capacity=capacity, weight_penalty=0.0), RunConfig(capacity=9)):
        net = load(state, capacity)
        after_update(net, make_hyper(config, vocab))
        for k, v in active_view(net).items():
            assert np.array_equal(v, state[k]), k


def _strength_state(rng, n, vocab, threshold):
    """Random weights, one neuron of strength exactly T_D (0.5 (0 + T_D + T_D): exact in
    binary) and one of strength 0, so that ``<=`` and the empty case are tested."""
    state = random_state(n, vocab, rng, variable=False, scale=0.05)
    state["Whh"][:, 1] = 0.0
    state["Wiy"][:, 1] = 0.0
    state["Wiy"][:2, 1] = threshold
    state["Whh"][:, 2] = 0.0
    state["Wiy"][:, 2] = 0.0
    return state


@pytest.mark.parametrize(("n", "vocab"), [(1, 4), (6, 4), (13, 5)])
def test_strengths_and_trace_follow_the_formula(n, vocab):
    """``_strengths`` and the trace's strength_sum and below_threshold against
    s_j = 0.5 (sum|Why[:, j]| + 4 sum|Whh[:, j]| / N); and the driver's
    ``initial_strengths`` (the first birth events) agrees."""
    threshold = 0.05
    capacity = 16
    rng = np.random.default_rng(n)
    state = (
        _strength_state(rng, n, vocab, threshold)
        if n > 2
        else random_state(n, vocab, rng, variable=False, scale=0.05)
    )
    config = _outgoing(capacity=capacity, deletion_threshold=threshold)
    hp = make_hyper(config, vocab)
    net = load(state, capacity)
    s = allocate_scratch(capacity, vocab, config.seq_len, "float64")
    # the formula, written out here once more, independently of the twin's loop
    by_formula = 0.5 * (np.abs(state["Wiy"]).sum(axis=0) + 4 * np.abs(state["Whh"]).sum(axis=0) / n)
    strengths(net, s, hp)
    got = s.strengths[:n].copy()
    np.testing.assert_allclose(got, by_formula, rtol=1e-14, atol=0)
    np.testing.assert_allclose(got, outgoing_strengths(state), rtol=1e-15, atol=0)
    np.testing.assert_allclose(initial_strengths(net, config), by_formula, rtol=1e-14, atol=0)
    if n > 2:
        assert got[1] == threshold and got[2] == 0.0
    below = int(np.sum(got <= threshold))
    assert 0 < below < n or n == 1
    trace, fill = np.zeros(2, TRACE_DTYPE), np.zeros(2, np.int64)
    record_trace(net, s, hp, trace, fill, 17)
    assert fill[0] == 1 and trace[0]["cycle"] == 17 and trace[0]["neurons"] == n
    assert trace[0]["strength_sum"] == pytest.approx(by_formula.sum(), rel=1e-14)
    assert trace[0]["below_threshold"] == below


def test_death_events_record_the_strength_that_condemned_them():
    """A structure step with P_del = 1: the deleted are exactly the excess below-threshold
    neurons, each death event carries its strength before the deletion (the formula), and
    the strength exactly at T_D counts as below."""
    n, vocab, capacity, threshold = 8, 4, 12, 0.05
    config = _outgoing(
        capacity=capacity,
        deletion_threshold=threshold,
        keep_below=1,
        delete_prob=1.0,
        add_prob=0.0,
        spontaneous_add_prob=0.0,
    )
    hp = make_hyper(config, vocab)
    s = allocate_scratch(capacity, vocab, config.seq_len, "float64")
    events, fill = np.zeros(32, EVENT_DTYPE), np.zeros(2, np.int64)
    survivors = set()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        state = _strength_state(rng, n, vocab, threshold)
        state["Wiy"][:, 3] *= 0.01  # a third weak one, of strength about 0.002
        state["Whh"][:, 3] *= 0.01
        state["Wiy"][:, 4:] *= 40.0  # strong, far above threshold
        state["neuron_id"] = np.arange(n, dtype=np.int64) * 2 + 3
        state["birth_cycle"] = rng.integers(0, 90, n)
        before = outgoing_strengths(state)
        below = np.flatnonzero(before <= threshold)
        assert {1, 2, 3} <= set(below.tolist())
        net = load(state, capacity)
        fill[:] = 0
        structure_step(net, s, hp, draws_from(rng, capacity), 100, events, fill)
        ev = events[: fill[1]]
        assert fill[1] == below.size - 1 and np.all(ev["kind"] == DEATH)
        where = (ev["neuron_id"] - 3) // 2
        assert set(where.tolist()) < set(below.tolist())
        np.testing.assert_allclose(ev["strength"], before[where], rtol=1e-15, atol=0)
        assert np.array_equal(ev["age"], 100 - state["birth_cycle"][where])
        view = active_view(net)
        assert view["bh"].size == n - below.size + 1
        survivors.add(int(np.setdiff1d(state["neuron_id"][below], ev["neuron_id"])[0]))
    assert len(survivors) > 1  # which one stays in reserve is drawn, not always the first


def test_birth_and_initial_strengths_on_the_driver_path():
    """Through ``engine.run``: birth events at cycle 0 carry the initial network's
    strengths; later births exactly what the rescaling gives at their N (replayed from the
    events); deaths at most T_D; the last trace describes the final network."""
    config = _outgoing(hidden_size=3, add_prob=0.2, delete_prob=0.5, log_every=500)
    result = engine.run(config, "hard", 4000, 5, keep_network=True)
    ev = result.events
    first = ev[ev["cycle"] == 0]
    assert first["kind"].tolist() == [BIRTH] * 3
    initial = init_network(config, 4, generators(5)["init"])  # the run's own first draws
    np.testing.assert_allclose(
        first["strength"], outgoing_strengths(active_view(initial)), rtol=1e-14, atol=0
    )
    n = 3
    births = deaths = 0
    for e in ev[3:]:
        if e["kind"] == BIRTH:
            assert e["strength"] == pytest.approx(
                birth_strength(n, config.deletion_threshold), rel=1e-14
            )
            n += 1
            births += 1
        else:
            assert 0.0 <= e["strength"] <= config.deletion_threshold
            n -= 1
            deaths += 1
    assert births > 3 and deaths > 0, (births, deaths)
    assert n == result.final_neurons == int(result.network.counters[N_ACTIVE])
    last = result.traces[-1]
    final = outgoing_strengths(active_view(result.network))
    assert last["cycle"] == 4000 and last["neurons"] == n
    assert last["strength_sum"] == pytest.approx(final.sum(), rel=1e-13)
    assert last["below_threshold"] == np.sum(final <= config.deletion_threshold)
    assert np.all(result.network.multipliers[:n] == 1.0)


# -- bad input -------------------------------------------------------------------------------
def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("diffrnn: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--set", "criterion=outgoing", "--set", "l1_strength=1e-5"],
            "l1_strength = 1e-05 is not allowed with criterion = 'outgoing'",
        ),
        (
            ["--set", "criterion=outgoing", "--set", "min_multiplier=0.01"],
            "min_multiplier = 0.01 is not allowed with criterion = 'outgoing'",
        ),
        (
            ["--set", "weight_penalty=1e-4"],
            "weight_penalty = 0.0001 is not allowed with criterion = 'multiplier'",
        ),
        (
            [
                "--set",
                "criterion=outgoing",
                "--set",
                "optimizer=adagrad",
                "--set",
                "rmsprop_decay=0.9",
            ],
            "rmsprop_decay = 0.9 is not allowed with optimizer = 'adagrad'",
        ),
        (
            ["--set", "criterion=outgoing", "--set", "weight_penalty=-1e-4"],
            "weight_penalty = -0.0001 is out of range",
        ),
        (["--set", "criterion=outgoing", "--set", "rmsprop_decay=1"], "rmsprop_decay = 1.0 is out"),
        (["--set", "criterion=outgoing", "--set", "step_clip=lots"], "step_clip = 'lots' has the"),
        (["--set", "criterion=incoming"], "criterion = 'incoming' is not allowed"),
        (["--set", "optimizer=adam"], "optimizer = 'adam' is not allowed"),
    ],
)
def test_bad_later_method_arguments_give_one_line(argv, expected, capsys):
    assert main(["run", "--cycles", "100", "-q", *argv]) == 2
    captured = capsys.readouterr()
    assert expected in _one_error_line(captured.err) and captured.out == ""


def test_changing_the_criterion_refuses_fields_set_for_the_other():
    """``replace`` keeps explicitly set fields: one the new criterion has no use for is
    refused by name, not silently dropped (fields left at defaults follow the criterion)."""
    cases = [
        (lambda: RunConfig(min_multiplier=0.01).replace(criterion="outgoing"), "min_multiplier"),
        (lambda: RunConfig(l1_strength=1e-4).replace(criterion="outgoing"), "l1_strength"),
        (lambda: _outgoing(weight_penalty=1e-3).replace(criterion="multiplier"), "weight_penalty"),
        (lambda: _outgoing().replace(l1_strength=1e-5), "l1_strength"),
    ]
    for call, name in cases:
        with pytest.raises(ConfigError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and message.startswith(name) and "unset" in message


def test_step_clip_is_applied_with_adagrad_too():
    """step_clip clips Adagrad's step as it does RMSProp's (it once was accepted and
    ignored, so that two run ids named bitwise the same run)."""
    base = RunConfig(mode="fixed", hidden_size=5, capacity=8, optimizer="adagrad")
    try:
        clipped = base.replace(step_clip=1e-6)
    except ConfigError:
        return  # refused: a fix too
    rng = np.random.default_rng(0)
    state = random_state(5, 4, rng, variable=False, scale=0.3)
    data = rng.integers(0, 4, 60).astype(np.int32)
    after = []
    for config in (base, clipped):
        net = load(state, 8)
        s = allocate_scratch(8, 4, config.seq_len, "float64")
        draws = draws_from(rng, 8)
        events, fill = np.zeros(8, EVENT_DTYPE), np.zeros(2, np.int64)
        _one_cycle(net, s, make_hyper(config, 4), data, 0, draws, 1, events, fill, False)
        after.append(active_view(net))
    assert _max_diff(after[1]["Whh"], state["Whh"]) <= 1e-6 * (1 + 1e-9)  # w + step rounds
    assert _max_diff(after[0]["Whh"], state["Whh"]) > 1e-3


# -- learning ----------------------------------------------------------------------------------
def test_grows_on_the_hard_task_and_shrinks_after_it():
    """The revised paper's story in 30,000 cycles, 10,000 per phase (measured on seeds 0-3:
    5-9 neurons at the end of the first easy phase, 52-57 at the end of hard, 28-36 ten
    thousand cycles later): the network grows during the hard phase and sheds neurons once
    the task is easy again, its loss back near the easy floor; no loss beats its floor."""
    config = _outgoing(log_every=500)
    for seed in (0, 1):
        result = engine.run(config, "easy-hard-easy", 30_000, seed)
        assert result.status == "ok"
        tr = result.traces
        n_at = {int(c): int(k) for c, k in zip(tr["cycle"], tr["neurons"])}
        easy, hard, end = n_at[10_000], n_at[20_000], n_at[30_000]
        peak = int(tr["neurons"][tr["phase"] == 1].max())
        assert easy <= 15, (seed, easy)
        assert hard >= easy + 15, (seed, easy, hard)
        assert end <= peak - 8, (seed, peak, end)
        floor = engine.entropy_floor("easy", config)
        loss_at = dict(zip(tr["cycle"].tolist(), tr["smoothed_loss"].tolist()))
        assert loss_at[10_000] < floor + 1.0 and loss_at[30_000] < floor + 1.0
        # the hard phase is learned: its smoothed loss falls well below its first values
        # (measured: from 27-32 to 17)
        hard_losses = tr["smoothed_loss"][tr["phase"] == 1]
        assert hard_losses[-1] < hard_losses[:4].max() - 5.0
        # no phase beats its own floor (smoothing 0.99 is noisy: 0.3 of slack, as for the
        # first method in test_learning.py)
        for phase, task in enumerate(("easy", "hard", "easy")):
            lowest = tr["smoothed_loss"][tr["phase"] == phase].min()
            assert lowest >= engine.entropy_floor(task, config) - 0.3, (seed, task, lowest)
