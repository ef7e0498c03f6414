"""Tasks with a known answer for a feedforward model: teacher networks and 8x8 digits.

A feedforward task is a stream of labelled examples (x, y) drawn by NumPy into pools the
caller allocated, which a compiled kernel then reads, as the recurrent model reads its
draws (``engine.state.Draws``). Two kinds:

* ``teacher:WxD``: a fixed random tanh network of D hidden layers of width W labels
  Gaussian inputs by *sampling* its softmax. The best loss any predictor can reach is the
  teacher's conditional entropy H(Y|X) (``teacher_floor``), known to about 1e-3 nats,
  so a student's excess loss over the floor is measured, not guessed; and a student of
  the teacher's shape can represent it exactly, so the teacher's size is a known
  reference for the size a student settles at.
* ``digits``: the 8x8 handwritten digits bundled with scikit-learn (no download), on a
  fixed train/test split; a real task whose floor is unknown.

A schedule ``teacher:4x1@0,teacher:32x2@50000,teacher:4x1@100000`` switches task at the
given cycles, with ``engine.tasks.parse_task``'s rules. Phases naming the same spec share
one teacher (``build_phase_sources``), as the recurrent model's phases naming one task
share a stream: the third phase above sees the first phase's teacher again.

The fill functions write into the caller's arrays in place, with randomness from
``numpy.random.Generator`` objects passed in, never a global seed. NumPy draws; the
teacher's arithmetic (the orthogonalisation of its weights, its forward pass, softmax,
label sampling and entropies) runs in the kernels of ``engine.mlp.teacher``.

Status (issue 11): the task layer of the feedforward model, which is not built yet; no
command uses this module. The teacher's arithmetic is compiled with the portable policy
(``engine.jit``), in loops with the engine's own tanh, exp and log rather than LAPACK,
BLAS and libm, which choose their code by the host CPU: a teacher's weights, the labels
it draws and its floor are the same bits on every machine of the compile baseline, as
the recurrent model's arithmetic is.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from .config import ConfigError
from .mlp.teacher import Forward, entropy_rows, orthonormal_rows, sample_rows, softmax_rows
from .tasks import check_schedule_starts

# caps that keep a teacher cheap: D x W x W float64 weights (16 x 1024^2 x 8 B = 128 MB at
# most) and a floor estimate of seconds, not minutes (the studies use W <= 128, D <= 4)
MAX_WIDTH = 1024  # teacher hidden width W: [1, MAX_WIDTH]
MAX_DEPTH = 16  # teacher depth D (hidden layers): [1, MAX_DEPTH]
TEACHER_INPUT_DIM = 16  # defaults of a teacher task's input and output sizes
TEACHER_CLASSES = 10
# Hidden weights N(0, GAIN^2 / fan_in), output weights N(0, OUTPUT_SCALE^2 / W), each
# matrix rescaled to its expected Frobenius norm (make_teacher says why these values).
GAIN = 1.5
OUTPUT_SCALE = 4.0

DIGITS_SPLIT_SEED = 20240611  # the digits split's own seed: never the run's
DIGITS_TEST_FRACTION = 0.2
DIGITS_INPUT_DIM = 64
DIGITS_CLASSES = 10

_ALLOWED = (
    f"teacher:WxD (W in [1, {MAX_WIDTH}], D in [1, {MAX_DEPTH}]), digits "
    "or a schedule task@cycle,task@cycle"
)
_TEACHER_RE = re.compile(r"teacher:([0-9]+)x([0-9]+)")
_CYCLE_RE = re.compile(r"[0-9]+")
# Rows of a forward pass computed at once: bounds the temporaries (rows x max(W, classes)
# float64) to about 32 MB whatever the pool size.
_CHUNK_ELEMENTS = 1 << 22


# -- task specifications and schedules -----------------------------------------------------
@dataclass(frozen=True)
class FFPhase:
    """One phase of a feedforward schedule: a canonical task name and its first cycle."""

    task: str  # "teacher:WxD" (canonical: no leading zeros) or "digits"
    start: int  # first cycle of the phase

    @property
    def is_teacher(self) -> bool:
        return self.task.startswith("teacher:")

    @property
    def width(self) -> int | None:
        """Teacher hidden width W, or None for digits."""
        return int(self.task[8:].split("x")[0]) if self.is_teacher else None

    @property
    def depth(self) -> int | None:
        """Teacher depth D (hidden layers), or None for digits."""
        return int(self.task.split("x")[1]) if self.is_teacher else None


def parse_ff_task(text: str, cycles: int) -> tuple[FFPhase, ...]:
    """Turn a feedforward task string into phases; errors are one line naming ``task``.

    Accepted: ``teacher:WxD`` (W = hidden width in [1, MAX_WIDTH], D = number of hidden
    layers in [1, MAX_DEPTH]), ``digits``, or a schedule ``teacher:4x1@0,teacher:32x2@50000`` whose
    start cycles begin at 0, strictly increase and stay below ``cycles`` (``cycles = 0``:
    not checked, as in ``engine.tasks.parse_task``). ``digits`` is not mixed with teacher
    phases: the inputs differ (64 pixels against the teacher's Gaussian inputs), so a
    network could not carry over from one phase to the next.
    """
    if isinstance(cycles, bool) or not isinstance(cycles, (int, np.integer)) or cycles < 0:
        raise ConfigError(f"cycles = {cycles!r} is out of range: allowed [0, inf)")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"task = {text!r} is not allowed: {_ALLOWED}")
    text = text.strip()
    if "@" not in text:
        return (FFPhase(_canonical(text), 0),)
    phases = []
    for item in text.split(","):
        name, sep, start = item.strip().rpartition("@")
        start = start.strip()
        if not sep or not _CYCLE_RE.fullmatch(start):
            raise ConfigError(
                f"task schedule item {item!r} is malformed: expected task@cycle with a cycle >= 0"
            )
        phases.append(FFPhase(_canonical(name.strip()), int(start)))
    check_schedule_starts(text, [p.start for p in phases], cycles)
    kinds = {p.is_teacher for p in phases}
    if len(kinds) > 1:
        raise ConfigError(
            f"task schedule {text!r} mixes digits with teacher phases: not allowed, their "
            "inputs differ (64 pixels against Gaussian inputs); use one kind per schedule"
        )
    return tuple(phases)


def _canonical(name: str) -> str:
    """``digits`` or ``teacher:WxD`` with W and D checked and written without leading zeros."""
    if name == "digits":
        return name
    match = _TEACHER_RE.fullmatch(name)
    if match is None:
        raise ConfigError(f"task = {name!r} is not allowed: {_ALLOWED}")
    width, depth = int(match.group(1)), int(match.group(2))
    if not 1 <= width <= MAX_WIDTH:
        raise ConfigError(
            f"task = {name!r} is not allowed: teacher width W must be in "
            f"[1, {MAX_WIDTH}] (teacher:WxD)"
        )
    if not 1 <= depth <= MAX_DEPTH:
        raise ConfigError(
            f"task = {name!r} is not allowed: teacher depth D must be in "
            f"[1, {MAX_DEPTH}] (teacher:WxD)"
        )
    return f"teacher:{width}x{depth}"


# -- the teacher -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Teacher:
    """A fixed random network that labels inputs x ~ N(0, I) by sampling its softmax.

    ``hidden[0]`` is (input_dim, width), ``hidden[k]`` (width, width) for k >= 1,
    ``output`` (width, classes): row vectors, h_k = tanh(h_{k-1} @ hidden[k]), logits =
    h_D @ output. No biases. The arrays are read-only: the teacher is the task's answer,
    and no step may change it.
    """

    width: int
    depth: int
    input_dim: int
    classes: int
    hidden: tuple[np.ndarray, ...]
    output: np.ndarray
    gain: float
    output_scale: float


def make_teacher(
    width: int,
    depth: int,
    input_dim: int,
    classes: int,
    rng: np.random.Generator,
    *,
    gain: float = GAIN,
    output_scale: float = OUTPUT_SCALE,
) -> Teacher:
    """A random teacher: D tanh layers of width W, then a linear layer to ``classes`` logits.

    Weights: each matrix is a Haar-random semi-orthogonal matrix (orthonormal columns, or
    rows if it widens), scaled to the Frobenius norm of the usual Gaussian choice:
    hidden layers as N(0, gain^2 / fan_in), i.e. every unit's pre-activation has variance
    gain^2 x (mean square of its inputs), the output layer as N(0, output_scale^2 / W).
    Orthogonal rather than Gaussian because of the narrow deep teachers: a product of
    small Gaussian matrices can contract (Gaussian weights, even rescaled to their
    expected norm, gave floors 1.99 and 2.19 of log 10 = 2.30 for two seeds of four at
    W = 2, D = 8: nearly pure noise), while a map with every singular value equal to
    gain > 1 cannot. For wide layers the two choices
    hardly differ.

    Why gain = 1.5: in deep layers the pre-activations then settle at variance ~0.8
    (2.25 in the first layer), where tanh bends but saturates only now and then (|a| > 2
    for ~2.5% of units): the units are non-linear. A linear softmax student trained on
    20,000 examples stays 0.2-0.55 nats above the floor at W = 8 and 128, D = 1, 4, 8
    (one seed each), against <= 0.12 at gain 1.0, where deep activations shrink towards
    tanh's linear range and the teacher is nearly a linear classifier (trivial), and the
    floor drifts up towards log(classes) with depth. Gain 1.5 is mildly past tanh's
    order-to-chaos transition (gain 1; the mean-field slope of the correlation map is
    ~1.14 per layer, 1.36 at gain 2), so the function roughens with depth, but slowly.

    Why output_scale = 4: each logit then has standard deviation ~4 x (rms of the last
    hidden layer); measured floors at input_dim 16, classes 10, W in {1, 2, 8, 32, 128},
    D in {1, 2, 4, 8}, 4 seeds: 0.44-1.34 nats, 0.77-1.21 for W >= 2, inside
    (0, log 10 = 2.30): labels carry real information (not noise) yet are not a
    deterministic function of x (not trivial; a floor > 0 to measure the excess against).
    W = 1 is the most variable (its one output direction is the teacher's only choice).

    No biases: the pre-activation scale is then set by the gain alone. The teacher is
    odd, logits(-x) = -logits(x).

    Deterministic: the same generator state gives the same teacher bit for bit on every
    machine of the compile baseline (one Gaussian matrix per layer in layer order, then
    the output layer's, each orthogonalised by the compiled Gram-Schmidt of
    ``engine.mlp.teacher``, which agrees with LAPACK's QR to rounding). Cost: one
    orthogonalisation per layer, about 4 W^3 flops: ~1 s per layer at W = MAX_WIDTH.
    """
    _check_int("teacher width W", width, 1, MAX_WIDTH)
    _check_int("teacher depth D", depth, 1, MAX_DEPTH)
    _check_int("teacher input_dim", input_dim, 1, 1 << 20)
    _check_int("teacher classes", classes, 2, 1 << 20)
    for name, value in (("gain", gain), ("output_scale", output_scale)):
        if not (math.isfinite(value) and value >= 0.0):
            raise ConfigError(f"teacher {name} = {value!r} is out of range: allowed [0, inf)")
    hidden = []
    fan_in = input_dim
    for _ in range(depth):
        scale = gain * math.sqrt(max(1.0, width / fan_in))
        hidden.append(_semi_orthogonal(rng, (fan_in, width), scale))
        fan_in = width
    scale = output_scale * math.sqrt(max(1.0, classes / width))
    output = _semi_orthogonal(rng, (width, classes), scale)
    return Teacher(
        width=int(width),
        depth=int(depth),
        input_dim=int(input_dim),
        classes=int(classes),
        hidden=tuple(hidden),
        output=output,
        gain=float(gain),
        output_scale=float(output_scale),
    )


def _semi_orthogonal(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """A Haar-random matrix with orthonormal columns (or rows, if wider than tall), times
    ``scale``; read-only. Drawn as the QR factor Q of a Gaussian matrix, with the signs of
    R's diagonal moved into Q so that the result is unique given the Gaussian draw.

    The kernel orthonormalises rows (contiguous in memory), so it is given the Gaussian's
    transpose: its rows are the columns QR would orthonormalise, and it returns Q^T."""
    rows, cols = shape
    gaussian = rng.standard_normal(shape if rows >= cols else (cols, rows))
    q_t = orthonormal_rows(gaussian.T)  # Q^T, R's diagonal positive
    weights = q_t.T if rows >= cols else q_t
    weights = np.ascontiguousarray(weights * scale)
    weights.setflags(write=False)
    return weights


def _check_int(name: str, value, low: int, high: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not (low <= value <= high)
    ):
        raise ConfigError(f"{name} = {value!r} is out of range: allowed integers [{low}, {high}]")


def _chunk_rows(teacher: Teacher) -> int:
    return max(64, _CHUNK_ELEMENTS // max(teacher.width, teacher.classes, teacher.input_dim))


def _forward(teacher: Teacher, rows: int, step: int) -> Forward:
    """The teacher's forward pass with buffers for chunks of ``step`` rows (fewer when the
    whole job has fewer rows: a small pool allocates a small buffer)."""
    return Forward(teacher.hidden, teacher.output, max(1, min(step, rows)))


def teacher_probabilities(teacher: Teacher, x: np.ndarray) -> np.ndarray:
    """p(y | x) of the teacher, shape ``x.shape[:-1] + (classes,)``, float64 (new array).

    Numerically stable: each row's largest logit is subtracted before the exponential.
    """
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] != teacher.input_dim:
        raise ValueError(
            f"x has shape {x.shape}: the teacher needs a last axis of input_dim = "
            f"{teacher.input_dim}"
        )
    rows = x.reshape(-1, teacher.input_dim)
    out = np.empty((rows.shape[0], teacher.classes))
    step = _chunk_rows(teacher)
    forward = _forward(teacher, rows.shape[0], step)
    for i in range(0, rows.shape[0], step):
        # the chunk's probabilities are computed where they are returned: no temporary
        softmax_rows(forward.logits(rows[i : i + step], out[i : i + step]))
    return out.reshape(x.shape[:-1] + (teacher.classes,))


# -- drawing data into pools ---------------------------------------------------------------
def _check_pools(x_out, y_out, input_dim: int, what: str) -> None:
    """One-line refusal of pools that do not fit: shapes, dtypes, contiguity."""
    if not isinstance(x_out, np.ndarray) or not isinstance(y_out, np.ndarray):
        raise ValueError(f"{what}: x_out and y_out must be numpy arrays")
    if x_out.ndim != 3 or x_out.shape[2] != input_dim:
        raise ValueError(
            f"{what}: x_out has shape {x_out.shape}, needs (n, batch, {input_dim}) (input_dim)"
        )
    if y_out.shape != x_out.shape[:2]:
        raise ValueError(
            f"{what}: y_out has shape {y_out.shape}, needs x_out's first two axes {x_out.shape[:2]}"
        )
    if x_out.dtype not in (np.float64, np.float32):
        raise ValueError(f"{what}: x_out has dtype {x_out.dtype}, needs float64 or float32")
    if y_out.dtype not in (np.int32, np.int64):
        raise ValueError(f"{what}: y_out has dtype {y_out.dtype}, needs int32 or int64")
    for name, array in (("x_out", x_out), ("y_out", y_out)):
        if not (array.flags.c_contiguous and array.flags.writeable):
            raise ValueError(f"{what}: {name} must be a writeable C-contiguous array")


def fill_teacher_batches(
    teacher: Teacher, rng: np.random.Generator, x_out: np.ndarray, y_out: np.ndarray
) -> None:
    """Fill ``x_out`` (n, batch, input_dim) with fresh x ~ N(0, I) and ``y_out`` (n, batch)
    with labels sampled from the teacher's softmax at those x, in place.

    The pools are the caller's (float64 or float32 inputs, int32 or int64 labels); the
    only temporaries are one chunk of the forward pass, bounded to tens of MB. Draw
    order: all inputs in one ``standard_normal`` call (so float32 pools get the float32
    stream), then per chunk one uniform per example, used by inverse-CDF sampling over
    the classes: the first class whose cumulative probability exceeds u (the last class
    if rounding leaves the total below u). Labels are of the inputs as stored, so a
    float32 pool's labels are the teacher's at the float32 values (cast to float64).
    """
    _check_pools(x_out, y_out, teacher.input_dim, "fill_teacher_batches")
    rng.standard_normal(out=x_out, dtype=x_out.dtype)
    rows = x_out.reshape(-1, teacher.input_dim)
    labels = y_out.reshape(-1)
    step = _chunk_rows(teacher)
    forward = _forward(teacher, rows.shape[0], step)
    logits = np.empty((forward.max_rows, teacher.classes))
    for i in range(0, rows.shape[0], step):
        chunk = rows[i : i + step]
        u = rng.random(chunk.shape[0])
        labels[i : i + step] = sample_rows(forward.logits(chunk, logits[: chunk.shape[0]]), u)


# -- the floor ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FloorEstimate:
    """Monte Carlo estimate of a teacher's conditional entropy H(Y|X), in nats."""

    value: float
    standard_error: float
    samples: int
    capped: bool  # True: max_samples was reached before the standard error target


def teacher_floor(
    teacher: Teacher,
    rng: np.random.Generator,
    *,
    standard_error: float = 1e-3,
    max_samples: int | None = None,
) -> FloorEstimate:
    """The best loss any predictor can reach: H(Y|X) = E_x[ H(softmax(logits(x))) ] in nats.

    Monte Carlo over fresh x ~ N(0, I) in chunks, until the estimate's standard error
    (sample standard deviation of the per-x entropies / sqrt(samples)) is at most
    ``standard_error`` (default 1e-3 nats: the floor is then known to about +-2e-3 nats
    at 95%, far below any excess loss worth reporting), after at least 2 chunks so that
    the standard deviation itself is estimated from enough samples. It averages the exact
    entropy of each x's label distribution, not -log p(y|x) of sampled labels, which has
    the label noise on top; tests check one against the other.

    ``max_samples`` caps the work; the default, ceil((log(classes) / (2 standard_error))^2),
    reaches the target for any teacher, since a per-x entropy lies in [0, log(classes)]
    and so its variance is at most log(classes)^2 / 4 (Popoviciu's inequality); 1.33 M
    samples at 10 classes (a few seconds at W = 128; minutes for W in the thousands).
    ``capped`` says whether the cap ended the loop before the target. Give the function
    a generator of its own: it is computed once per run, and its draws must not move
    the data streams.
    """
    if not (math.isfinite(standard_error) and standard_error > 0.0):
        raise ConfigError(f"standard_error = {standard_error!r} is out of range: allowed (0, inf)")
    if max_samples is None:
        max_samples = math.ceil((math.log(teacher.classes) / (2.0 * standard_error)) ** 2)
    _check_int("max_samples", max_samples, 1, 1 << 62)
    step = min(_chunk_rows(teacher), 8192)
    forward = _forward(teacher, max_samples, step)
    logits = np.empty((forward.max_rows, teacher.classes))
    count = 0
    mean = 0.0
    m2 = 0.0  # sum of squared deviations from the mean (Chan et al.'s pairwise update)
    se = math.inf
    chunks = 0
    while count < max_samples:
        rows = min(step, max_samples - count)
        x = rng.standard_normal((rows, teacher.input_dim))
        h = entropy_rows(forward.logits(x, logits[:rows]))
        # shifted by the chunk's first value: a constant entropy (all-zero logits) gives
        # its value exactly, log(classes), with no rounding from summing it
        chunk_mean = float(h[0] + np.mean(h - h[0]))
        chunk_m2 = float(np.sum((h - chunk_mean) ** 2))
        total = count + rows
        delta = chunk_mean - mean
        mean += delta * (rows / total)
        m2 += chunk_m2 + delta * delta * count * rows / total
        count = total
        chunks += 1
        se = math.sqrt(m2 / (count - 1) / count) if count > 1 else math.inf
        if chunks >= 2 and se <= standard_error:
            break
    return FloorEstimate(value=mean, standard_error=se, samples=count, capped=se > standard_error)


# -- digits ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DigitsData:
    """The 8x8 digits on a fixed split; inputs standardised with the train set's statistics.

    ``x_*`` float64 (n, 64), ``y_*`` int64 (n,); every array read-only (shared by all runs
    of a process)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    pixel_mean: np.ndarray  # train mean of pixel / 16, per pixel
    pixel_std: np.ndarray  # train std of pixel / 16, per pixel (1 where constant)
    input_dim: int = DIGITS_INPUT_DIM
    classes: int = DIGITS_CLASSES


@functools.lru_cache(maxsize=1)
def load_digits_split() -> DigitsData:
    """The 1,797 digits of ``sklearn.datasets.load_digits`` (bundled, no download), split
    once and for all: independent of any run's seed, so every run and every study tests
    on the same 20%.

    Split: stratified by class, 20% of each class to test (round(0.2 n_c), 359 or 360 in
    all), chosen by a permutation of each class's indices (in order of class) from
    ``numpy.random.default_rng(DIGITS_SPLIT_SEED)``; both parts keep the original order.
    Stratified so that every class is in both parts in its natural proportion.
    Inputs: pixel / 16 (in [0, 1]), then standardised per pixel with the TRAIN set's mean
    and (population) std only; a pixel constant on the train set gets std 1 (it becomes
    0 there). Cached per process: the data are read-only.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError(
            "task = 'digits' needs scikit-learn: pip install 'diffrnn[digits]'"
        ) from None
    bunch = load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float64) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    split_rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    is_test = np.zeros(labels.size, dtype=bool)
    for digit in range(DIGITS_CLASSES):
        members = np.flatnonzero(labels == digit)
        n_test = round(DIGITS_TEST_FRACTION * members.size)
        is_test[split_rng.permutation(members)[:n_test]] = True
    x_train, x_test = pixels[~is_test], pixels[is_test]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0.0] = 1.0
    arrays = dict(
        x_train=(x_train - mean) / std,
        y_train=labels[~is_test],
        x_test=(x_test - mean) / std,
        y_test=labels[is_test],
        pixel_mean=mean,
        pixel_std=std,
    )
    for array in arrays.values():
        array.setflags(write=False)
    return DigitsData(**arrays)


