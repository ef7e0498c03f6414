"""The structure step (compiled): strengths, deletion with a reserve, addition.

A neuron's strength is |m| under the multiplier criterion (after the multiplier floor) and
its outgoing-weight norm under the outgoing criterion (REFERENCE-LATER.md); the rest of
the step is the same for both. In place and in order: deleting compacts the survivors as
``np.delete`` would, adding writes index N; every weight and optimizer memory moves with
its neuron (strengths are recomputed from the weights whenever needed). Random draws come
from the pools of ``engine.state.Draws`` that the driver fills from the run's generators.
"""

from __future__ import annotations

from .growth import _addition_drawn, _choose_deletions, _normal
from .jit import by_type, internal_kernel, kernel
from .state import (
    BIRTH,
    DEATH,
    N_ACTIVE,
    NEWEST,
    NEXT_ID,
    STORED,
    Adagrad,
    ByMultiplier,
    ByOutgoing,
    RMSProp,
)


@kernel(inline=True)
def _record_event(events, fill, cycle, neuron_id, kind, age, strength):
    e = events[fill[1]]
    e.cycle = cycle
    e.neuron_id = neuron_id
    e.kind = kind
    e.age = age
    e.strength = strength
    fill[1] += 1


@internal_kernel
def _multiplier_strengths(criterion, net, s, hp):
    """strengths[:N] = |m|."""
    n = net.counters[N_ACTIVE]
    m, strengths = net.multipliers, s.strengths
    for j in range(n):
        strengths[j] = abs(m[j])


@internal_kernel
def _outgoing_strengths(criterion, net, s, hp):
    """strengths[:N] = 0.5 (recurrent_scale / N sum_i |Whh[i, j]| + sum_v |Why[v, j]|),
    each sum in index order (column j of Whh: what neuron j sends to the others)."""
    n = net.counters[N_ACTIVE]
    strengths = s.strengths
    for j in range(n):
        strengths[j] = 0.0
    for i in range(n):
        row = net.Whh[i]
        for j in range(n):
            strengths[j] += abs(row[j])
    scale = criterion.recurrent_scale / max(n, 1)
    for j in range(n):
        strengths[j] *= scale
    for v in range(hp.vocab):
        row = net.Wiy[v]
        for j in range(n):
            strengths[j] += abs(row[j])
    for j in range(n):
        strengths[j] *= 0.5


# _strengths(hp.criterion, net, s, hp): every active neuron's strength into s.strengths
_strengths = by_type(
    "_strengths", {ByMultiplier: _multiplier_strengths, ByOutgoing: _outgoing_strengths}
)


@internal_kernel
def _floor_multipliers(criterion, net, hp):
    """Multipliers below min_multiplier are raised to it (the first method only)."""
    n = net.counters[N_ACTIVE]
    m = net.multipliers
    for i in range(n):
        if m[i] < criterion.min_multiplier:
            m[i] = criterion.min_multiplier


@internal_kernel
def _no_floor(criterion, net, hp):
    return


_floor = by_type("_floor", {ByMultiplier: _floor_multipliers, ByOutgoing: _no_floor})


@internal_kernel
def _adagrad_new_memory(optimizer):
    return 0.0


@internal_kernel
def _rmsprop_new_memory(optimizer):
    return optimizer.new_memory


# the optimizer memory every parameter of a new neuron starts with
_new_memory = by_type("_new_memory", {Adagrad: _adagrad_new_memory, RMSProp: _rmsprop_new_memory})


@internal_kernel
def _compact(net, keep, source, n):
    """Drop the neurons with keep[i] False, keeping the survivors' order (np.delete)."""
    vocab = net.Wxh.shape[1]
    new = 0
    for old in range(n):
        if keep[old]:
            source[new] = old
            new += 1
    # every source index is >= its destination, so copying forward in place is safe
    for r in range(new):
        o = source[r]
        net.bh[r] = net.bh[o]
        net.mem_bh[r] = net.mem_bh[o]
        net.multipliers[r] = net.multipliers[o]
        net.mem_multipliers[r] = net.mem_multipliers[o]
        net.hidden[r] = net.hidden[o]
        net.neuron_id[r] = net.neuron_id[o]
        net.birth_cycle[r] = net.birth_cycle[o]
        for v in range(vocab):
            net.Wxh[r, v] = net.Wxh[o, v]
            net.mem_Wxh[r, v] = net.mem_Wxh[o, v]
            net.Wiy[v, r] = net.Wiy[v, o]
            net.mem_Wiy[v, r] = net.mem_Wiy[v, o]
        for c in range(new):
            net.Whh[r, c] = net.Whh[o, source[c]]
            net.mem_Whh[r, c] = net.mem_Whh[o, source[c]]
    net.counters[N_ACTIVE] = new


