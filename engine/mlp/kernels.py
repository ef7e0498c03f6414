"""One minibatch step of the feedforward model: forward, backward, update (compiled).

The arithmetic is ``tests/naive_mlp.py``'s (which the tests hold these kernels to, to
1e-10); only the order of summation differs. Loops run over the batch and the active
neurons, and their innermost loop over the stream (contiguous rows of ``W1``, ``W2``,
``W_out`` and of the activations), where they vectorise. tanh, exp and log are the
engine's own (``engine.mathfn``), inside the two kernels compiled without reassociation,
so that a run is the same bits on every machine of the baseline (``engine.jit``).
"""

from __future__ import annotations

from ..cycle import (
    _adagrad_rows,
    _adagrad_vector,
    _l1_step,
    _rmsprop_rows,
    _rmsprop_vector,
)
from ..jit import by_type, internal_kernel, kernel
from ..mathfn import _exp, _log, _tanh
from ..state import Adagrad, ByMultiplier, ByOutgoing, RMSProp
from .state import N_BLOCKS


@kernel(exact=True, internal=True)
def _tanh_rows(z, rows, n):
    """z[:rows, :n] = tanh(z[:rows, :n]) (exact flags: ``engine.mathfn``'s reductions)."""
    for i in range(rows):
        row = z[i]
        for j in range(n):
            row[j] = _tanh(row[j])


@kernel(exact=True, internal=True)
def _softmax_loss(probs, y, rows, classes):
    """Logits to probabilities in place, each row shifted by its maximum; returns the
    summed loss -log p(y) = log(sum exp(l - max)) - (l_y - max) over the ``rows``, and
    the number of rows whose largest logit is the label's (first maximum on ties)."""
    loss = 0.0
    correct = 0
    for i in range(rows):
        row = probs[i]
        top = row[0]
        best = 0
        for k in range(1, classes):
            if row[k] > top:
                top = row[k]
                best = k
        label = y[i]
        shifted_label = row[label] - top
        total = 0.0
        for k in range(classes):
            e = _exp(row[k] - top)
            row[k] = e
            total += e
        loss += _log(total) - shifted_label
        inverse = 1.0 / total
        for k in range(classes):
            row[k] *= inverse
        correct += best == label
    return loss, correct


@internal_kernel
def _forward(net, s, hp, x, y, rows):
    """The forward pass of ``rows`` examples (x[:rows], labels y[:rows]) into the
    scratch: streams, tanh outputs, block outputs, probabilities. Returns (summed loss,
    correct predictions)."""
    K = net.counters[N_BLOCKS]
    S = net.W_in.shape[0]
    D = net.W_in.shape[1]
    C = net.W_out.shape[0]
    stream = s.streams[0]
    for i in range(rows):
        out = stream[i]
        xi = x[i]
        for r in range(S):
            acc = net.b_in[r]
            wr = net.W_in[r]
            for d in range(D):
                acc += wr[d] * xi[d]
            out[r] = acc
    for b in range(K):
        n = net.width[b]
        W1, W2, m, c = net.W1[b], net.W2[b], net.m[b], net.c[b]
        inp, z, f, nxt = s.streams[b], s.z[b], s.f[b], s.streams[b + 1]
        mu = net.mu[b]
        for i in range(rows):
            si, zi = inp[i], z[i]
            for j in range(n):
                acc = c[j]
                wj = W1[j]
                for r in range(S):
                    acc += wj[r] * si[r]
                zi[j] = acc
        _tanh_rows(z, rows, n)
        for i in range(rows):
            fi, zi, si, ni = f[i], z[i], inp[i], nxt[i]
            for r in range(S):
                fi[r] = 0.0
            for j in range(n):
                u = zi[j] * m[j]
                wj = W2[j]
                for r in range(S):
                    fi[r] += u * wj[r]
            for r in range(S):
                ni[r] = si[r] + mu * fi[r]
    top = s.streams[K]
    for i in range(rows):
        ti, pi = top[i], s.probs[i]
        for k in range(C):
            acc = net.b_out[k]
            wk = net.W_out[k]
            for r in range(S):
                acc += wk[r] * ti[r]
            pi[k] = acc
    return _softmax_loss(s.probs, y, rows, C)


