"""The teacher network's arithmetic (``engine.fftasks``), compiled with the portable policy.

LAPACK's QR and BLAS's matrix products choose their code by the host CPU, and NumPy's
tanh, exp and log by the CPU and the C library, so a teacher built with them gives other
weights, labels and floors on other machines. These kernels do the same arithmetic in
loops compiled by ``engine.jit`` for the fixed baseline, with ``engine.mathfn``'s tanh,
exp and log: the same bits on every machine of the baseline.

Three kernels, each with one signature (the drivers copy or cast what they are given
into float64 C-contiguous buffers, or refuse it, so that no caller compiles a variant):

* ``_orthonormalise_rows(a)``: Gram-Schmidt on the rows of ``a``, in place;
* ``_dense(h, weights, out, squash)``: ``out = h @ weights``, then tanh if ``squash``;
* ``_softmax_rows(rows, u, labels, entropy)``: logits to probabilities in place, and,
  when asked, labels sampled by inverse CDF and each row's entropy.

The forward pass is one ``_dense`` call per layer, looped over in Python (``Forward``),
rather than one kernel taking the teacher's tuple of hidden weights: a tuple's length is
part of its Numba type, so such a kernel would compile once per depth (1 to 16), and
stacking the layers into one padded 3-D array would copy every weight. A chunk has
thousands of rows, so the D + 1 calls per chunk cost nothing measurable.
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import kernel
from ..mathfn import _exp, _log, _tanh

# a row whose norm Gram-Schmidt shrinks below 2^-26 (sqrt of float64's epsilon) of its
# own is numerically in the span of the rows before it: a second pass no longer makes it
# orthogonal to them. Compared squared, as the kernel has the squared norms.
_DEPENDENT_RATIO2 = 2.0**-52


# -- kernels ----------------------------------------------------------------------------------
@kernel
def _orthonormalise_rows(a):
    """Rows of ``a`` (n x m, n <= m) to an orthonormal basis of the same nested spans, in
    place: modified Gram-Schmidt, each row projected against the previous ones twice
    ("twice is enough": the second pass removes what rounding left of the first, so the
    rows are orthonormal to working precision, as Householder's would be). Each row is
    divided by its remaining norm, so the implied R has a positive diagonal: the result
    is the unique Q of the QR factorisation of ``a.T`` with that sign convention.

    Returns how many rows were numerically in the span of the rows before them (their
    norm shrank by more than ``_DEPENDENT_RATIO2``): 0 unless ``a`` is (nearly) rank-
    deficient, which for a Gaussian draw has odds far below 1e-6."""
    n, m = a.shape
    dependent = 0
    for j in range(n):
        v = a[j]
        start2 = 0.0
        for t in range(m):
            start2 += v[t] * v[t]
        for _ in range(2):
            for k in range(j):
                q = a[k]
                r = 0.0
                for t in range(m):
                    r += q[t] * v[t]
                for t in range(m):
                    v[t] -= r * q[t]
        norm2 = 0.0
        for t in range(m):
            norm2 += v[t] * v[t]
        if not norm2 > _DEPENDENT_RATIO2 * start2:  # a zero row too
            dependent += 1
        norm = math.sqrt(norm2)
        for t in range(m):
            v[t] /= norm
    return dependent


@kernel(exact=True)
def _dense(h, weights, out, squash):
    """``out = h @ weights`` (rows x K times K x J), then tanh element-wise if ``squash``.

    Row by row, each output row accumulated over k in order, the loop over j vectorised:
    so every row's bits are independent of how many rows a block has (the chunking of
    the callers must not show in the data). Compiled exact, for ``_tanh``."""
    rows, depth = h.shape
    cols = weights.shape[1]
    for i in range(rows):
        row = out[i]
        for j in range(cols):
            row[j] = 0.0
        for k in range(depth):
            a = h[i, k]
            w = weights[k]
            for j in range(cols):
                row[j] += a * w[j]
        if squash:
            for j in range(cols):
                row[j] = _tanh(row[j])


@kernel(exact=True)
def _softmax_rows(rows, u, labels, entropy):
    """Each row of logits l to its softmax p = e / sum e, in place, with e = exp(z),
    z = l - max l: no exponent overflows whatever the scale. Compiled exact, for ``_exp``
    and ``_log``; and so that the sums are the ones written (class order, as ``np.cumsum``).

    If ``entropy`` has a slot per row (else it is empty), also the entropy (nats) of each
    row, H = log(sum e) - sum e z / sum e: both terms are >= 0 (z <= 0, the largest e is
    1), so H >= 0 up to the last rounding, and all-equal logits give log(classes) exactly.
    If ``u`` has a uniform per row (else it is empty), also ``labels[i]`` = the first class
    whose cumulative probability exceeds ``u[i]``, at most the last class (the last
    cumulative value may round below u). One kernel for the three, not three: they share
    the inlined ``_exp``, which is most of the compile time."""
    n, classes = rows.shape
    sample = u.size > 0
    entropies = entropy.size > 0
    for i in range(n):
        row = rows[i]
        top = row[0]
        for j in range(1, classes):
            top = max(top, row[j])
        total = 0.0
        weighted = 0.0
        for j in range(classes):
            z = row[j] - top
            e = _exp(z)
            row[j] = e
            total += e
            weighted += e * z
        if entropies:
            entropy[i] = _log(total) - weighted / total
        for j in range(classes):
            row[j] /= total
        if sample:
            # counting the cumulative values <= u finds the first one above it: they
            # are sums of non-negative terms, so non-decreasing
            cumulative = 0.0
            below = 0
            for j in range(classes):
                cumulative += row[j]
                below += cumulative <= u[i]
            labels[i] = min(below, classes - 1)


# -- drivers ----------------------------------------------------------------------------------
def _check_matrix(name: str, array: np.ndarray, *, writeable: bool = False) -> None:
    """Refuse what the kernels' one signature does not take (another layout or dtype would
    compile a variant, or, written in place, be a copy the caller never sees)."""
    if not (
        isinstance(array, np.ndarray)
        and array.ndim == 2
        and array.dtype == np.float64
        and array.flags.c_contiguous
        and (array.flags.writeable or not writeable)
    ):
        what = "writeable " if writeable else ""
        raise ValueError(f"{name} must be a 2-D C-contiguous {what}float64 array")


def orthonormal_rows(a: np.ndarray) -> np.ndarray:
    """A new array whose rows are the orthonormalised rows of ``a`` (n x m, n <= m): the
    Q^T of ``a.T``'s QR factorisation with R's diagonal made positive (``_orthonormalise_rows``).

    Raises ValueError for a numerically rank-deficient ``a`` (never seen for a Gaussian
    draw: see ``_orthonormalise_rows``)."""
    a = np.array(a, dtype=np.float64, order="C")  # a copy: the kernel works in place
    if a.ndim != 2 or a.shape[0] > a.shape[1]:
        raise ValueError(f"a has shape {a.shape}: needs 2-D with no more rows than columns")
    if _orthonormalise_rows(a) > 0:
        raise ValueError("a is rank-deficient: its rows have no orthonormal basis of their own")
    return a


class Forward:
    """The teacher's forward pass on blocks of at most ``max_rows`` rows, with its buffers
    allocated once: ``hidden[0]`` (input_dim x W), ``hidden[k]`` (W x W), ``output``
    (W x classes), all 2-D C-contiguous float64; h_k = tanh(h_{k-1} @ hidden[k]),
    logits = h_D @ output, in float64 whatever the inputs' dtype."""

    def __init__(self, hidden: tuple[np.ndarray, ...], output: np.ndarray, max_rows: int):
        if not hidden:
            raise ValueError("hidden must hold at least one layer")
        fan_in = hidden[0].shape[0] if hidden[0].ndim == 2 else -1
        for k, weights in enumerate(hidden + (output,)):
            name = f"hidden[{k}]" if k < len(hidden) else "output"
            _check_matrix(name, weights)
            if weights.shape[0] != fan_in:
                raise ValueError(f"{name} has shape {weights.shape}: needs {fan_in} rows")
            fan_in = weights.shape[1]
        self.hidden = tuple(hidden)
        self.output = output
        self.input_dim = hidden[0].shape[0]
        self.classes = output.shape[1]
        self.max_rows = int(max_rows)
        width = output.shape[0]
        self._x = np.empty((self.max_rows, self.input_dim))
        self._h = (np.empty((self.max_rows, width)), np.empty((self.max_rows, width)))

    def logits(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Logits of the rows of ``x`` (n x input_dim, n <= max_rows, any real dtype: cast
        to float64) into ``out`` (n x classes, C-contiguous float64), returned."""
        n = x.shape[0]
        if x.shape != (n, self.input_dim) or n > self.max_rows:
            raise ValueError(
                f"x has shape {x.shape}: needs (n <= {self.max_rows}, {self.input_dim})"
            )
        _check_matrix("out", out, writeable=True)
        if out.shape != (n, self.classes):
            raise ValueError(f"out has shape {out.shape}: needs {(n, self.classes)}")
        # a copy into the buffer casts float32 inputs, and keeps the kernel's one signature
        h = self._x[:n]
        h[...] = x
        for k, weights in enumerate(self.hidden):
            nxt = self._h[k % 2][:n]
            _dense(h, weights, nxt, True)
            h = nxt
        _dense(h, self.output, out, False)
        return out


# the kernel's "not asked for" outputs: empty, so never written
_NO_FLOATS = np.empty(0)
_NO_LABELS = np.empty(0, dtype=np.int64)


def softmax_rows(logits: np.ndarray) -> None:
    """Turn each row of ``logits`` (C-contiguous float64, writeable) into its softmax, in
    place (``_softmax_rows``)."""
    _check_matrix("logits", logits, writeable=True)
    _softmax_rows(logits, _NO_FLOATS, _NO_LABELS, _NO_FLOATS)


def sample_rows(logits: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Int64 labels sampled from each row's softmax by inverse CDF with ``u`` (one uniform
    per row): the first class whose cumulative probability exceeds u, at most the last
    class. ``logits`` (as ``softmax_rows``) is left holding the probabilities."""
    _check_matrix("logits", logits, writeable=True)
    u = np.require(u, np.float64, ["C", "W"])  # one signature: no read-only variant
    if u.shape != (logits.shape[0],):
        raise ValueError(f"u has shape {u.shape}: needs one uniform per row ({logits.shape[0]},)")
    labels = np.empty(logits.shape[0], dtype=np.int64)
    if labels.size:  # an empty u would mean "no sampling" to the kernel
        _softmax_rows(logits, u, labels, _NO_FLOATS)
    return labels


def entropy_rows(logits: np.ndarray) -> np.ndarray:
    """The entropy (nats) of each row's softmax, a new float64 array. ``logits`` (as
    ``softmax_rows``) is left holding the probabilities."""
    _check_matrix("logits", logits, writeable=True)
    out = np.empty(logits.shape[0])
    _softmax_rows(logits, _NO_FLOATS, _NO_LABELS, out)
    return out
