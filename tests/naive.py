"""A plain-NumPy twin of one training cycle (REFERENCE.md), written for readability.

State is a dict with the keys of ``engine.state.active_view``: the active parameters
(``Wxh`` (N, V), ``Whh`` (N, N), ``Wiy`` (V, N), ``bh``, ``by``, ``multipliers``), their
Adagrad memories (``mem_<name>``) and the carried ``hidden`` state. Fixed mode is the same
RNN without multipliers (output ``Wiy h``), without L1 and without a multiplier update.

The later method (REFERENCE-LATER.md, ``criterion="outgoing"``) is at the end: its cycle
(RMSProp with a clipped step, the L1 step on the outgoing weights), the outgoing-norm
strengths and its structure step, reading the engine's pre-drawn random numbers.

Also here: helpers that build random states and load them into engine buffers.
"""

from __future__ import annotations

import numpy as np

from engine.state import BIRTH, DEATH, N_ACTIVE, NEXT_ID, allocate_network

PARAMS = ("Wxh", "Whh", "Wiy", "bh", "by", "multipliers")

# each parameter's gradient buffer in engine.state.Scratch
GRAD_OF = {
    "Wxh": "dWxh",
    "Whh": "dWhh",
    "Wiy": "dWiy",
    "bh": "dbh",
    "by": "dby",
    "multipliers": "dmultipliers",
}


def forward_backward(state, data, start, seq_len, variable, l1=0.0):
    """Loss of one window and the gradient of every parameter (no clip, no update)."""
    Wxh, Whh, Wiy, bh, by = (state[k] for k in ("Wxh", "Whh", "Wiy", "bh", "by"))
    m = state["multipliers"] if variable else np.ones_like(bh)
    hs, probs, loss = [state["hidden"]], [], 0.0
    for t in range(seq_len):
        x, target = data[start + t], data[start + t + 1]
        h = np.tanh(Wxh[:, x] + Whh @ hs[-1] + bh)
        y = Wiy @ (m * h) + by
        p = np.exp(y - y.max())
        p /= p.sum()
        loss -= np.log(p[target])
        hs.append(h)
        probs.append(p)

    grads = {k: np.zeros_like(state[k]) for k in PARAMS}
    dh_next = np.zeros_like(bh)
    for t in reversed(range(seq_len)):
        x, target = data[start + t], data[start + t + 1]
        h, h_prev = hs[t + 1], hs[t]
        dy = probs[t].copy()
        dy[target] -= 1.0
        grads["Wiy"] += np.outer(dy, m * h)
        grads["by"] += dy
        dpost = Wiy.T @ dy  # gradient at the output layer's input m * h
        if variable:
            grads["multipliers"] += dpost * h + l1 * np.sign(m)
        dr = (1.0 - h * h) * (m * dpost + dh_next)  # gradient at the tanh input
        grads["bh"] += dr
        grads["Wxh"][:, x] += dr
        grads["Whh"] += np.outer(dr, h_prev)
        dh_next = Whh.T @ dr
    return loss, grads, hs[-1]


def cycle(state, data, start, seq_len, variable, l1=0.0, lr=0.1, clip=5.0, eps=1e-8):
    """One cycle: forward, backward, elementwise clip, Adagrad; returns (loss, new state)."""
    loss, grads, last = forward_backward(state, data, start, seq_len, variable, l1)
    new = {k: v.copy() for k, v in state.items()}
    for k in PARAMS:
        if k == "multipliers" and not variable:
            continue
        g = np.clip(grads[k], -clip, clip)
        new["mem_" + k] = state["mem_" + k] + g * g
        new[k] = state[k] - lr * g / np.sqrt(new["mem_" + k] + eps)
    new["hidden"] = last
    return loss, new