@internal_kernel
def _multiplier_connections(criterion, net, hp, draws, i, memory):
    """A new neuron's random connections N(0, init_scale^2), multiplier at threshold
    (the first method); returns its strength."""
    scale = hp.init_scale
    for v in range(hp.vocab):
        net.Wxh[i, v] = _normal(draws, scale)
        net.mem_Wxh[i, v] = memory
    for r in range(i):  # new column: what the new neuron sends to the others
        net.Whh[r, i] = _normal(draws, scale)
        net.mem_Whh[r, i] = memory
    for c in range(i + 1):  # new row: what it receives, itself included
        net.Whh[i, c] = _normal(draws, scale)
        net.mem_Whh[i, c] = memory
    for v in range(hp.vocab):
        net.Wiy[v, i] = _normal(draws, scale)
        net.mem_Wiy[v, i] = memory
    net.multipliers[i] = hp.deletion_threshold
    net.mem_multipliers[i] = memory
    return hp.deletion_threshold


@internal_kernel
def _outgoing_connections(criterion, net, hp, draws, i, memory):
    """A new neuron's connections under the later method: incoming N(0, init_scale^2);
    outgoing drawn the same way, then rescaled so that each part of its strength is
    T_D / 2 (output weights of L1 norm T_D / 2; recurrent column, self-connection
    included, with recurrent_scale sum|column| / N_old = T_D / 2): it starts in the
    reserve, below threshold. Returns its strength (about T_D / 2, at the new N)."""
    scale = hp.init_scale
    half = 0.5 * hp.deletion_threshold
    for v in range(hp.vocab):
        net.Wxh[i, v] = _normal(draws, scale)
        net.mem_Wxh[i, v] = memory
    for c in range(i):  # new row: what it receives from the others
        net.Whh[i, c] = _normal(draws, scale)
        net.mem_Whh[i, c] = memory
    column = 0.0
    for r in range(i + 1):  # new column: what it sends, itself included
        w = _normal(draws, scale)
        net.Whh[r, i] = w
        net.mem_Whh[r, i] = memory
        column += abs(w)
    if column > 0:
        rescale = half * max(i, 1) / (criterion.recurrent_scale * column)
        column = 0.0
        for r in range(i + 1):
            net.Whh[r, i] *= rescale
            column += abs(net.Whh[r, i])
    output = 0.0
    for v in range(hp.vocab):
        w = _normal(draws, scale)
        net.Wiy[v, i] = w
        net.mem_Wiy[v, i] = memory
        output += abs(w)
    if output > 0:
        rescale = half / output
        output = 0.0
        for v in range(hp.vocab):
            net.Wiy[v, i] *= rescale
            output += abs(net.Wiy[v, i])
    net.multipliers[i] = 1.0
    net.mem_multipliers[i] = memory
    return 0.5 * (output + criterion.recurrent_scale * column / (i + 1))


_connections = by_type(
    "_connections", {ByMultiplier: _multiplier_connections, ByOutgoing: _outgoing_connections}
)


@internal_kernel
def _store_deleted(net, i, n):
    """Remember the connections of neuron ``i`` (of ``n`` active), about to be deleted, in
    the next slot of the ring (the oldest stored one is forgotten when it is full)."""
    depth = net.dead_bh.size
    slot = (net.counters[NEWEST] + 1) % depth
    net.counters[NEWEST] = slot
    net.counters[STORED] = min(net.counters[STORED] + 1, depth)
    for v in range(net.Wxh.shape[1]):
        net.dead_Wxh[slot, v] = net.Wxh[i, v]
        net.dead_Wiy[slot, v] = net.Wiy[v, i]
    net.dead_bh[slot] = net.bh[i]
    net.dead_self[slot] = net.Whh[i, i]
    k = 0
    for p in range(n):
        if p != i:
            net.dead_partner_id[slot, k] = net.neuron_id[p]
            net.dead_in[slot, k] = net.Whh[i, p]
            net.dead_out[slot, k] = net.Whh[p, i]
            k += 1
    net.dead_partners[slot] = k


