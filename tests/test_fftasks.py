"""Feedforward tasks: spec parsing, the teacher, its compiled arithmetic against NumPy's,
its floor, the pools, and the digits split."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import ConfigError, fftasks
from engine.fftasks import (
    OUTPUT_SCALE,
    DigitsData,
    FFPhase,
    Teacher,
    build_phase_sources,
    fill_batches,
    fill_digits_batches,
    fill_teacher_batches,
    load_digits_split,
    make_teacher,
    parse_ff_task,
    teacher_floor,
    teacher_probabilities,
)
from engine.jit import TARGET
from engine.mlp.teacher import Forward, entropy_rows, orthonormal_rows, sample_rows

LOG10 = math.log(10)


def _teacher(width=8, depth=2, seed=0, **kwargs) -> Teacher:
    return make_teacher(width, depth, 16, 10, np.random.default_rng(seed), **kwargs)


def _pools(n=3, batch=5, dim=16, x_dtype=np.float64, y_dtype=np.int64):
    """Pools pre-filled with values no fill may leave behind."""
    x = np.full((n, batch, dim), np.nan, dtype=x_dtype)
    y = np.full((n, batch), -1, dtype=y_dtype)
    return x, y


def _one_line(error_type, call, *args, **kwargs) -> str:
    with pytest.raises(error_type) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# -- parsing --------------------------------------------------------------------------------
def test_parse_single_specs():
    assert parse_ff_task("teacher:4x1", 10) == (FFPhase("teacher:4x1", 0),)
    assert parse_ff_task(" digits ", 10) == (FFPhase("digits", 0),)
    # canonical spelling: one teacher per (W, D), whatever the leading zeros
    assert parse_ff_task("teacher:0032x02", 0) == (FFPhase("teacher:32x2", 0),)
    (edge,) = parse_ff_task("teacher:1024x16", 10)
    assert (edge.width, edge.depth, edge.is_teacher) == (1024, 16, True)
    (low,) = parse_ff_task("teacher:1x1", 10)
    assert (low.width, low.depth) == (1, 1)
    (digits,) = parse_ff_task("digits", 10)
    assert (digits.width, digits.depth, digits.is_teacher) == (None, None, False)


def test_parse_schedules():
    phases = parse_ff_task("teacher:4x1@0,teacher:32x2@50000,teacher:4x1@100000", 150_000)
    assert phases == (
        FFPhase("teacher:4x1", 0),
        FFPhase("teacher:32x2", 50_000),
        FFPhase("teacher:4x1", 100_000),
    )
    assert parse_ff_task(" digits@0 , digits@ 7 ", 8) == (
        FFPhase("digits", 0),
        FFPhase("digits", 7),
    )
    # cycles = 0: the last start is not checked (as engine.tasks.parse_task)
    assert parse_ff_task("teacher:4x1@0,teacher:8x1@1000000000", 0)[1].start == 10**9


def test_parse_width_message_is_the_documented_one():
    message = _one_line(ConfigError, parse_ff_task, "teacher:0x1", 10)
    assert message == (
        "task = 'teacher:0x1' is not allowed: teacher width W must be in [1, 1024] (teacher:WxD)"
    )
    message = _one_line(ConfigError, parse_ff_task, "teacher:4x17", 10)
    assert message == (
        "task = 'teacher:4x17' is not allowed: teacher depth D must be in [1, 16] (teacher:WxD)"
    )


BAD_SPECS = [
    "",
    "   ",
    "teacher",
    "teacher:",
    "teacher:4",
    "teacher:4x",
    "teacher:x1",
    "teacher:4x1x2",
    "teacher:-1x2",
    "teacher:+4x1",
    "teacher: 4x1",
    "teacher:4 x1",
    "teacher:4X1",
    "Teacher:4x1",
    "teacher:4.0x1",
    "teacher:\u0664x1",  # an Arabic-Indic digit: int() would take it, the spec does not
    "teacher:0x1",
    "teacher:1025x1",
    "teacher:99999999999999999999999x1",
    "teacher:4x0",
    "teacher:4x17",
    "digit",
    "digits:4",
    "easy",
    "file:x.txt",
]
BAD_SCHEDULES = [
    "teacher:4x1@",  # no cycle
    "@0",  # no task
    "teacher:4x1@-1",
    "teacher:4x1@1e3",
    "teacher:4x1@0,",  # empty item
    "teacher:4x1@0,,teacher:8x1@5",
    "teacher:4x1@0,teacher:8x1",  # an item without a cycle
    "teacher:4x1@5",  # does not start at 0
    "teacher:4x1@0,teacher:8x1@0",  # not increasing
    "teacher:4x1@0,teacher:8x1@50,teacher:2x1@20",
    "teacher:4x1@0,teacher:8x1@100",  # last start >= cycles
    "teacher:0x1@0,teacher:8x1@50",
    "teacher:4x1@0,easy@50",
    "digits@0,teacher:4x1@50",  # mixed kinds
    "teacher:4x1@0,digits@50",
]


@pytest.mark.parametrize("text", BAD_SPECS + BAD_SCHEDULES)
def test_parse_refuses_in_one_line_naming_task(text):
    assert "task" in _one_line(ConfigError, parse_ff_task, text, 100)


@pytest.mark.parametrize("text", [None, 5, b"digits"])
def test_parse_refuses_non_strings(text):
    assert "task" in _one_line(ConfigError, parse_ff_task, text, 100)


def test_parse_mixed_schedule_says_why():
    message = _one_line(ConfigError, parse_ff_task, "digits@0,teacher:4x1@50", 100)
    assert "mixes digits with teacher" in message


def test_parse_refuses_negative_cycles():
    assert "cycles" in _one_line(ConfigError, parse_ff_task, "digits", -1)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="teachrdigsx:@,0123456789 -", max_size=40))
def test_parse_never_fails_other_than_in_one_line(text):
    """Whatever the text, a valid schedule or a one-line ConfigError, never another error."""
    try:
        phases = parse_ff_task(text, 1000)
    except ConfigError as error:
        assert "\n" not in str(error) and "task" in str(error)
        return
    assert phases[0].start == 0
    assert all(b.start > a.start for a, b in zip(phases, phases[1:]))
    assert len({p.is_teacher for p in phases}) == 1


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 1024), st.integers(1, 16), st.integers(1, 10**6))
def test_parse_round_trips(width, depth, start):
    (phase,) = parse_ff_task(f"teacher:{width}x{depth}", 0)
    assert (phase.width, phase.depth, phase.task) == (width, depth, f"teacher:{width}x{depth}")
    text = f"teacher:{width}x{depth}@0,teacher:{depth}x1@{start}"
    assert parse_ff_task(text, start + 1)[1] == FFPhase(f"teacher:{depth}x1", start)


def test_phases_naming_one_spec_share_one_teacher():
    phases = parse_ff_task("teacher:4x1@0,teacher:32x2@50,teacher:04x1@100", 200)
    sources = build_phase_sources(phases, np.random.default_rng(0))
    assert sources[0] is sources[2] and sources[1] is not sources[0]
    assert (sources[1].width, sources[1].depth, sources[1].input_dim) == (32, 2, 16)
    # teachers are drawn in order of first appearance, from the given generator
    rng = np.random.default_rng(0)
    first = make_teacher(4, 1, 16, 10, rng)
    second = make_teacher(32, 2, 16, 10, rng)
    assert np.array_equal(first.output, sources[0].output)
    assert np.array_equal(second.output, sources[1].output)


# -- the teacher ------------------------------------------------------------------------------
def test_teacher_shapes_and_read_only():
    teacher = _teacher(width=8, depth=3)
    assert [w.shape for w in teacher.hidden] == [(16, 8), (8, 8), (8, 8)]
    assert teacher.output.shape == (8, 10)
    for weights in teacher.hidden + (teacher.output,):
        assert not weights.flags.writeable
    with pytest.raises(ValueError):
        teacher.output[0, 0] = 1.0


@pytest.mark.parametrize("width", [1, 3, 16, 40])
def test_teacher_weights_have_the_stated_scale(width):
    """Every singular value equals its documented scale, so the Frobenius norm is the one
    of N(0, gain^2 / fan_in) (N(0, s^2 / W) at the output) in expectation."""
    teacher = _teacher(width=width, depth=2, gain=1.5, output_scale=4.0)
    for weights in teacher.hidden:
        fan_in, fan_out = weights.shape
        singular = np.linalg.svd(weights, compute_uv=False)
        np.testing.assert_allclose(singular, 1.5 * math.sqrt(max(1.0, fan_out / fan_in)))
        assert np.sum(weights**2) == pytest.approx(1.5**2 * fan_out)
    assert np.sum(teacher.output**2) == pytest.approx(4.0**2 * 10)


def test_same_seed_same_teacher_different_seed_different():
    a, b, c = _teacher(seed=7), _teacher(seed=7), _teacher(seed=8)
    for wa, wb, wc in zip(a.hidden + (a.output,), b.hidden + (b.output,), c.hidden + (c.output,)):
        assert wa.tobytes() == wb.tobytes()
        assert not np.array_equal(wa, wc)


@pytest.mark.parametrize(
    "args",
    [
        (0, 1, 16, 10),
        (1025, 1, 16, 10),
        (4, 0, 16, 10),
        (4, 65, 16, 10),
        (4, 1, 0, 10),
        (4, 1, 16, 1),
        (True, 1, 16, 10),
        (4.0, 1, 16, 10),
    ],
)
def test_make_teacher_refuses_bad_sizes(args):
    _one_line(ConfigError, make_teacher, *args, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs", [dict(gain=-1.0), dict(gain=math.nan), dict(output_scale=math.inf)]
)
def test_make_teacher_refuses_bad_scales(kwargs):
    _one_line(ConfigError, make_teacher, 4, 1, 16, 10, np.random.default_rng(0), **kwargs)


def test_probabilities_are_a_stable_softmax():
    teacher = _teacher(width=8, depth=2)
    x = np.random.default_rng(1).standard_normal((4, 7, 16))
    p = teacher_probabilities(teacher, x)
    assert p.shape == (4, 7, 10)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    # a plain forward pass, written out here
    h = x
    for weights in teacher.hidden:
        h = np.tanh(h @ weights)
    logits = h @ teacher.output
    naive = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(p, naive, rtol=1e-12, atol=1e-15)
    # logits of order 1e5: exp would overflow without the max subtracted
    huge = teacher_probabilities(_teacher(output_scale=1e5), x)
    assert np.all(np.isfinite(huge)) and np.allclose(huge.sum(axis=-1), 1.0)
    assert np.all(huge.max(axis=-1) > 0.99)
    assert "input_dim" in _one_line(ValueError, teacher_probabilities, teacher, x[..., :15])


# -- the compiled arithmetic (engine.mlp.teacher) against NumPy's --------------------------
def _lapack_q(gaussian: np.ndarray) -> np.ndarray:
    """The reference: Q of NumPy's (LAPACK's) QR, R's diagonal signs moved into Q."""
    q, r = np.linalg.qr(gaussian)
    return q * np.where(np.diag(r) < 0.0, -1.0, 1.0)