# -- building states ---------------------------------------------------------------------
def random_state(n, vocab, rng, *, variable=True, scale=0.3, memories=True):
    """Random active state of n neurons: weights N(0, scale^2), multipliers in [0.1, 1]."""
    state = {
        "Wxh": rng.normal(0, scale, (n, vocab)),
        "Whh": rng.normal(0, scale, (n, n)),
        "Wiy": rng.normal(0, scale, (vocab, n)),
        "bh": rng.normal(0, scale, n),
        "by": rng.normal(0, scale, vocab),
        "multipliers": rng.uniform(0.1, 1.0, n) if variable else np.ones(n),
        "hidden": rng.uniform(-0.9, 0.9, n),
        "neuron_id": np.arange(n, dtype=np.int64),
        "birth_cycle": np.zeros(n, dtype=np.int64),
    }
    for k in PARAMS:
        shape = state[k].shape
        state["mem_" + k] = rng.uniform(0.1, 2.0, shape) if memories else np.zeros(shape)
    return state


def load(state, capacity, dtype="float64", fill=np.nan, next_id=None):
    """A fresh engine Network holding ``state``; inactive entries are set to ``fill``.

    Kernels must never read past N, so NaN there makes any such read visible. The next
    neuron id is ``next_id``, by default one past the largest id in ``state``.
    """
    n = state["bh"].size
    vocab = state["by"].size
    net = allocate_network(capacity, vocab, dtype)
    for k in net._fields:
        buf = getattr(net, k)
        if buf.dtype.kind == "f" and k != "accum":
            buf[...] = fill
    net.Wxh[:n] = state["Wxh"]
    net.Whh[:n, :n] = state["Whh"]
    net.Wiy[:, :n] = state["Wiy"]
    for k in ("bh", "multipliers", "mem_bh", "mem_multipliers", "hidden"):
        getattr(net, k)[:n] = state[k]
    net.by[:] = state["by"]
    net.mem_by[:] = state["mem_by"]
    net.mem_Wxh[:n] = state["mem_Wxh"]
    net.mem_Whh[:n, :n] = state["mem_Whh"]
    net.mem_Wiy[:, :n] = state["mem_Wiy"]
    net.neuron_id[:n] = state["neuron_id"]
    net.birth_cycle[:n] = state["birth_cycle"]
    net.counters[N_ACTIVE] = n
    if next_id is None:
        next_id = int(state["neuron_id"].max()) + 1 if n else 0
    net.counters[NEXT_ID] = next_id
    return net


def cast(state, dtype):
    """The state with its float arrays cast to ``dtype`` (ints unchanged)."""
    return {k: v.astype(dtype) if v.dtype.kind == "f" else v.copy() for k, v in state.items()}


def delete(state, i):
    """``state`` without neuron i, by np.delete on every per-neuron axis."""
    out = {}
    for k, v in state.items():
        base = k[4:] if k.startswith("mem_") else k
        if base in ("by",):
            out[k] = v.copy()
        elif base == "Whh":
            out[k] = np.delete(np.delete(v, i, axis=0), i, axis=1)
        elif base == "Wiy":
            out[k] = np.delete(v, i, axis=1)
        else:
            out[k] = np.delete(v, i, axis=0)
    return out


# -- the later method (REFERENCE-LATER.md: criterion="outgoing") ---------------------------
# Its parameters: no multipliers (they stay 1.0 in the engine's buffers, untouched, and the
# output is Wiy h); the optimizer updates these five, each with its memory mem_<name>.
LATER_PARAMS = ("Wxh", "Whh", "Wiy", "bh", "by")
RECURRENT_SCALE = 4.0  # the recurrent part of a strength counts as much as 4 output weights
NEW_MEMORY = 0.01  # RMSProp memory of a new neuron (all of them) and of Wxh, bh at the start


def _clip(x, bound):
    """x clipped elementwise to [-bound, bound]; bound 0 means no clipping (RunConfig)."""
    return np.clip(x, -bound, bound) if bound > 0 else x


