"""One training cycle: forward, backprop through time, the update (compiled).

What is inherently serial is kept as short as it can be: the forward chain is one
mat-vec and one tanh per step, the backward chain one element-wise step and one
transposed mat-vec per step. Everything else (outputs, softmax and loss of all steps, the
gradient at the output of every step, every weight gradient) is done after the chain, for
all steps at once, in loops that vectorise. The arithmetic is REFERENCE.md's; only the
order of summation differs from the published code.
"""

from __future__ import annotations

import math

from .jit import by_type, internal_kernel, kernel
from .mathfn import _exp, _log, _tanh
from .state import LANES, N_ACTIVE, Adagrad, ByMultiplier, ByOutgoing, RMSProp


@internal_kernel
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


@internal_kernel
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


@kernel(exact=True, internal=True)
def _tanh_in_place(row, width):
    """row[:width] = tanh(row[:width]); ``width`` a multiple of LANES (whole vectors, no
    scalar remainder on the forward's chain). Compiled without reassociation, for the
    range reduction of ``_tanh`` (see ``engine.mathfn``)."""
    for i in range(width):
        row[i] = _tanh(row[i])


@kernel(exact=True, internal=True)
def _softmax_loss(probs, probs_flat, totals, target_logits, steps, vocab):
    """Logits to probabilities in place, for every step at once; returns the summed loss
    -log p(target) = log(sum exp) - logit(target). No max shift, as the published code:
    a runaway network overflows to inf/NaN and is reported as diverged."""
    for k in range(steps * vocab):
        probs_flat[k] = _exp(probs_flat[k])
    for t in range(steps):
        total = 0.0
        for v in range(vocab):
            total += probs[t, v]
        totals[t] = total
    for t in range(steps):
        for v in range(vocab):
            probs[t, v] /= totals[t]
    loss = 0.0
    for t in range(steps):
        loss += _log(totals[t]) - target_logits[t]
    return loss


