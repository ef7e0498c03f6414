"""The growth and pruning rule, written once for every kind of unit (compiled).

Given the strengths of a group of units (the neurons of the recurrent network, the
neurons of one feedforward layer, or the feedforward network's residual blocks), the
rule says which units to delete and whether to add one (REFERENCE.md steps 2-3,
REFERENCE-LATER.md step 5):

* below threshold means strength <= T_D; when more than k units are below, the below
  ones are ordered by ``deletion_order`` (shuffled for "random"), the first k kept as a
  reserve, and each of the rest deleted when its own uniform draw < P_del;
* then, while the group is below its capacity, a unit is added when (fewer than k were
  below and a uniform < P_add) or a second uniform < the spontaneous probability.

What a unit *is* (its weights, how it is compacted away, how a new one is made) is the
model's business; this module only decides. ``rule`` is the run's
``engine.state.GrowthRule`` (``hp.rule`` in both models' hyper-parameters), so one kernel
source, and one compiled function, serves both models. Draws come from
``engine.state.Draws`` pools, in the order documented in ``_choose_deletions``.
"""

from __future__ import annotations

from .jit import internal_kernel, kernel


@kernel(inline=True)
def _uniform(draws):
    """The next uniform draw in [0, 1) of the structure stream (pre-drawn by the driver)."""
    i = draws.cursor[0]
    draws.cursor[0] = i + 1
    return draws.uniforms[i]


@kernel(inline=True)
def _normal(draws, scale):
    """The next N(0, scale^2) draw of the new-weights stream (pre-drawn by the driver)."""
    i = draws.cursor[1]
    draws.cursor[1] = i + 1
    return scale * draws.normals[i]


@internal_kernel
def _shuffle(draws, items):
    """Fisher-Yates from uniform draws (``items.size - 1`` of them)."""
    for i in range(items.size - 1, 0, -1):
        j = min(int(_uniform(draws) * (i + 1)), i)
        items[i], items[j] = items[j], items[i]


@internal_kernel
def _order_candidates(birth, strength, order, keep, candidates):
    """Order the below-threshold candidates for ``deletion_order``: the first ``keep``
    (the reserve) are the ones to keep, the rest are tried for deletion in the order the
    name says. Order 1 ("oldest") keeps the youngest and tries the oldest first, 2
    ("youngest") keeps the oldest and tries the youngest first, 3 ("weakest") keeps the
    strongest and tries the weakest first. A stable insertion sort, most worth keeping
    first (ties in index order), then the part beyond the reserve reversed (so tied
    candidates are tried from the highest index down)."""
    for a in range(1, candidates.size):
        item = candidates[a]
        b = a
        while b > 0:
            other = candidates[b - 1]
            if order == 1:
                before = birth[item] > birth[other]
            elif order == 2:
                before = birth[item] < birth[other]
            else:
                before = strength[item] > strength[other]
            if not before:
                break
            candidates[b] = other
            b -= 1
        candidates[b] = item
    low, high = min(keep, candidates.size), candidates.size - 1
    while low < high:
        candidates[low], candidates[high] = candidates[high], candidates[low]
        low += 1
        high -= 1


@internal_kernel
def _choose_deletions(rule, strength, birth, n, draws, below, doomed, min_left):
    """Which of the ``n`` units to delete. Returns ``(n_below, n_doomed)``: how many were
    at or below threshold (before any deletion), and how many to delete, whose positions
    are ``doomed[:n_doomed]`` in the order they were tried (the order of their events).

    Draws: when more than k are below, ``n_below - 1`` uniforms for a random order (none
    for the other orders), then one uniform per candidate beyond the k kept. ``below``
    (room for ``n``) is work space. At least ``min_left`` units survive: when the draws
    would leave fewer (possible only with k = 0), the last ones tried are spared, without
    draws or events: all are below threshold, and the order tried is the deletion
    order's, so the choice never hangs on ties between strengths that two correct
    implementations may round differently. The recurrent network passes 0, the
    feedforward layers and blocks 1 (a layer or a network is never emptied).
    """
    n_below = 0
    for i in range(n):
        if strength[i] <= rule.deletion_threshold:
            below[n_below] = i
            n_below += 1
    n_doomed = 0
    if n_below > rule.keep_below:
        candidates = below[:n_below]
        if rule.deletion_order == 0:
            _shuffle(draws, candidates)
        else:
            _order_candidates(birth, strength, rule.deletion_order, rule.keep_below, candidates)
        for q in range(rule.keep_below, n_below):
            if _uniform(draws) < rule.delete_prob:
                doomed[n_doomed] = candidates[q]
                n_doomed += 1
        if n - n_doomed < min_left:  # spare the last ones tried
            n_doomed = max(n - min_left, 0)
    return n_below, n_doomed


@kernel(inline=True)
def _addition_drawn(rule, n_below, draws):
    """Whether to add a unit, for a group with room for one. ``n_below`` counts the group
    before its deletions (strengths are not recomputed after them): as deletions leave at
    least k below, "fewer than k below" is the same before and after. The P_add uniform
    is drawn only when fewer than k were below, and before the spontaneous one, which is
    always drawn."""
    add = n_below < rule.keep_below and _uniform(draws) < rule.add_prob
    if _uniform(draws) < rule.spontaneous_add_prob:
        add = True
    return add