@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (16, 8), (64, 64), (200, 37), (256, 256)])
def test_kernel_qr_agrees_with_lapack(shape):
    gaussian = np.random.default_rng(sum(shape)).standard_normal(shape)
    before = gaussian.copy()
    q_t = orthonormal_rows(gaussian.T)  # rows of Q^T: the columns of Q
    assert np.array_equal(gaussian, before)  # works on a copy
    np.testing.assert_allclose(q_t.T, _lapack_q(gaussian), rtol=0, atol=1e-12)
    np.testing.assert_allclose(q_t @ q_t.T, np.eye(shape[1]), rtol=0, atol=1e-13)
    # Q^T A is the R factor: upper triangular with a positive diagonal
    r = q_t @ gaussian
    assert np.all(np.diag(r) > 0)
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-12 * np.abs(r).max())


def test_kernel_qr_refuses_what_it_cannot_orthonormalise():
    assert "no more rows" in _one_line(ValueError, orthonormal_rows, np.ones((3, 2)))
    rng = np.random.default_rng(0)
    for row, value in ((0, 0.0), (1, 0.0), (2, "sum")):
        singular = rng.standard_normal((3, 5))
        # a zero row, or a row in the span of the others (not exactly: rounding)
        singular[row] = singular[0] - 0.3 * singular[1] if value == "sum" else value
        assert "rank-deficient" in _one_line(ValueError, orthonormal_rows, singular)
    nearly = rng.standard_normal((3, 5))
    nearly[2] = nearly[0] + 1e-6 * nearly[2]  # ill-conditioned but independent: accepted
    q_t = orthonormal_rows(nearly)
    np.testing.assert_allclose(q_t @ q_t.T, np.eye(3), rtol=0, atol=1e-13)


