"""Network state as fixed-capacity buffers plus an active count.

Every array is allocated once per run with room for ``capacity`` neurons; neuron ``i`` of
the active network lives at index ``i < N``. Deletion compacts the survivors in place (the
order is kept, as ``np.delete`` would) and addition writes index ``N``; nothing is ever
reallocated. The kernels read these NamedTuples (Numba types them as tuples of arrays).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .config import RunConfig

# record dtypes: each field is one Parquet column (see engine/records.py)
TRACE_DTYPE = np.dtype(
    [
        ("cycle", np.int64),
        ("phase", np.int32),
        ("smoothed_loss", np.float64),
        ("mean_loss", np.float64),
        ("neurons", np.int32),
        ("strength_sum", np.float64),  # sum of |m| (multiplier) or outgoing norms
        ("below_threshold", np.int32),
        ("data_position", np.int64),
    ]
)
EVENT_DTYPE = np.dtype(
    [
        ("cycle", np.int64),
        ("neuron_id", np.int64),
        ("kind", np.int8),
        ("age", np.int64),
        ("strength", np.float64),  # |m| or the outgoing norm, at birth or death
    ]
)
BIRTH, DEATH = 0, 1

# slots of Network.counters and Network.accum
N_ACTIVE, NEXT_ID, CYCLE, POSITION, PHASE, WINDOW_CYCLES, STORED, NEWEST = range(8)
SMOOTHED, WINDOW_SUM = range(2)
# deletion_order as the kernels read it
DELETION_ORDER_CODES = {"random": 0, "oldest": 1, "youngest": 2, "weakest": 3}
# how many deleted neurons ``inherit_deleted`` remembers: the most recent ones; a deletion
# beyond that many forgets the oldest stored one
INHERIT_DEPTH = 16


class Network(NamedTuple):
    """Parameters, Adagrad memories and bookkeeping of one run, at full capacity."""

    Wxh: np.ndarray  # (capacity, vocab) input weights
    Whh: np.ndarray  # (capacity, capacity) recurrent weights, row = receiving neuron
    Wiy: np.ndarray  # (vocab, capacity) output weights
    bh: np.ndarray  # (capacity,)
    by: np.ndarray  # (vocab,)
    multipliers: np.ndarray  # (capacity,) 1.0 and never updated in fixed mode or outgoing
    mem_Wxh: np.ndarray  # the optimizer's memories, same shapes as the parameters
    mem_Whh: np.ndarray
    mem_Wiy: np.ndarray
    mem_bh: np.ndarray
    mem_by: np.ndarray
    mem_multipliers: np.ndarray
    hidden: np.ndarray  # (capacity,) state carried from one cycle to the next
    neuron_id: np.ndarray  # (capacity,) int64, stable, never reused
    birth_cycle: np.ndarray  # (capacity,) int64
    counters: np.ndarray  # int64: N, next id, cycle, data position, phase, window cycles,
    # deleted neurons stored, slot of the newest one
    accum: np.ndarray  # float64: smoothed loss, window loss sum
    # connections of the last INHERIT_DEPTH deleted neurons, a ring of slots (only written
    # with inherit_deleted): input weights, output weights (to the outputs), bias, self-
    # connection, and its recurrent weights with the neurons alive when it died: ids,
    # weight from each to it (its Whh row) and from it to each (its Whh column)
    dead_Wxh: np.ndarray  # (INHERIT_DEPTH, vocab)
    dead_Wiy: np.ndarray  # (INHERIT_DEPTH, vocab)
    dead_bh: np.ndarray  # (INHERIT_DEPTH,)
    dead_self: np.ndarray  # (INHERIT_DEPTH,)
    dead_partners: np.ndarray  # (INHERIT_DEPTH,) int64: how many partners
    dead_partner_id: np.ndarray  # (INHERIT_DEPTH, capacity) int64, increasing
    dead_in: np.ndarray  # (INHERIT_DEPTH, capacity) Whh[it, partner]
    dead_out: np.ndarray  # (INHERIT_DEPTH, capacity) Whh[partner, it]


class Scratch(NamedTuple):
    """Work buffers of one cycle: gradients and the unrolled ``seq_len`` steps.

    Per-neuron rows are ``padded(capacity)`` wide, so that a loop over the active
    neurons may run on to the next multiple of ``LANES`` (whole vectors, no scalar
    remainder); what it computes there is never read.
    """

    dWxh: np.ndarray
    dWxh_by_input: np.ndarray  # (vocab, width): dWxh transposed while accumulating
    dWhh: np.ndarray
    dWiy: np.ndarray
    dbh: np.ndarray
    dby: np.ndarray
    dmultipliers: np.ndarray
    hs: np.ndarray  # (seq_len + 1, width): hs[0] is the carried state, hs[t+1] step t
    probs: np.ndarray  # (seq_len, vocab): logits, then probabilities, then output errors
    probs_flat: np.ndarray  # the same memory as one (seq_len * vocab,) vector
    totals: np.ndarray  # (seq_len,) softmax denominators
    target_logits: np.ndarray  # (seq_len,) the logit of each step's next character
    weighted_output: np.ndarray  # (vocab, width): Wiy * multipliers
    post_grad: np.ndarray  # (seq_len, width): gradient at m * h, per step
    dh_raw: np.ndarray  # (seq_len, width) gradient at the tanh input, per step
    dh_next: np.ndarray  # (width,)
    strengths: np.ndarray  # (width,) each neuron's strength (|m| or its outgoing norm)
    order: np.ndarray  # (2 capacity,) int64, structure step: below-threshold neurons,
    # then the ones to delete (one array, not two: each array passed to every kernel
    # costs compile time)
    keep: np.ndarray  # (capacity,) bool, structure step


LANES = 8  # float32 lanes of a 256-bit vector; a multiple of float64's 4


def padded(n: int) -> int:
    """``n`` rounded up to whole vectors."""
    return -(-n // LANES) * LANES


class Draws(NamedTuple):
    """Random draws of the structure step, pre-drawn by the driver from the run's own
    generators and consumed in order; the kernel stops for a refill when a cycle might
    run out, so the values consumed are each generator's stream, whatever the refills."""

    uniforms: np.ndarray  # float64 in [0, 1): shuffles, deletions, additions
    normals: np.ndarray  # float64 N(0, 1): a new neuron's weights (times init_scale)
    cursor: np.ndarray  # int64 (2,): next unused uniform, next unused normal