def fill_digits_batches(
    data: DigitsData, rng: np.random.Generator, x_out: np.ndarray, y_out: np.ndarray
) -> None:
    """Fill ``x_out`` (n, batch, 64) and ``y_out`` (n, batch) with train examples drawn
    uniformly WITH replacement, in place: one ``rng.integers`` call for all n x batch
    indices. Independent draws keep the minibatch a plain i.i.d. sample and need no
    epoch bookkeeping between refills; the test set is never drawn. Float64 pools are
    gathered into directly; float32 pools through one float64 temporary."""
    _check_pools(x_out, y_out, data.input_dim, "fill_digits_batches")
    index = rng.integers(0, data.y_train.size, size=y_out.shape)
    np.take(data.y_train, index, out=y_out, mode="clip")
    if x_out.dtype == np.float64:
        np.take(data.x_train, index, axis=0, out=x_out, mode="clip")
    else:
        x_out[...] = data.x_train[index]


# -- phases to sources ----------------------------------------------------------------------
def build_phase_sources(
    phases: tuple[FFPhase, ...],
    rng: np.random.Generator,
    *,
    input_dim: int = TEACHER_INPUT_DIM,
    classes: int = TEACHER_CLASSES,
) -> tuple[Teacher | DigitsData, ...]:
    """One data source per phase: phases naming the same spec get the same object (one
    teacher per distinct ``teacher:WxD``, drawn from ``rng`` in order of first
    appearance), as the recurrent model's phases naming one task share a stream."""
    made: dict[str, Teacher | DigitsData] = {}
    for phase in phases:
        if phase.task in made:
            continue
        if phase.is_teacher:
            made[phase.task] = make_teacher(phase.width, phase.depth, input_dim, classes, rng)
        else:
            made[phase.task] = load_digits_split()
    return tuple(made[phase.task] for phase in phases)


def fill_batches(
    source: Teacher | DigitsData, rng: np.random.Generator, x_out: np.ndarray, y_out: np.ndarray
) -> None:
    """``fill_teacher_batches`` or ``fill_digits_batches``, by the source's type."""
    if isinstance(source, Teacher):
        fill_teacher_batches(source, rng, x_out, y_out)
    else:
        fill_digits_batches(source, rng, x_out, y_out)