@pytest.mark.parametrize("width,depth", [(1, 1), (8, 2), (40, 2), (64, 3)])
def test_teacher_weights_are_lapacks_qr_of_the_same_draws(width, depth):
    """The weights are what the LAPACK version made of the same Gaussian draws, to
    rounding: same draws in the same order, same orientation (tall: Q; wide: Q^T), same
    scales. W = 8 has a tall first layer and a wide output layer, W = 40 the opposite."""
    teacher = make_teacher(width, depth, 16, 10, np.random.default_rng(width), gain=1.3)
    replay = np.random.default_rng(width)
    layers = [(w, 1.3) for w in teacher.hidden] + [(teacher.output, OUTPUT_SCALE)]
    for weights, factor in layers:
        rows, cols = weights.shape
        scale = factor * math.sqrt(max(1.0, cols / rows))
        gaussian = replay.standard_normal((rows, cols) if rows >= cols else (cols, rows))
        q = _lapack_q(gaussian)
        expected = (q if rows >= cols else q.T) * scale
        np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("width,depth", [(1, 1), (8, 2), (37, 3)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_logits_agree_with_numpy(width, depth, dtype):
    """Logits as NumPy computes them (BLAS products, np.tanh) to 1e-12 relative; float32
    inputs are taken at their float32 values, in float64."""
    teacher = _teacher(width, depth, seed=5)
    x = np.random.default_rng(6).standard_normal((300, 16)).astype(dtype)
    forward = Forward(teacher.hidden, teacher.output, 300)
    logits = forward.logits(x, np.empty((300, 10)))
    h = x.astype(np.float64)
    for weights in teacher.hidden:
        h = np.tanh(h @ weights)
    expected = h @ teacher.output
    np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    # a shorter block through the same buffers: the same bits for the same rows
    again = forward.logits(x[3:10], np.empty((7, 10)))
    assert again.tobytes() == logits[3:10].tobytes()
    assert "x has shape" in _one_line(ValueError, forward.logits, x[:, :15], np.empty((300, 10)))
    assert "out has shape" in _one_line(ValueError, forward.logits, x, np.empty((30, 10)))


def test_kernel_entropies_agree_with_numpy():
    """To 1e-12 relative, or 2e-15 nats where the entropy is nearly 0 (there both
    compute the log of a total within rounding of 1, and differ by an ulp of 1)."""
    rng = np.random.default_rng(7)
    scales = rng.choice([1e-3, 0.3, 1.0, 4.0, 30.0, 1e3], size=(3000, 1))
    logits = rng.standard_normal((3000, 10)) * scales
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1)
    expected = np.log(total) - (e * z).sum(axis=1) / total
    got = entropy_rows(logits.copy())
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=2e-15)
    assert np.all(got >= 0.0)
    # all-equal logits: log(classes) exactly, whatever their value
    assert np.all(entropy_rows(np.full((3, 10), -2.5)) == LOG10)
    # the logits are left holding the probabilities
    probs = logits.copy()
    entropy_rows(probs)
    np.testing.assert_allclose(probs, e / total[:, None], rtol=1e-12, atol=1e-300)


