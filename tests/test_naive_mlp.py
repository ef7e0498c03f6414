"""Tests of the plain-NumPy twin of the feedforward model (tests/naive_mlp.py, issue 11).

Gradients against central differences for every parameter kind, both criteria; the update
rules on hand-computed cases; the structure step on hand-built states whose answer is known
(reserve, last neuron and last block, capacities, new neurons and blocks, a new block on
top changing the output by a bounded amount); hypothesis sequences of insertions and
deletions checking that every value stays with its neuron or block id.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive_mlp import (
    NO_NEURON,
    Draws,
    Event,
    MLPConfig,
    add_block,
    add_neuron,
    addition_drawn,
    backward,
    block_strengths,
    delete_blocks,
    delete_neurons,
    forward,
    initial_memories,
    initial_state,
    neuron_strengths,
    random_state,
    structure_step,
    train_step,
    update,
)

CRITERIA = ("multiplier", "outgoing")
D_IN, S, C, B = 3, 4, 3, 5
NEVER = 0.999999  # a uniform that passes no test (and leaves a shuffle in order)


def _data(rng, batch=B, input_dim=D_IN, classes=C):
    return rng.normal(0.0, 1.0, (batch, input_dim)), rng.integers(0, classes, batch)


def _state(criterion, widths, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    return random_state(rng, criterion, D_IN, S, C, widths, **kwargs)


# -- forward: against a per-example scalar loop ------------------------------------------
@pytest.mark.parametrize("criterion", CRITERIA)
def test_forward_matches_a_scalar_loop(criterion):
    """The vectorised forward pass against the model written out example by example,
    unit by unit, from the formulas of the module docstring."""
    state = _state(criterion, [2, 1, 3])
    p = state.params
    x, y = _data(np.random.default_rng(1))
    loss, cache = forward(state, x, y)
    total = 0.0
    for i in range(B):
        s = [sum(p.W_in[r, d] * x[i, d] for d in range(D_IN)) + p.b_in[r] for r in range(S)]
        for b, n in enumerate(state.widths):
            u = []
            for j in range(n):
                a = sum(p.W1[b][j, r] * s[r] for r in range(S)) + p.c[b][j]
                u.append(math.tanh(a) * (p.m[b][j] if criterion == "multiplier" else 1.0))
            f = [sum(p.W2[b][r, j] * u[j] for j in range(n)) for r in range(S)]
            s = [s[r] + p.mu[b] * f[r] for r in range(S)]
        logits = [sum(p.W_out[k, r] * s[r] for r in range(S)) + p.b_out[k] for k in range(C)]
        np.testing.assert_allclose(cache["logits"][i], logits, rtol=1e-13, atol=1e-13)
        total += -(logits[y[i]] - math.log(sum(math.exp(v) for v in logits)))
    assert loss == pytest.approx(total / B, rel=1e-13)
    np.testing.assert_allclose(cache["probs"].sum(axis=1), 1.0, rtol=1e-14)


# -- gradients: central differences -----------------------------------------------------
FD_EPS = 1e-6
ALL_KINDS = {"W_in", "b_in", "W1", "c", "W2", "m", "mu", "W_out", "b_out"}


def _numeric_gradient(state, key, objective):
    """Central differences of ``objective(state)`` in every entry of the array ``key``
    (changed in place and restored)."""
    array = state.params[key]
    numeric = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        saved = array[idx]
        array[idx] = saved + FD_EPS
        up = objective(state)
        array[idx] = saved - FD_EPS
        down = objective(state)
        array[idx] = saved
        numeric[idx] = (up - down) / (2 * FD_EPS)
    return numeric


def _check_gradients(state, grads, objective):
    kinds = set()
    for key in state.params.keys():
        numeric = _numeric_gradient(state, key, objective)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-6, atol=1e-9, err_msg=str(key))
        # relative to the size of the whole gradient: the central difference is good to
        # ~1e-9 here, the gradients are O(0.01 .. 1)
        scale = max(np.abs(numeric).max(), 1e-3)
        assert np.abs(grads[key] - numeric).max() <= 1e-6 * scale, key
        kinds.add(key[0])
    return kinds


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("widths", [[1], [3, 1], [1, 3, 2]])
def test_gradients_match_central_differences(criterion, widths):
    """Every entry of every parameter, 1-3 blocks of different widths, no L1 term."""
    state = _state(criterion, widths, seed=len(widths))
    x, y = _data(np.random.default_rng(7))
    loss, cache = forward(state, x, y)
    grads = backward(state, cache, y)
    kinds = _check_gradients(state, grads, lambda st_: forward(st_, x, y)[0])
    expected = ALL_KINDS if criterion == "multiplier" else ALL_KINDS - {"m"}
    assert kinds == expected
    assert forward(state, x, y)[0] == loss  # the state was restored


def test_gradients_with_l1_terms_match_central_differences():
    """Under "multiplier" the L1 terms are the gradient of A (sum |m| + sum |mu|), added
    once: checked against central differences of that objective (no m or mu near 0)."""
    state = _state("multiplier", [2, 3], seed=3)
    a_l1 = 0.3

    def objective(st_):
        penalty = sum(np.abs(m).sum() for m in st_.params.m) + np.abs(st_.params.mu).sum()
        return forward(st_, x, y)[0] + a_l1 * penalty

    x, y = _data(np.random.default_rng(8))
    _, cache = forward(state, x, y)
    grads = backward(state, cache, y, l1_strength=a_l1)
    assert _check_gradients(state, grads, objective) == ALL_KINDS


@pytest.mark.parametrize("criterion", CRITERIA)
def test_l1_terms_are_added_once_with_sign_zero_zero(criterion):
    state = _state(criterion, [3, 2], seed=4)
    if criterion == "multiplier":
        state.params.m[0][1] = 0.0
    state.params.mu[1] = 0.0
    x, y = _data(np.random.default_rng(9))
    _, cache = forward(state, x, y)
    plain = backward(state, cache, y)
    with_l1 = backward(state, cache, y, l1_strength=0.25)
    for key in state.params.keys():
        difference = with_l1[key] - plain[key]
        if key[0] == "m":
            expected = 0.25 * np.sign(state.params.m[key[1]])
            assert key[1] != 0 or expected[1] == 0.0  # sign(0) = 0
            np.testing.assert_allclose(difference, expected, rtol=0, atol=1e-15)
        elif key[0] == "mu":
            np.testing.assert_allclose(difference, [0.25 * np.sign(state.params.mu[0]), 0.0])
        else:
            assert np.array_equal(difference, np.zeros_like(difference)), key


# -- the update rules: hand-computed -----------------------------------------------------
def _tiny(criterion, values=1.0):
    """One block of 1 neuron, S = 3, D_in = 1, C = 1; every parameter ``values``, every
    memory 0; gradients zero (set entries by hand)."""
    state = random_state(np.random.default_rng(0), criterion, 1, 3, 1, [1], memories=False)
    for key in state.params.keys():
        state.params[key] = np.full_like(state.params[key], values)
    return state, state.params.zeros_like()


def test_adagrad_with_gradient_clip():
    """lr 0.1, clip 5: g = 0.5 from mem 0 -> mem 0.25, w = 1 - 0.1 * 0.5 / 0.5 = 0.9;
    g = -10 clipped to -5 from mem 1 -> mem 26, w = 1 + 0.5 / sqrt(26) = 1.0980580676;
    g = 0 -> mem 0, w unchanged; multipliers (m, mu) get the same rule."""
    config = MLPConfig(criterion="multiplier")
    assert (config.optimizer, config.learning_rate, config.grad_clip) == ("adagrad", 0.1, 5.0)
    state, grads = _tiny("multiplier")
    grads.W_out[0] = [0.5, -10.0, 0.0]
    state.mem.W_out[0, 1] = 1.0
    grads.m[0][0] = 0.5
    grads.mu[0] = 7.0  # clipped to 5: mem 25, step 0.1 * 5 / 5 = 0.1
    update(state, grads, config)
    np.testing.assert_allclose(state.mem.W_out[0], [0.25, 26.0, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(state.params.W_out[0], [0.9, 1.0980580676, 1.0], atol=1e-8)
    assert state.params.m[0][0] == pytest.approx(0.9, abs=1e-8)
    assert state.mem.mu[0] == 25.0
    assert state.params.mu[0] == pytest.approx(0.9, abs=1e-8)
    for key in state.params.keys():  # zero gradients: nothing else moved
        if key[0] not in ("W_out", "m", "mu"):
            assert np.all(state.params[key] == 1.0) and np.all(state.mem[key] == 0.0), key


def test_adagrad_without_clip_and_second_step():
    """grad_clip 0: g = -10 from mem 1 -> mem 101, w = 1 + 1 / sqrt(101) = 1.0995037190;
    a second step with g = 3 -> mem 110, w -= 0.3 / sqrt(110)."""
    config = MLPConfig(criterion="multiplier", grad_clip=0.0)
    state, grads = _tiny("multiplier")
    state.mem.W1[0][0, 0] = 1.0
    grads.W1[0][0, 0] = -10.0
    update(state, grads, config)
    assert state.mem.W1[0][0, 0] == 101.0
    assert state.params.W1[0][0, 0] == pytest.approx(1.0995037190, abs=1e-9)
    grads.W1[0][0, 0] = 3.0
    update(state, grads, config)
    assert state.mem.W1[0][0, 0] == 110.0
    assert state.params.W1[0][0, 0] == pytest.approx(1.0995037190 - 0.0286038777, abs=1e-9)


def test_rmsprop_with_step_clip_and_l1_step():
    """lr 0.01, decay 0.99, step clip 0.01, A = 1e-4 on W2, W_out, mu (not W1, c, W_in).

    W1: mem 1, g 0.5 -> mem 1 + 0.01 (0.25 - 1) = 0.9925, step -0.005 / sqrt(0.9925)
    = -0.0050188561 (unclipped), no L1 step. W2 entry 0.2, mem 0, g 1 -> mem 0.01, step
    -0.1 clipped to -0.01, then -1e-4: 0.1899. W2 entry 0.005, g 1: -0.005 then +1e-4
    (its sign is now negative): -0.0049. W2 entry 0, g 0: stays 0 (sign 0 = 0).
    mu 0.3, g 0: 0.3 - 1e-4. W_out 1, g -1e-3 from mem 0: mem 1e-8, step
    0.01 * 1e-3 / sqrt(2e-8) = 0.0707 clipped to 0.01, then -1e-4: 1.0099.
    """
    config = MLPConfig(criterion="outgoing")
    assert (config.optimizer, config.learning_rate, config.rmsprop_decay) == (
        "rmsprop",
        0.01,
        0.99,
    )
    assert (config.grad_clip, config.step_clip, config.weight_penalty) == (0.0, 0.01, 1e-4)
    state, grads = _tiny("outgoing")
    state.mem.W1[0][0, 0] = 1.0
    grads.W1[0][0, 0] = 0.5
    state.params.W2[0][:, 0] = [0.2, 0.005, 0.0]
    grads.W2[0][:, 0] = [1.0, 1.0, 0.0]
    state.params.mu[0] = 0.3
    grads.W_out[0, 0] = -1e-3
    update(state, grads, config)
    assert state.mem.W1[0][0, 0] == pytest.approx(0.9925, abs=1e-15)
    assert state.params.W1[0][0, 0] == pytest.approx(1.0 - 0.0050188561, abs=1e-10)
    np.testing.assert_allclose(state.params.W1[0][0, 1:], 1.0, rtol=0, atol=0)
    np.testing.assert_allclose(state.params.W2[0][:, 0], [0.1899, -0.0049, 0.0], atol=1e-15)
    np.testing.assert_allclose(state.mem.W2[0][:, 0], [0.01, 0.01, 0.0], atol=1e-15)
    assert state.params.mu[0] == pytest.approx(0.2999, abs=1e-15)
    assert state.params.W_out[0, 0] == pytest.approx(1.0099, abs=1e-15)
    np.testing.assert_allclose(state.params.W_out[0, 1:], 0.9999, atol=1e-15)  # L1 only
    for name in ("W_in", "b_in", "c", "b_out"):  # no L1 step, zero gradients: unchanged
        key = (name, 0 if name == "c" else None)
        assert np.all(state.params[key] == 1.0), name


def test_initial_state_memories_and_draw_order():
    """RMSProp memories start at 0.01 for W_in, b_in, W1, c and 0 elsewhere; Adagrad all 0;
    weights are drawn W_in, then W1_b, W2_b block by block, then W_out."""
    for criterion in CRITERIA:
        config = MLPConfig(criterion=criterion)
        state = initial_state(config, np.random.default_rng(5), D_IN, S, C, [2, 3])
        rng = np.random.default_rng(5)
        p = state.params
        np.testing.assert_array_equal(p.W_in, 0.01 * rng.standard_normal((S, D_IN)))
        for b, n in enumerate([2, 3]):
            np.testing.assert_array_equal(p.W1[b], 0.01 * rng.standard_normal((n, S)))
            np.testing.assert_array_equal(p.W2[b], 0.01 * rng.standard_normal((S, n)))
        np.testing.assert_array_equal(p.W_out, 0.01 * rng.standard_normal((C, S)))
        assert np.all(p.mu == 1.0) and (p.m is None) == (criterion == "outgoing")
        for key in state.mem.keys():
            incoming = criterion == "outgoing" and key[0] in ("W_in", "b_in", "W1", "c")
            assert np.all(state.mem[key] == (0.01 if incoming else 0.0)), key
        assert state.neuron_ids[1].tolist() == [2, 3, 4] and state.next_neuron_id == 5
        assert state.block_ids.tolist() == [0, 1] and state.next_block_id == 2


# -- the structure step on hand-built states ---------------------------------------------
def _config(criterion, **kwargs):
    values = dict(capacity=10, max_blocks=5)
    values.update(kwargs)
    return MLPConfig(criterion=criterion, **values)


def _set_strengths(state, b, strengths):
    """Block b's neuron strengths: multipliers, or W2 columns of entries +-strength/2
    (2 * mean |column| = strength)."""
    strengths = np.asarray(strengths, dtype=float)
    if state.params.m is not None:
        state.params.m[b] = strengths.copy()
    else:
        signs = np.where(np.arange(S) % 2 == 0, 1.0, -1.0)
        state.params.W2[b] = np.outer(signs, strengths / 2)


def _run(state, config, uniforms, normals=()):
    """structure_step with exactly these draws: all of them must be consumed."""
    draws = Draws(uniforms, normals)
    events = structure_step(state, config, draws)
    assert draws.used_uniforms == len(uniforms)
    assert draws.used_normals == len(normals)
    return events


@pytest.mark.parametrize("criterion", CRITERIA)
def test_deletion_keeps_k_in_reserve_in_shuffled_order(criterion):
    """Block 0: strengths [0.5, 0.01, 0.03, 0.04, 0.6], T_D 0.05: three below (ids 1, 2, 3;
    under "multiplier" 0.01 is first floored to 0.025). k = 1.

    In order (shuffle uniforms ~1): keep id 1, try 2 (u 0.1 < 0.25: deleted), 3 (0.9: kept).
    Shuffled (uniforms 0.0 then ~1: i=2 swaps with 0, i=1 stays): order 3, 2, 1: keep id 3,
    try 2 (deleted), 1 (deleted). No addition: three below (>= k), so no P_add uniform,
    only the spontaneous one (0.5); block 1 (one strong neuron) and the blocks (mu 1.0,
    0.8): nothing below (< k), add draws P_add 0.9, then spontaneous 0.5.
    """
    config = _config(criterion, delete_prob=0.25)
    for shuffle, deletion, survivors in (
        ([NEVER, NEVER], [0.1, 0.9], [0, 1, 3, 4]),
        ([0.0, NEVER], [0.1, 0.1], [0, 3, 4]),
    ):
        state = _state(criterion, [5, 1])
        _set_strengths(state, 0, [0.5, 0.01, 0.03, 0.04, 0.6])
        _set_strengths(state, 1, [0.7])
        state.params.mu[:] = [1.0, 0.8]
        before = state.copy()
        adds = [0.5, 0.9, 0.5, 0.9, 0.5]  # block 0 (spontaneous only), block 1, the blocks
        events = _run(state, config, shuffle + deletion + adds)
        deleted = [i for i in (1, 2, 3) if i not in survivors]
        if shuffle[0] == 0.0:
            deleted = deleted[::-1]  # tried in shuffled order: 2 before 1
        assert events == [Event("delete", "neuron", 0, i) for i in deleted]
        assert state.neuron_ids[0].tolist() == survivors
        assert state.widths == [len(survivors), 1]
        kept = np.isin(before.neuron_ids[0], survivors)
        np.testing.assert_array_equal(state.params.W1[0], before.params.W1[0][kept])
        np.testing.assert_array_equal(state.mem.W2[0], before.mem.W2[0][:, kept])
        if criterion == "multiplier":
            floored = np.maximum(before.params.m[0], 0.025)[kept]
            np.testing.assert_array_equal(state.params.m[0], floored)


def test_outgoing_strength_is_twice_the_mean_and_equal_counts_as_below():
    """s_j = 2 mean_i |W2[i, j]|; a strength equal to T_D is below (dyadic numbers, so the
    equality is exact): with k = 0 and P_del = 1, columns at T_D and below go, the one just
    above stays, and so does the strongest (it is above anyway). With k = 0 never fewer
    than k are below: one add uniform (the spontaneous one) for the block and the blocks."""
    state = _state("outgoing", [4])
    state.params.mu = np.array([1.0])  # the block well above threshold
    state.params.W2[0] = np.array(
        [
            [1 / 32, 1 / 64, 1 / 32 + 2**-20, 0.5],
            [-1 / 32, 0.0, -1 / 32, 0.25],
            [1 / 32, -1 / 32, 1 / 32, 0.0],
            [-1 / 32, 1 / 64, 1 / 32, -0.25],
        ]
    )
    strengths = neuron_strengths(state, 0)
    assert strengths.tolist() == [1 / 16, 1 / 32, 1 / 16 + 2**-21, 0.5]
    config = _config("outgoing", deletion_threshold=1 / 16, keep_below=0, delete_prob=1.0)
    events = _run(state, config, [NEVER] + [0.5, 0.5] + [0.9] + [0.9])
    assert events == [Event("delete", "neuron", 0, 0), Event("delete", "neuron", 0, 1)]
    assert state.neuron_ids[0].tolist() == [2, 3]


@pytest.mark.parametrize("criterion", CRITERIA)
def test_last_neuron_and_last_block_never_deleted(criterion):
    """k = 0, P_del = 1, everything below: the last neuron and the last block tried stay
    (the shuffles' uniforms close to 1 leave the order 0, 1, 2 as it is). Draws: 2
    shuffle + 3 deletion uniforms for the neurons, then per block one add draw (0.9: with
    k = 0 never fewer than k below, so only the spontaneous uniform), then for the blocks
    2 shuffle + 3 deletion uniforms and one add draw."""
    config = _config(criterion, keep_below=0, delete_prob=1.0)
    state = _state(criterion, [3, 1, 1])
    _set_strengths(state, 0, [0.03, 0.045, 0.04])
    _set_strengths(state, 1, [0.9])
    _set_strengths(state, 2, [0.9])
    state.params.mu[:] = [0.03, 0.04, 0.04]
    neurons = [NEVER, NEVER] + [0.5, 0.5, 0.5] + [0.9] + [0.9] * 2
    blocks = [NEVER, NEVER] + [0.5, 0.5, 0.5] + [0.9]
    events = _run(state, config, neurons + blocks)
    assert events == [
        Event("delete", "neuron", 0, 0),
        Event("delete", "neuron", 0, 1),
        Event("delete", "block", 0, NO_NEURON),
        Event("delete", "block", 1, NO_NEURON),
    ]
    assert state.block_ids.tolist() == [2]
    assert state.neuron_ids == [np.array([4])]
    assert state.params.mu.tolist() == [0.04]

    # a single neuron alone in a single block, far below: nothing can go (no shuffle
    # uniform, one deletion uniform, the spontaneous uniform; the same for the block)
    state = _state(criterion, [1])
    _set_strengths(state, 0, [0.0])
    state.params.mu[:] = [0.0]
    events = _run(state, config, [0.5, 0.9] + [0.5, 0.9])
    assert events == [] and state.widths == [1] and state.n_blocks == 1


@pytest.mark.parametrize("criterion", CRITERIA)
def test_capacity_and_max_blocks_are_respected(criterion):
    """capacity 4: a block of 3 (= capacity - 1) neither grows nor draws its add uniforms;
    a block of 2 grows by the spontaneous draw (0.0). max_blocks 3, K = 2: no block add and
    no add draws. A block shrunk by a deletion may grow again in the same step (two below
    >= k: by the spontaneous uniform, the only add draw)."""
    config = _config(criterion, capacity=4, max_blocks=3, spontaneous_add_prob=0.5)
    state = _state(criterion, [3, 2])
    _set_strengths(state, 0, [0.9, 0.9, 0.9])
    _set_strengths(state, 1, [0.9, 0.9])
    state.params.mu[:] = [0.9, 0.9]
    normals = np.arange(1.0, 2 * S + 1)
    events = _run(state, config, [0.9, 0.0], normals)
    assert events == [Event("add", "neuron", 1, 5)]
    assert state.widths == [3, 3] and state.n_blocks == 2

    # block 0 at capacity - 1 with two below, k = 1: one deleted, then it may grow again
    state = _state(criterion, [3, 2])
    _set_strengths(state, 0, [0.9, 0.01, 0.01])
    _set_strengths(state, 1, [0.9, 0.9])
    state.params.mu[:] = [0.9, 0.9]
    uniforms = [NEVER, 0.0] + [0.0] + [0.9, 0.9]
    events = _run(state, config.replace(delete_prob=1.0), uniforms, normals)
    assert events == [Event("delete", "neuron", 0, 2), Event("add", "neuron", 0, 5)]
    assert state.neuron_ids[0].tolist() == [0, 1, 5]


@pytest.mark.parametrize("criterion", CRITERIA)
def test_addition_rule(criterion):
    """Add with P_add only when fewer than k are below (all above for k = 1); the
    spontaneous uniform is a second, separate draw, always taken, after the P_add one,
    which is taken only when fewer than k are below (u_add None: not drawn; a value that
    would pass P_add in its place is read as the spontaneous one). Blocks: the same rule
    on |mu|."""
    config = _config(criterion, add_prob=0.05, spontaneous_add_prob=1e-4)
    cases = [  # (neuron strengths, u_add, u_spontaneous, added)
        ([0.9, 0.9], 0.04, 0.5, True),  # all above, u_add < P_add
        ([0.9, 0.9], 0.06, 0.5, False),  # all above, u_add >= P_add
        ([0.9, 0.03], None, 0.04, False),  # one below = k: only the spontaneous could
        ([0.9, 0.03], None, 0.5e-4, True),  # spontaneous
    ]
    for strengths, u_add, u_spontaneous, added in cases:
        state = _state(criterion, [2])
        _set_strengths(state, 0, strengths)
        state.params.mu[:] = [0.9]
        normals = np.ones(2 * S) if added else ()
        adds = [u_spontaneous] if u_add is None else [u_add, u_spontaneous]
        events = _run(state, config, adds + [0.9, 0.9], normals)
        assert events == ([Event("add", "neuron", 0, 2)] if added else [])
    for mu, u_add, u_spontaneous, added in (
        ([0.9, 0.9], 0.04, 0.5, True),
        ([0.9, 0.03], None, 0.04, False),
        ([0.9, 0.03], None, 0.0, True),
    ):
        state = _state(criterion, [1, 1])
        _set_strengths(state, 0, [0.9])
        _set_strengths(state, 1, [0.9])
        state.params.mu[:] = mu
        normals = np.ones(2 * S) if added else ()
        adds = [u_spontaneous] if u_add is None else [u_add, u_spontaneous]
        events = _run(state, config, [0.9, 0.9] * 2 + adds, normals)
        assert events == ([Event("add", "block", 2, 2)] if added else [])


@pytest.mark.parametrize("criterion", CRITERIA)
def test_addition_draws_p_add_only_when_fewer_than_k_are_below(criterion):
    """The rule of engine.structure: with fewer than k below, two uniforms, the P_add one
    first (short-circuit ``n_below < k and u < P_add``), then the spontaneous one; with k
    or more below, one uniform, the spontaneous one; no normal either way. At capacity
    (n_b = capacity - 1, K = max_blocks - 1), no uniform at all.

    Then through ``structure_step``, k = 1, capacity 4: block 0 (nothing below, fewer than
    k) draws P_add 0.04 (added) then spontaneous 0.5; block 1 (one below = k, no deletion)
    draws only the spontaneous uniform, 0.04 (not added, though it would pass P_add);
    block 2 (width 3 = capacity - 1, nothing below) draws nothing. The blocks: K = 3 =
    max_blocks - 1, all above: no draw; with max_blocks 5, mu one below = k: only the
    spontaneous uniform; all above: P_add then spontaneous."""
    config = _config(criterion, keep_below=2, add_prob=0.05, spontaneous_add_prob=1e-4)
    for n_below in (0, 1):  # fewer than k = 2: P_add first, then spontaneous
        for pool, added in (
            ([0.04, 0.5], True),  # u_add < P_add (read second, it would not add)
            ([0.5, 0.04], False),  # only the second would pass P_add: no
            ([0.06, 0.5], False),
            ([0.5, 0.5e-4], True),  # the spontaneous one, second
        ):
            draws = Draws(pool + [0.0])  # a trailing uniform that must stay unread
            assert addition_drawn(n_below, config, draws) is added, (n_below, pool)
            assert (draws.used_uniforms, draws.used_normals) == (2, 0), (n_below, pool)
    for n_below in (2, 3):  # k or more: the first uniform is the spontaneous one
        for pool, added in (([0.04], False), ([0.5], False), ([0.5e-4], True), ([0.0], True)):
            draws = Draws(pool + [0.0])
            assert addition_drawn(n_below, config, draws) is added, (n_below, pool)
            assert (draws.used_uniforms, draws.used_normals) == (1, 0), (n_below, pool)
    draws = Draws([0.04, 0.0])  # k = 0: never fewer than k below, spontaneous only
    assert addition_drawn(0, config.replace(keep_below=0), draws) is False
    assert draws.used_uniforms == 1

    config = _config(criterion, capacity=4, max_blocks=4, add_prob=0.05, spontaneous_add_prob=1e-4)

    def build(mu):
        state = _state(criterion, [2, 2, 3])
        _set_strengths(state, 0, [0.9, 0.9])
        _set_strengths(state, 1, [0.9, 0.03])
        _set_strengths(state, 2, [0.9, 0.9, 0.9])
        state.params.mu[:] = mu
        return state

    neurons = [0.04, 0.5] + [0.04]  # blocks 0 and 1; nothing for block 2
    normals = np.ones(2 * S)
    state = build([0.9, 0.9, 0.9])
    events = _run(state, config, neurons, normals)  # at max_blocks - 1: no block draw
    assert events == [Event("add", "neuron", 0, 7)]
    assert state.widths == [3, 2, 3]

    config = config.replace(max_blocks=5)
    state = build([0.9, 0.03, 0.9])
    events = _run(state, config, neurons + [0.04], normals)  # one below = k: spontaneous
    assert events == [Event("add", "neuron", 0, 7)]
    state = build([0.9, 0.9, 0.9])
    events = _run(state, config, neurons + [0.04, 0.5], np.ones(4 * S))  # P_add, spontaneous
    assert events == [Event("add", "neuron", 0, 7), Event("add", "block", 3, 8)]
    assert state.n_blocks == 4 and state.widths == [3, 2, 3, 1]


@pytest.mark.parametrize("criterion", CRITERIA)
def test_new_neuron_and_new_block_initial_values(criterion):
    """A new neuron: W1 row = init_scale * normals[:S], W2 column from normals[S:2S] (times
    init_scale; under "outgoing" rescaled to strength T_D / 2), c 0, m T_D; memories 0
    (Adagrad), or 0.01 for W1 row and c and 0 for W2 (RMSProp). A new block on top: mu T_D
    (memory 0), one neuron drawn the same way with m 1.0."""
    config = _config(criterion)
    t_d = config.deletion_threshold
    state = _state(criterion, [2, 1])
    state.step = 17
    normals = np.random.default_rng(3).standard_normal(4 * S)
    draws = Draws([], normals)
    before = state.copy()
    assert add_neuron(state, 0, config, draws) == 3
    assert draws.used_normals == 2 * S
    block_id, neuron_id = add_block(state, config, draws)
    assert (block_id, neuron_id) == (2, 4) and draws.used_normals == 4 * S
    incoming = 0.01 if criterion == "outgoing" else 0.0
    p, mem = state.params, state.mem
    for b, j, n in ((0, 2, normals[: 2 * S]), (2, 0, normals[2 * S :])):
        np.testing.assert_array_equal(p.W1[b][j], 0.01 * n[:S])
        assert p.c[b][j] == 0.0
        column = p.W2[b][:, j]
        if criterion == "multiplier":
            np.testing.assert_array_equal(column, 0.01 * n[S:])
        else:
            assert 2 * np.abs(column).mean() == pytest.approx(0.5 * t_d, rel=1e-14)
            np.testing.assert_allclose(column / np.abs(column).sum(), n[S:] / np.abs(n[S:]).sum())
        assert np.all(mem.W1[b][j] == incoming) and mem.c[b][j] == incoming
        assert np.all(mem.W2[b][:, j] == 0.0)
    if criterion == "multiplier":
        assert p.m[0][2] == t_d and p.m[2].tolist() == [1.0]
        assert mem.m[0][2] == 0.0 and mem.m[2].tolist() == [0.0]
    else:
        assert p.m is None and mem.m is None
        assert neuron_strengths(state, 0)[2] == pytest.approx(0.5 * t_d, rel=1e-14)
    assert p.mu.tolist() == [*before.params.mu, t_d] and mem.mu[2] == 0.0
    assert state.neuron_ids[0].tolist() == [0, 1, 3] and state.neuron_ids[2].tolist() == [4]
    assert state.neuron_birth[0][2] == 17 and state.block_birth.tolist() == [0, 0, 17]
    assert block_strengths(state)[2] == t_d
    assert state.next_neuron_id == 5 and state.next_block_id == 3


@pytest.mark.parametrize("criterion", CRITERIA)
def test_new_block_on_top_changes_the_output_by_a_bounded_amount(criterion):
    """Inserted on top, the new block leaves every existing block's activations bitwise
    as they were; the logits change by exactly mu u (W_out w2), u = tanh(s_K w1) (m = 1):

        |d logits[i, c]| <= T_D * min(1, |s_K[i]|_2 |w1|_2) * |W_out[c]|_2 |w2|_2

    (|tanh a| <= min(1, |a|), Cauchy-Schwarz twice), and the mean loss by at most twice
    the largest |d logits| (its gradient in the logits, p - onehot, has L1 norm <= 2)."""
    config = _config(criterion, init_scale=0.01)
    state = _state(criterion, [2, 3], seed=11)
    x, y = _data(np.random.default_rng(12), batch=20)
    loss0, cache0 = forward(state, x, y)
    add_block(state, config, Draws([], np.random.default_rng(13).standard_normal(2 * S)))
    loss1, cache1 = forward(state, x, y)
    for name in ("z", "u", "f"):
        for before, after in zip(cache0[name], cache1[name][:2]):
            assert np.array_equal(before, after)
    for before, after in zip(cache0["streams"], cache1["streams"][:3]):
        assert np.array_equal(before, after)
    w1, w2 = state.params.W1[2][0], state.params.W2[2][:, 0]
    s_top = cache0["streams"][-1]
    u = np.tanh(s_top @ w1)
    change = cache1["logits"] - cache0["logits"]
    expected = config.deletion_threshold * np.outer(u, state.params.W_out @ w2)
    np.testing.assert_allclose(change, expected, rtol=1e-9, atol=1e-13)
    t_d = config.deletion_threshold
    u_bound = np.minimum(1.0, np.linalg.norm(s_top, axis=1) * np.linalg.norm(w1))
    bound = t_d * np.outer(u_bound, np.linalg.norm(state.params.W_out, axis=1))
    bound *= np.linalg.norm(w2)
    assert np.all(np.abs(change) <= bound)
    assert np.abs(change).max() > 0  # the block does something
    assert abs(loss1 - loss0) <= 2 * np.abs(change).max()
    assert bound.max() < 1e-3  # small: T_D times two weights of scale 0.01


# -- hypothesis: every value stays with its id -------------------------------------------
def _records(state):
    """neuron id -> (block id, birth, its entries of every per-neuron array and memory);
    block id -> (mu, its memory, its neuron ids in order, birth)."""
    neurons, blocks = {}, {}
    for b, block_id in enumerate(state.block_ids.tolist()):
        for j, neuron_id in enumerate(state.neuron_ids[b].tolist()):
            entries = []
            for tree in (state.params, state.mem):
                entries += [tree.W1[b][j].copy(), tree.c[b][j], tree.W2[b][:, j].copy()]
                if tree.m is not None:
                    entries.append(tree.m[b][j])
            neurons[neuron_id] = (block_id, int(state.neuron_birth[b][j]), entries)
        blocks[block_id] = (
            state.params.mu[b],
            state.mem.mu[b],
            state.neuron_ids[b].tolist(),
            int(state.block_birth[b]),
        )
    return neurons, blocks


def _same_entries(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def _check_consistent(state):
    """Shapes agree everywhere, ids are unique and below the counters."""
    p = state.params
    K = state.n_blocks
    assert K >= 1 and p.mu.shape == (K,) and state.block_ids.shape == (K,)
    for tree in (state.params, state.mem):
        lists = [tree.W1, tree.c, tree.W2] + ([tree.m] if tree.m is not None else [])
        assert all(len(a) == K for a in lists) and tree.mu.shape == (K,)
        for b, n in enumerate(state.widths):
            assert n >= 1
            assert tree.W1[b].shape == (n, S) and tree.c[b].shape == (n,)
            assert tree.W2[b].shape == (S, n)
            assert tree.m is None or tree.m[b].shape == (n,)
            assert state.neuron_ids[b].shape == state.neuron_birth[b].shape == (n,)
    ids = np.concatenate(state.neuron_ids)
    assert np.unique(ids).size == ids.size and ids.max() < state.next_neuron_id
    assert np.unique(state.block_ids).size == K and state.block_ids.max() < state.next_block_id


GLOBALS = ("W_in", "b_in", "W_out", "b_out")
WIDTHS = st.lists(st.integers(1, 4), min_size=1, max_size=3)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add_neuron"), st.integers(0, 9)),
        st.tuples(st.just("delete_neurons"), st.integers(0, 9), st.lists(st.booleans())),
        st.tuples(st.just("add_block")),
        st.tuples(st.just("delete_blocks"), st.lists(st.booleans())),
    ),
    min_size=1,
    max_size=25,
)


@settings(deadline=None, max_examples=60)
@given(
    criterion=st.sampled_from(CRITERIA),
    widths=WIDTHS,
    ops=OPS,
    seed=st.integers(0, 2**32 - 1),
)
def test_insertions_and_deletions_keep_values_with_their_ids(criterion, widths, ops, seed):
    """Any sequence of neuron and block insertions and deletions: after each, every
    surviving neuron and block has exactly the values (parameters and memories) and
    births it had, in the same order; new ones come at the end with the drawn values;
    removed ones are exactly those asked for; the shared arrays never move."""
    config = _config(criterion)
    rng = np.random.default_rng(seed)
    state = random_state(rng, criterion, D_IN, S, C, widths)
    shared = {
        name: (getattr(state.params, name).copy(), getattr(state.mem, name).copy())
        for name in GLOBALS
    }
    for step, op in enumerate(ops, start=1):
        state.step = step
        neurons, blocks = _records(state)
        gone_neurons, gone_blocks, born = set(), set(), {}
        if op[0] == "add_neuron":
            b = op[1] % state.n_blocks
            normals = rng.standard_normal(2 * S)
            new_id = add_neuron(state, b, config, Draws([], normals))
            born[new_id] = int(state.block_ids[b])
            assert state.neuron_ids[b][-1] == new_id
            np.testing.assert_array_equal(state.params.W1[b][-1], 0.01 * normals[:S])
        elif op[0] == "delete_neurons":
            b = op[1] % state.n_blocks
            mask = (op[2] + [False] * state.widths[b])[: state.widths[b]]
            positions = [i for i, d in enumerate(mask) if d]
            if len(positions) == state.widths[b]:
                with pytest.raises(ValueError):
                    delete_neurons(state, b, positions)
                continue
            gone_neurons = {int(state.neuron_ids[b][i]) for i in positions}
            delete_neurons(state, b, positions)
        elif op[0] == "add_block":
            normals = rng.standard_normal(2 * S)
            block_id, new_id = add_block(state, config, Draws([], normals))
            born[new_id] = block_id
            assert state.block_ids[-1] == block_id
            np.testing.assert_array_equal(state.params.W1[-1][0], 0.01 * normals[:S])
        else:
            mask = (op[1] + [False] * state.n_blocks)[: state.n_blocks]
            positions = [i for i, d in enumerate(mask) if d]
            if len(positions) == state.n_blocks:
                with pytest.raises(ValueError):
                    delete_blocks(state, positions)
                continue
            gone_blocks = {int(state.block_ids[i]) for i in positions}
            gone_neurons = {i for i, rec in neurons.items() if rec[0] in gone_blocks}
            delete_blocks(state, positions)
        _check_consistent(state)
        neurons_after, blocks_after = _records(state)
        assert set(neurons_after) == (set(neurons) - gone_neurons) | set(born)
        for neuron_id, (block_id, birth, entries) in neurons.items():
            if neuron_id in neurons_after:
                assert neurons_after[neuron_id][:2] == (block_id, birth)
                assert _same_entries(neurons_after[neuron_id][2], entries), neuron_id
        for neuron_id, block_id in born.items():
            assert neurons_after[neuron_id][:2] == (block_id, step)
        new_blocks = set(blocks_after) - set(blocks)
        assert set(blocks_after) == (set(blocks) - gone_blocks) | new_blocks
        assert len(new_blocks) == (op[0] == "add_block")
        kept = [i for i in blocks if i in blocks_after]
        assert state.block_ids.tolist()[: len(kept)] == kept  # order kept, new on top
        for block_id in kept:
            mu, mem_mu, ids, birth = blocks[block_id]
            now = blocks_after[block_id]
            assert (now[0], now[1], now[3]) == (mu, mem_mu, birth)
            survivors = [i for i in ids if i not in gone_neurons]
            assert now[2][: len(survivors)] == survivors
            assert now[2][len(survivors) :] == [i for i in born if born[i] == block_id]
        for name, (value, memory) in shared.items():
            assert np.array_equal(getattr(state.params, name), value)
            assert np.array_equal(getattr(state.mem, name), memory)


def _expected_uniforms(strengths, k, room):
    """The uniforms one group takes: shuffle and deletion draws when more than k are
    below; when there is room, the P_add draw if fewer than k are below (counted before
    the deletions), then the spontaneous draw."""
    n_below = int(np.sum(strengths <= 0.05))
    count = (n_below - 1) + (n_below - k) if n_below > k else 0
    if room:
        count += (1 if n_below < k else 0) + 1
    return count


@settings(deadline=None, max_examples=80)
@given(
    criterion=st.sampled_from(CRITERIA),
    widths=WIDTHS,
    k=st.integers(0, 2),
    delete_prob=st.sampled_from([0.0, 0.5, 1.0]),
    add_prob=st.sampled_from([0.0, 0.5, 1.0]),
    capacity=st.integers(2, 6),
    max_blocks=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_structure_step_events_match_the_changes(
    criterion, widths, k, delete_prob, add_prob, capacity, max_blocks, seed
):
    """Whole structure steps on random states with many weak neurons and blocks: the events
    say exactly which ids went and came; survivors keep their values (multipliers after
    the floor); deleted ones were below threshold, at least min(k, below) below ones stay;
    nothing grows past its capacity; the uniforms taken are as documented."""
    config = _config(
        criterion,
        keep_below=k,
        delete_prob=delete_prob,
        add_prob=add_prob,
        spontaneous_add_prob=0.3,
        capacity=capacity,
        max_blocks=max_blocks,
        init_scale=0.5,
    )
    rng = np.random.default_rng(seed)
    state = random_state(rng, criterion, D_IN, S, C, widths)
    for b, n in enumerate(widths):  # about half of them below T_D = 0.05
        weak = rng.random(n) < 0.5
        _set_strengths(state, b, np.where(weak, rng.uniform(0.0, 0.05, n), rng.uniform(0.06, 1, n)))
    state.params.mu = np.where(rng.random(len(widths)) < 0.5, 0.03, 0.9)
    state.params.mu *= rng.choice([-1.0, 1.0], len(widths))
    if criterion == "multiplier":  # what the floor will do, for the comparison
        state.params.m = [m * rng.choice([-1.0, 1.0], m.size) for m in state.params.m]
    before = state.copy()
    if criterion == "multiplier":
        before.params.m = [np.maximum(m, config.min_multiplier) for m in before.params.m]
        before.params.mu = np.maximum(before.params.mu, config.min_multiplier)
    else:
        before.params.mu = np.maximum(before.params.mu, 0.5 * config.deletion_threshold)
    strengths = [neuron_strengths(before, b) for b in range(len(widths))]
    draws = Draws.from_generator(rng, 200, 200)
    events = structure_step(state, config, draws)
    _check_consistent(state)

    neurons, blocks = _records(before)
    neurons_after, blocks_after = _records(state)
    gone_blocks = {e.block_id for e in events if e.kind == "delete" and e.level == "block"}
    gone = {e.neuron_id for e in events if e.kind == "delete" and e.level == "neuron"}
    gone |= {i for i, rec in neurons.items() if rec[0] in gone_blocks}
    born = {e.neuron_id for e in events if e.kind == "add" and e.block_id not in gone_blocks}
    assert set(neurons_after) == (set(neurons) - gone) | born
    for neuron_id, record in neurons.items():
        if neuron_id in neurons_after:
            assert neurons_after[neuron_id][:2] == record[:2]
            assert _same_entries(neurons_after[neuron_id][2], record[2])
    new_blocks = {e.block_id for e in events if e.kind == "add" and e.level == "block"}
    assert set(blocks_after) == (set(blocks) - gone_blocks) | new_blocks
    assert len(new_blocks) <= 1

    uniforms = 0
    for b, n in enumerate(widths):
        ids = before.neuron_ids[b]
        block_id = int(before.block_ids[b])
        below = strengths[b] <= 0.05
        deleted = [
            e.neuron_id
            for e in events
            if e.level == "neuron" and e.kind == "delete" and e.block_id == block_id
        ]
        assert all(below[ids.tolist().index(i)] for i in deleted)
        assert below.sum() - len(deleted) >= min(k, below.sum())
        assert n - len(deleted) >= 1
        added = sum(
            e.level == "neuron" and e.kind == "add" and e.block_id == block_id for e in events
        )
        room = n - len(deleted) < capacity - 1
        assert added <= int(room)
        uniforms += _expected_uniforms(strengths[b], k, room)
    below = np.abs(before.params.mu) <= 0.05
    assert all(below[before.block_ids.tolist().index(i)] for i in gone_blocks)
    assert state.n_blocks <= max(len(widths), max_blocks - 1)
    room = len(widths) - len(gone_blocks) < max_blocks - 1
    uniforms += _expected_uniforms(np.abs(before.params.mu), k, room)
    assert draws.used_uniforms == uniforms
    assert draws.used_normals == 2 * S * sum(e.kind == "add" for e in events)
    assert all(
        e.neuron_id == NO_NEURON for e in events if e.kind == "delete" and e.level == "block"
    )


# -- the whole step ---------------------------------------------------------------------
@pytest.mark.parametrize("criterion", CRITERIA)
def test_train_step_is_forward_backward_update_structure(criterion):
    config = _config(criterion, spontaneous_add_prob=0.5)
    state = _state(criterion, [2, 1], seed=21)
    x, y = _data(np.random.default_rng(22))
    by_hand = state.copy()
    uniforms = np.random.default_rng(23).random(50)
    normals = np.random.default_rng(24).standard_normal(50)
    loss, events = train_step(state, x, y, config, Draws(uniforms, normals))

    expected_loss, cache = forward(by_hand, x, y)
    l1 = config.l1_strength if criterion == "multiplier" else 0.0
    update(by_hand, backward(by_hand, cache, y, l1_strength=l1), config)
    expected_events = structure_step(by_hand, config, Draws(uniforms, normals))
    assert loss == expected_loss and events == expected_events
    assert state.step == 1 and by_hand.step == 0
    for key in by_hand.params.keys():
        assert np.array_equal(state.params[key], by_hand.params[key]), key
        assert np.array_equal(state.mem[key], by_hand.mem[key]), key
    with pytest.raises(ValueError):
        train_step(state, x, y, _config(CRITERIA[1 - CRITERIA.index(criterion)]), Draws([]))


@pytest.mark.parametrize("criterion", CRITERIA)
def test_training_learns_a_separable_problem(criterion):
    """300 steps on three Gaussian clusters: the mean loss falls well below ln 3, with the
    structure step running (default probabilities)."""
    rng = np.random.default_rng(31)
    centres = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    config = _config(criterion)
    state = random_state(rng, criterion, D_IN, S, C, [3, 2], scale=0.3, memories=False)
    state.mem = initial_memories(state.params, config.optimizer)
    draws = Draws.from_generator(rng, 10_000, 10_000)
    losses = []
    for _ in range(300):
        y = rng.integers(0, C, 16)
        x = centres[y] + rng.normal(0.0, 0.5, (16, D_IN))
        loss, _ = train_step(state, x, y, config, draws)
        losses.append(loss)
    assert np.mean(losses[-30:]) < 0.5 * math.log(3)
    _check_consistent(state)