@internal_kernel
def _forward(net, s, hp, data, start):
    """The forward pass of one cycle; returns its loss. Starts from ``net.hidden``; leaves
    the hidden states in ``s.hs`` (the last in ``s.hs[seq_len]``), the probabilities in
    ``s.probs``."""
    n = net.counters[N_ACTIVE]
    width = -(-n // LANES) * LANES
    steps = hp.seq_len
    vocab = hp.vocab
    Wxh, Whh, Wiy, bh, by, m = net.Wxh, net.Whh, net.Wiy, net.bh, net.by, net.multipliers
    hs, probs = s.hs, s.probs
    for j in range(n):
        hs[0, j] = net.hidden[j]
    # the serial chain: h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)
    for t in range(steps):
        x = data[start + t]
        cur = hs[t + 1]
        for i in range(n):
            cur[i] = Wxh[i, x] + bh[i]
        _add_matvec(Whh, hs[t], cur, n, n)
        _tanh_in_place(cur, width)
    # outputs of every step: y_t = Wiy (m * h_t) + by = (Wiy * m) h_t + by
    weighted = s.weighted_output
    for v in range(vocab):
        for j in range(n):
            weighted[v, j] = Wiy[v, j] * m[j]
    for t in range(steps):
        row = probs[t]
        for v in range(vocab):
            row[v] = by[v]
        _add_matvec(weighted, hs[t + 1], row, vocab, n)
        s.target_logits[t] = row[data[start + t + 1]]
    return _softmax_loss(probs, s.probs_flat, s.totals, s.target_logits, steps, vocab)


@internal_kernel
def _backward(net, s, hp, data, start):
    """Backprop through time, up to the gradients at the tanh inputs (``s.dh_raw``), dby
    and the multipliers' (in fixed mode the multipliers are all 1 and get no gradient);
    ``_weight_gradients`` then sums the rest."""
    n = net.counters[N_ACTIVE]
    steps = hp.seq_len
    vocab = hp.vocab
    Wiy, Whh, m = net.Wiy, net.Whh, net.multipliers
    hs, probs, post, dh_raw = s.hs, s.probs, s.post_grad, s.dh_raw
    dby, dm, dh_next = s.dby, s.dmultipliers, s.dh_next
    # output errors dy_t = p_t - onehot(target) (in place of the probabilities), dby, and
    # the gradient at the output's input m * h_t: post_t = Wiy^T dy_t, all steps at once
    for v in range(vocab):
        dby[v] = 0.0
    for t in range(steps):
        dy = probs[t]
        dy[data[start + t + 1]] -= 1.0
        for v in range(vocab):
            dby[v] += dy[v]
        row = post[t]
        for j in range(n):
            row[j] = 0.0
        _add_matvec_transposed(Wiy, dy, row, vocab, n)
    for j in range(n):
        dm[j] = 0.0
    if hp.learn_multipliers:
        # d loss / d m_j = sum_t post_t,j h_t,j, plus the L1 term at every step
        l1_per_cycle = steps * hp.l1_strength
        for t in range(steps):
            row, h = post[t], hs[t + 1]
            for j in range(n):
                dm[j] += row[j] * h[j]
        for j in range(n):
            sign = 1.0 if m[j] > 0 else (-1.0 if m[j] < 0 else 0.0)
            dm[j] += l1_per_cycle * sign
    # the serial chain: dr_t = (1 - h_t^2) (m * post_t + Whh^T dr_{t+1})
    for j in range(n):
        dh_next[j] = 0.0
    for t in range(steps - 1, -1, -1):
        h, row, dr = hs[t + 1], post[t], dh_raw[t]
        for j in range(n):
            dr[j] = (1.0 - h[j] * h[j]) * (m[j] * row[j] + dh_next[j])
            dh_next[j] = 0.0
        _add_matvec_transposed(Whh, dr, dh_next, n, n)


@internal_kernel
def _weight_gradients(net, s, hp, data, start):
    """dbh, dWxh, dWhh = sum_t outer(dr_t, h_{t-1}), dWiy = sum_t outer(dy_t, h_t) * m,
    summed after the backward chain, row by row, so that each row stays in cache."""
    n = net.counters[N_ACTIVE]
    steps = hp.seq_len
    vocab = hp.vocab
    m = net.multipliers
    hs, probs, dh_raw = s.hs, s.probs, s.dh_raw
    dWxh, dWiy, dbh, by_input = s.dWxh, s.dWiy, s.dbh, s.dWxh_by_input
    for v in range(vocab):
        for j in range(n):
            by_input[v, j] = 0.0
    for j in range(n):
        dbh[j] = 0.0
    for t in range(steps):
        dr, acc = dh_raw[t], by_input[data[start + t]]
        for j in range(n):
            dbh[j] += dr[j]
            acc[j] += dr[j]  # contiguous, so that this loop vectorises
    for i in range(n):
        for v in range(vocab):
            dWxh[i, v] = by_input[v, i]
    whole = n - n % 4
    for i in range(0, whole, 4):
        _sum_outer_four_rows(dh_raw, i, hs, s.dWhh, steps, n)
    for i in range(whole, n):
        _sum_outer_row(dh_raw, i, hs, s.dWhh[i], steps, n)
    outputs = hs[1:]
    whole = vocab - vocab % 4
    for v in range(0, whole, 4):
        _sum_outer_four_rows(probs, v, outputs, dWiy, steps, n)
    for v in range(whole, vocab):
        _sum_outer_row(probs, v, outputs, dWiy[v], steps, n)
    for v in range(vocab):
        grow = dWiy[v]
        for j in range(n):
            grow[j] *= m[j]


@internal_kernel
def _forward_backward(net, s, hp, data, start):
    """Loss of one cycle and its gradients into ``s`` (no clipping, no update).

    Reads characters ``data[start : start + seq_len + 1]``; leaves the last hidden state
    in ``s.hs[seq_len]``. The run loop calls the three parts itself (one level of linked
    code less to optimise); tests and benchmarks call this.
    """
    loss = _forward(net, s, hp, data, start)
    _backward(net, s, hp, data, start)
    _weight_gradients(net, s, hp, data, start)
    return loss


@internal_kernel
def _sum_outer_four_rows(coeffs, i, rows, out, steps, n):
    """out[i:i+4, :n] = sum_t outer(coeffs[t, i:i+4], rows[t, :n]), four steps at a time.

    Each loaded row element serves four output rows and each output element is loaded
    and stored once per four steps: 16 multiply-adds per 8 loads and 4 stores. (Four rows
    by two steps did 8 per 6 loads and 4 stores: 30% slower at N = 100.)"""
    o0, o1, o2, o3 = out[i], out[i + 1], out[i + 2], out[i + 3]
    for j in range(n):
        o0[j] = 0.0
        o1[j] = 0.0
        o2[j] = 0.0
        o3[j] = 0.0
    t = 0
    while t + 4 <= steps:
        c0, c1, c2, c3 = coeffs[t], coeffs[t + 1], coeffs[t + 2], coeffs[t + 3]
        h0, h1, h2, h3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
        a0, a1, a2, a3 = c0[i], c1[i], c2[i], c3[i]
        b0, b1, b2, b3 = c0[i + 1], c1[i + 1], c2[i + 1], c3[i + 1]
        d0, d1, d2, d3 = c0[i + 2], c1[i + 2], c2[i + 2], c3[i + 2]
        e0, e1, e2, e3 = c0[i + 3], c1[i + 3], c2[i + 3], c3[i + 3]
        for j in range(n):
            x0, x1, x2, x3 = h0[j], h1[j], h2[j], h3[j]
            o0[j] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
            o1[j] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
            o2[j] += d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3
            o3[j] += e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3
        t += 4
    while t < steps:
        c0 = coeffs[t]
        a0, b0, d0, e0 = c0[i], c0[i + 1], c0[i + 2], c0[i + 3]
        h0 = rows[t]
        for j in range(n):
            x0 = h0[j]
            o0[j] += a0 * x0
            o1[j] += b0 * x0
            o2[j] += d0 * x0
            o3[j] += e0 * x0
        t += 1


@internal_kernel
def _sum_outer_row(coeffs, i, rows, out, steps, n):
    """out[:n] = sum_t coeffs[t, i] * rows[t, :n], four steps at a time."""
    for j in range(n):
        out[j] = 0.0
    t = 0
    while t + 4 <= steps:
        a0, a1, a2, a3 = coeffs[t, i], coeffs[t + 1, i], coeffs[t + 2, i], coeffs[t + 3, i]
        h0, h1, h2, h3 = rows[t], rows[t + 1], rows[t + 2], rows[t + 3]
        for j in range(n):
            out[j] += a0 * h0[j] + a1 * h1[j] + a2 * h2[j] + a3 * h3[j]
        t += 4
    while t < steps:
        a0 = coeffs[t, i]
        h0 = rows[t]
        for j in range(n):
            out[j] += a0 * h0[j]
        t += 1


@kernel(inline=True)
def _adagrad_step(w, mem, g, j, hp):
    """Clip g to [-grad_clip, grad_clip], then the Adagrad step on w[j] (memory mem[j])."""
    g = min(max(g, -hp.grad_clip), hp.grad_clip)
    acc = mem[j] + g * g
    mem[j] = acc
    w[j] -= hp.learning_rate * g / math.sqrt(acc + hp.adagrad_eps)


@kernel(inline=True)
def _adagrad_clipped_step(w, mem, g, j, hp):
    """``_adagrad_step`` with the step clipped to [-step_clip, step_clip]. A loop of its
    own, not an infinite bound in the one above: that changed float32 rounding."""
    g = min(max(g, -hp.grad_clip), hp.grad_clip)
    acc = mem[j] + g * g
    mem[j] = acc
    step = -hp.learning_rate * g / math.sqrt(acc + hp.adagrad_eps)
    w[j] += min(max(step, -hp.step_clip), hp.step_clip)


@internal_kernel
def _adagrad_rows(w, mem, g, rows, cols, hp):
    """Clip and Adagrad on the block ``[:rows, :cols]`` of a 2-D parameter."""
    clipped = not math.isinf(hp.step_clip)
    for i in range(rows):
        wr, mr, gr = w[i], mem[i], g[i]
        if clipped:
            for j in range(cols):
                _adagrad_clipped_step(wr, mr, gr[j], j, hp)
        else:
            for j in range(cols):
                _adagrad_step(wr, mr, gr[j], j, hp)


@internal_kernel
def _adagrad_vector(w, mem, g, size, hp):
    if not math.isinf(hp.step_clip):
        for j in range(size):
            _adagrad_clipped_step(w, mem, g[j], j, hp)
    else:
        for j in range(size):
            _adagrad_step(w, mem, g[j], j, hp)


@internal_kernel
def _adagrad_update(optimizer, net, s, hp):
    """Clip every gradient and apply Adagrad to every parameter (the first method)."""
    n = net.counters[N_ACTIVE]
    _adagrad_rows(net.Wxh, net.mem_Wxh, s.dWxh, n, hp.vocab, hp)
    _adagrad_rows(net.Whh, net.mem_Whh, s.dWhh, n, n, hp)
    _adagrad_rows(net.Wiy, net.mem_Wiy, s.dWiy, hp.vocab, n, hp)
    _adagrad_vector(net.bh, net.mem_bh, s.dbh, n, hp)
    _adagrad_vector(net.by, net.mem_by, s.dby, hp.vocab, hp)
    if hp.learn_multipliers:
        _adagrad_vector(net.multipliers, net.mem_multipliers, s.dmultipliers, n, hp)


@kernel(inline=True)
def _rmsprop_step(w, mem, g, j, hp, opt):
    """Clip g (if grad_clip), the RMSProp step on w[j], clipped to +-step_clip."""
    g = min(max(g, -hp.grad_clip), hp.grad_clip)
    acc = mem[j] + opt.rate * (g * g - mem[j])
    mem[j] = acc
    step = -hp.learning_rate * g / math.sqrt(acc + opt.eps)
    w[j] += min(max(step, -hp.step_clip), hp.step_clip)


@internal_kernel
def _rmsprop_rows(w, mem, g, rows, cols, hp, opt):
    for i in range(rows):
        wr, mr, gr = w[i], mem[i], g[i]
        for j in range(cols):
            _rmsprop_step(wr, mr, gr[j], j, hp, opt)


@internal_kernel
def _rmsprop_vector(w, mem, g, size, hp, opt):
    for j in range(size):
        _rmsprop_step(w, mem, g[j], j, hp, opt)


@internal_kernel
def _rmsprop_update(optimizer, net, s, hp):
    """RMSProp with a clipped step on every parameter (the later method)."""
    n = net.counters[N_ACTIVE]
    _rmsprop_rows(net.Wxh, net.mem_Wxh, s.dWxh, n, hp.vocab, hp, optimizer)
    _rmsprop_rows(net.Whh, net.mem_Whh, s.dWhh, n, n, hp, optimizer)
    _rmsprop_rows(net.Wiy, net.mem_Wiy, s.dWiy, hp.vocab, n, hp, optimizer)
    _rmsprop_vector(net.bh, net.mem_bh, s.dbh, n, hp, optimizer)
    _rmsprop_vector(net.by, net.mem_by, s.dby, hp.vocab, hp, optimizer)
    if hp.learn_multipliers:
        _rmsprop_vector(net.multipliers, net.mem_multipliers, s.dmultipliers, n, hp, optimizer)


# _update(hp.optimizer, net, s, hp): the run's optimizer, chosen when the loop is compiled
_update = by_type("_update", {Adagrad: _adagrad_update, RMSProp: _rmsprop_update})


@internal_kernel
def _no_penalty(criterion, net, hp):
    """The multiplier criterion's L1 term is in the multipliers' gradient (``_backward``)."""
    return


@kernel(inline=True)
def _l1_step(w, a):
    """w - a sign(w)."""
    return w - a if w > 0 else (w + a if w < 0 else w)


@internal_kernel
def _penalise_outgoing(criterion, net, hp):
    """w -= A sign(w) on the outgoing weights (Why and Whh), after the update."""
    a = criterion.weight_penalty
    if a == 0:
        return
    n = net.counters[N_ACTIVE]
    for v in range(hp.vocab):
        row = net.Wiy[v]
        for j in range(n):
            row[j] = _l1_step(row[j], a)
    for i in range(n):
        row = net.Whh[i]
        for j in range(n):
            row[j] = _l1_step(row[j], a)


# _after_update(hp.criterion, net, hp): what the criterion does once the step is taken
_after_update = by_type(
    "_after_update", {ByMultiplier: _no_penalty, ByOutgoing: _penalise_outgoing}
)