@internal_kernel
def _outer_sum(err, inputs, grad, bias_grad, rows, units, width):
    """A layer's weight and bias gradients from the errors at its outputs and its inputs:
    grad[k, :width] = sum_i err[i, k] inputs[i, :width], bias_grad[k] = sum_i err[i, k],
    for k < units, each sum over the batch's rows in order."""
    for k in range(units):
        row = grad[k]
        for r in range(width):
            row[r] = 0.0
        total = 0.0
        for i in range(rows):
            e = err[i, k]
            total += e
            inp = inputs[i]
            for r in range(width):
                row[r] += e * inp[r]
        bias_grad[k] = total


@kernel(inline=True)
def _sign(w):
    return 1.0 if w > 0 else (-1.0 if w < 0 else 0.0)


@internal_kernel
def _backward_update(net, s, hp, x, y, rows):
    """Gradients of the mean loss over the batch, applied block by block as soon as a
    block's are complete (each block's weights are read by the backward pass before
    they are updated: the step is the gradient at the forward's weights, as the twin's).

    Order of updates: W_out, b_out; then blocks from the top: W2, W1, c, m (when
    learned), mu (when learned); then W_in, b_in. The L1 term A_L1 sign(.) is in the
    multipliers' gradients under the first method; the outgoing criterion's L1 step
    comes after (``_after_update``)."""
    K = net.counters[N_BLOCKS]
    S = net.W_in.shape[0]
    D = net.W_in.shape[1]
    C = net.W_out.shape[0]
    scale = 1.0 / rows
    probs = s.probs
    for i in range(rows):
        probs[i, y[i]] -= 1.0
        for k in range(C):
            probs[i, k] *= scale
    top = s.streams[K]
    dW_out, db_out, ds = s.dW_out, s.db_out, s.ds
    _outer_sum(probs, top, dW_out, db_out, rows, C, S)
    for i in range(rows):
        di = ds[i]
        for r in range(S):
            di[r] = 0.0
        for k in range(C):
            e = probs[i, k]
            wk = net.W_out[k]
            for r in range(S):
                di[r] += e * wk[r]
    _update_matrix(hp.optimizer, net.W_out, net.mem_W_out, dW_out, C, S, hp)
    _update_vector(hp.optimizer, net.b_out, net.mem_b_out, db_out, C, hp)
    for b in range(K - 1, -1, -1):
        _block_backward_update(net, s, hp, b, rows, S)
    dW_in, db_in = s.dW_in, s.db_in
    _outer_sum(ds, x, dW_in, db_in, rows, S, D)
    _update_matrix(hp.optimizer, net.W_in, net.mem_W_in, dW_in, S, D, hp)
    _update_vector(hp.optimizer, net.b_in, net.mem_b_in, db_in, S, hp)