@internal_kernel
def _inherit_connections(net, i, memory):
    """Give neuron ``i`` (= N) the stored connections of the most recently deleted neuron
    not yet reused, and take it off the ring: its input and output weights, its bias and
    self-connection, and its weights with every neuron alive now that was alive when it
    died; 0 with neurons born since. Every optimizer memory starts afresh (``memory``)."""
    slot = net.counters[NEWEST]
    depth = net.dead_bh.size
    net.counters[NEWEST] = (slot + depth - 1) % depth
    net.counters[STORED] -= 1
    for v in range(net.Wxh.shape[1]):
        net.Wxh[i, v] = net.dead_Wxh[slot, v]
        net.mem_Wxh[i, v] = memory
        net.Wiy[v, i] = net.dead_Wiy[slot, v]
        net.mem_Wiy[v, i] = memory
    net.bh[i] = net.dead_bh[slot]
    net.Whh[i, i] = net.dead_self[slot]
    net.mem_Whh[i, i] = memory
    # both id lists increase (ids are given in order and never reused; compaction and
    # appending keep the order): one merged walk
    k = 0
    partners = net.dead_partners[slot]
    for p in range(i):
        wanted = net.neuron_id[p]
        while k < partners and net.dead_partner_id[slot, k] < wanted:
            k += 1
        if k < partners and net.dead_partner_id[slot, k] == wanted:
            net.Whh[i, p] = net.dead_in[slot, k]
            net.Whh[p, i] = net.dead_out[slot, k]
        else:
            net.Whh[i, p] = 0.0
            net.Whh[p, i] = 0.0
        net.mem_Whh[i, p] = memory
        net.mem_Whh[p, i] = memory


@internal_kernel
def _inherited_multiplier(criterion, net, hp, i, memory):
    """An inherited neuron under the first method: multiplier at threshold, as any new one."""
    net.multipliers[i] = hp.deletion_threshold
    net.mem_multipliers[i] = memory
    return hp.deletion_threshold


@internal_kernel
def _inherited_outgoing(criterion, net, hp, i, memory):
    """An inherited neuron under the later method: its strength is its inherited outgoing
    norm (at the new N)."""
    net.multipliers[i] = 1.0
    net.mem_multipliers[i] = memory
    output = 0.0
    for v in range(hp.vocab):
        output += abs(net.Wiy[v, i])
    column = 0.0
    for r in range(i + 1):
        column += abs(net.Whh[r, i])
    return 0.5 * (output + criterion.recurrent_scale * column / (i + 1))


_inherited = by_type(
    "_inherited", {ByMultiplier: _inherited_multiplier, ByOutgoing: _inherited_outgoing}
)


@internal_kernel
def _add_neuron(net, hp, draws, cycle, events, fill):
    """Append one neuron at index N: the criterion's random connections, or with
    ``inherit_deleted`` those of the most recently deleted neuron when one is stored."""
    i = net.counters[N_ACTIVE]
    memory = _new_memory(hp.optimizer)
    if hp.inherit_deleted and net.counters[STORED] > 0:
        _inherit_connections(net, i, memory)
        strength = _inherited(hp.criterion, net, hp, i, memory)
    else:
        strength = _connections(hp.criterion, net, hp, draws, i, memory)
        net.bh[i] = 0.0
    net.mem_bh[i] = memory
    net.hidden[i] = 0.0
    new_id = net.counters[NEXT_ID]
    net.neuron_id[i] = new_id
    net.counters[NEXT_ID] = new_id + 1
    net.birth_cycle[i] = cycle
    net.counters[N_ACTIVE] = i + 1
    _record_event(events, fill, cycle, new_id, BIRTH, 0, strength)


@internal_kernel
def _structure_step(net, s, hp, draws, cycle, events, fill):
    """Multiplier floor (first method), strengths, deletion (keep k in reserve), addition:
    the rule of ``engine.growth`` on the network's neurons."""
    n = net.counters[N_ACTIVE]
    _floor(hp.criterion, net, hp)
    _strengths(hp.criterion, net, s, hp)
    strength = s.strengths
    capacity = net.hidden.size
    doomed = s.order[capacity:]
    n_below, n_doomed = _choose_deletions(
        hp.rule, strength, net.birth_cycle, n, draws, s.order[:capacity], doomed, 0
    )
    if n_doomed > 0:
        keep = s.keep
        for i in range(n):
            keep[i] = True
        for q in range(n_doomed):
            i = doomed[q]
            keep[i] = False
            _record_event(
                events,
                fill,
                cycle,
                net.neuron_id[i],
                DEATH,
                cycle - net.birth_cycle[i],
                strength[i],
            )
            if hp.inherit_deleted:
                _store_deleted(net, i, n)
        _compact(net, keep, s.order, n)
    if net.counters[N_ACTIVE] < hp.max_neurons and _addition_drawn(hp.rule, n_below, draws):
        _add_neuron(net, hp, draws, cycle, events, fill)
