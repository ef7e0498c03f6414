"""tanh, exp and log as inline kernels: the same bits on every machine, and vectorisable.

The kernels call no libm function whose result depends on the library or on the CPU it
picks code for (glibc chooses between FMA and SSE2 variants of exp and log at load time;
Intel SVML chooses by vector width). What remains is exact in IEEE arithmetic: ``+ - * /``,
``sqrt``, ``floor``, ``frexp``. Each function is a range reduction by powers of two and a
Taylor polynomial, accurate to a few ulp (tests/test_kernels.py checks them against NumPy).

They are inlined (at Numba IR level, so that the loops calling them always vectorise)
and take the flags of the kernel they are inlined into, which must be compiled without
reassociation (``kernel(exact=True)``): the range reductions ``x - k*ln2_hi - k*ln2_lo``
are exact only in that order, and LLVM, allowed to reassociate, folds them into
``x - k*ln2`` (measured: 213 ulp off at |x| = 700). Only ``engine.cycle._tanh_in_place``
and ``_softmax_loss`` call them.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import kernel

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.4426950408889634
_SQRT_HALF = 0.7071067811865476
_EXP_OVERFLOW = 709.782712893384  # exp(x) > DBL_MAX above it
_EXP_UNDERFLOW = -745.1332191019412  # exp(x) rounds to 0 below it


@kernel(exact=True, inline=True)
def _expm1_reduced(r):
    """e^r - 1 for |r| <= ln2 / 2: the degree-13 Taylor polynomial (truncation < 2e-16),
    evaluated by Estrin's scheme: a dependency chain of 5 multiply-adds instead of
    Horner's 13, which matters on the forward's serial chain (tanh of every step)."""
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    # pairs c_k + c_{k+1} r of the coefficients 1/k!, k = 1..13
    p1 = 1.0 + 0.5 * r
    p3 = 1.0 / 6.0 + (1.0 / 24.0) * r
    p5 = 1.0 / 120.0 + (1.0 / 720.0) * r
    p7 = 1.0 / 5040.0 + (1.0 / 40320.0) * r
    p9 = 1.0 / 362880.0 + (1.0 / 3628800.0) * r
    p11 = 1.0 / 39916800.0 + (1.0 / 479001600.0) * r
    p13 = 1.0 / 6227020800.0
    q1 = p1 + p3 * r2
    q5 = p5 + p7 * r2
    q9 = p9 + p11 * r2
    s1 = q1 + q5 * r4
    s9 = q9 + p13 * r4
    return r * (s1 + s9 * r8)


@kernel(exact=True, inline=True)
def _pow2(k):
    """2^k for a whole number -1022 <= k <= 1023 given as a float, built from its bits:
    k + 2^52 + 1023 holds k + 1023 in its low mantissa bits, which shifted into the
    exponent field give 2^k. Only adds and shifts, so it vectorises with AVX2 (which has
    no float-to-int64 conversion, and where a table lookup would be a gather). NaN gives a
    meaningless finite value: the callers' NaN flows through their other operand."""
    biased = np.float64(k + 4503599627371519.0).view(np.int64)  # 2^52 + 1023 + k
    return np.int64(biased << 52).view(np.float64)


@kernel(exact=True, inline=True)
def _small_int_to_float(i):
    """An integer 0 <= i < 2^52 as a float, from its bits (AVX2 has no int64-to-float
    conversion either)."""
    return np.int64(i | 0x4330000000000000).view(np.float64) - 4503599627370496.0


@kernel(exact=True, inline=True)
def _tanh(x):
    """tanh|x| = -u / (u + 2) with u = expm1(-2|x|) = 2^k (1 + q) - 1, written s*q + (s - 1)
    so that k = 0 is exact. Accurate to a few ulp in float64; NaN stays NaN (it flows
    through every step). Branch-free, so that a loop over neurons vectorises."""
    ax = abs(np.float64(x))
    ax = 20.0 if ax > 20.0 else ax  # tanh(20) rounds to 1.0; keeps k in [-58, 0]
    z = -2.0 * ax
    k = np.floor(z * _LOG2E + 0.5)
    r = z - k * _LN2_HI - k * _LN2_LO
    q = _expm1_reduced(r)
    s = _pow2(k)
    u = s * q + (s - 1.0)
    return math.copysign(-u / (u + 2.0), x)


@kernel(exact=True, inline=True)
def _exp(x):
    """e^x = 2^k (1 + expm1(r)), x = k ln2 + r, 2^k applied in two exact halves so that
    no branch is needed: inf above the overflow bound, 0 (or a subnormal) below -708,
    NaN for NaN. Branch-free, so that a loop vectorises."""
    x = np.float64(x)
    x = _EXP_UNDERFLOW - 0.1 if x < _EXP_UNDERFLOW - 0.1 else x  # NaN passes both
    x = _EXP_OVERFLOW + 0.1 if x > _EXP_OVERFLOW + 0.1 else x
    k = np.floor(x * _LOG2E + 0.5)  # in [-1075, 1024]
    r = x - k * _LN2_HI - k * _LN2_LO
    q = _expm1_reduced(r)
    k1 = np.floor(0.5 * k)
    s1 = _pow2(k1)
    return (s1 * q + s1) * _pow2(k - k1)


@kernel(exact=True, inline=True)
def _log(x):
    """ln x = e ln2 + ln(1 + f), x = 2^e (1 + f), sqrt(1/2) <= 1 + f < sqrt(2);
    ln(1 + f) = 2 atanh(s), s = f / (2 + f), summed as in fdlibm. -inf at 0, NaN below 0
    and for NaN, inf at inf. Exponent and mantissa come from the bits: branch-free."""
    x = np.float64(x)
    tiny = x < 2.2250738585072014e-308  # subnormal (or 0, negative, handled at the end)
    bits = np.float64(x * (18014398509481984.0 if tiny else 1.0)).view(np.int64)  # 2^54 x
    biased_exponent = _small_int_to_float((bits >> 52) & 0x7FF)
    m = np.int64((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000).view(np.float64)
    big = m > 1.4142135623730951
    m = 0.5 * m if big else m
    dk = biased_exponent - (1023.0 - (1.0 if big else 0.0) + (54.0 if tiny else 0.0))
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    # R = 2z/3 + 2z^2/5 + ... + 2z^11/23: |s| <= 0.172, so the next term is below 1e-18
    p = 2.0 / 23.0
    p = p * z + 2.0 / 21.0
    p = p * z + 2.0 / 19.0
    p = p * z + 2.0 / 17.0
    p = p * z + 2.0 / 15.0
    p = p * z + 2.0 / 13.0
    p = p * z + 2.0 / 11.0
    p = p * z + 2.0 / 9.0
    p = p * z + 2.0 / 7.0
    p = p * z + 2.0 / 5.0
    p = p * z + 2.0 / 3.0
    big_r = p * z
    half_f2 = 0.5 * f * f
    y = dk * _LN2_HI - ((half_f2 - (s * (half_f2 + big_r) + dk * _LN2_LO)) - f)
    y = x if x == math.inf else y
    y = -math.inf if x == 0.0 else y
    return math.nan if not x >= 0.0 else y
