"""The structure step (compiled): multiplier floor, deletion with a reserve, addition.

In place and in order: deleting compacts the survivors as ``np.delete`` would, adding
writes index N; every weight and Adagrad memory moves with its neuron. Random draws come
from the pools of ``engine.state.Draws`` that the driver fills from the run's generators.
"""

from __future__ import annotations

from .jit import internal_kernel, kernel
from .state import BIRTH, DEATH, N_ACTIVE, NEXT_ID


@kernel(inline=True)
def _record_event(events, fill, cycle, neuron_id, kind, age, multiplier):
    e = events[fill[1]]
    e.cycle = cycle
    e.neuron_id = neuron_id
    e.kind = kind
    e.age = age
    e.multiplier = multiplier
    fill[1] += 1


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


@kernel(inline=True)
def _uniform(draws):
    """The next uniform draw in [0, 1) of the structure stream (pre-drawn by the driver)."""
    i = draws.cursor[0]
    draws.cursor[0] = i + 1
    return draws.uniforms[i]


@kernel(inline=True)
def _normal(draws, scale):
    """The next N(0, scale^2) draw of the new-weights stream (pre-drawn by the driver)."""
    i = draws.cursor[1]
    draws.cursor[1] = i + 1
    return scale * draws.normals[i]


@internal_kernel
def _shuffle(draws, items):
    """Fisher-Yates from uniform draws."""
    for i in range(items.size - 1, 0, -1):
        j = min(int(_uniform(draws) * (i + 1)), i)
        items[i], items[j] = items[j], items[i]


@internal_kernel
def _add_neuron(net, hp, draws, cycle, events, fill):
    """Append one neuron at index N: random connections, multiplier at threshold."""
    i = net.counters[N_ACTIVE]
    scale = hp.init_scale
    for v in range(hp.vocab):
        net.Wxh[i, v] = _normal(draws, scale)
        net.mem_Wxh[i, v] = 0.0
    for r in range(i):  # new column: what the new neuron sends to the others
        net.Whh[r, i] = _normal(draws, scale)
        net.mem_Whh[r, i] = 0.0
    for c in range(i + 1):  # new row: what it receives, itself included
        net.Whh[i, c] = _normal(draws, scale)
        net.mem_Whh[i, c] = 0.0
    for v in range(hp.vocab):
        net.Wiy[v, i] = _normal(draws, scale)
        net.mem_Wiy[v, i] = 0.0
    net.bh[i] = 0.0
    net.mem_bh[i] = 0.0
    net.multipliers[i] = hp.deletion_threshold
    net.mem_multipliers[i] = 0.0
    net.hidden[i] = 0.0
    new_id = net.counters[NEXT_ID]
    net.neuron_id[i] = new_id
    net.counters[NEXT_ID] = new_id + 1
    net.birth_cycle[i] = cycle
    net.counters[N_ACTIVE] = i + 1
    _record_event(events, fill, cycle, new_id, BIRTH, 0, hp.deletion_threshold)


@internal_kernel
def _structure_step(net, s, hp, draws, cycle, events, fill):
    """Multiplier floor, then deletion (keep k in reserve), then addition."""
    n = net.counters[N_ACTIVE]
    m = net.multipliers
    below = s.order
    n_below = 0
    for i in range(n):
        if m[i] < hp.min_multiplier:
            m[i] = hp.min_multiplier
        if abs(m[i]) <= hp.deletion_threshold:
            below[n_below] = i
            n_below += 1
    if n_below > hp.keep_below:
        candidates = below[:n_below]
        _shuffle(draws, candidates)
        keep = s.keep
        for i in range(n):
            keep[i] = True
        deleted = False
        for q in range(hp.keep_below, n_below):
            if _uniform(draws) < hp.delete_prob:
                i = candidates[q]
                keep[i] = False
                deleted = True
                _record_event(
                    events, fill, cycle, net.neuron_id[i], DEATH, cycle - net.birth_cycle[i], m[i]
                )
        if deleted:
            _compact(net, keep, s.order, n)
    if net.counters[N_ACTIVE] < hp.max_neurons:
        add = n_below < hp.keep_below and _uniform(draws) < hp.add_prob
        if _uniform(draws) < hp.spontaneous_add_prob:
            add = True
        if add:
            _add_neuron(net, hp, draws, cycle, events, fill)
