"""The compiled kernels: one training cycle, the structure step and the run loop.

Kernels only compute; they read and write the buffers of ``engine.state`` and allocate
nothing. ``engine.run`` is the driver that validates, allocates and assembles. The order of
operations is REFERENCE.md's: forward over ``seq_len`` steps, backprop through time,
elementwise clip, Adagrad, multiplier floor, deletion, addition.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import inline_kernel, kernel
from .state import (
    BIRTH,
    CYCLE,
    DEATH,
    N_ACTIVE,
    NEXT_ID,
    PHASE,
    POSITION,
    SMOOTHED,
    WINDOW_CYCLES,
    WINDOW_SUM,
)

# status returned by _train
FINISHED, DIVERGED, BUFFER_FULL = 0, 1, 2

# 2**-k for the tanh below; exact powers of two
_POW2_NEG = 2.0 ** -np.arange(64, dtype=np.float64)
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.4426950408889634


@inline_kernel
def _tanh(x):
    """tanh(x) from an inline expm1, so that loops over neurons vectorise (libm's tanh is a
    scalar call and a third of the cycle). tanh|x| = -u / (u + 2) with u = expm1(-2|x|);
    expm1(z) = 2^k (1 + q(r)) - 1, z = k ln2 + r, |r| <= ln2 / 2, q a degree-13 Taylor
    polynomial (truncation < 2e-16). Written as s*q + (s - 1) so that k = 0 is exact.
    Accurate to a few ulp in float64; NaN stays NaN."""
    ax = abs(np.float64(x))
    if ax > 20.0:  # tanh(20) rounds to 1.0; also keeps k inside the table
        ax = 20.0
    z = -2.0 * ax
    k = math.floor(z * _LOG2E + 0.5)
    r = z - k * _LN2_HI - k * _LN2_LO
    q = 1.0 / 6227020800.0
    q = q * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    q = q * r + 1.0
    q = q * r
    s = _POW2_NEG[int(-k)]
    u = s * q + (s - 1.0)
    return math.copysign(-u / (u + 2.0), x)


@inline_kernel
def _add_matvec(W, v, out, rows, n):
    """out[:rows] += W[:rows, :n] @ v[:n]. Four rows at a time: one load of v[j] serves four
    dot products, which halves the time at N = 27 (the forward's serial chain)."""
    i = 0
    while i + 4 <= rows:
        a0, a1, a2, a3 = out[i], out[i + 1], out[i + 2], out[i + 3]
        r0, r1, r2, r3 = W[i], W[i + 1], W[i + 2], W[i + 3]
        for j in range(n):
            vj = v[j]
            a0 += r0[j] * vj
            a1 += r1[j] * vj
            a2 += r2[j] * vj
            a3 += r3[j] * vj
        out[i], out[i + 1], out[i + 2], out[i + 3] = a0, a1, a2, a3
        i += 4
    while i < rows:
        acc = out[i]
        row = W[i]
        for j in range(n):
            acc += row[j] * v[j]
        out[i] = acc
        i += 1


@inline_kernel
def _add_matvec_transposed(W, v, out, rows, n):
    """out[:n] += W[:rows, :n].T @ v[:rows], reading W by rows (contiguous), four at a time so
    that ``out`` is loaded and stored once per four rows (the backward's serial chain)."""
    i = 0
    while i + 4 <= rows:
        a0, a1, a2, a3 = v[i], v[i + 1], v[i + 2], v[i + 3]
        r0, r1, r2, r3 = W[i], W[i + 1], W[i + 2], W[i + 3]
        for j in range(n):
            out[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j]
        i += 4
    while i < rows:
        a0 = v[i]
        row = W[i]
        for j in range(n):
            out[j] += a0 * row[j]
        i += 1


@kernel
def _forward_backward(net, s, hp, data, start):
    """Loss of one cycle and its gradients into ``s`` (no clipping, no update).

    Reads characters ``data[start : start + seq_len + 1]``; leaves the last hidden state
    in ``s.hs[seq_len]``. In fixed mode the multipliers are all 1 and get no gradient.
    """
    n = net.counters[N_ACTIVE]
    steps = hp.seq_len
    vocab = hp.vocab
    m = net.multipliers
    Wxh, Whh, Wiy = net.Wxh, net.Whh, net.Wiy
    hs, probs, dh_raw = s.hs, s.probs, s.dh_raw
    work = s.work
    for j in range(n):
        hs[0, j] = net.hidden[j]
    loss = 0.0
    for t in range(steps):
        x = data[start + t]
        prev = hs[t]
        cur = hs[t + 1]
        for i in range(n):
            cur[i] = Wxh[i, x] + net.bh[i]
        _add_matvec(Whh, prev, cur, n, n)
        for i in range(n):
            cur[i] = _tanh(cur[i])
            work[i] = m[i] * cur[i]
        # softmax as the published code computes it (no max shift): a runaway network
        # overflows to inf/NaN and is reported as diverged instead of training on
        p = probs[t]
        for v in range(vocab):
            p[v] = net.by[v]
        _add_matvec(Wiy, work, p, vocab, n)
        total = 0.0
        for v in range(vocab):
            e = math.exp(p[v])
            p[v] = e
            total += e
        for v in range(vocab):
            p[v] /= total
        loss -= math.log(p[data[start + t + 1]])

    dWxh, dWiy, dbh, dby, dm = s.dWxh, s.dWiy, s.dbh, s.dby, s.dmultipliers
    dh_next = s.dh_next
    dWxh_t = s.dWxh_by_input
    for v in range(vocab):
        for i in range(n):
            dWxh_t[v, i] = 0.0
    for i in range(n):
        dbh[i] = 0.0
        dm[i] = 0.0
        dh_next[i] = 0.0
    for v in range(vocab):
        dby[v] = 0.0
    l1 = hp.l1_strength
    for t in range(steps - 1, -1, -1):
        x = data[start + t]
        target = data[start + t + 1]
        cur = hs[t + 1]
        dy = probs[t]
        dy[target] -= 1.0  # probs become the output error, kept for dWiy below
        for v in range(vocab):
            dby[v] += dy[v]
        for j in range(n):
            work[j] = 0.0
        _add_matvec_transposed(Wiy, dy, work, vocab, n)  # the gradient at m * h
        if hp.variable:
            for j in range(n):
                # the L1 term is added at every step, as the published code does
                sign = 1.0 if m[j] > 0 else (-1.0 if m[j] < 0 else 0.0)
                dm[j] += work[j] * cur[j] + l1 * sign
        draw = dh_raw[t]
        for j in range(n):
            dh = m[j] * work[j] + dh_next[j]
            dr = (1.0 - cur[j] * cur[j]) * dh
            draw[j] = dr
            dbh[j] += dr
            dWxh_t[x, j] += dr  # contiguous, so that this loop vectorises
            dh_next[j] = 0.0
        _add_matvec_transposed(Whh, draw, dh_next, n, n)
    for i in range(n):
        for v in range(vocab):
            dWxh[i, v] = dWxh_t[v, i]
    # weight gradients summed over steps after the loop, so that each row stays in cache:
    # dWhh = sum_t outer(dr_t, h_{t-1}); dWiy = sum_t outer(dy_t, h_t) * m
    i = 0
    while i + 4 <= n:
        _sum_outer_four_rows(dh_raw, i, hs, s.dWhh, steps, n)
        i += 4
    while i < n:
        _sum_outer_row(dh_raw, i, hs, 0, s.dWhh[i], steps, n)
        i += 1
    for v in range(vocab):
        grow = dWiy[v]
        _sum_outer_row(probs, v, hs, 1, grow, steps, n)
        for j in range(n):
            grow[j] *= m[j]
    return loss


@inline_kernel
def _sum_outer_four_rows(coeffs, i, rows, out, steps, n):
    """out[i:i+4, :n] = sum_t outer(coeffs[t, i:i+4], rows[t, :n]), two steps at a time.

    Each loaded row element serves four output rows: the single-row version is bound by
    loads (one per multiply-add); this one does four multiply-adds per load."""
    o0, o1, o2, o3 = out[i], out[i + 1], out[i + 2], out[i + 3]
    for j in range(n):
        o0[j] = 0.0
        o1[j] = 0.0
        o2[j] = 0.0
        o3[j] = 0.0
    t = 0
    while t + 2 <= steps:
        c0, c1 = coeffs[t], coeffs[t + 1]
        a0, a1, a2, a3 = c0[i], c0[i + 1], c0[i + 2], c0[i + 3]
        b0, b1, b2, b3 = c1[i], c1[i + 1], c1[i + 2], c1[i + 3]
        h0, h1 = rows[t], rows[t + 1]
        for j in range(n):
            x0 = h0[j]
            x1 = h1[j]
            o0[j] += a0 * x0 + b0 * x1
            o1[j] += a1 * x0 + b1 * x1
            o2[j] += a2 * x0 + b2 * x1
            o3[j] += a3 * x0 + b3 * x1
        t += 2
    while t < steps:
        c0 = coeffs[t]
        a0, a1, a2, a3 = c0[i], c0[i + 1], c0[i + 2], c0[i + 3]
        h0 = rows[t]
        for j in range(n):
            x0 = h0[j]
            o0[j] += a0 * x0
            o1[j] += a1 * x0
            o2[j] += a2 * x0
            o3[j] += a3 * x0
        t += 1


@inline_kernel
def _sum_outer_row(coeffs, i, rows, shift, out, steps, n):
    """out[:n] = sum_t coeffs[t, i] * rows[t + shift, :n], four steps at a time."""
    for j in range(n):
        out[j] = 0.0
    t = 0
    while t + 4 <= steps:
        a0, a1, a2, a3 = coeffs[t, i], coeffs[t + 1, i], coeffs[t + 2, i], coeffs[t + 3, i]
        h0, h1 = rows[t + shift], rows[t + 1 + shift]
        h2, h3 = rows[t + 2 + shift], rows[t + 3 + shift]
        for j in range(n):
            out[j] += a0 * h0[j] + a1 * h1[j] + a2 * h2[j] + a3 * h3[j]
        t += 4
    while t < steps:
        a0 = coeffs[t, i]
        h0 = rows[t + shift]
        for j in range(n):
            out[j] += a0 * h0[j]
        t += 1


@inline_kernel
def _adagrad_step(w, mem, g, j, hp):
    """Clip g to [-grad_clip, grad_clip], then the Adagrad step on w[j] (memory mem[j])."""
    g = min(max(g, -hp.grad_clip), hp.grad_clip)
    acc = mem[j] + g * g
    mem[j] = acc
    w[j] -= hp.learning_rate * g / math.sqrt(acc + hp.adagrad_eps)


@kernel
def _adagrad_rows(w, mem, g, rows, cols, hp):
    """Clip and Adagrad on the block ``[:rows, :cols]`` of a 2-D parameter."""
    for i in range(rows):
        wr, mr, gr = w[i], mem[i], g[i]
        for j in range(cols):
            _adagrad_step(wr, mr, gr[j], j, hp)


@kernel
def _adagrad_vector(w, mem, g, size, hp):
    for j in range(size):
        _adagrad_step(w, mem, g[j], j, hp)


@kernel
def _update(net, s, hp):
    """Clip every gradient and apply Adagrad to every parameter."""
    n = net.counters[N_ACTIVE]
    _adagrad_rows(net.Wxh, net.mem_Wxh, s.dWxh, n, hp.vocab, hp)
    _adagrad_rows(net.Whh, net.mem_Whh, s.dWhh, n, n, hp)
    _adagrad_rows(net.Wiy, net.mem_Wiy, s.dWiy, hp.vocab, n, hp)
    _adagrad_vector(net.bh, net.mem_bh, s.dbh, n, hp)
    _adagrad_vector(net.by, net.mem_by, s.dby, hp.vocab, hp)
    if hp.variable:
        _adagrad_vector(net.multipliers, net.mem_multipliers, s.dmultipliers, n, hp)


@kernel
def _record_event(events, fill, cycle, neuron_id, kind, age, multiplier):
    e = events[fill[1]]
    e.cycle = cycle
    e.neuron_id = neuron_id
    e.kind = kind
    e.age = age
    e.multiplier = multiplier
    fill[1] += 1


@kernel
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


# Numba compiles a Generator method anew at every call site (seconds each); one small
# kernel per kind of draw keeps the cold compile short. Same draws as calling rng directly.
@kernel
def _normal(rng, scale):
    return rng.normal(0.0, scale)


@kernel
def _uniform(rng):
    return rng.random()


@kernel
def _shuffle(rng, items):
    """Fisher-Yates from uniform draws (Generator.shuffle alone takes ~4 s to compile)."""
    for i in range(items.size - 1, 0, -1):
        j = min(int(_uniform(rng) * (i + 1)), i)
        items[i], items[j] = items[j], items[i]


@kernel
def _add_neuron(net, hp, rng, cycle, events, fill):
    """Append one neuron at index N: random connections, multiplier at threshold."""
    i = net.counters[N_ACTIVE]
    scale = hp.init_scale
    for v in range(hp.vocab):
        net.Wxh[i, v] = _normal(rng, scale)
        net.mem_Wxh[i, v] = 0.0
    for r in range(i):  # new column: what the new neuron sends to the others
        net.Whh[r, i] = _normal(rng, scale)
        net.mem_Whh[r, i] = 0.0
    for c in range(i + 1):  # new row: what it receives, itself included
        net.Whh[i, c] = _normal(rng, scale)
        net.mem_Whh[i, c] = 0.0
    for v in range(hp.vocab):
        net.Wiy[v, i] = _normal(rng, scale)
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


@kernel
def _structure_step(net, s, hp, rng, cycle, events, fill):
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
        _shuffle(rng, candidates)
        keep = s.keep
        for i in range(n):
            keep[i] = True
        deleted = False
        for q in range(hp.keep_below, n_below):
            if _uniform(rng) < hp.delete_prob:
                i = candidates[q]
                keep[i] = False
                deleted = True
                _record_event(
                    events, fill, cycle, net.neuron_id[i], DEATH, cycle - net.birth_cycle[i], m[i]
                )
        if deleted:
            _compact(net, keep, s.order, n)
    if net.counters[N_ACTIVE] < hp.max_neurons:
        add = n_below < hp.keep_below and _uniform(rng) < hp.add_prob
        if _uniform(rng) < hp.spontaneous_add_prob:
            add = True
        if add:
            _add_neuron(net, hp, rng, cycle, events, fill)


@kernel
def _below_threshold(net, hp):
    count = 0
    for i in range(net.counters[N_ACTIVE]):
        if abs(net.multipliers[i]) <= hp.deletion_threshold:
            count += 1
    return count


@kernel
def _record_trace(net, hp, trace, fill, cycle):
    n = net.counters[N_ACTIVE]
    rec = trace[fill[0]]
    rec.cycle = cycle
    rec.phase = net.counters[PHASE]
    rec.smoothed_loss = net.accum[SMOOTHED]
    window = net.counters[WINDOW_CYCLES]
    rec.mean_loss = net.accum[WINDOW_SUM] / window if window > 0 else np.nan
    rec.neurons = n
    total = 0.0
    for i in range(n):
        total += abs(net.multipliers[i])
    rec.multiplier_sum = total
    rec.below_threshold = _below_threshold(net, hp)
    rec.data_position = net.counters[POSITION]
    fill[0] += 1
    net.accum[WINDOW_SUM] = 0.0
    net.counters[WINDOW_CYCLES] = 0


@kernel
def _train(net, s, hp, task, rng, n_cycles, trace, events, fill):
    """Run up to ``n_cycles`` cycles; stop early if diverged or a log buffer may overflow.

    ``task`` = (data, stream_offset, stream_length, phase_start, phase_stream). ``fill``
    holds how many trace and event records are in the buffers; the driver drains them.
    """
    data, stream_offset, stream_length, phase_start, phase_stream = task
    steps = hp.seq_len
    capacity = net.hidden.size
    for _ in range(n_cycles):
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
        loss = _forward_backward(net, s, hp, data, stream_offset[stream] + pos)
        n = net.counters[N_ACTIVE]
        for j in range(n):
            net.hidden[j] = s.hs[steps, j]
        net.accum[SMOOTHED] = hp.smoothing * net.accum[SMOOTHED] + (1.0 - hp.smoothing) * loss
        net.accum[WINDOW_SUM] += loss
        net.counters[WINDOW_CYCLES] += 1
        if not math.isfinite(loss):
            net.counters[CYCLE] = c + 1
            _record_trace(net, hp, trace, fill, c + 1)
            return DIVERGED
        _update(net, s, hp)
        if hp.variable:
            _structure_step(net, s, hp, rng, c + 1, events, fill)
        net.counters[POSITION] = pos + steps
        net.counters[CYCLE] = c + 1
        if (c + 1) % hp.log_every == 0:
            _record_trace(net, hp, trace, fill, c + 1)
        if fill[0] >= trace.size or fill[1] + capacity + 1 > events.size:
            return BUFFER_FULL
    return FINISHED


@kernel
def _one_cycle(net, s, hp, data, start, rng, cycle, events, fill, structure):
    """One cycle (no data bookkeeping), for tests and benchmarks: returns the loss."""
    loss = _forward_backward(net, s, hp, data, start)
    n = net.counters[N_ACTIVE]
    for j in range(n):
        net.hidden[j] = s.hs[hp.seq_len, j]
    _update(net, s, hp)
    if structure and hp.variable:
        _structure_step(net, s, hp, rng, cycle, events, fill)
    return loss