def test_kernel_labels_equal_numpy_inverse_cdf_on_the_same_draws():
    """Labels of fill_teacher_batches, recomputed from its own draws (inputs, then one
    uniform per row: one chunk here) by NumPy's inverse CDF: (a) on the kernel's
    probabilities with np.cumsum, the same arithmetic, so equal by construction; (b) on
    a plain NumPy forward (BLAS, np.tanh, np.exp), whose probabilities differ by a few
    ulp: a label can then differ only if u falls within ~1e-15 of a cumulative
    probability, odds ~1e-10 over these rows, so equality is required there too."""
    teacher = _teacher(width=8, depth=2, seed=13)
    x, y = _pools(n=5, batch=1000)
    assert fftasks._chunk_rows(teacher) >= y.size
    fill_teacher_batches(teacher, np.random.default_rng(14), x, y)
    replay = np.random.default_rng(14)
    assert replay.standard_normal(x.shape).tobytes() == x.tobytes()
    u = replay.random(y.size)

    def inverse_cdf(p):
        return np.minimum((np.cumsum(p, axis=1) <= u[:, None]).sum(axis=1), 9)

    assert np.array_equal(y.ravel(), inverse_cdf(teacher_probabilities(teacher, x).reshape(-1, 10)))
    h = x.reshape(-1, 16)
    for weights in teacher.hidden:
        h = np.tanh(h @ weights)
    logits = h @ teacher.output
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.array_equal(y.ravel(), inverse_cdf(e / e.sum(axis=1, keepdims=True)))
    assert len(np.unique(y)) == 10  # every class drawn: the comparison covers them all


