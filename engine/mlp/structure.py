"""The feedforward structure step (compiled): widths layer by layer, then the depth.

The rule (which units go, whether one comes) is ``engine.growth``'s, the recurrent
network's own; this module says what a unit is here. First every block's neurons, in
block order: multiplier floor (first method), strengths (|m|, or twice the mean absolute
outgoing weight), deletion, addition of a neuron at the block's end. Then the blocks:
floor, strengths |mu|, deletion (a deleted block's successors move down, so the order of
the rest is kept), addition of a new block on top.

Where a new block goes, and why on top: a block inserted between two others would change
the input of every block above it at once; on top (after the last block, before the
output layer) no existing block's input changes, and with mu = T_D and a single neuron
its first effect on the output is a small residual correction, a reserve block below
threshold, as the paper's conclusion describes. Gradient descent then grows its mu (and
its width) if it helps, or the L1 penalty lets it sink and go.
"""

from __future__ import annotations

import numpy as np

from ..growth import _addition_drawn, _choose_deletions, _normal
from ..jit import by_type, internal_kernel, kernel
from ..state import BIRTH, DEATH, Adagrad, ByMultiplier, ByOutgoing, RMSProp
from .state import BLOCK_LEVEL, N_BLOCKS, NEURON_LEVEL, NEXT_BLOCK, NEXT_NEURON

# an int64 zero that is not a literal: a literal 0 passed to a helper makes Numba compile
# that helper a second time for the literal type (measured: 1-2 s of cold compile each)
_ZERO = np.int64(0)


@kernel(inline=True)
def _record(events, fill, cycle, neuron_id, kind, age, strength, block_id, level):
    e = events[fill[1]]
    e.cycle = cycle
    e.neuron_id = neuron_id
    e.kind = kind
    e.age = age
    e.strength = strength
    e.block_id = block_id
    e.level = level
    fill[1] += 1


@internal_kernel
def _multiplier_strengths(criterion, net, b, strengths):
    """strengths[:n] = |m| of block b's neurons."""
    m = net.m[b]
    for j in range(net.width[b]):
        strengths[j] = abs(m[j])


@internal_kernel
def _outgoing_strengths(criterion, net, b, strengths):
    """strengths[:n] = 2 sum_r |W2_b[j, r]| / S: twice the mean absolute weight neuron j
    writes to the stream (each sum in index order)."""
    W2 = net.W2[b]
    S = W2.shape[1]
    for j in range(net.width[b]):
        row = W2[j]
        total = 0.0
        for r in range(S):
            total += abs(row[r])
        strengths[j] = 2.0 * total / S


_neuron_strengths = by_type(
    "_neuron_strengths", {ByMultiplier: _multiplier_strengths, ByOutgoing: _outgoing_strengths}
)


@internal_kernel
def _floor_multipliers(criterion, values, n):
    """values[:n] raised to min_multiplier (the first method)."""
    for i in range(n):
        if values[i] < criterion.min_multiplier:
            values[i] = criterion.min_multiplier


@internal_kernel
def _no_floor(criterion, values, n):
    return


_floor = by_type("_floor", {ByMultiplier: _floor_multipliers, ByOutgoing: _no_floor})


@internal_kernel
def _floor_outgoing_blocks(criterion, values, n, threshold):
    """Block multipliers raised to T_D / 2 under the later method (see ``_floor_blocks``)."""
    floor = 0.5 * threshold
    for i in range(n):
        if values[i] < floor:
            values[i] = floor


@internal_kernel
def _floor_multiplier_blocks(criterion, values, n, threshold):
    _floor_multipliers(criterion, values, n)


# Block multipliers are floored under both methods: at M_min (the first method, as its
# neuron multipliers), at T_D / 2 (the later method, the level its new units start at).
# Without a floor a block multiplier can cross zero at a task switch, and a block of
# healthy neurons is deleted with it; and mu = 0 with W2 = 0 is a state no gradient
# leaves (each one's gradient is proportional to the other), so the L1 steps on both
# made a network of one dead block that never grew again (measured: the later method on
# the easy-hard-easy teachers lost its largest block, of 92 neurons, 18 steps after the
# switch, and was down to 1 neuron 1,000 steps later, for good).
_floor_blocks = by_type(
    "_floor_blocks", {ByMultiplier: _floor_multiplier_blocks, ByOutgoing: _floor_outgoing_blocks}
)


