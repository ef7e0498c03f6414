"""Python-callable kernels for the tests.

The engine's inner kernels are compiled without a Python wrapper (``engine.jit``), so the
tests reach them through these thin kernels, compiled with the same policy. Also here: a
pool of random draws built from a plain generator, for the structure step.
"""

from __future__ import annotations

import numpy as np

from engine.cycle import _after_update, _forward_backward
from engine.jit import kernel
from engine.kernels import _record_trace
from engine.mathfn import _exp, _log, _tanh
from engine.state import Draws, allocate_draws, refill_draws
from engine.structure import _add_neuron, _compact, _strengths, _structure_step


@kernel
def forward_backward(net, s, hp, data, start):
    return _forward_backward(net, s, hp, data, start)


@kernel
def structure_step(net, s, hp, draws, cycle, events, fill):
    _structure_step(net, s, hp, draws, cycle, events, fill)


@kernel
def add_neuron(net, hp, draws, cycle, events, fill):
    _add_neuron(net, hp, draws, cycle, events, fill)


@kernel
def compact(net, keep, source, n):
    _compact(net, keep, source, n)


@kernel
def after_update(net, hp):
    """What the criterion does after the step: the L1 step on Why, Whh under outgoing."""
    _after_update(hp.criterion, net, hp)


@kernel
def strengths(net, s, hp):
    """Every active neuron's strength into ``s.strengths``."""
    _strengths(hp.criterion, net, s, hp)


@kernel
def record_trace(net, s, hp, trace, fill, cycle):
    _record_trace(net, s, hp, trace, fill, cycle)


@kernel(exact=True)
def tanh_of(xs, out):
    for i in range(xs.size):
        out[i] = _tanh(xs[i])


@kernel(exact=True)
def exp_of(xs, out):
    for i in range(xs.size):
        out[i] = _exp(xs[i])


@kernel(exact=True)
def log_of(xs, out):
    for i in range(xs.size):
        out[i] = _log(xs[i])


def draws_from(rng: np.random.Generator, capacity: int, vocab: int = 4) -> Draws:
    """Full pools of draws from ``rng`` (uniforms and normals from the same generator)."""
    draws = allocate_draws(capacity, vocab)
    refill_draws(draws, rng, rng)
    return draws


def draws_pool(rng: np.random.Generator, uniforms: int, normals: int) -> Draws:
    """Pools of the given sizes from ``rng``, cursor at 0: for runs of many structure
    steps without refills (the engine's own pools are refilled by its driver)."""
    return Draws(rng.random(uniforms), rng.standard_normal(normals), np.zeros(2, np.int64))


# -- the deletion variants (tests/test_variants.py) -----------------------------------------
from engine.growth import _order_candidates  # noqa: E402
from engine.structure import _store_deleted  # noqa: E402


@kernel
def store_deleted(net, i, n):
    """Push neuron ``i`` (of ``n`` active) onto the ring, as a deletion with
    ``inherit_deleted`` does before compacting."""
    _store_deleted(net, i, n)


@kernel
def order_candidates(net, strength, order, keep, candidates):
    """Order ``candidates`` in place by deletion order code ``order`` (1, 2, 3), the first
    ``keep`` kept, the rest in the order they are tried."""
    _order_candidates(net.birth_cycle, strength, order, keep, candidates)


# -- the feedforward model (tests/test_mlp_structure.py) -------------------------------------
from engine.mlp.structure import _mlp_structure_step  # noqa: E402


@kernel
def mlp_structure_step(net, s, hp, draws, cycle, events, fill):
    """The feedforward structure step alone (no training step before it)."""
    _mlp_structure_step(net, s, hp, draws, cycle, events, fill)