def test_sampling_picks_the_first_class_whose_cumulative_probability_exceeds_u():
    below_half = np.nextafter(0.5, 0.0)
    below_one = np.nextafter(1.0, 0.0)
    logits = np.array(
        [[0.0, 0.0, -1e300]] * 3  # p = (1/2, 1/2, 0)
        + [[-1e300, 7.0, 7.0]]  # p = (0, 1/2, 1/2): a class of probability 0 is never drawn
        + [[0.0] * 3]  # p = 1/3 each
    )
    u = np.array([below_half, 0.5, below_one, 0.0, below_one])
    labels = sample_rows(logits, u)
    assert labels.dtype == np.int64
    # u = 0.5 equals the first cumulative value, which does not exceed it: class 1
    assert labels.tolist() == [0, 1, 1, 1, 2]
    # ten classes of 1/10: summed in order they reach 1 - 2^-53 < 1; u = 1 - 2^-53 is not
    # exceeded by any cumulative value, and the last class is drawn, not an 11th
    tenths = np.zeros((1, 10))
    assert sample_rows(tenths.copy(), np.array([below_one])).tolist() == [9]
    softmax = tenths.copy()
    sample_rows(softmax, np.array([0.0]))
    assert np.cumsum(softmax[0])[-1] == below_one
    assert "u has shape" in _one_line(ValueError, sample_rows, np.zeros((2, 3)), np.zeros(3))
    assert "writeable" in _one_line(ValueError, sample_rows, np.zeros((2, 3)).T, np.zeros(3))


def test_teacher_arithmetic_calls_no_lapack_and_no_numpy_math(monkeypatch):
    """LAPACK's QR and NumPy's tanh, exp and log choose code by the host CPU: none of them
    may run when a teacher is made or used. (A matrix product by ``@`` cannot be
    intercepted here; the agreement tests above would not tell it from the kernels.)"""
    teacher = _teacher()  # compiles the kernels before NumPy is wrapped
    teacher_floor(teacher, np.random.default_rng(0), max_samples=100)

    def refuse(*args, **kwargs):
        raise AssertionError("a host-dependent NumPy function was called")

    monkeypatch.setattr(np.linalg, "qr", refuse)
    for name in ("tanh", "exp", "log", "einsum", "dot", "matmul", "cumsum"):
        monkeypatch.setattr(np, name, refuse)
    teacher = _teacher(width=12, depth=3, seed=1)
    x, y = _pools()
    fill_teacher_batches(teacher, np.random.default_rng(0), x, y)
    teacher_probabilities(teacher, x)
    teacher_floor(teacher, np.random.default_rng(0), max_samples=100)


def _teacher_digest() -> dict[str, str]:
    """Digests of a teacher's weights, of pools it labelled and of its floor: the bits
    the portable build must give on every machine. W = 23 and 10 classes: loops with a
    vector remainder."""
    teacher = make_teacher(23, 3, 16, 10, np.random.default_rng(0))
    weights = hashlib.sha256()
    for array in teacher.hidden + (teacher.output,):
        weights.update(array.tobytes())
    pools = hashlib.sha256()
    for dtype in (np.float64, np.float32):
        x, y = _pools(n=7, batch=300, x_dtype=dtype)
        fill_teacher_batches(teacher, np.random.default_rng(1), x, y)
        pools.update(x.tobytes() + y.tobytes())
    floor = teacher_floor(teacher, np.random.default_rng(2), standard_error=1e-2)
    return {
        "weights": weights.hexdigest(),
        "pools": pools.hexdigest(),
        "floor": floor.value.hex(),
        "floor_se": floor.standard_error.hex(),
    }


