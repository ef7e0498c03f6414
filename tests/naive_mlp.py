"""A plain-NumPy twin of one training step of the feedforward model (``model = "mlp"``).

Written for readability: float64, loops over blocks, no Numba. The compiled kernels of
issue 11 are to be tested against it (to 1e-10), so every choice is spelled out here.

The model: residual blocks on a stream of fixed width S.

    s_0    = x @ W_in.T + b_in                          (B, S)
    a_b    = s_{b-1} @ W1_b.T + c_b                     (B, n_b)      blocks b = 1..K
    z_b    = tanh(a_b)
    u_b    = z_b * m_b   (criterion "multiplier")   or   u_b = z_b   ("outgoing")
    f_b    = u_b @ W2_b.T                               (B, S)        no bias
    s_b    = s_{b-1} + mu_b * f_b
    logits = s_K @ W_out.T + b_out                      (B, C)
    loss   = mean over the batch of -ln softmax(logits)[y]   (nats per example)

Two methods, as for the recurrent network:

* ``criterion="multiplier"`` (REFERENCE.md): neuron multipliers m_b and block multipliers
  mu_b; gradients plus the L1 terms A_L1 sign(m), A_L1 sign(mu) (once per step), clipped
  elementwise to +-grad_clip, Adagrad; structure step on |m| (neurons) and |mu| (blocks)
  after the floor m = max(m, M_min), mu = max(mu, M_min).
* ``criterion="outgoing"`` (REFERENCE-LATER.md): no neuron multipliers (u = z), block
  multipliers mu_b still; RMSProp with a clipped step, then the L1 step w -= A sign(w) on
  every W2_b, W_out and mu_b; a neuron's strength is 2 * mean_i |W2_b[i, j]|, a block's
  |mu_b|; no floor for neurons, mu = max(mu, T_D / 2) for blocks (so that no block
  multiplier crosses zero: ``engine.mlp.structure._floor_blocks`` says why).

Randomness: every random number comes from a ``Draws`` object (pre-drawn pools of uniforms
and standard normals read front to back); see ``Draws`` and ``structure_step`` for the
order in which they are consumed.

Functions mutate the state in place (``MLPState.copy`` gives an independent copy).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from engine.config import METHOD_DEFAULTS as ENGINE_DEFAULTS
from engine.config import OPTIMIZER_DEFAULTS

CRITERIA = ("multiplier", "outgoing")
OPTIMIZERS = ("adagrad", "rmsprop")
EPS = 1e-8  # in sqrt(mem + EPS), both optimizers
NEW_MEMORY = 0.01  # RMSProp memory of the incoming weights (W_in, b_in, W1, c) at birth
NO_NEURON = -1  # the neuron id of a block-deletion event


@dataclass(frozen=True)
class MLPConfig:
    """Meta-parameters of the feedforward model; names as in ``engine.config.RunConfig``.

    ``capacity`` bounds the neurons of ONE block (a block grows while n_b < capacity - 1),
    ``max_blocks`` the blocks (the network grows while K < max_blocks - 1). Fields left at
    None take their criterion's default (``METHOD_DEFAULTS``).
    """

    criterion: str = "multiplier"
    deletion_threshold: float = 0.05  # T_D
    keep_below: int = 1  # k
    spontaneous_add_prob: float = 1e-4
    init_scale: float = 0.01  # standard deviation of new weights
    capacity: int = 100  # per block
    max_blocks: int = 100
    optimizer: str | None = None
    learning_rate: float | None = None
    rmsprop_decay: float | None = None
    grad_clip: float | None = None  # 0: no clipping
    step_clip: float | None = None  # 0: no clipping
    add_prob: float | None = None  # P_add
    delete_prob: float | None = None  # P_del
    min_multiplier: float | None = None  # M_min (multiplier only)
    l1_strength: float | None = None  # A_L1 (multiplier only)
    weight_penalty: float | None = None  # A (outgoing only)

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion {self.criterion!r} not in {CRITERIA}")
        for name, default in METHOD_DEFAULTS[self.criterion].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} not in {OPTIMIZERS}")
        if self.rmsprop_decay is None:
            object.__setattr__(
                self, "rmsprop_decay", OPTIMIZER_DEFAULTS[self.optimizer]["rmsprop_decay"]
            )

    def replace(self, **changes):
        """A copy with ``changes`` (the other fields keep their current values)."""
        return dataclasses.replace(self, **changes)


# What an unset (None) field of MLPConfig becomes under each criterion: the published
# settings of REFERENCE.md and REFERENCE-LATER.md, the recurrent engine's own
# (engine.config.METHOD_DEFAULTS) for the fields this config has; None: the field means
# nothing under that criterion. ``rmsprop_decay`` follows the optimizer (OPTIMIZER_DEFAULTS).
_MLP_FIELDS = {f.name for f in dataclasses.fields(MLPConfig)}
METHOD_DEFAULTS = {
    criterion: {k: v for k, v in defaults.items() if k in _MLP_FIELDS}
    for criterion, defaults in ENGINE_DEFAULTS.items()
}


# -- parameters and state ----------------------------------------------------------------
BLOCK_NAMES = ("W1", "c", "W2", "m")  # per block; "m" only under "multiplier"
NEURON_AXIS = {"W1": 0, "c": 0, "W2": 1, "m": 0}  # the axis of a block's arrays per neuron


@dataclass
class Params:
    """The parameters (or their gradients, or their optimizer memories: same structure).

    W_in (S, D_in), b_in (S,); per block b (lists indexed by the block's position):
    W1[b] (n_b, S), c[b] (n_b,), W2[b] (S, n_b), m[b] (n_b,) (None under "outgoing");
    mu (K,) the block multipliers; W_out (C, S), b_out (C,).

    A key names one array: ("W_in", None), ("W1", b), ("mu", None), ...
    """

    W_in: np.ndarray
    b_in: np.ndarray
    W1: list
    c: list
    W2: list
    m: list | None
    mu: np.ndarray
    W_out: np.ndarray
    b_out: np.ndarray

    def keys(self):
        """Every array's key: W_in, b_in, then block by block W1, c, W2 (and m), then mu,
        W_out, b_out."""
        keys = [("W_in", None), ("b_in", None)]
        names = BLOCK_NAMES if self.m is not None else BLOCK_NAMES[:3]
        for b in range(len(self.W1)):
            keys += [(name, b) for name in names]
        return keys + [("mu", None), ("W_out", None), ("b_out", None)]

    def __getitem__(self, key):
        name, b = key
        value = getattr(self, name)
        return value if b is None else value[b]

    def __setitem__(self, key, array):
        name, b = key
        if b is None:
            setattr(self, name, array)
        else:
            getattr(self, name)[b] = array

    def zeros_like(self):
        out = copy.deepcopy(self)
        for key in out.keys():
            out[key] = np.zeros_like(out[key])
        return out


class Event(NamedTuple):
    """A structural change: kind "add" or "delete", level "neuron" or "block", the block's
    id, and the neuron's id (for a block addition: its single neuron; for a block deletion:
    NO_NEURON, its neurons go with it without events of their own)."""

    kind: str
    level: str
    block_id: int
    neuron_id: int


@dataclass
class MLPState:
    """Parameters, optimizer memories and bookkeeping of one network.

    ``neuron_ids[b]`` and ``neuron_birth[b]`` (int64, n_b) follow the neurons of block b,
    ``block_ids`` and ``block_birth`` (int64, K) the blocks; births are the ``step`` at
    which the neuron or block was created (ages: ``step - birth``). Ids are never reused:
    ``next_neuron_id`` and ``next_block_id`` are the next ones to give. ``step`` counts
    the completed training steps.
    """

    params: Params
    mem: Params
    neuron_ids: list
    neuron_birth: list
    block_ids: np.ndarray
    block_birth: np.ndarray
    next_neuron_id: int
    next_block_id: int
    step: int = 0

    @property
    def criterion(self):
        return "outgoing" if self.params.m is None else "multiplier"

    @property
    def n_blocks(self):
        return len(self.params.W1)

    @property
    def widths(self):
        return [w.shape[0] for w in self.params.W1]

    @property
    def stream_width(self):
        return self.params.W_in.shape[0]

    def neuron_ages(self, b):
        return self.step - self.neuron_birth[b]

    def block_ages(self):
        return self.step - self.block_birth

    def copy(self):
        return copy.deepcopy(self)


def initial_memories(params, optimizer):
    """Optimizer memories at the start: all 0 for Adagrad (REFERENCE.md); for RMSProp
    (REFERENCE-LATER.md) 0.01 for the incoming weights W_in, b_in, W1, c (as Wxh and bh),
    0 for W2, m, mu, W_out, b_out."""
    mem = params.zeros_like()
    if optimizer == "rmsprop":
        for key in mem.keys():
            if key[0] in ("W_in", "b_in", "W1", "c"):
                mem[key] = np.full_like(mem[key], NEW_MEMORY)
    return mem


def _new_state(params, mem):
    widths = [w.shape[0] for w in params.W1]
    ids, start = [], 0
    for n in widths:
        ids.append(np.arange(start, start + n, dtype=np.int64))
        start += n
    k = len(widths)
    return MLPState(
        params=params,
        mem=mem,
        neuron_ids=ids,
        neuron_birth=[np.zeros(n, np.int64) for n in widths],
        block_ids=np.arange(k, dtype=np.int64),
        block_birth=np.zeros(k, np.int64),
        next_neuron_id=start,
        next_block_id=k,
    )


def initial_state(config, rng, input_dim, stream_width, classes, widths):
    """A fresh network: weights ~ Normal(0, init_scale^2) drawn from the Generator ``rng``
    in this order: W_in, then block by block W1_b then W2_b, then W_out (each
    ``rng.standard_normal(shape) * init_scale``, C order); biases and c 0; every neuron
    multiplier 1.0 (REFERENCE.md's first neuron) and every block multiplier 1.0; memories
    as ``initial_memories``; neuron ids 0.. block by block, block ids 0..K-1."""
    scale = config.init_scale
    S = stream_width
    W_in = rng.standard_normal((S, input_dim)) * scale
    W1, W2 = [], []
    for n in widths:
        W1.append(rng.standard_normal((n, S)) * scale)
        W2.append(rng.standard_normal((S, n)) * scale)
    W_out = rng.standard_normal((classes, S)) * scale
    params = Params(
        W_in=W_in,
        b_in=np.zeros(S),
        W1=W1,
        c=[np.zeros(n) for n in widths],
        W2=W2,
        m=[np.ones(n) for n in widths] if config.criterion == "multiplier" else None,
        mu=np.ones(len(widths)),
        W_out=W_out,
        b_out=np.zeros(classes),
    )
    return _new_state(params, initial_memories(params, config.optimizer))


def random_state(
    rng, criterion, input_dim, stream_width, classes, widths, *, scale=0.5, memories=True
):
    """A random network for tests: weights and biases ~ Normal(0, scale^2), neuron and
    block multipliers of random sign with |value| in [0.2, 1.5], memories uniform in
    [0.1, 2] (or 0 with ``memories=False``)."""
    S = stream_width

    def normal(*shape):
        return rng.normal(0.0, scale, shape)

    def multipliers(n):
        return rng.uniform(0.2, 1.5, n) * rng.choice([-1.0, 1.0], n)

    params = Params(
        W_in=normal(S, input_dim),
        b_in=normal(S),
        W1=[normal(n, S) for n in widths],
        c=[normal(n) for n in widths],
        W2=[normal(S, n) for n in widths],
        m=[multipliers(n) for n in widths] if criterion == "multiplier" else None,
        mu=multipliers(len(widths)),
        W_out=normal(classes, S),
        b_out=normal(classes),
    )
    mem = params.zeros_like()
    if memories:
        for key in mem.keys():
            mem[key] = rng.uniform(0.1, 2.0, mem[key].shape)
    return _new_state(params, mem)


# -- forward and backward ----------------------------------------------------------------
def forward(state, x, y=None):
    """The model's forward pass; returns (loss, cache). ``loss`` is the mean over the batch
    of -ln p[y] (None when ``y`` is None); the cache holds the inputs ``x``, the streams
    s_0..s_K, per block z_b, u_b, f_b, and the logits and probabilities."""
    p = state.params
    s = x @ p.W_in.T + p.b_in
    streams, zs, us, fs = [s], [], [], []
    for b in range(state.n_blocks):
        a = s @ p.W1[b].T + p.c[b]
        z = np.tanh(a)
        u = z * p.m[b] if p.m is not None else z
        f = u @ p.W2[b].T
        s = s + p.mu[b] * f
        streams.append(s)
        zs.append(z)
        us.append(u)
        fs.append(f)
    logits = s @ p.W_out.T + p.b_out
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    cache = dict(x=x, streams=streams, z=zs, u=us, f=fs, logits=logits, probs=np.exp(log_probs))
    loss = None
    if y is not None:
        batch = x.shape[0]
        loss = -log_probs[np.arange(batch), y].sum() / batch
    return loss, cache


def backward(state, cache, y, l1_strength=0.0):
    """Exact gradients of the mean loss (backprop), as a ``Params``; then, when
    ``l1_strength`` is not 0, the L1 terms l1_strength * sign(m) on every neuron multiplier
    and l1_strength * sign(mu) on every block multiplier, added once (REFERENCE.md's L1
    term; sign(0) = 0). ``train_step`` passes A_L1 under "multiplier" and 0 under
    "outgoing"."""
    p = state.params
    grads = p.zeros_like()
    x, streams = cache["x"], cache["streams"]
    batch = x.shape[0]
    dlogits = cache["probs"].copy()
    dlogits[np.arange(batch), y] -= 1.0
    dlogits /= batch  # the loss is a mean over the batch
    grads.W_out = dlogits.T @ streams[-1]
    grads.b_out = dlogits.sum(axis=0)
    ds = dlogits @ p.W_out  # d loss / d s_K
    for b in reversed(range(state.n_blocks)):
        z, u, f = cache["z"][b], cache["u"][b], cache["f"][b]
        grads.mu[b] = np.sum(ds * f)
        df = p.mu[b] * ds
        grads.W2[b] = df.T @ u
        du = df @ p.W2[b]
        if p.m is not None:
            grads.m[b] = np.sum(du * z, axis=0)
            dz = du * p.m[b]
        else:
            dz = du
        da = dz * (1.0 - z * z)
        grads.W1[b] = da.T @ streams[b]  # streams[b] is s_{b-1}, the block's input
        grads.c[b] = da.sum(axis=0)
        ds = ds + da @ p.W1[b]  # the residual path plus the block's input path
    grads.W_in = ds.T @ x
    grads.b_in = ds.sum(axis=0)
    if l1_strength:
        if p.m is not None:
            for b in range(state.n_blocks):
                grads.m[b] = grads.m[b] + l1_strength * np.sign(p.m[b])
        grads.mu = grads.mu + l1_strength * np.sign(p.mu)
    return grads


# -- the update ----------------------------------------------------------------------------
def _clip(values, bound):
    """values clipped elementwise to [-bound, bound]; bound 0 means no clipping."""
    return np.clip(values, -bound, bound) if bound > 0 else values


def l1_step_keys(params):
    """The arrays of the later method's L1 step: every W2_b, W_out and mu."""
    return [("W2", b) for b in range(len(params.W2))] + [("W_out", None), ("mu", None)]


def update(state, grads, config):
    """One optimizer step on every parameter, in place.

    For every array: g clipped to +-grad_clip (0: none); the memory
    Adagrad (REFERENCE.md): ``mem += g*g``, or
    RMSProp (REFERENCE-LATER.md): ``mem += (1 - decay) * (g*g - mem)``,
    the rate computed as ``1.0 - rmsprop_decay`` (0.010000000000000009 for 0.99);
    ``step = -lr * g / sqrt(mem + 1e-8)`` clipped to +-step_clip (0: none); ``w += step``
    (for Adagrad with step_clip 0 this is bitwise ``w -= lr * g / sqrt(mem + 1e-8)``).
    Then, when ``weight_penalty`` is set (the later method), the L1 step
    ``w -= weight_penalty * sign(w)`` on every W2_b, W_out and mu (REFERENCE-LATER.md step 3,
    on the weights after the optimizer step; sign(0) = 0).
    """
    params, mem = state.params, state.mem
    for key in params.keys():
        g = _clip(grads[key], config.grad_clip)
        if config.optimizer == "adagrad":
            new_mem = mem[key] + g * g
        else:
            rate = 1.0 - config.rmsprop_decay
            new_mem = mem[key] + rate * (g * g - mem[key])
        step = _clip(-config.learning_rate * g / np.sqrt(new_mem + EPS), config.step_clip)
        mem[key] = new_mem
        params[key] = params[key] + step
    if config.weight_penalty:
        for key in l1_step_keys(params):
            params[key] = params[key] - config.weight_penalty * np.sign(params[key])


# -- random numbers ------------------------------------------------------------------------
class Draws:
    """Pre-drawn random numbers: a pool of uniforms in [0, 1) and a pool of standard
    normals, each read front to back by its own cursor (``used_uniforms``,
    ``used_normals``). Running out raises IndexError.

    A permutation is made from the uniform pool by Fisher-Yates, as the engine's recurrent
    structure step does: for i = n-1 down to 1, one uniform u, j = min(int(u * (i + 1)), i),
    swap items i and j (n - 1 uniforms; u close to 1 leaves the order unchanged)."""

    def __init__(self, uniforms, normals=()):
        self.uniform_pool = np.asarray(uniforms, dtype=np.float64).ravel()
        self.normal_pool = np.asarray(normals, dtype=np.float64).ravel()
        self.used_uniforms = 0
        self.used_normals = 0

    @classmethod
    def from_generator(cls, rng, uniforms, normals):
        """Pools filled from a numpy Generator: ``rng.random(uniforms)`` first, then
        ``rng.standard_normal(normals)``."""
        return cls(rng.random(uniforms), rng.standard_normal(normals))

    def uniform(self):
        if self.used_uniforms >= self.uniform_pool.size:
            raise IndexError("the pool of uniforms is exhausted")
        value = float(self.uniform_pool[self.used_uniforms])
        self.used_uniforms += 1
        return value

    def normals(self, count):
        start = self.used_normals
        if start + count > self.normal_pool.size:
            raise IndexError("the pool of normals is exhausted")
        self.used_normals = start + count
        return self.normal_pool[start : start + count].copy()

    def shuffled(self, items):
        """``items`` (a 1-D array) in a random order, by Fisher-Yates (see the class)."""
        order = np.array(items, copy=True)
        for i in range(order.size - 1, 0, -1):
            j = min(int(self.uniform() * (i + 1)), i)
            order[i], order[j] = order[j], order[i]
        return order


# -- structure: strengths, deletion, addition --------------------------------------------
def neuron_strengths(state, b):
    """The strengths of block b's neurons: |m_j| (REFERENCE.md) or, under "outgoing",
    s_j = 2 * mean_i |W2_b[i, j]|, computed as 2 * (sum over i of |W2_b[i, j]|) / S."""
    p = state.params
    if p.m is not None:
        return np.abs(p.m[b])
    return outgoing_strength(p.W2[b])


def outgoing_strength(W2):
    """2 * mean over the S rows of |W2| per column, computed as 2 * column sum / S."""
    return 2.0 * np.abs(W2).sum(axis=0) / W2.shape[0]


def block_strengths(state):
    """A block's strength is |mu_b| under both criteria."""
    return np.abs(state.params.mu)


def choose_deletions(strengths, config, draws):
    """The deletion rule of REFERENCE.md step 2 (REFERENCE-LATER.md step 5) on one group
    (the neurons of one block, or the blocks); returns (positions to delete, in the order
    they were tried; the number below threshold).

    Below threshold: strength <= T_D (above: > T_D). If more than k are below: the below
    ones in index order are shuffled (``Draws.shuffled``), the first k kept, and each of
    the rest, in shuffled order, deleted when its own uniform < P_del. The group is never
    emptied: if every member would go (only possible with k = 0), the last one tried is
    kept; no extra draw, no event for it.
    """
    below = np.flatnonzero(strengths <= config.deletion_threshold)
    k = config.keep_below
    doomed = []
    if below.size > k:
        order = draws.shuffled(below)
        for i in order[k:]:
            if draws.uniform() < config.delete_prob:
                doomed.append(int(i))
        if len(doomed) == strengths.size:
            doomed.pop()
    return doomed, int(below.size)


def addition_drawn(n_below, config, draws):
    """REFERENCE.md step 3: add if (more than n - k are above threshold, i.e. fewer than k
    are below, and a uniform < P_add) or a second, separate uniform < spontaneous_add_prob.
    As the recurrent engine's structure step (``engine.structure``), so that the compiled
    step can serve both models: the P_add uniform is consumed only when fewer than k are
    below, and before the spontaneous one, which is always consumed. ``n_below`` counts
    the group before its deletions (REFERENCE-LATER.md: strengths not recomputed after
    them); as deletions leave at least k below, "fewer than k below" is the same before
    and after."""
    add = n_below < config.keep_below and draws.uniform() < config.add_prob
    if draws.uniform() < config.spontaneous_add_prob:
        add = True
    return add


def delete_neurons(state, b, positions):
    """Block b without the neurons at ``positions``: their W1 rows, c entries, W2 columns,
    multipliers, every optimizer memory of them, ids and births (``np.delete``, so the
    survivors keep their order)."""
    if len(positions) == 0:
        return
    if len(positions) >= state.widths[b]:
        raise ValueError("a block never loses its last neuron")
    for tree in (state.params, state.mem):
        for name, axis in NEURON_AXIS.items():
            if name == "m" and tree.m is None:
                continue
            tree[name, b] = np.delete(tree[name, b], positions, axis=axis)
    state.neuron_ids[b] = np.delete(state.neuron_ids[b], positions)
    state.neuron_birth[b] = np.delete(state.neuron_birth[b], positions)


def delete_blocks(state, positions):
    """The network without the blocks at ``positions``: all their parameters, memories,
    neuron ids and births, their mu and its memory, their ids and births."""
    if len(positions) == 0:
        return
    if len(positions) >= state.n_blocks:
        raise ValueError("the network never loses its last block")
    gone = set(int(i) for i in positions)
    for tree in (state.params, state.mem):
        for name in BLOCK_NAMES:
            arrays = getattr(tree, name)
            if arrays is not None:
                setattr(tree, name, [a for i, a in enumerate(arrays) if i not in gone])
        tree.mu = np.delete(tree.mu, positions)
    for name in ("neuron_ids", "neuron_birth"):
        arrays = getattr(state, name)
        setattr(state, name, [a for i, a in enumerate(arrays) if i not in gone])
    state.block_ids = np.delete(state.block_ids, positions)
    state.block_birth = np.delete(state.block_birth, positions)


def new_neuron(config, stream_width, draws):
    """A new neuron's weights and memories; consumes 2 S normals: its W1 row first, then
    its W2 column (each ``init_scale * normals(S)``), and no uniform.

    "multiplier": W1 row and W2 column ~ Normal(0, init_scale^2), c = 0.
    "outgoing": the W2 column rescaled so that its strength 2 * sum|column| / S is
    T_D / 2 (left at zero if it is all zero, init_scale 0).
    Memories as the optimizer starts a run's (``initial_memories``): under RMSProp 0.01
    for the W1 row and c (incoming), 0 for the W2 column; all 0 under Adagrad.
    Returns dict(W1=(S,), c=float, W2=(S,), mem_W1, mem_c, mem_W2); the multiplier (T_D in
    a block, 1.0 in a new block) is set by the caller."""
    S = stream_width
    w1 = config.init_scale * draws.normals(S)
    w2 = config.init_scale * draws.normals(S)
    if config.criterion == "outgoing":
        strength = 2.0 * np.abs(w2).sum() / S
        if strength > 0:
            w2 = w2 * (0.5 * config.deletion_threshold / strength)
    incoming_memory = NEW_MEMORY if config.optimizer == "rmsprop" else 0.0
    return dict(
        W1=w1,
        c=0.0,
        W2=w2,
        mem_W1=np.full(S, incoming_memory),
        mem_c=incoming_memory,
        mem_W2=np.zeros(S),
    )


def add_neuron(state, b, config, draws):
    """Block b with one new neuron appended at its end (``new_neuron``; multiplier T_D,
    its memory 0); returns its id."""
    fresh = new_neuron(config, state.stream_width, draws)
    for tree, prefix in ((state.params, ""), (state.mem, "mem_")):
        tree["W1", b] = np.vstack([tree["W1", b], fresh[prefix + "W1"]])
        tree["c", b] = np.append(tree["c", b], fresh[prefix + "c"])
        tree["W2", b] = np.column_stack([tree["W2", b], fresh[prefix + "W2"]])
    if state.params.m is not None:
        state.params.m[b] = np.append(state.params.m[b], config.deletion_threshold)
        state.mem.m[b] = np.append(state.mem.m[b], 0.0)
    neuron_id = state.next_neuron_id
    state.next_neuron_id += 1
    state.neuron_ids[b] = np.append(state.neuron_ids[b], np.int64(neuron_id))
    state.neuron_birth[b] = np.append(state.neuron_birth[b], np.int64(state.step))
    return neuron_id


def add_block(state, config, draws):
    """A new block inserted at the top (after the last block, before the output), so no
    existing block's input changes: mu = T_D (memory 0), one neuron as ``new_neuron``
    with multiplier 1.0 (memory 0) under "multiplier". Returns (block id, neuron id)."""
    fresh = new_neuron(config, state.stream_width, draws)
    for tree, prefix in ((state.params, ""), (state.mem, "mem_")):
        tree.W1.append(fresh[prefix + "W1"][np.newaxis, :])
        tree.c.append(np.array([fresh[prefix + "c"]]))
        tree.W2.append(fresh[prefix + "W2"][:, np.newaxis])
    if state.params.m is not None:
        state.params.m.append(np.array([1.0]))
        state.mem.m.append(np.array([0.0]))
    state.params.mu = np.append(state.params.mu, config.deletion_threshold)
    state.mem.mu = np.append(state.mem.mu, 0.0)
    neuron_id, block_id = state.next_neuron_id, state.next_block_id
    state.next_neuron_id += 1
    state.next_block_id += 1
    state.neuron_ids.append(np.array([neuron_id], dtype=np.int64))
    state.neuron_birth.append(np.array([state.step], dtype=np.int64))
    state.block_ids = np.append(state.block_ids, np.int64(block_id))
    state.block_birth = np.append(state.block_birth, np.int64(state.step))
    return block_id, neuron_id


def structure_step(state, config, draws):
    """The structure step after the update, in place; returns the list of Events.

    First the neurons, block by block in order (positions 1..K at the start of the step):
      1. "multiplier" only: m_b = max(m_b, M_min) (REFERENCE.md step 1);
      2. deletion (``choose_deletions`` on ``neuron_strengths``, never the block's last
         neuron), events in the order the candidates were tried;
      3. addition while n_b (after the deletions) < capacity - 1: ``addition_drawn``, then
         ``add_neuron`` (appended at the block's end).
    Then the blocks, the same rule on |mu_b| with the same T_D, k, P_del, P_add:
      1. mu = max(mu, M_min) ("multiplier") or mu = max(mu, T_D / 2) ("outgoing");
      2. deletion (never the last block);
      3. addition while K (after the deletions) < max_blocks - 1: ``add_block`` (on top).

    Draws consumed, in this order:
      for each block, in order:
        if more than k neurons are below: (n_below - 1) uniforms for the shuffle, then
          one uniform per candidate beyond the k kept, in shuffled order;
        if n_b < capacity - 1 (``addition_drawn``): when fewer than k neurons were below
          (counted before the deletions), one uniform for P_add; then, always, one
          uniform for the spontaneous addition (so two uniforms, P_add first, with fewer
          than k below, one with k or more below); if a neuron is added, 2 S normals (its
          W1 row, then its W2 column); at n_b >= capacity - 1 no uniform and no normal;
      then for the blocks: the same, with K and max_blocks (a new block's 2 S normals).
    """
    p = state.params
    events = []
    for b in range(state.n_blocks):
        if p.m is not None:
            p.m[b] = np.maximum(p.m[b], config.min_multiplier)
        block_id = int(state.block_ids[b])
        doomed, n_below = choose_deletions(neuron_strengths(state, b), config, draws)
        for i in doomed:
            events.append(Event("delete", "neuron", block_id, int(state.neuron_ids[b][i])))
        delete_neurons(state, b, doomed)
        if state.widths[b] < config.capacity - 1 and addition_drawn(n_below, config, draws):
            neuron_id = add_neuron(state, b, config, draws)
            events.append(Event("add", "neuron", block_id, neuron_id))

    if p.m is not None:
        p.mu = np.maximum(p.mu, config.min_multiplier)
    else:  # the later method: block multipliers floored at T_D / 2, never crossing zero
        p.mu = np.maximum(p.mu, 0.5 * config.deletion_threshold)
    doomed, n_below = choose_deletions(block_strengths(state), config, draws)
    for i in doomed:
        events.append(Event("delete", "block", int(state.block_ids[i]), NO_NEURON))
    delete_blocks(state, doomed)
    if state.n_blocks < config.max_blocks - 1 and addition_drawn(n_below, config, draws):
        block_id, neuron_id = add_block(state, config, draws)
        events.append(Event("add", "block", block_id, neuron_id))
    return events


def train_step(state, x, y, config, draws):
    """One training step, in place: forward, backward (with the L1 terms A_L1 sign(m),
    A_L1 sign(mu) under "multiplier"), ``update``, ``structure_step``; then ``step += 1``.
    New neurons and blocks are born at the step's number before the increment. Returns
    (loss before the update, events)."""
    if config.criterion != state.criterion:
        raise ValueError(f"config is {config.criterion!r}, state is {state.criterion!r}")
    loss, cache = forward(state, x, y)
    l1 = config.l1_strength if config.criterion == "multiplier" else 0.0
    grads = backward(state, cache, y, l1_strength=l1)
    update(state, grads, config)
    events = structure_step(state, config, draws)
    state.step += 1
    return loss, events