def later_update(state, grads, config):
    """RMSProp with a clipped step, then the L1 step on Why and Whh; returns a new state.

    ``mem += rate (g^2 - mem)``, ``step = -lr g / sqrt(mem + 1e-8)`` clipped to
    +-step_clip, ``w += step``; then ``w -= A sign(w)`` on Wiy and Whh only. The rate is
    ``1 - rmsprop_decay`` as the engine computes it (``engine.state.make_hyper``): with
    the default decay 0.99 that is 0.010000000000000009, not the reference's literal 0.01
    (a relative difference of 1e-15, far below every tolerance here).
    """
    rate = 1.0 - config.rmsprop_decay
    new = {k: v.copy() for k, v in state.items()}
    for k in LATER_PARAMS:
        g = _clip(grads[k], config.grad_clip)  # grad_clip 0 (the later default): none
        mem = state["mem_" + k] + rate * (g * g - state["mem_" + k])
        step = _clip(-config.learning_rate * g / np.sqrt(mem + 1e-8), config.step_clip)
        new["mem_" + k] = mem
        new[k] = state[k] + step
    for k in ("Wiy", "Whh"):  # the outgoing weights; sign(0) = 0 leaves zeros alone
        new[k] = new[k] - config.weight_penalty * np.sign(new[k])
    return new


def later_cycle(state, data, start, config):
    """One cycle of the later method without the structure step: forward and backward
    without multipliers (output Wiy h), RMSProp, L1 step. Returns (loss, new state)."""
    loss, grads, last = forward_backward(state, data, start, config.seq_len, variable=False)
    new = later_update(state, grads, config)
    new["hidden"] = last
    return loss, new


def outgoing_strengths(state):
    """s_j = 0.5 (4 sum_i |Whh[i, j]| / N + sum_v |Why[v, j]|), the L1 norm of what neuron j
    sends. Summed as the engine sums (``engine.structure._outgoing_strengths``): the Whh
    rows one after another, times 4 / N, then the Why rows one after another, times 0.5;
    so the threshold decisions of both sides are taken on the same numbers."""
    Whh, Wiy = state["Whh"], state["Wiy"]
    n = Whh.shape[0]
    s = np.zeros(n)
    for row in Whh:
        s += np.abs(row)
    s *= RECURRENT_SCALE / max(n, 1)
    for row in Wiy:
        s += np.abs(row)
    return 0.5 * s


class Stream:
    """The twin's reading of an engine ``Draws`` pool: the same numbers, in the same order,
    as the engine's ``_uniform`` and ``_normal`` (its own copy and cursors, so that the
    engine can consume the original at the same time)."""

    def __init__(self, draws):
        self.uniforms = draws.uniforms.copy()
        self.normal_pool = draws.normals.copy()
        self.cursor = [int(draws.cursor[0]), int(draws.cursor[1])]

    def uniform(self):
        value = self.uniforms[self.cursor[0]]
        self.cursor[0] += 1
        return float(value)

    def normals(self, count, scale):
        start = self.cursor[1]
        if start + count > self.normal_pool.size:
            raise IndexError("the pool of normal draws is exhausted")
        self.cursor[1] = start + count
        return scale * self.normal_pool[start : start + count]


def _abs_sum(values):
    """sum |values| left to right, as the engine's loops add them."""
    total = 0.0
    for v in values:
        total += abs(float(v))
    return total


