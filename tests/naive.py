"""A plain-NumPy twin of one training cycle (REFERENCE.md), written for readability.

State is a dict with the keys of ``engine.state.active_view``: the active parameters
(``Wxh`` (N, V), ``Whh`` (N, N), ``Wiy`` (V, N), ``bh``, ``by``, ``multipliers``), their
Adagrad memories (``mem_<name>``) and the carried ``hidden`` state. Fixed mode is the same
RNN without multipliers (output ``Wiy h``), without L1 and without a multiplier update.

Also here: helpers that build random states and load them into engine buffers.
"""

from __future__ import annotations

import numpy as np

from engine.state import N_ACTIVE, NEXT_ID, allocate_network

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


def load(state, capacity, dtype="float64", fill=np.nan):
    """A fresh engine Network holding ``state``; inactive entries are set to ``fill``.

    Kernels must never read past N, so NaN there makes any such read visible.
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
    net.counters[NEXT_ID] = int(state["neuron_id"].max()) + 1 if n else 0
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