@internal_kernel
def _adagrad_memory(optimizer):
    return 0.0


@internal_kernel
def _rmsprop_memory(optimizer):
    return optimizer.new_memory


# the optimizer memory of a new neuron's incoming weights (W1 row, c); its outgoing
# weights and multipliers start at 0, as at the start of a run
_incoming_memory = by_type("_incoming_memory", {Adagrad: _adagrad_memory, RMSProp: _rmsprop_memory})


@internal_kernel
def _no_rescale(criterion, row, threshold):
    return


@internal_kernel
def _rescale_outgoing(criterion, row, threshold):
    """The later method's new neuron starts in reserve: its outgoing weights rescaled so
    that its strength is T_D / 2 (left alone if all zero)."""
    S = row.size
    total = 0.0
    for r in range(S):
        total += abs(row[r])
    strength = 2.0 * total / S
    if strength > 0:
        factor = 0.5 * threshold / strength
        for r in range(S):
            row[r] *= factor


_rescale = by_type("_rescale", {ByMultiplier: _no_rescale, ByOutgoing: _rescale_outgoing})


@internal_kernel
def _new_neuron(net, hp, draws, b, j, multiplier, cycle):
    """Neuron j of block b, new: its W1 row then its W2 row from 2 S normal draws times
    init_scale (the later method's W2 row rescaled), c = 0, multiplier ``multiplier``;
    memories: incoming as the optimizer starts them, outgoing and multiplier 0. Returns
    its id."""
    W1, W2 = net.W1[b, j], net.W2[b, j]
    S = W1.size
    memory = _incoming_memory(hp.optimizer)
    for r in range(S):
        W1[r] = _normal(draws, hp.init_scale)
        net.mem_W1[b, j, r] = memory
    for r in range(S):
        W2[r] = _normal(draws, hp.init_scale)
        net.mem_W2[b, j, r] = 0.0
    _rescale(hp.criterion, W2, hp.deletion_threshold)
    net.c[b, j] = 0.0
    net.mem_c[b, j] = memory
    net.m[b, j] = multiplier
    net.mem_m[b, j] = 0.0
    new_id = net.counters[NEXT_NEURON]
    net.counters[NEXT_NEURON] = new_id + 1
    net.neuron_id[b, j] = new_id
    net.neuron_birth[b, j] = cycle
    return new_id


@internal_kernel
def _copy_neuron(net, b_from, j_from, b_to, j_to):
    """Every parameter, memory and record of a neuron, to another slot."""
    S = net.W1.shape[2]
    for r in range(S):
        net.W1[b_to, j_to, r] = net.W1[b_from, j_from, r]
        net.mem_W1[b_to, j_to, r] = net.mem_W1[b_from, j_from, r]
        net.W2[b_to, j_to, r] = net.W2[b_from, j_from, r]
        net.mem_W2[b_to, j_to, r] = net.mem_W2[b_from, j_from, r]
    net.c[b_to, j_to] = net.c[b_from, j_from]
    net.mem_c[b_to, j_to] = net.mem_c[b_from, j_from]
    net.m[b_to, j_to] = net.m[b_from, j_from]
    net.mem_m[b_to, j_to] = net.mem_m[b_from, j_from]
    net.neuron_id[b_to, j_to] = net.neuron_id[b_from, j_from]
    net.neuron_birth[b_to, j_to] = net.neuron_birth[b_from, j_from]


@internal_kernel
def _neuron_step(net, s, hp, draws, b, cycle, events, fill):
    """Block b's width: floor, strengths, deletion, addition."""
    n = net.width[b]
    if hp.learn_multipliers:
        _floor(hp.criterion, net.m[b], n)
    strength = s.strengths
    _neuron_strengths(hp.criterion, net, b, strength)
    n_below, n_doomed = _choose_deletions(
        hp.rule, strength, net.neuron_birth[b], n, draws, s.order, s.doomed, 1
    )
    if n_doomed > 0:
        keep = s.keep
        for j in range(n):
            keep[j] = True
        block = net.block_id[b]
        for q in range(n_doomed):
            j = s.doomed[q]
            keep[j] = False
            age = cycle - net.neuron_birth[b, j]
            _record(events, fill, cycle, net.neuron_id[b, j], DEATH, age, strength[j], block, 0)
        new = _ZERO
        for j in range(n):  # survivors move down, in order (np.delete)
            if keep[j]:
                if new != j:
                    _copy_neuron(net, b, j, b, new)
                new += 1
        net.width[b] = new
    if net.width[b] < hp.max_width and _addition_drawn(hp.rule, n_below, draws):
        j = net.width[b]
        # at threshold, in the reserve, when multipliers are learned; 1 (no multiplier)
        # under the outgoing criterion, whose strength starts at T_D / 2 instead
        multiplier = hp.deletion_threshold if hp.learn_multipliers else 1.0
        new_id = _new_neuron(net, hp, draws, b, j, multiplier, cycle)
        net.width[b] = j + 1
        _neuron_strengths(hp.criterion, net, b, strength)
        _record(events, fill, cycle, new_id, BIRTH, 0, strength[j], net.block_id[b], 0)