def add_outgoing_neuron(state, stream, cycle, new_id, config):
    """``state`` with one neuron appended (index N) as the later method adds it; returns
    (new state, its birth event (cycle, id, kind, age, strength)).

    Incoming weights N(0, init_scale^2): its Wxh row, its Whh row (from the N old neurons).
    Outgoing weights drawn the same way, then rescaled: the Whh column (N + 1 entries, the
    self-connection included) so that 4 sum|column| / N_old = T_D / 2, the Why column so
    that its L1 norm is T_D / 2. REFERENCE-LATER.md fixes neither the order of the draws nor
    N_old = 0; the engine (``_outgoing_connections``) draws Wxh row, Whh row, Whh column,
    Why column, in that order, and divides by max(N_old, 1); so does this twin. Bias and
    hidden state 0, multiplier 1.0 (unused), every memory 0.01.
    """
    n = state["bh"].size
    vocab = state["by"].size
    half = 0.5 * config.deletion_threshold
    scale = config.init_scale
    wxh = stream.normals(vocab, scale)
    row = stream.normals(n, scale)
    column = stream.normals(n + 1, scale)
    total = _abs_sum(column)
    if total > 0:  # all-zero draws (init_scale 0) cannot be rescaled: left at zero
        column = column * (half * max(n, 1) / (RECURRENT_SCALE * total))
    wiy = stream.normals(vocab, scale)
    total = _abs_sum(wiy)
    if total > 0:
        wiy = wiy * (half / total)
    # its strength at the new N = n + 1, as the engine reports it in the birth event
    strength = 0.5 * (_abs_sum(wiy) + RECURRENT_SCALE * _abs_sum(column) / (n + 1))

    fresh = {  # the new neuron's entries: its weights, then its memories
        "Wxh": wxh,
        "Whh_row": row,
        "Whh_column": column,
        "Wiy": wiy,
        "mem_Wxh": np.full(vocab, NEW_MEMORY),
        "mem_Whh_row": np.full(n, NEW_MEMORY),
        "mem_Whh_column": np.full(n + 1, NEW_MEMORY),
        "mem_Wiy": np.full(vocab, NEW_MEMORY),
    }
    new = {k: v.copy() for k, v in state.items()}
    for prefix in ("", "mem_"):
        whh = np.zeros((n + 1, n + 1))
        whh[:n, :n] = state[prefix + "Whh"]
        whh[n, :n] = fresh[prefix + "Whh_row"]
        whh[:, n] = fresh[prefix + "Whh_column"]
        new[prefix + "Whh"] = whh
        new[prefix + "Wxh"] = np.vstack([state[prefix + "Wxh"], fresh[prefix + "Wxh"]])
        new[prefix + "Wiy"] = np.column_stack([state[prefix + "Wiy"], fresh[prefix + "Wiy"]])
    for k, value in (
        ("bh", 0.0),
        ("mem_bh", NEW_MEMORY),
        ("multipliers", 1.0),
        ("mem_multipliers", NEW_MEMORY),
        ("hidden", 0.0),
    ):
        new[k] = np.append(state[k], value)
    new["neuron_id"] = np.append(state["neuron_id"], np.int64(new_id))
    new["birth_cycle"] = np.append(state["birth_cycle"], np.int64(cycle))
    return new, (cycle, new_id, BIRTH, 0, strength)


def outgoing_structure_step(state, stream, cycle, next_id, config):
    """The later method's structure step; returns (new state, events, next id).

    Deletion: below threshold = ``s_j <= T_D``; if more than k are below, shuffle them,
    keep the first k, delete each of the rest with probability P_del. Addition, while
    N < capacity - 1 after the deletions: if (fewer than k below, judged on the strengths
    before the deletions, and rand < P_add) or rand < P_spontaneous. No multiplier floor.

    The random draws are the engine's, in the engine's order (``_structure_step``): the
    below-threshold candidates in index order, shuffled by Fisher-Yates from the last
    position down (one uniform each, j = min(int(u (i + 1)), i)); one uniform per excess
    candidate, in shuffled order; then the P_add uniform, drawn only when there is no
    reserve (the engine's ``and`` short-circuits); then the spontaneous uniform, always
    (while N < capacity - 1); then the new neuron's normals. Events are (cycle, id, kind,
    age, strength) tuples, deaths in shuffled order, then the birth.
    """
    strengths = outgoing_strengths(state)
    below = np.flatnonzero(strengths <= config.deletion_threshold)
    k = config.keep_below
    events = []
    if below.size > k:
        candidates = below.copy()
        for i in range(candidates.size - 1, 0, -1):
            j = min(int(stream.uniform() * (i + 1)), i)
            candidates[i], candidates[j] = candidates[j], candidates[i]
        doomed = []
        for i in candidates[k:]:
            if stream.uniform() < config.delete_prob:
                doomed.append(i)
                age = cycle - state["birth_cycle"][i]
                events.append((cycle, state["neuron_id"][i], DEATH, age, strengths[i]))
        if doomed:
            state = delete(state, doomed)
    if state["bh"].size < config.capacity - 1:
        add = below.size < k and stream.uniform() < config.add_prob
        if stream.uniform() < config.spontaneous_add_prob:
            add = True
        if add:
            state, birth = add_outgoing_neuron(state, stream, cycle, next_id, config)
            events.append(birth)
            next_id += 1
    return state, events, next_id


