"""Moving a network between the NumPy twin (``tests/naive_mlp.py``) and the engine's
buffers (``engine.mlp.state``), and the twin's config of an engine config."""

from __future__ import annotations

import naive_mlp as T
import numpy as np

from engine.config import RunConfig
from engine.mlp.state import (
    BLOCK_LEVEL,
    CYCLE,
    N_BLOCKS,
    NEXT_BLOCK,
    NEXT_NEURON,
    allocate_mlp,
)
from engine.state import BIRTH

TWIN_FIELDS = (
    "criterion",
    "deletion_threshold",
    "keep_below",
    "spontaneous_add_prob",
    "init_scale",
    "capacity",
    "max_blocks",
    "optimizer",
    "learning_rate",
    "rmsprop_decay",
    "grad_clip",
    "step_clip",
    "add_prob",
    "delete_prob",
    "min_multiplier",
    "l1_strength",
    "weight_penalty",
)


def twin_config(config: RunConfig) -> T.MLPConfig:
    return T.MLPConfig(**{name: getattr(config, name) for name in TWIN_FIELDS})


def to_engine(state: T.MLPState, config: RunConfig, classes: int):
    """The engine's buffers holding the twin's network (W2 stored transposed)."""
    p, mem = state.params, state.mem
    net, scratch = allocate_mlp(config, p.W_in.shape[1], classes)
    for tree, prefix in ((p, ""), (mem, "mem_")):
        getattr(net, prefix + "W_in")[:] = tree.W_in
        getattr(net, prefix + "b_in")[:] = tree.b_in
        getattr(net, prefix + "W_out")[:] = tree.W_out
        getattr(net, prefix + "b_out")[:] = tree.b_out
        K = len(tree.W1)
        getattr(net, prefix + "mu")[:K] = tree.mu
        for b in range(K):
            n = tree.W1[b].shape[0]
            getattr(net, prefix + "W1")[b, :n] = tree.W1[b]
            getattr(net, prefix + "c")[b, :n] = tree.c[b]
            getattr(net, prefix + "W2")[b, :n] = tree.W2[b].T
            if tree.m is not None:
                getattr(net, prefix + "m")[b, :n] = tree.m[b]
            elif prefix == "":
                net.m[b, :n] = 1.0
    for b in range(state.n_blocks):
        n = state.widths[b]
        net.width[b] = n
        net.neuron_id[b, :n] = state.neuron_ids[b]
        net.neuron_birth[b, :n] = state.neuron_birth[b]
        net.block_id[b] = state.block_ids[b]
        net.block_birth[b] = state.block_birth[b]
    net.counters[N_BLOCKS] = state.n_blocks
    net.counters[NEXT_NEURON] = state.next_neuron_id
    net.counters[NEXT_BLOCK] = state.next_block_id
    net.counters[CYCLE] = state.step
    return net, scratch


def from_engine(net, criterion: str) -> dict[str, object]:
    """Everything active in the engine's buffers, in the twin's shapes."""
    K = int(net.counters[N_BLOCKS])
    widths = [int(w) for w in net.width[:K]]
    out: dict[str, object] = {"widths": widths}
    for prefix in ("", "mem_"):
        out[prefix + "W_in"] = getattr(net, prefix + "W_in").copy()
        out[prefix + "b_in"] = getattr(net, prefix + "b_in").copy()
        out[prefix + "W_out"] = getattr(net, prefix + "W_out").copy()
        out[prefix + "b_out"] = getattr(net, prefix + "b_out").copy()
        out[prefix + "mu"] = getattr(net, prefix + "mu")[:K].copy()
        for name in ("W1", "c", "W2", "m"):
            if name == "m" and criterion == "outgoing":
                continue
            arrays = []
            for b, n in enumerate(widths):
                a = getattr(net, prefix + name)[b, :n].copy()
                arrays.append(a.T.copy() if name == "W2" else a)
            out[prefix + name] = arrays
    out["neuron_ids"] = [net.neuron_id[b, :n].tolist() for b, n in enumerate(widths)]
    out["neuron_birth"] = [net.neuron_birth[b, :n].tolist() for b, n in enumerate(widths)]
    out["block_ids"] = net.block_id[:K].tolist()
    out["block_birth"] = net.block_birth[:K].tolist()
    return out


def from_twin(state: T.MLPState) -> dict[str, object]:
    p, mem = state.params, state.mem
    out: dict[str, object] = {"widths": list(state.widths)}
    for tree, prefix in ((p, ""), (mem, "mem_")):
        for name in ("W_in", "b_in", "W_out", "b_out", "mu"):
            out[prefix + name] = np.asarray(getattr(tree, name))
        for name in ("W1", "c", "W2", "m"):
            if name == "m" and tree.m is None:
                continue
            out[prefix + name] = [np.asarray(a) for a in getattr(tree, name)]
    out["neuron_ids"] = [a.tolist() for a in state.neuron_ids]
    out["neuron_birth"] = [a.tolist() for a in state.neuron_birth]
    out["block_ids"] = state.block_ids.tolist()
    out["block_birth"] = state.block_birth.tolist()
    return out


def assert_same_network(engine: dict, twin: dict, rtol: float = 1e-10, atol: float = 1e-12):
    assert engine.keys() == twin.keys()
    for key in engine:
        a, b = engine[key], twin[key]
        if isinstance(a, list) and a and isinstance(a[0], np.ndarray):
            assert len(a) == len(b), key
            for i, (x, y) in enumerate(zip(a, b)):
                np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"{key}[{i}]")
        elif isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=key)
        else:
            assert a == b, key


def twin_events(records: np.ndarray) -> list[T.Event]:
    """The engine's event records in the twin's form: a block's birth and its neuron's
    become one ("add", "block", block, neuron); a block's death drops its neurons'."""
    rows = [tuple(r) for r in records[["kind", "level", "block_id", "neuron_id"]].tolist()]
    out: list[T.Event] = []
    i = 0
    while i < len(rows):
        kind, level, block, neuron = rows[i]
        i += 1
        if level == BLOCK_LEVEL and kind == BIRTH:
            out.append(T.Event("add", "block", block, rows[i][3]))
            i += 1  # its neuron's birth
        elif level == BLOCK_LEVEL:
            out.append(T.Event("delete", "block", block, T.NO_NEURON))
            while i < len(rows) and rows[i][1] != BLOCK_LEVEL and rows[i][2] == block:
                i += 1  # its neurons' deaths
        else:
            out.append(T.Event("add" if kind == BIRTH else "delete", "neuron", block, neuron))
    return out