def draws_pool_sizes(capacity: int, vocab: int) -> tuple[int, int]:
    """Pool sizes: a few thousand cycles of draws, and at least one worst-case cycle."""
    return 4096 + 2 * capacity + 2, 1024 + 2 * (vocab + capacity) + 1


def allocate_draws(capacity: int, vocab: int) -> Draws:
    """Empty pools (cursor at the end): the first ``refill_draws`` fills them."""
    n_uniform, n_normal = draws_pool_sizes(capacity, vocab)
    return Draws(np.zeros(n_uniform), np.zeros(n_normal), np.array([n_uniform, n_normal], np.int64))


def refill_draws(
    draws: Draws, uniform_rng: np.random.Generator, normal_rng: np.random.Generator
) -> None:
    """Move the unused draws to the front of each pool and draw the rest afresh."""
    for k, pool, draw in (
        (0, draws.uniforms, uniform_rng.random),
        (1, draws.normals, normal_rng.standard_normal),
    ):
        used = int(draws.cursor[k])
        if used:
            pool[: pool.size - used] = pool[used:]
            pool[pool.size - used :] = draw(used)
        draws.cursor[k] = 0


# The optimizer and the criterion of a run are NamedTuples of their own class inside
# ``Hyper``: kernels that differ between them are chosen by that class when the run loop
# is compiled (``engine.jit.by_type``), so a run compiles only its own method.
class Adagrad(NamedTuple):
    """mem += g^2; w -= lr g / sqrt(mem + eps) (the first method)."""

    eps: np.floating


class RMSProp(NamedTuple):
    """mem += rate (g^2 - mem); step = -lr g / sqrt(mem + eps) (the later method)."""

    rate: np.floating  # 1 - rmsprop_decay
    eps: np.floating
    new_memory: np.floating  # every memory of a new neuron, and of Wxh and bh at the start


class ByMultiplier(NamedTuple):
    """Strength |m|: multipliers learned under L1, floored at min_multiplier."""

    min_multiplier: float


class ByOutgoing(NamedTuple):
    """Strength 0.5 (sum_i |Why[i, j]| + recurrent_scale sum_i |Whh[i, j]| / N); L1 steps
    of weight_penalty on Why and Whh after each update; no multipliers."""

    weight_penalty: np.floating
    recurrent_scale: float


RMSPROP_INITIAL_MEMORY = 0.01  # REFERENCE-LATER.md: Wxh and bh at the start, new neurons
OUTGOING_RECURRENT_SCALE = 4.0  # the recurrent part counts as much as 4 output weights