def birth_strength(n_old, threshold):
    """The strength a new neuron gets from the rescaling, at the new N = n_old + 1: its
    output half is T_D / 2 and its recurrent half T_D / 2 * max(n_old, 1) / (n_old + 1)."""
    half = 0.5 * threshold
    return 0.5 * (half + half * max(n_old, 1) / (n_old + 1))


def event_tuples(events, count):
    """The first ``count`` engine event records as (cycle, id, kind, age, strength)."""
    return [
        (int(e["cycle"]), int(e["neuron_id"]), int(e["kind"]), int(e["age"]), float(e["strength"]))
        for e in events[:count]
    ]


# -- the deletion variants (paper section 5): deletion_order and inherit_deleted -------------
# Both criteria. A twin of the engine's structure step with the two options, reading the
# engine's pre-drawn numbers; the store of deleted neurons is a plain stack (``Ring``).
from engine.state import NEWEST, STORED  # noqa: E402  (the ring's counters)

INHERIT_DEPTH = 16  # README: the ring remembers the last 16 deleted neurons


def new_memory(config):
    """Every optimizer memory of a new neuron: 0 for Adagrad, 0.01 for RMSProp."""
    return NEW_MEMORY if config.optimizer == "rmsprop" else 0.0


def floored(state, config):
    """``state`` after the multiplier floor m = max(m, M_min) (first method only)."""
    if config.criterion != "multiplier":
        return state
    new = dict(state)
    new["multipliers"] = np.maximum(state["multipliers"], config.min_multiplier)
    return new


def variant_strengths(state, config):
    """|m| (first method, after the floor) or the outgoing norm (later method)."""
    if config.criterion == "multiplier":
        return np.abs(state["multipliers"])
    return outgoing_strengths(state)


class Ring:
    """The twin's store of deleted neurons: a stack of at most INHERIT_DEPTH entries, the
    most recent last (a push beyond that forgets the oldest; a new neuron pops the most
    recent). ``newest`` follows the engine's slot arithmetic only to say in which slot of
    the engine's ``dead_*`` arrays each entry should be found: the newest in slot
    ``newest``, the one before in ``newest - 1`` (mod depth), ...; pushes go to the next
    slot. ``pushed`` and ``popped`` count, for the tests' statistics."""

    def __init__(self, depth=INHERIT_DEPTH, newest=0):
        self.depth = depth
        self.entries = []
        self.newest = newest
        self.pushed = 0
        self.popped = 0

    def push(self, entry):
        self.entries.append(entry)
        if len(self.entries) > self.depth:
            del self.entries[0]
        self.newest = (self.newest + 1) % self.depth
        self.pushed += 1

    def pop(self):
        entry = self.entries.pop()
        self.newest = (self.newest - 1) % self.depth
        self.popped += 1
        return entry

    def slots(self):
        """(slot, entry) of every stored entry, the most recent first."""
        return [((self.newest - j) % self.depth, e) for j, e in enumerate(reversed(self.entries))]


def dead_entry(state, i):
    """What the ring keeps of neuron i of ``state``, deleted: input weights, output weights,
    bias, self-connection, and with every other neuron alive (by id, in index order) the
    weight from it to i (row i of Whh: ``in``) and from i to it (column i: ``out``)."""
    others = np.arange(state["bh"].size) != i
    return {
        "Wxh": state["Wxh"][i].copy(),
        "Wiy": state["Wiy"][:, i].copy(),
        "bh": state["bh"][i],
        "self": state["Whh"][i, i],
        "partner_id": state["neuron_id"][others].copy(),
        "in": state["Whh"][i, others].copy(),
        "out": state["Whh"][others, i].copy(),
    }


