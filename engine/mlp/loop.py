"""The feedforward run loop (compiled): minibatch steps, traces, evaluation, divergence.

The driver (``engine.mlp.run``) fills a pool of minibatches for the current phase and
the structure step's draws; this loop consumes them, one batch per cycle, and returns
to the driver for more (``NEED_DATA``, ``NEED_DRAWS``), when a log buffer may fill, or at
the end of its cycles. The order within a cycle: forward, backward with the update of
each layer (``engine.mlp.kernels``), the later method's L1 step, the structure step.
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import internal_kernel, kernel
from .kernels import _after_update, _backward_update, _forward
from .state import (
    BATCH,
    CYCLE,
    N_BLOCKS,
    PHASE,
    PHASE_CYCLES,
    SMOOTHED,
    TEST_ACCURACY,
    TEST_LOSS,
    WINDOW_CYCLES,
    WINDOW_SUM,
)
from .structure import _mlp_structure_step, _neuron_strengths

# status returned by _train_mlp (the recurrent loop's codes, plus NEED_DATA)
FINISHED, DIVERGED, BUFFER_FULL, NEED_DRAWS, NEED_DATA = 0, 1, 2, 3, 4


@internal_kernel
def _evaluate(net, s, hp, x_test, y_test):
    """Mean loss and accuracy on the test set (in batches of the run's size), into
    accum; NaN when there is none (teacher tasks draw every batch fresh)."""
    total = x_test.shape[0]
    if total == 0:
        net.accum[TEST_LOSS] = np.nan
        net.accum[TEST_ACCURACY] = np.nan
        return
    loss = 0.0
    correct = 0
    for start in range(0, total, hp.batch):
        rows = min(hp.batch, total - start)
        part, right = _forward(net, s, hp, x_test[start:], y_test[start:], rows)
        loss += part
        correct += right
    net.accum[TEST_LOSS] = loss / total
    net.accum[TEST_ACCURACY] = correct / total


@internal_kernel
def _record_trace(net, s, hp, trace, fill, cycle, x_test, y_test):
    rec = trace[fill[0]]
    rec.cycle = cycle
    rec.phase = net.counters[PHASE]
    rec.smoothed_loss = net.accum[SMOOTHED]
    window = net.counters[WINDOW_CYCLES]
    rec.mean_loss = net.accum[WINDOW_SUM] / window if window > 0 else np.nan
    K = net.counters[N_BLOCKS]
    neurons = 0
    below = 0
    total = 0.0
    blocks_below = 0
    for b in range(K):
        _neuron_strengths(hp.criterion, net, b, s.strengths)
        for j in range(net.width[b]):
            strength = s.strengths[j]
            total += strength
            below += strength <= hp.deletion_threshold
        neurons += net.width[b]
        blocks_below += abs(net.mu[b]) <= hp.deletion_threshold
    rec.neurons = neurons
    rec.strength_sum = total
    rec.below_threshold = below
    rec.data_position = net.counters[PHASE_CYCLES]
    rec.blocks = K
    rec.blocks_below = blocks_below
    _evaluate(net, s, hp, x_test, y_test)
    rec.test_loss = net.accum[TEST_LOSS]
    rec.test_accuracy = net.accum[TEST_ACCURACY]
    fill[0] += 1
    net.accum[WINDOW_SUM] = 0.0
    net.counters[WINDOW_CYCLES] = 0


@kernel
def _train_mlp(net, s, hp, data, draws, n_cycles, trace, events, fill):
    """Run up to ``n_cycles`` minibatch steps. ``data`` = (x_pool (P, B, D), y_pool
    (P, B), batches filled (1,), x_test, y_test); the next batch is counters[BATCH]."""
    x_pool, y_pool, filled, x_test, y_test = data
    max_blocks = net.width.size
    capacity = net.W1.shape[1]
    S = net.W1.shape[2]
    learns = hp.learn_width or hp.learn_depth
    # the most draws one structure step takes: per block a shuffle and a deletion draw
    # per neuron and two addition draws, the same for the blocks; 2 S normals per new
    # neuron (one per block and a new block's)
    uniforms_needed = max_blocks * (2 * capacity + 2) + 2 * max_blocks + 2
    normals_needed = 2 * S * (max_blocks + 1)
    per_cycle_events = max_blocks * (capacity + 2) + 2
    for _ in range(n_cycles):
        if learns and (
            draws.uniforms.size - draws.cursor[0] < uniforms_needed
            or draws.normals.size - draws.cursor[1] < normals_needed
        ):
            return NEED_DRAWS
        cursor = net.counters[BATCH]
        if cursor >= filled[0]:
            return NEED_DATA
        c = net.counters[CYCLE]
        x, y = x_pool[cursor], y_pool[cursor]
        loss_sum, _ = _forward(net, s, hp, x, y, hp.batch)
        loss = loss_sum / hp.batch
        net.accum[SMOOTHED] = hp.smoothing * net.accum[SMOOTHED] + (1.0 - hp.smoothing) * loss
        net.accum[WINDOW_SUM] += loss
        net.counters[WINDOW_CYCLES] += 1
        net.counters[BATCH] = cursor + 1
        net.counters[PHASE_CYCLES] += 1
        if not math.isfinite(loss):
            net.counters[CYCLE] = c + 1
            _record_trace(net, s, hp, trace, fill, c + 1, x_test, y_test)
            return DIVERGED
        _backward_update(net, s, hp, x, y, hp.batch)
        _after_update(hp.criterion, net, hp)
        if learns:
            _mlp_structure_step(net, s, hp, draws, c + 1, events, fill)
        net.counters[CYCLE] = c + 1
        if (c + 1) % hp.log_every == 0:
            _record_trace(net, s, hp, trace, fill, c + 1, x_test, y_test)
        if fill[0] >= trace.size or fill[1] + per_cycle_events > events.size:
            return BUFFER_FULL
    return FINISHED


@kernel
def _mlp_step(net, s, hp, x, y, draws, cycle, events, fill, structure):
    """One minibatch step (no data bookkeeping), for tests and benchmarks: returns the
    mean loss before the update."""
    loss_sum, _ = _forward(net, s, hp, x, y, x.shape[0])
    _backward_update(net, s, hp, x, y, x.shape[0])
    _after_update(hp.criterion, net, hp)
    if structure and (hp.learn_width or hp.learn_depth):
        _mlp_structure_step(net, s, hp, draws, cycle, events, fill)
    return loss_sum / x.shape[0]


@kernel
def _mlp_loss(net, s, hp, x, y):
    """Mean loss and accuracy of ``x`` (rows <= the batch size) without any update."""
    loss_sum, correct = _forward(net, s, hp, x, y, x.shape[0])
    return loss_sum / x.shape[0], correct


@kernel
def _final_evaluation(net, s, hp, x_test, y_test):
    """The test set's loss and accuracy at the end of a run, into accum."""
    _evaluate(net, s, hp, x_test, y_test)