class GrowthRule(NamedTuple):
    """The parameters of the growth and pruning rule (``engine.growth``), apart from the
    rest of ``Hyper`` so that the rule's kernels are typed on six scalars, not on every
    hyper-parameter (measured: 5-6 s less cold compile per variant)."""

    deletion_threshold: float
    keep_below: int
    delete_prob: float
    add_prob: float
    spontaneous_add_prob: float
    deletion_order: int  # DELETION_ORDER_CODES


def growth_rule(config: RunConfig) -> GrowthRule:
    return GrowthRule(
        deletion_threshold=config.deletion_threshold,
        keep_below=config.keep_below,
        delete_prob=config.delete_prob,
        add_prob=config.add_prob,
        spontaneous_add_prob=config.spontaneous_add_prob,
        deletion_order=DELETION_ORDER_CODES[config.deletion_order],
    )


class Hyper(NamedTuple):
    """Scalars the kernels read; float fields used in hot loops carry the run's dtype."""

    variable: bool
    learn_multipliers: bool  # variable mode under the multiplier criterion
    deletion_order: int  # DELETION_ORDER_CODES
    inherit_deleted: bool
    seq_len: int
    vocab: int
    max_neurons: int  # capacity - 1: addition stops there
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
    step_clip: np.floating  # inf: not clipped (either optimizer)
    adagrad_eps: np.floating
    optimizer: Adagrad | RMSProp
    criterion: ByMultiplier | ByOutgoing
    rule: GrowthRule


def make_hyper(config: RunConfig, vocab: int) -> Hyper:
    real = np.dtype(config.dtype).type

    def clip(value: float):  # 0 means no clipping: an infinite bound does nothing
        return real(value if value > 0 else np.inf)

    if config.optimizer == "adagrad":
        optimizer = Adagrad(real(1e-8))
    else:
        optimizer = RMSProp(
            real(1.0 - config.rmsprop_decay),
            real(1e-8),
            real(RMSPROP_INITIAL_MEMORY),
        )
    if config.criterion == "multiplier":
        criterion = ByMultiplier(config.min_multiplier)
    else:
        criterion = ByOutgoing(real(config.weight_penalty), OUTGOING_RECURRENT_SCALE)
    return Hyper(
        variable=config.variable,
        learn_multipliers=config.variable and config.criterion == "multiplier",
        deletion_order=DELETION_ORDER_CODES[config.deletion_order],
        inherit_deleted=config.inherit_deleted,
        seq_len=config.seq_len,
        vocab=vocab,
        max_neurons=config.capacity - 1,
        keep_below=config.keep_below,
        log_every=config.log_every,
        deletion_threshold=config.deletion_threshold,
        add_prob=config.add_prob,
        delete_prob=config.delete_prob,
        spontaneous_add_prob=config.spontaneous_add_prob,
        init_scale=config.init_scale,
        smoothing=config.smoothing,
        l1_strength=real(config.l1_strength or 0.0),
        learning_rate=real(config.learning_rate),
        grad_clip=clip(config.grad_clip),
        step_clip=clip(config.step_clip),
        adagrad_eps=real(1e-8),
        optimizer=optimizer,
        criterion=criterion,
        rule=growth_rule(config),
    )


CACHE_LINE, PAGE = 64, 4096