def _appended(state, fresh, memory, cycle, new_id, multiplier, bh):
    """``state`` with neuron N appended: ``fresh`` holds its Wxh row, Whh row (from the N
    old neurons), Whh column (N + 1 entries, its self-connection last) and Why column; every
    memory of it ``memory``; hidden state 0."""
    n = state["bh"].size
    vocab = state["by"].size
    new = {k: v.copy() for k, v in state.items()}
    for prefix, values in (("", fresh), ("mem_", None)):
        if values is None:  # the memories: all fresh
            values = {
                "Wxh": np.full(vocab, memory),
                "Whh_row": np.full(n, memory),
                "Whh_column": np.full(n + 1, memory),
                "Wiy": np.full(vocab, memory),
            }
        whh = np.zeros((n + 1, n + 1))
        whh[:n, :n] = state[prefix + "Whh"]
        whh[n, :n] = values["Whh_row"]
        whh[:, n] = values["Whh_column"]
        new[prefix + "Whh"] = whh
        new[prefix + "Wxh"] = np.vstack([state[prefix + "Wxh"], values["Wxh"]])
        new[prefix + "Wiy"] = np.column_stack([state[prefix + "Wiy"], values["Wiy"]])
    for k, value in (
        ("bh", bh),
        ("mem_bh", memory),
        ("multipliers", multiplier),
        ("mem_multipliers", memory),
        ("hidden", 0.0),
    ):
        new[k] = np.append(state[k], value)
    new["neuron_id"] = np.append(state["neuron_id"], np.int64(new_id))
    new["birth_cycle"] = np.append(state["birth_cycle"], np.int64(cycle))
    return new


def add_multiplier_neuron(state, stream, cycle, new_id, config):
    """The first method's new neuron (REFERENCE.md): every new weight N(0, init_scale^2),
    multiplier T_D, bias and hidden state 0. REFERENCE.md does not fix the order of the
    draws; the engine (``_multiplier_connections``) draws the Wxh row, the Whh column (what
    it sends to the N old neurons), the Whh row (what it receives, itself last), the Why
    column; so does this twin. Returns (new state, birth event)."""
    n = state["bh"].size
    vocab = state["by"].size
    scale = config.init_scale
    wxh = stream.normals(vocab, scale)
    column = stream.normals(n, scale)
    row = stream.normals(n + 1, scale)
    wiy = stream.normals(vocab, scale)
    fresh = {
        "Wxh": wxh,
        "Whh_row": row[:n],
        "Whh_column": np.append(column, row[n]),
        "Wiy": wiy,
    }
    threshold = config.deletion_threshold
    new = _appended(state, fresh, new_memory(config), cycle, new_id, threshold, 0.0)
    return new, (cycle, new_id, BIRTH, 0, threshold)


def inherit_neuron(state, entry, cycle, new_id, config):
    """``state`` with neuron N appended from a stored ``entry``: its input and output
    weights, bias, self-connection; with each neuron alive now, matched by id, the stored
    weights if it was alive when ``entry`` died, else 0 (born since). Memories afresh,
    hidden 0, multiplier T_D (first method) or 1.0 (later, unused). Returns (new state,
    birth event); the event's strength is T_D, or under the later method the inherited
    outgoing norm at the new N."""
    n = state["bh"].size
    where = {int(p): j for j, p in enumerate(entry["partner_id"])}
    row, column = np.zeros(n), np.zeros(n)
    for p, pid in enumerate(state["neuron_id"]):
        j = where.get(int(pid))
        if j is not None:
            row[p] = entry["in"][j]
            column[p] = entry["out"][j]
    fresh = {
        "Wxh": entry["Wxh"],
        "Whh_row": row,
        "Whh_column": np.append(column, entry["self"]),
        "Wiy": entry["Wiy"],
    }
    if config.criterion == "multiplier":
        multiplier = strength = config.deletion_threshold
    else:
        multiplier = 1.0
        strength = 0.5 * (
            _abs_sum(entry["Wiy"]) + RECURRENT_SCALE * _abs_sum(fresh["Whh_column"]) / (n + 1)
        )
    new = _appended(state, fresh, new_memory(config), cycle, new_id, multiplier, entry["bh"])
    return new, (cycle, new_id, BIRTH, 0, strength)


def add_variant_neuron(state, ring, stream, cycle, new_id, config):
    """A new neuron: with ``inherit_deleted`` and a stored entry, the most recent one (no
    draw); else the criterion's random neuron. Returns (new state, birth event)."""
    if config.inherit_deleted and ring.entries:
        return inherit_neuron(state, ring.pop(), cycle, new_id, config)
    if config.criterion == "multiplier":
        return add_multiplier_neuron(state, stream, cycle, new_id, config)
    assert config.optimizer == "rmsprop", "add_outgoing_neuron gives RMSProp's memories"
    return add_outgoing_neuron(state, stream, cycle, new_id, config)