@pytest.mark.skipif(
    TARGET.label != "x86_64-v3", reason=f"this process compiles for {TARGET.label}, not x86-64-v3"
)
def test_teacher_bits_are_the_same_compiled_as_if_on_an_avx512_cpu(tmp_path):
    """A fresh process, an empty cache, LLVM told the host is a Skylake-SP with AVX-512
    (as tests/test_golden.py does for the recurrent runs): the teacher, its labels and its
    floor come out bit for bit as in this process."""
    here = Path(__file__).resolve().parent
    code = textwrap.dedent(f"""
        import json, sys
        sys.path[:0] = [{str(here.parent / "bench")!r}, {str(here)!r}]
        import portability
        portability.pretend("skylake-avx512", portability.AVX512, ())
        from engine.jit import TARGET
        from test_fftasks import _teacher_digest
        print(json.dumps({{"target": TARGET.label, **_teacher_digest()}}))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("DIFFRNN_TARGET", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"target": "x86_64-v3", **_teacher_digest()}


# -- the floor -------------------------------------------------------------------------------
@pytest.mark.parametrize("width,depth", [(1, 1), (8, 2), (32, 4)])
def test_floor_agrees_with_the_loss_of_sampled_labels(width, depth):
    """Two estimators of H(Y|X): the mean exact entropy of p(.|x) (teacher_floor) and the
    mean -log p(y|x) over labels fill_teacher_batches drew; within 4 combined standard
    errors. Wrong label sampling (e.g. argmax) or a wrong entropy formula fails this."""
    teacher = _teacher(width, depth, seed=3)
    floor = teacher_floor(teacher, np.random.default_rng(4), standard_error=2e-3)
    assert not floor.capped and floor.standard_error <= 2e-3
    x, y = _pools(n=20, batch=4000)
    fill_teacher_batches(teacher, np.random.default_rng(5), x, y)
    p = teacher_probabilities(teacher, x)
    nll = -np.log(np.take_along_axis(p, y[..., None], axis=-1)).ravel()
    se = nll.std(ddof=1) / math.sqrt(nll.size)
    combined = math.hypot(se, floor.standard_error)
    assert abs(nll.mean() - floor.value) <= 4 * combined, (nll.mean(), floor, se)


@pytest.mark.parametrize("width,depth", [(1, 1), (2, 4), (8, 1), (32, 2), (128, 1)])
def test_floor_lies_inside_zero_log_classes(width, depth):
    floor = teacher_floor(_teacher(width, depth), np.random.default_rng(1), standard_error=5e-3)
    # the measured range of the default scales is 0.44-1.34 nats; some margin either side
    assert 0.3 < floor.value < 1.6 < LOG10


def test_floor_extremes():
    zero = teacher_floor(_teacher(output_scale=0.0), np.random.default_rng(0))
    assert zero.value == LOG10 and zero.standard_error == 0.0 and not zero.capped
    sharp = teacher_floor(_teacher(output_scale=1e4), np.random.default_rng(0))
    assert 0.0 <= sharp.value < 5e-3


def test_floor_cap_and_arguments():
    capped = teacher_floor(_teacher(), np.random.default_rng(0), max_samples=1000)
    assert capped.samples == 1000 and capped.capped
    assert capped.standard_error > 1e-3
    # the default cap is the Popoviciu bound: (log 10 / (2 * 0.05))^2 = 531 samples
    loose = teacher_floor(_teacher(), np.random.default_rng(0), standard_error=0.05)
    assert not loose.capped and loose.samples >= 2 * 64
    for bad in (0.0, -1e-3, math.nan):
        assert "standard_error" in _one_line(
            ConfigError, teacher_floor, _teacher(), np.random.default_rng(0), standard_error=bad
        )
    _one_line(ConfigError, teacher_floor, _teacher(), np.random.default_rng(0), max_samples=0)


def test_floor_is_deterministic_and_leaves_other_streams_alone():
    a = teacher_floor(_teacher(), np.random.default_rng(9), standard_error=1e-2)
    b = teacher_floor(_teacher(), np.random.default_rng(9), standard_error=1e-2)
    assert a == b


# -- drawing data into pools -----------------------------------------------------------------
def test_labels_follow_the_teacher_probabilities():
    """Calibration: over 100,000 examples, bin every (example, class) pair by the
    teacher's p(class | x); in each bin the number of examples labelled with that class
    must match the sum of p, within 4.5 standard deviations (variance sum p (1 - p));
    likewise each class's total count. Fixed seed, so the verdict is reproducible; a
    correct sampler fails one of these 20 checks with probability ~1e-4."""
    teacher = _teacher(width=8, depth=2, seed=11)
    x, y = _pools(n=25, batch=4000)
    fill_teacher_batches(teacher, np.random.default_rng(12), x, y)
    p = teacher_probabilities(teacher, x).reshape(-1, 10)
    hit = np.zeros_like(p)
    hit[np.arange(p.shape[0]), y.ravel()] = 1.0
    bins = np.minimum((p * 10).astype(int), 9)
    checks = 0
    for b in range(10):
        inside = bins == b
        expected, variance = p[inside].sum(), (p[inside] * (1 - p[inside])).sum()
        if variance < 25:
            continue
        assert abs(hit[inside].sum() - expected) <= 4.5 * math.sqrt(variance), b
        checks += 1
    for k in range(10):
        expected, variance = p[:, k].sum(), (p[:, k] * (1 - p[:, k])).sum()
        assert abs(hit[:, k].sum() - expected) <= 4.5 * math.sqrt(variance), k
        checks += 1
    assert checks >= 18
    # inputs are N(0, I): mean 0, variance 1 per coordinate, uncorrelated
    flat = x.reshape(-1, 16)
    assert np.abs(flat.mean(axis=0)).max() < 4.5 / math.sqrt(flat.shape[0])
    np.testing.assert_allclose(np.cov(flat.T), np.eye(16), atol=0.03)


@pytest.mark.parametrize("x_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("y_dtype", [np.int64, np.int32])
def test_teacher_fill_writes_every_element_in_place(x_dtype, y_dtype):
    teacher = _teacher()
    x, y = _pools(x_dtype=x_dtype, y_dtype=y_dtype)
    x_id, y_id = id(x), id(y)
    fill_teacher_batches(teacher, np.random.default_rng(0), x, y)
    assert (id(x), id(y), x.dtype, y.dtype) == (x_id, y_id, x_dtype, y_dtype)
    assert np.all(np.isfinite(x)) and np.all((y >= 0) & (y < 10))


def test_teacher_batches_same_seed_same_bits():
    teacher = _teacher()
    x1, y1 = _pools(n=4, batch=50)
    x2, y2 = _pools(n=4, batch=50)
    x3, y3 = _pools(n=4, batch=50)
    fill_teacher_batches(teacher, np.random.default_rng(21), x1, y1)
    fill_teacher_batches(teacher, np.random.default_rng(21), x2, y2)
    fill_teacher_batches(teacher, np.random.default_rng(22), x3, y3)
    assert x1.tobytes() == x2.tobytes() and y1.tobytes() == y2.tobytes()
    assert not np.array_equal(x1, x3) and not np.array_equal(y1, y3)
    # a second fill continues the stream: new data, not the same batches again
    fill_teacher_batches(teacher, np.random.default_rng(21), x2, y2)
    rng = np.random.default_rng(21)
    fill_teacher_batches(teacher, rng, x2, y2)
    fill_teacher_batches(teacher, rng, x3, y3)
    assert not np.array_equal(x2, x3)


def test_teacher_batches_do_not_depend_on_the_chunk_size(monkeypatch):
    """The forward pass runs in chunks to bound its memory; the data must not notice."""
    teacher = _teacher(width=8, depth=2)
    x1, y1 = _pools(n=10, batch=100)
    fill_teacher_batches(teacher, np.random.default_rng(3), x1, y1)
    monkeypatch.setattr(fftasks, "_CHUNK_ELEMENTS", 64 * 16)  # chunks of 64 rows
    x2, y2 = _pools(n=10, batch=100)
    fill_teacher_batches(teacher, np.random.default_rng(3), x2, y2)
    assert x1.tobytes() == x2.tobytes() and np.array_equal(y1, y2)
    np.testing.assert_allclose(
        teacher_probabilities(teacher, x2), teacher_probabilities(teacher, x1), rtol=1e-13
    )


def _bad_pools():
    good_x, good_y = _pools()
    read_only = good_x.copy()
    read_only.setflags(write=False)
    return [
        (good_x[0], good_y, "x_out has shape"),  # 2-D
        (good_x[..., :15], good_y, "x_out has shape"),  # wrong input_dim
        (good_x, good_y[:, :4], "y_out has shape"),
        (good_x, good_y.T, "y_out has shape"),
        (np.zeros(good_x.shape, np.int64), good_y, "x_out has dtype"),
        (good_x.astype(np.float16), good_y, "x_out has dtype"),
        (good_x, good_y.astype(np.float64), "y_out has dtype"),
        (good_x, good_y.astype(np.int16), "y_out has dtype"),
        (np.full((6, 5, 16), np.nan)[::2], good_y, "C-contiguous"),
        (read_only, good_y, "writeable"),
        (good_x.tolist(), good_y, "numpy arrays"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_pools())))
def test_teacher_fill_refuses_bad_pools(case):
    x, y, words = _bad_pools()[case]
    message = _one_line(
        ValueError, fill_teacher_batches, _teacher(), np.random.default_rng(0), x, y
    )
    assert words in message and "fill_teacher_batches" in message


# -- digits ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> DigitsData:
    pytest.importorskip("sklearn")
    return load_digits_split()


def test_digits_split_is_fixed_and_complete(digits):
    from sklearn.datasets import load_digits

    assert digits.x_train.shape == (1438, 64) and digits.x_test.shape == (359, 64)
    assert digits.y_train.shape == (1438,) and digits.y_test.shape == (359,)
    assert (digits.input_dim, digits.classes) == (64, 10)
    # the same object per process, and recomputed identically whatever the global seeds
    assert load_digits_split() is digits
    saved = np.random.get_state()
    np.random.seed(123)
    try:
        load_digits_split.cache_clear()
        again = load_digits_split()
    finally:
        np.random.set_state(saved)
    assert again is not digits
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert getattr(again, name).tobytes() == getattr(digits, name).tobytes()
    # train and test partition the bundled data: undo the scaling, compare as multisets
    full = load_digits()
    pixels = np.rint(
        (np.concatenate([digits.x_train, digits.x_test]) * digits.pixel_std + digits.pixel_mean)
        * 16
    )
    ours = np.column_stack([pixels, np.concatenate([digits.y_train, digits.y_test])])
    theirs = np.column_stack([full.data, full.target])
    assert np.array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    assert ours.shape == theirs.shape
    # stratified: every class in both parts, round(20%) of each in test
    for k in range(10):
        n_k = int(np.sum(full.target == k))
        assert np.sum(digits.y_test == k) == round(0.2 * n_k) > 0
        assert np.sum(digits.y_train == k) == n_k - round(0.2 * n_k) > 0
    for array in (digits.x_train, digits.y_train, digits.x_test, digits.y_test):
        assert not array.flags.writeable


def test_digits_standardised_with_train_statistics_only(digits):
    from sklearn.datasets import load_digits

    raw_train = np.rint((digits.x_train * digits.pixel_std + digits.pixel_mean) * 16) / 16.0
    np.testing.assert_allclose(digits.pixel_mean, raw_train.mean(axis=0), atol=1e-12)
    varying = raw_train.std(axis=0) > 0
    assert 50 < varying.sum() < 64  # the bundled digits have a few always-blank pixels
    np.testing.assert_allclose(digits.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(digits.x_train.std(axis=0)[varying], 1.0, rtol=1e-12)
    assert np.all(digits.x_train[:, ~varying] == 0.0)
    assert np.all(digits.pixel_std[~varying] == 1.0)
    # the statistics are not the whole data set's (which would include the test part)
    everything = load_digits().data / 16.0
    assert not np.allclose(digits.pixel_mean, everything.mean(axis=0))


@pytest.mark.parametrize("x_dtype,y_dtype", [(np.float64, np.int64), (np.float32, np.int32)])
def test_digits_batches_come_from_train_only(digits, x_dtype, y_dtype):
    x, y = _pools(n=8, batch=300, dim=64, x_dtype=x_dtype, y_dtype=y_dtype)
    x_id, y_id = id(x), id(y)
    fill_digits_batches(digits, np.random.default_rng(0), x, y)
    assert (id(x), id(y)) == (x_id, y_id)
    assert np.all(np.isfinite(x)) and np.all((y >= 0) & (y < 10))
    train_rows = {
        (row.astype(x_dtype).tobytes(), int(label))
        for row, label in zip(digits.x_train, digits.y_train)
    }
    pairs = {(row.tobytes(), int(label)) for row, label in zip(x.reshape(-1, 64), y.ravel())}
    assert pairs <= train_rows
    # with replacement over 1438 examples: 2400 draws cover well over half of them
    assert len(pairs) > 700
    x2, y2 = _pools(n=8, batch=300, dim=64, x_dtype=x_dtype, y_dtype=y_dtype)
    fill_batches(digits, np.random.default_rng(0), x2, y2)
    assert x.tobytes() == x2.tobytes() and y.tobytes() == y2.tobytes()
    fill_digits_batches(digits, np.random.default_rng(1), x2, y2)
    assert not np.array_equal(y, y2)


def test_digits_fill_refuses_teacher_shaped_pools(digits):
    x, y = _pools(dim=16)
    message = _one_line(ValueError, fill_digits_batches, digits, np.random.default_rng(0), x, y)
    assert "fill_digits_batches" in message and "64" in message


def test_digits_sources_are_shared(digits):
    sources = build_phase_sources(parse_ff_task("digits@0,digits@10", 20), np.random.default_rng(0))
    assert sources[0] is sources[1] is load_digits_split()
    assert sources[0].x_train.tobytes() == digits.x_train.tobytes()


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    load_digits_split.cache_clear()
    try:
        message = _one_line(ConfigError, load_digits_split)
    finally:
        load_digits_split.cache_clear()
    assert message == "task = 'digits' needs scikit-learn: pip install 'diffrnn[digits]'"