def carve(specs: list[tuple[tuple[int, ...], np.dtype]]) -> list[np.ndarray]:
    """Zeroed arrays cut from one page-aligned block, each starting on a cache line.

    NumPy only promises 16-byte alignment and puts each array wherever the allocator
    likes; measured here, that moved the kernels' speed at N = 27-50 by up to 20% from one
    process to the next. Laid out by this function, the buffers sit at the same offsets
    (modulo a page) in every process, so a run's speed does not depend on its process.
    """
    offsets, end = [], 0
    for shape, dtype in specs:
        end = -(-end // CACHE_LINE) * CACHE_LINE
        offsets.append(end)
        end += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    block = np.zeros(end + PAGE, dtype=np.uint8)
    base = -block.ctypes.data % PAGE
    arrays = []
    for (shape, dtype), offset in zip(specs, offsets):
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        arrays.append(block[base + offset : base + offset + size].view(dtype).reshape(shape))
    return arrays


def allocate_network(capacity: int, vocab: int, dtype: str | np.dtype) -> Network:
    """Zeroed buffers for ``capacity`` neurons (the caller initialises them)."""
    real = np.dtype(dtype)
    weights = [
        ((capacity, vocab), real),
        ((capacity, capacity), real),
        ((vocab, capacity), real),
        ((capacity,), real),
        ((vocab,), real),
        ((capacity,), real),
    ]
    depth = INHERIT_DEPTH
    net = Network(
        *carve(
            weights  # parameters
            + weights  # their optimizer memories
            + [
                ((capacity,), real),
                ((capacity,), np.int64),
                ((capacity,), np.int64),
                ((8,), np.int64),
                ((2,), np.float64),
                ((depth, vocab), real),
                ((depth, vocab), real),
                ((depth,), real),
                ((depth,), real),
                ((depth,), np.int64),
                ((depth, capacity), np.int64),
                ((depth, capacity), real),
                ((depth, capacity), real),
            ]
        )
    )
    net.neuron_id[:] = -1
    return net


def allocate_scratch(capacity: int, vocab: int, seq_len: int, dtype: str | np.dtype) -> Scratch:
    real = np.dtype(dtype)
    width = padded(capacity)
    arrays = carve(
        [
            ((capacity, vocab), real),
            ((vocab, width), real),
            ((capacity, capacity), real),
            ((vocab, capacity), real),
            ((width,), real),
            ((vocab,), real),
            ((width,), real),
            ((seq_len + 1, width), real),
            ((seq_len, vocab), real),
            ((seq_len,), real),
            ((seq_len,), real),
            ((vocab, width), real),
            ((seq_len, width), real),
            ((seq_len, width), real),
            ((width,), real),
            ((width,), real),
            ((2 * capacity,), np.int64),
            ((capacity,), np.bool_),
        ]
    )
    probs = arrays[8]
    return Scratch(*arrays[:9], probs.reshape(-1), *arrays[9:])


def init_network(config: RunConfig, vocab: int, rng: np.random.Generator) -> Network:
    """The paper's initial network: weights N(0, init_scale^2), biases 0, multipliers 1."""
    net = allocate_network(config.capacity, vocab, config.dtype)
    n = config.hidden_size
    scale = config.init_scale
    # drawn in float64 then cast, so both dtypes start from the same weights
    net.Wxh[:n] = rng.normal(0.0, scale, (n, vocab)) if scale > 0 else 0.0
    net.Whh[:n, :n] = rng.normal(0.0, scale, (n, n)) if scale > 0 else 0.0
    net.Wiy[:, :n] = rng.normal(0.0, scale, (vocab, n)) if scale > 0 else 0.0
    net.multipliers[:] = 1.0  # fixed mode and outgoing read 1.0 everywhere: output Wiy h
    if config.optimizer == "rmsprop":  # REFERENCE-LATER.md's initial memories
        net.mem_Wxh[:] = RMSPROP_INITIAL_MEMORY
        net.mem_bh[:] = RMSPROP_INITIAL_MEMORY
    net.neuron_id[:n] = np.arange(n)
    net.counters[N_ACTIVE] = n
    net.counters[NEXT_ID] = n
    return net


def initial_strengths(net: Network, config: RunConfig) -> np.ndarray:
    """The strengths of the active neurons (float64), as the kernels define them: |m|, or
    0.5 (recurrent_scale / N sum_i |Whh[i, j]| + sum_v |Why[v, j]|)."""
    n = int(net.counters[N_ACTIVE])
    if config.criterion == "multiplier":
        return np.abs(net.multipliers[:n]).astype(np.float64)
    recurrent = np.abs(net.Whh[:n, :n]).astype(np.float64).sum(axis=0)
    output = np.abs(net.Wiy[:, :n]).astype(np.float64).sum(axis=0)
    return 0.5 * (recurrent * (OUTGOING_RECURRENT_SCALE / max(n, 1)) + output)


def active_view(net: Network) -> dict[str, np.ndarray]:
    """Copies of the active part of every per-neuron array (for tests and inspection)."""
    n = int(net.counters[N_ACTIVE])
    return {
        "Wxh": net.Wxh[:n].copy(),
        "Whh": net.Whh[:n, :n].copy(),
        "Wiy": net.Wiy[:, :n].copy(),
        "bh": net.bh[:n].copy(),
        "by": net.by.copy(),
        "multipliers": net.multipliers[:n].copy(),
        "mem_Wxh": net.mem_Wxh[:n].copy(),
        "mem_Whh": net.mem_Whh[:n, :n].copy(),
        "mem_Wiy": net.mem_Wiy[:, :n].copy(),
        "mem_bh": net.mem_bh[:n].copy(),
        "mem_by": net.mem_by.copy(),
        "mem_multipliers": net.mem_multipliers[:n].copy(),
        "hidden": net.hidden[:n].copy(),
        "neuron_id": net.neuron_id[:n].copy(),
        "birth_cycle": net.birth_cycle[:n].copy(),
    }