def order_candidates(candidates, state, strengths, order, keep):
    """The below-threshold candidates (index order) in the order of ``deletion_order``: the
    first ``keep`` are kept in reserve, the rest are tried in turn, in the order the name
    says. "oldest" keeps the youngest (largest birth cycle) and tries the oldest first,
    "youngest" the reverse, "weakest" keeps the strongest and tries the weakest first.
    As the engine: a stable sort, most worth keeping first (ties in index order), then the
    part beyond the reserve reversed."""
    birth = state["birth_cycle"]
    key = {
        "oldest": lambda i: -int(birth[i]),
        "youngest": lambda i: int(birth[i]),
        "weakest": lambda i: -float(strengths[i]),
    }[order]
    ranked = sorted(candidates.tolist(), key=key)
    return np.array(ranked[:keep] + ranked[keep:][::-1], dtype=np.int64)


def variant_structure_step(state, ring, stream, cycle, next_id, config):
    """The structure step of either criterion with ``deletion_order`` and
    ``inherit_deleted``; returns (new state, events, next id) and updates ``ring``.

    Multiplier floor (first method); strengths; below threshold = strength <= T_D. If more
    than k are below: order them (``random``: Fisher-Yates as in
    ``outgoing_structure_step``, one uniform per position from the last down; the other
    orders draw nothing), keep the first k, try each of the rest in that order with one
    uniform (< P_del: deleted; with ``inherit_deleted`` its connections are pushed, taken
    from the network before any of this step's deletions). Addition as before, judged on
    the strengths before the deletions: the P_add uniform only without a reserve, the
    spontaneous one always, while N < capacity - 1 after the deletions."""
    state = floored(state, config)
    strengths = variant_strengths(state, config)
    below = np.flatnonzero(strengths <= config.deletion_threshold)
    k = config.keep_below
    events = []
    if below.size > k:
        if config.deletion_order == "random":
            candidates = below.copy()
            for i in range(candidates.size - 1, 0, -1):
                j = min(int(stream.uniform() * (i + 1)), i)
                candidates[i], candidates[j] = candidates[j], candidates[i]
        else:
            candidates = order_candidates(below, state, strengths, config.deletion_order, k)
        doomed = []
        for i in candidates[k:]:
            if stream.uniform() < config.delete_prob:
                doomed.append(i)
                age = cycle - state["birth_cycle"][i]
                events.append((cycle, state["neuron_id"][i], DEATH, age, strengths[i]))
                if config.inherit_deleted:
                    ring.push(dead_entry(state, i))
        if doomed:
            state = delete(state, doomed)
    if state["bh"].size < config.capacity - 1:
        add = below.size < k and stream.uniform() < config.add_prob
        if stream.uniform() < config.spontaneous_add_prob:
            add = True
        if add:
            state, birth = add_variant_neuron(state, ring, stream, cycle, next_id, config)
            events.append(birth)
            next_id += 1
    return state, events, next_id


def engine_ring(net):
    """The engine's stored entries, the most recent first, as (slot, entry) pairs in the
    form of ``dead_entry``: slots NEWEST, NEWEST - 1, ... (mod depth), STORED of them."""
    depth = net.dead_bh.size
    out = []
    for j in range(int(net.counters[STORED])):
        slot = (int(net.counters[NEWEST]) - j) % depth
        count = int(net.dead_partners[slot])
        out.append(
            (
                slot,
                {
                    "Wxh": net.dead_Wxh[slot].copy(),
                    "Wiy": net.dead_Wiy[slot].copy(),
                    "bh": net.dead_bh[slot],
                    "self": net.dead_self[slot],
                    "partner_id": net.dead_partner_id[slot, :count].copy(),
                    "in": net.dead_in[slot, :count].copy(),
                    "out": net.dead_out[slot, :count].copy(),
                },
            )
        )
    return out
