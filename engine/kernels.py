"""The run loop (compiled): cycles, phases, data position, traces, divergence.

Kernels only compute; they read and write the buffers of ``engine.state`` and allocate
nothing. ``engine.run`` is the driver that validates, allocates and assembles. The order of
operations is REFERENCE.md's: forward over ``seq_len`` steps, backprop through time,
elementwise clip, Adagrad, multiplier floor, deletion, addition; under the outgoing
criterion REFERENCE-LATER.md's: RMSProp with a clipped step, the L1 step on the outgoing
weights, strengths, deletion, addition. The cycle itself is in ``engine.cycle``, the
structure step in ``engine.structure``.
"""

from __future__ import annotations

import math

import numpy as np

from .cycle import _after_update, _backward, _forward, _forward_backward, _update, _weight_gradients
from .jit import internal_kernel, kernel
from .state import (
    CYCLE,
    N_ACTIVE,
    PHASE,
    POSITION,
    SMOOTHED,
    WINDOW_CYCLES,
    WINDOW_SUM,
)
from .structure import _strengths, _structure_step

# status returned by _train
FINISHED, DIVERGED, BUFFER_FULL, NEED_DRAWS = 0, 1, 2, 3


@internal_kernel
def _record_trace(net, s, hp, trace, fill, cycle):
    n = net.counters[N_ACTIVE]
    rec = trace[fill[0]]
    rec.cycle = cycle
    rec.phase = net.counters[PHASE]
    rec.smoothed_loss = net.accum[SMOOTHED]
    window = net.counters[WINDOW_CYCLES]
    rec.mean_loss = net.accum[WINDOW_SUM] / window if window > 0 else np.nan
    rec.neurons = n
    _strengths(hp.criterion, net, s, hp)
    total = 0.0
    below = 0
    for i in range(n):
        strength = s.strengths[i]
        total += strength
        below += strength <= hp.deletion_threshold
    rec.strength_sum = total
    rec.below_threshold = below
    rec.data_position = net.counters[POSITION]
    fill[0] += 1
    net.accum[WINDOW_SUM] = 0.0
    net.counters[WINDOW_CYCLES] = 0


@kernel
def _train(net, s, hp, task, draws, n_cycles, trace, events, fill):
    """Run up to ``n_cycles`` cycles; stop early if diverged or a log buffer may overflow.

    ``task`` = (data, stream_offset, stream_length, phase_start, phase_stream). ``fill``
    holds how many trace and event records are in the buffers; the driver drains them.
    """
    data, stream_offset, stream_length, phase_start, phase_stream = task
    steps = hp.seq_len
    capacity = net.hidden.size
    # the most draws one structure step can take: a shuffle and a deletion draw per
    # neuron, two addition draws; a new neuron's weights
    uniforms_needed = 2 * capacity + 2
    normals_needed = 2 * (hp.vocab + capacity) + 1
    for _ in range(n_cycles):
        if hp.variable and (
            draws.uniforms.size - draws.cursor[0] < uniforms_needed
            or draws.normals.size - draws.cursor[1] < normals_needed
        ):
            return NEED_DRAWS
        c = net.counters[CYCLE]
        phase = net.counters[PHASE]
        if phase + 1 < phase_start.size and c >= phase_start[phase + 1]:
            phase += 1  # new phase: its data from the start, hidden state kept
            net.counters[PHASE] = phase
            net.counters[POSITION] = 0
        stream = phase_stream[phase]
        pos = net.counters[POSITION]
        if pos + steps + 1 >= stream_length[stream] or c == 0:
            pos = 0  # the data wraps: start again with a blank hidden state
            for i in range(capacity):
                net.hidden[i] = 0.0
        net.counters[POSITION] = pos
        start = stream_offset[stream] + pos
        loss = _forward(net, s, hp, data, start)
        _backward(net, s, hp, data, start)
        _weight_gradients(net, s, hp, data, start)
        n = net.counters[N_ACTIVE]
        for j in range(n):
            net.hidden[j] = s.hs[steps, j]
        net.accum[SMOOTHED] = hp.smoothing * net.accum[SMOOTHED] + (1.0 - hp.smoothing) * loss
        net.accum[WINDOW_SUM] += loss
        net.counters[WINDOW_CYCLES] += 1
        if not math.isfinite(loss):
            net.counters[CYCLE] = c + 1
            _record_trace(net, s, hp, trace, fill, c + 1)
            return DIVERGED
        _update(hp.optimizer, net, s, hp)
        _after_update(hp.criterion, net, hp)
        if hp.variable:
            _structure_step(net, s, hp, draws, c + 1, events, fill)
        net.counters[POSITION] = pos + steps
        net.counters[CYCLE] = c + 1
        if (c + 1) % hp.log_every == 0:
            _record_trace(net, s, hp, trace, fill, c + 1)
        if fill[0] >= trace.size or fill[1] + capacity + 1 > events.size:
            return BUFFER_FULL
    return FINISHED


@kernel
def _one_cycle(net, s, hp, data, start, draws, cycle, events, fill, structure):
    """One cycle (no data bookkeeping), for tests and benchmarks: returns the loss."""
    loss = _forward_backward(net, s, hp, data, start)
    n = net.counters[N_ACTIVE]
    for j in range(n):
        net.hidden[j] = s.hs[hp.seq_len, j]
    _update(hp.optimizer, net, s, hp)
    _after_update(hp.criterion, net, hp)
    if structure and hp.variable:
        _structure_step(net, s, hp, draws, cycle, events, fill)
    return loss
