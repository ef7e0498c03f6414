"""The one place that says how kernels are compiled.

Every ``@kernel`` in the engine is nopython, releases the GIL (so the threading backend
runs kernels in parallel) and is cached on disk. fastmath is on, but without ``nnan`` and
``ninf``: the run loop checks the loss for NaN/inf to stop diverged runs, and those flags
would let LLVM fold such checks away. ``error_model="numpy"`` drops the division-by-zero
checks that Python semantics would add inside hot loops.

The on-disk cache does not notice a change of these flags: delete ``engine/__pycache__``
after editing this module.
"""

from __future__ import annotations

import numba

FASTMATH_FLAGS = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

_POLICY = dict(nogil=True, cache=True, fastmath=set(FASTMATH_FLAGS), error_model="numpy")


def kernel(function):
    """Compile ``function`` with the engine's policy (see module docstring)."""
    return numba.njit(**_POLICY)(function)


def inline_kernel(function):
    """A small helper inlined into its callers at Numba IR level. LLVM does not always
    inline calls between Numba functions, and a call passing arrays costs tens of ns,
    as much as a whole step at small N."""
    return numba.njit(inline="always", **_POLICY)(function)