@internal_kernel
def _block_backward_update(net, s, hp, b, rows, S):
    """Block b's gradients from ds (the gradient at its output stream), its update, and
    ds moved to its input stream (the residual path plus the block's own)."""
    n = net.width[b]
    W1, W2, m = net.W1[b], net.W2[b], net.m[b]
    inp, z, f = s.streams[b], s.z[b], s.f[b]
    ds, da = s.ds, s.da
    mu = net.mu[b]
    dmu = 0.0
    for i in range(rows):
        di, fi = ds[i], f[i]
        for r in range(S):
            dmu += di[r] * fi[r]
    # da first holds du = d loss / d u = mu ds W2^T, then the gradient at tanh's input
    for i in range(rows):
        di, ai = ds[i], da[i]
        for j in range(n):
            acc = 0.0
            wj = W2[j]
            for r in range(S):
                acc += di[r] * wj[r]
            ai[j] = mu * acc
    dW2, dW1, dc, dm = s.dW2, s.dW1, s.dc, s.dm
    for j in range(n):
        row = dW2[j]
        for r in range(S):
            row[r] = 0.0
        grad_m = 0.0
        for i in range(rows):
            zij = z[i, j]
            coeff = mu * zij * m[j]
            di = ds[i]
            for r in range(S):
                row[r] += coeff * di[r]
            du = da[i, j]
            grad_m += du * zij
            da[i, j] = du * m[j] * (1.0 - zij * zij)
        dm[j] = grad_m
    _outer_sum(da, inp, dW1, dc, rows, n, S)
    for i in range(rows):  # ds at the block's input: the residual path plus W1's
        di, ai = ds[i], da[i]
        for j in range(n):
            e = ai[j]
            wj = W1[j]
            for r in range(S):
                di[r] += e * wj[r]
    _update_matrix(hp.optimizer, W2, net.mem_W2[b], dW2, n, S, hp)
    _update_matrix(hp.optimizer, W1, net.mem_W1[b], dW1, n, S, hp)
    _update_vector(hp.optimizer, net.c[b], net.mem_c[b], dc, n, hp)
    if hp.learn_multipliers:
        for j in range(n):
            dm[j] += hp.l1_strength * _sign(m[j])
        _update_vector(hp.optimizer, m, net.mem_m[b], dm, n, hp)
    if hp.learn_depth:
        s.dmu[b] = dmu + hp.l1_strength * _sign(mu)
        _update_vector(hp.optimizer, net.mu[b : b + 1], net.mem_mu[b : b + 1], s.dmu[b:], 1, hp)


@internal_kernel
def _adagrad_matrix(optimizer, w, mem, g, rows, cols, hp):
    _adagrad_rows(w, mem, g, rows, cols, hp)


@internal_kernel
def _rmsprop_matrix(optimizer, w, mem, g, rows, cols, hp):
    _rmsprop_rows(w, mem, g, rows, cols, hp, optimizer)


@internal_kernel
def _adagrad_array(optimizer, w, mem, g, size, hp):
    _adagrad_vector(w, mem, g, size, hp)


@internal_kernel
def _rmsprop_array(optimizer, w, mem, g, size, hp):
    _rmsprop_vector(w, mem, g, size, hp, optimizer)


# the run's optimizer on one parameter array, chosen when the loop is compiled; the
# element-wise steps are the recurrent model's (engine.cycle)
_update_matrix = by_type("_update_matrix", {Adagrad: _adagrad_matrix, RMSProp: _rmsprop_matrix})
_update_vector = by_type("_update_vector", {Adagrad: _adagrad_array, RMSProp: _rmsprop_array})


@internal_kernel
def _no_penalty(criterion, net, hp):
    """The first method's L1 term is in the multipliers' gradients."""
    return


@internal_kernel
def _penalise_outgoing(criterion, net, hp):
    """w -= A sign(w) on every outgoing weight (W2 of every block, W_out) and, when the
    depth is learned, on the block multipliers, after the update."""
    a = criterion.weight_penalty
    if a == 0:
        return
    K = net.counters[N_BLOCKS]
    S = net.W_in.shape[0]
    for b in range(K):
        W2 = net.W2[b]
        for j in range(net.width[b]):
            row = W2[j]
            for r in range(S):
                row[r] = _l1_step(row[r], a)
        if hp.learn_depth:
            net.mu[b] = _l1_step(net.mu[b], a)
    for k in range(net.W_out.shape[0]):
        row = net.W_out[k]
        for r in range(S):
            row[r] = _l1_step(row[r], a)


_after_update = by_type(
    "_after_update", {ByMultiplier: _no_penalty, ByOutgoing: _penalise_outgoing}
)
