"""The feedforward network's state as fixed-capacity buffers plus active counts.

Residual blocks on a stream of width S (``tests/naive_mlp.py`` spells the maths out):

    s_0 = W_in x + b_in;   s_b = s_{b-1} + mu_b W2_b (m_b * tanh(W1_b s_{b-1} + c_b));
    logits = W_out s_K + b_out

Block slot ``b < K`` holds the network's b-th block (blocks keep their order; a deleted
block's successors move down one slot, a new block is written at slot K, on top). Inside
a block, neuron ``j < width[b]`` lives at row j of ``W1[b]`` (what it reads from the
stream) and of ``W2[b]`` (what it writes to the stream: the transpose of the maths' W2_b,
so that a neuron is one row of each and deleting it moves rows, as in the recurrent
network). Nothing is ever reallocated; every optimizer memory has the shape of its
parameter and moves with it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..config import RunConfig
from ..state import (
    EVENT_DTYPE,
    RMSPROP_INITIAL_MEMORY,
    TRACE_DTYPE,
    Adagrad,
    ByMultiplier,
    ByOutgoing,
    GrowthRule,
    RMSProp,
    carve,
    padded,
)

# The records of a feedforward run: the recurrent model's fields, then its own.
MLP_TRACE_DTYPE = np.dtype(
    TRACE_DTYPE.descr
    + [
        ("blocks", np.int32),
        ("blocks_below", np.int32),  # blocks with |mu| at or below threshold
        ("test_loss", np.float64),  # digits: mean loss on the test set; NaN for teachers
        ("test_accuracy", np.float64),
    ]
)
# an event names its block; ``level`` 0: a neuron's birth or death, 1: a block's (then
# neuron_id is -1 and strength is |mu|); a block is born with one neuron (its event, then
# the neuron's) and dies with its neurons (its event, then one death event each)
MLP_EVENT_DTYPE = np.dtype(EVENT_DTYPE.descr + [("block_id", np.int64), ("level", np.int8)])
NEURON_LEVEL, BLOCK_LEVEL = 0, 1

# slots of MLPNetwork.counters and .accum
N_BLOCKS, NEXT_NEURON, NEXT_BLOCK, CYCLE, PHASE, WINDOW_CYCLES, BATCH, PHASE_CYCLES = range(8)
SMOOTHED, WINDOW_SUM, TEST_LOSS, TEST_ACCURACY = range(4)


class MLPNetwork(NamedTuple):
    """Parameters, optimizer memories and bookkeeping of one feedforward network."""

    W_in: np.ndarray  # (S, D)
    b_in: np.ndarray  # (S,)
    W1: np.ndarray  # (max_blocks, capacity, S): row j of block b is neuron j's input
    c: np.ndarray  # (max_blocks, capacity)
    W2: np.ndarray  # (max_blocks, capacity, S): row j is neuron j's output to the stream
    m: np.ndarray  # (max_blocks, capacity) neuron multipliers (1, never updated, unless
    # the multiplier criterion learns widths)
    mu: np.ndarray  # (max_blocks,) block multipliers (1, never updated, at fixed depth)
    W_out: np.ndarray  # (C, S)
    b_out: np.ndarray  # (C,)
    mem_W_in: np.ndarray
    mem_b_in: np.ndarray
    mem_W1: np.ndarray
    mem_c: np.ndarray
    mem_W2: np.ndarray
    mem_m: np.ndarray
    mem_mu: np.ndarray
    mem_W_out: np.ndarray
    mem_b_out: np.ndarray
    width: np.ndarray  # (max_blocks,) int64: active neurons of each block
    neuron_id: np.ndarray  # (max_blocks, capacity) int64, stable, never reused
    neuron_birth: np.ndarray  # (max_blocks, capacity) int64
    block_id: np.ndarray  # (max_blocks,) int64
    block_birth: np.ndarray  # (max_blocks,) int64
    counters: np.ndarray  # int64: blocks, next neuron id, next block id, cycle, phase,
    # window cycles, next batch of the data pool, cycles into the phase
    accum: np.ndarray  # float64: smoothed loss, window loss sum, test loss, test accuracy


class MLPScratch(NamedTuple):
    """Work buffers of one step: activations of every block, gradients, structure."""

    streams: np.ndarray  # (max_blocks + 1, B, S): streams[b] is block b's input
    z: np.ndarray  # (max_blocks, B, width) tanh outputs
    f: np.ndarray  # (max_blocks, B, S) each block's output before mu
    probs: np.ndarray  # (B, C): logits, then probabilities, then output errors
    ds: np.ndarray  # (B, S) gradient at the stream
    da: np.ndarray  # (B, width) gradient at a block's hidden units
    dW_in: np.ndarray
    db_in: np.ndarray
    dW1: np.ndarray  # (capacity, S): one block's, used as soon as computed
    dc: np.ndarray
    dW2: np.ndarray
    dm: np.ndarray
    dmu: np.ndarray  # (max_blocks,)
    dW_out: np.ndarray
    db_out: np.ndarray
    strengths: np.ndarray  # (units,) neurons of one block, or blocks
    order: np.ndarray  # (units,) int64
    keep: np.ndarray  # (units,) bool
    doomed: np.ndarray  # (units,) int64


class MLPHyper(NamedTuple):
    """Scalars the kernels read (``engine.growth``'s rule fields among them)."""

    learn_width: bool  # neurons added and deleted
    learn_depth: bool  # blocks added and deleted
    learn_multipliers: bool  # neuron multipliers learned (multiplier criterion, widths)
    deletion_order: int
    batch: int
    max_width: int  # capacity - 1: addition stops there
    max_depth: int  # max_blocks - 1
    keep_below: int
    log_every: int
    deletion_threshold: float
    add_prob: float
    delete_prob: float
    spontaneous_add_prob: float
    init_scale: float
    smoothing: float
    l1_strength: np.floating  # 0 under outgoing
    learning_rate: np.floating
    grad_clip: np.floating  # inf: not clipped
    step_clip: np.floating
    adagrad_eps: np.floating
    optimizer: Adagrad | RMSProp
    criterion: ByMultiplier | ByOutgoing
    rule: GrowthRule


def make_mlp_hyper(config: RunConfig) -> MLPHyper:
    from ..state import make_hyper

    base = make_hyper(config, 2)  # the shared scalars, converted as for the recurrent model
    return MLPHyper(
        learn_width=config.learns_width,
        learn_depth=config.learns_depth,
        learn_multipliers=config.learns_width and config.criterion == "multiplier",
        deletion_order=base.deletion_order,
        batch=config.batch_size,
        max_width=config.capacity - 1,
        max_depth=config.max_blocks - 1,
        keep_below=config.keep_below,
        log_every=config.log_every,
        deletion_threshold=base.deletion_threshold,
        add_prob=base.add_prob,
        delete_prob=base.delete_prob,
        spontaneous_add_prob=base.spontaneous_add_prob,
        init_scale=base.init_scale,
        smoothing=base.smoothing,
        l1_strength=base.l1_strength,
        learning_rate=base.learning_rate,
        grad_clip=base.grad_clip,
        step_clip=base.step_clip,
        adagrad_eps=base.adagrad_eps,
        optimizer=base.optimizer,
        criterion=base.criterion,
        rule=base.rule,
    )


def allocate_mlp(config: RunConfig, input_dim: int, classes: int) -> tuple[MLPNetwork, MLPScratch]:
    """Zeroed buffers (the caller initialises the network)."""
    real = np.dtype(config.dtype)
    K, cap, S, D, C = config.max_blocks, config.capacity, config.stream_width, input_dim, classes
    params = [
        ((S, D), real),
        ((S,), real),
        ((K, cap, S), real),
        ((K, cap), real),
        ((K, cap, S), real),
        ((K, cap), real),
        ((K,), real),
        ((C, S), real),
        ((C,), real),
    ]
    book = [
        ((K,), np.int64),
        ((K, cap), np.int64),
        ((K, cap), np.int64),
        ((K,), np.int64),
        ((K,), np.int64),
        ((8,), np.int64),
        ((4,), np.float64),
    ]
    net = MLPNetwork(*carve(params + params + book))
    net.neuron_id[:] = -1
    net.block_id[:] = -1
    B, width, units = config.batch_size, padded(cap), max(cap, K)
    scratch = MLPScratch(
        *carve(
            [
                ((K + 1, B, S), real),
                ((K, B, width), real),
                ((K, B, S), real),
                ((B, C), real),
                ((B, S), real),
                ((B, width), real),
                ((S, D), real),
                ((S,), real),
                ((cap, S), real),
                ((cap,), real),
                ((cap, S), real),
                ((cap,), real),
                ((K,), real),
                ((C, S), real),
                ((C,), real),
                ((units,), real),
                ((units,), np.int64),
                ((units,), np.bool_),
                ((units,), np.int64),
            ]
        )
    )
    return net, scratch


def init_mlp(
    config: RunConfig, input_dim: int, classes: int, rng: np.random.Generator
) -> tuple[MLPNetwork, MLPScratch]:
    """A fresh network: ``initial_blocks`` blocks of ``hidden_size`` neurons. Weights
    N(0, init_scale^2) drawn in float64 (so both dtypes start alike) in this order: W_in,
    then block by block W1_b (n, S) and W2_b (S, n) as the maths writes them, then W_out;
    biases 0; every multiplier 1; memories 0 (RMSProp: 0.01 for W_in, b_in, W1, c, as
    the recurrent model's input weights). Ids 0.. block by block, blocks 0..K-1."""
    net, scratch = allocate_mlp(config, input_dim, classes)
    S, n, K = config.stream_width, config.hidden_size, config.initial_blocks
    scale = config.init_scale
    net.W_in[:] = rng.standard_normal((S, input_dim)) * scale
    for b in range(K):
        net.W1[b, :n] = rng.standard_normal((n, S)) * scale
        net.W2[b, :n] = (rng.standard_normal((S, n)) * scale).T
        net.width[b] = n
        net.neuron_id[b, :n] = np.arange(b * n, (b + 1) * n)
        net.block_id[b] = b
    net.W_out[:] = rng.standard_normal((classes, S)) * scale
    net.m[:] = 1.0
    net.mu[:] = 1.0
    if config.optimizer == "rmsprop":
        for memory in (net.mem_W_in, net.mem_b_in, net.mem_W1, net.mem_c):
            memory[:] = RMSPROP_INITIAL_MEMORY
    net.counters[N_BLOCKS] = K
    net.counters[NEXT_NEURON] = K * n
    net.counters[NEXT_BLOCK] = K
    return net, scratch


def neuron_strengths(net: MLPNetwork, config: RunConfig, b: int) -> np.ndarray:
    """Block b's neuron strengths as the kernels define them (float64): |m|, or
    2 sum_i |W2_b[i, j]| / S (twice the mean absolute outgoing weight)."""
    n = int(net.width[b])
    if config.criterion == "multiplier":
        return np.abs(net.m[b, :n]).astype(np.float64)
    return 2.0 * np.abs(net.W2[b, :n]).astype(np.float64).sum(axis=1) / config.stream_width


def widths(net: MLPNetwork) -> list[int]:
    """The active width of every block, in order."""
    return [int(w) for w in net.width[: int(net.counters[N_BLOCKS])]]


def active_mlp_view(net: MLPNetwork) -> dict[str, np.ndarray]:
    """Copies of the active part of every array (for tests and inspection): per-block
    arrays of all blocks concatenated in block order (their widths say where each ends)."""
    K = int(net.counters[N_BLOCKS])
    n = net.width[:K]
    view = {
        name: getattr(net, name).copy()
        for name in ("W_in", "b_in", "W_out", "b_out")
        + ("mem_W_in", "mem_b_in", "mem_W_out", "mem_b_out")
    }
    for name in ("W1", "c", "W2", "m", "neuron_id", "neuron_birth"):
        for prefix in ("", "mem_") if name in ("W1", "c", "W2", "m") else ("",):
            array = getattr(net, prefix + name)
            view[prefix + name] = np.concatenate([array[b, : n[b]] for b in range(K)])
    for name in ("mu", "mem_mu", "width", "block_id", "block_birth"):
        view[name] = getattr(net, name)[:K].copy()
    return view