@internal_kernel
def _copy_block(net, b_from, b_to):
    for j in range(net.width[b_from]):
        _copy_neuron(net, b_from, j, b_to, j)
    net.width[b_to] = net.width[b_from]
    net.mu[b_to] = net.mu[b_from]
    net.mem_mu[b_to] = net.mem_mu[b_from]
    net.block_id[b_to] = net.block_id[b_from]
    net.block_birth[b_to] = net.block_birth[b_from]


@internal_kernel
def _add_block(net, s, hp, draws, cycle, events, fill):
    """A new block on top (slot K): mu = T_D (memory 0), one neuron of multiplier 1."""
    b = net.counters[N_BLOCKS]
    new_id = _new_neuron(net, hp, draws, b, _ZERO, 1.0, cycle)
    net.width[b] = 1
    net.mu[b] = hp.deletion_threshold
    net.mem_mu[b] = 0.0
    block = net.counters[NEXT_BLOCK]
    net.counters[NEXT_BLOCK] = block + 1
    net.block_id[b] = block
    net.block_birth[b] = cycle
    net.counters[N_BLOCKS] = b + 1
    _record(events, fill, cycle, -1, BIRTH, 0, abs(net.mu[b]), block, BLOCK_LEVEL)
    _neuron_strengths(hp.criterion, net, b, s.strengths)
    _record(events, fill, cycle, new_id, BIRTH, 0, s.strengths[0], block, NEURON_LEVEL)


@internal_kernel
def _block_step(net, s, hp, draws, cycle, events, fill):
    """The depth: floor (``_floor_blocks``), strengths |mu|, deletion, addition on top."""
    K = net.counters[N_BLOCKS]
    _floor_blocks(hp.criterion, net.mu, K, hp.deletion_threshold)
    strength = s.strengths
    for b in range(K):
        strength[b] = abs(net.mu[b])
    n_below, n_doomed = _choose_deletions(
        hp.rule, strength, net.block_birth, K, draws, s.order, s.doomed, 1
    )
    if n_doomed > 0:
        keep = s.keep
        for b in range(K):
            keep[b] = True
        for q in range(n_doomed):
            b = s.doomed[q]
            keep[b] = False
            block = net.block_id[b]
            age = cycle - net.block_birth[b]
            _record(events, fill, cycle, -1, DEATH, age, strength[b], block, BLOCK_LEVEL)
            # then its neurons, each with its own event and strength (computed into the
            # gradient buffer's first row, free between steps)
            _neuron_strengths(hp.criterion, net, b, s.da[0])
            for j in range(net.width[b]):
                age = cycle - net.neuron_birth[b, j]
                _record(events, fill, cycle, net.neuron_id[b, j], DEATH, age, s.da[0, j], block, 0)
        new = _ZERO
        for b in range(K):
            if keep[b]:
                if new != b:
                    _copy_block(net, b, new)
                new += 1
        net.counters[N_BLOCKS] = new
    if net.counters[N_BLOCKS] < hp.max_depth and _addition_drawn(hp.rule, n_below, draws):
        _add_block(net, s, hp, draws, cycle, events, fill)


@internal_kernel
def _mlp_structure_step(net, s, hp, draws, cycle, events, fill):
    """Widths (block by block, in order), then depth; each only when learned."""
    if hp.learn_width:
        for b in range(net.counters[N_BLOCKS]):
            _neuron_step(net, s, hp, draws, b, cycle, events, fill)
    if hp.learn_depth:
        _block_step(net, s, hp, draws, cycle, events, fill)
