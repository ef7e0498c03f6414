"""Tasks as character streams: generated (easy, hard), files, and phase schedules.

A task specification names one or more phases, each a (task, start cycle) pair; on a
phase switch the data position goes back to 0 of that phase's stream and the hidden state
is kept (REFERENCE.md). Phases naming the same task share one stream, as the published
code re-reads the same file: easy-hard-easy's third phase sees the first phase's data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ConfigError, RunConfig
from .jit import kernel

GENERATED_ALPHABET = "()ab"  # sorted: '(' < ')' < 'a' < 'b'
OPEN, CLOSE, A, B = 0, 1, 2, 3
SHORTCUTS = {"easy-hard-easy": ("easy", "hard", "easy"), "hard-easy": ("hard", "easy")}


@dataclass(frozen=True)
class Phase:
    task: str  # "easy", "hard" or "file:PATH"
    start: int  # first cycle of the phase


@dataclass(frozen=True)
class TaskData:
    """Everything the kernel needs to read characters; built once per run."""

    vocabulary: str
    data: np.ndarray  # int32 codes of all streams, concatenated
    stream_offset: np.ndarray  # int64 per stream
    stream_length: np.ndarray  # int64 per stream
    phase_start: np.ndarray  # int64 first cycle of each phase
    phase_stream: np.ndarray  # int64 stream index of each phase
    phase_floor: tuple[float | None, ...]  # entropy floor per phase (nats per seq_len chars)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)


def parse_task(text: str, cycles: int) -> tuple[Phase, ...]:
    """Turn a task string into phases; errors name the field and what is allowed.

    Accepted: ``easy``, ``hard``, ``file:PATH``, ``easy-hard-easy`` (switches at 1/3, 2/3),
    ``hard-easy`` (switch at 1/2), or a schedule ``easy@0,hard@100000,file:x.txt@200000``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            f"task = {text!r} is not allowed: easy, hard, easy-hard-easy, "
            "hard-easy, file:PATH or a schedule task@cycle,task@cycle"
        )
    text = text.strip()
    if text in SHORTCUTS:
        names = SHORTCUTS[text]
        if 0 < cycles < len(names):
            raise ConfigError(
                f"task {text!r} has {len(names)} phases: cycles = {cycles} is out "
                f"of range, allowed [{len(names)}, inf)"
            )
        return tuple(Phase(n, (i * cycles) // len(names)) for i, n in enumerate(names))
    if "@" not in text:
        _check_single(text)
        return (Phase(text, 0),)
    phases = []
    for item in text.split(","):
        name, sep, start = item.strip().rpartition("@")
        try:
            start_cycle = int(start)
        except ValueError:
            start_cycle = -1
        if not sep or start_cycle < 0:
            raise ConfigError(
                f"task schedule item {item!r} is malformed: expected task@cycle with a cycle >= 0"
            )
        _check_single(name)
        phases.append(Phase(name, start_cycle))
    check_schedule_starts(text, [p.start for p in phases], cycles)
    return tuple(phases)


def check_schedule_starts(text: str, starts: list[int], cycles: int) -> None:
    """A schedule's start cycles begin at 0, strictly increase and stay below ``cycles``
    (not checked when ``cycles`` is 0); the rule of every model's task schedules."""
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
        raise ConfigError(f"task schedule {text!r}: start cycles must begin at 0 and increase")
    if cycles and starts[-1] >= cycles:
        raise ConfigError(
            f"task schedule {text!r}: last start {starts[-1]} is out of range: "
            f"allowed [0, {cycles - 1}] (cycles - 1)"
        )


def _check_single(name: str) -> None:
    if name in ("easy", "hard") or (name.startswith("file:") and len(name) > 5):
        return
    raise ConfigError(
        f"task = {name!r} is not allowed: easy, hard, easy-hard-easy, hard-easy, "
        "file:PATH or a schedule task@cycle,task@cycle"
    )


def read_text_file(path: str) -> str:
    """Read a task file, refusing what cannot train a network, in one line."""
    try:
        # bytes, then decode: text mode would turn "\r\n" into "\n" and change the data
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"task file {path!r} does not exist") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"task file {path!r} is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    except OSError as error:
        raise ConfigError(f"task file {path!r} cannot be read: {error.strerror}") from None
    if not text:
        raise ConfigError(f"task file {path!r} is empty: it needs at least 2 characters")
    return text


def entropy_floor(task: str, config: RunConfig) -> float | None:
    """Best loss any predictor can reach, in nats per ``seq_len`` characters."""
    if task == "easy":
        p = config.easy_continue_prob
        if p == 0.0:
            return 0.0
        bits = -(p * math.log(p) + (1 - p) * math.log(1 - p))
        # one decision (another 'ab' or ')') per 'ab'; mean group 2 + 2/(1-p) characters
        return config.seq_len * bits / (2.0 * (1.0 - p) + 2.0)
    if task == "hard":
        n = config.group_len
        # one uniformly chosen flipped letter per group of n letters plus two parentheses
        return config.seq_len * math.log(n) / (n + 2)
    return None


@kernel
def _fill_easy(continues, out):
    """Groups '(ab...ab)': after the k-th 'ab' of the stream, another one if continues[k]."""
    i = 0
    k = 0
    n = out.size
    while i < n:
        out[i] = OPEN
        i += 1
        while True:
            if i < n:
                out[i] = A
            if i + 1 < n:
                out[i + 1] = B
            i += 2
            k += 1
            if not continues[k - 1]:
                break
        if i < n:
            out[i] = CLOSE
        i += 1


@kernel
def _fill_hard(group, flips, out):
    """Groups of a/b letters; each is the previous one reversed with letter flips[g] flipped.
    ``group`` holds the first group and is overwritten (the caller allocates)."""
    group_len = group.size
    i = 0
    g = 0
    n = out.size
    while i < n:
        out[i] = OPEN
        i += 1
        for j in range(group_len):
            if i < n:
                out[i] = group[j]
            i += 1
        if i < n:
            out[i] = CLOSE
        i += 1
        # next group: reverse, then flip one uniformly chosen letter
        for j in range(group_len // 2):
            tmp = group[j]
            group[j] = group[group_len - 1 - j]
            group[group_len - 1 - j] = tmp
        flip = flips[g]
        g += 1
        group[flip] = B if group[flip] == A else A


def generate_easy(rng: np.random.Generator, continue_prob: float, size: int) -> np.ndarray:
    """``size`` characters of the easy task (codes OPEN, CLOSE, A, B)."""
    out = np.empty(size, dtype=np.int32)
    # one draw per 'ab': at most one per two characters, plus the last group's
    continues = rng.random(size // 2 + 2) < continue_prob
    _fill_easy(continues, out)
    return out


def generate_hard(rng: np.random.Generator, group_len: int, size: int) -> np.ndarray:
    """``size`` characters of the hard task: a random first group, then one uniformly
    chosen letter flipped per group."""
    out = np.empty(size, dtype=np.int32)
    first = np.where(rng.random(group_len) < 0.5, A, B).astype(np.int32)
    flips = rng.integers(0, group_len, size // (group_len + 2) + 2)
    _fill_hard(first, flips, out)  # overwrites first
    return out


def build_task_data(
    phases: tuple[Phase, ...], config: RunConfig, cycles: int, rng: np.random.Generator
) -> TaskData:
    """Generate or read every stream the phases need; one stream per distinct task."""
    names: list[str] = []
    for phase in phases:
        if phase.task not in names:
            names.append(phase.task)
    ends = [p.start for p in phases[1:]] + [max(cycles, phases[-1].start + 1)]
    need = {name: 0 for name in names}
    for phase, end in zip(phases, ends):
        # enough characters that a generated stream never wraps within its phase
        need[phase.task] = max(need[phase.task], (end - phase.start + 1) * config.seq_len + 2)

    texts: dict[str, str] = {}
    for name in names:
        if name.startswith("file:"):
            texts[name] = read_text_file(name[5:])
    alphabet = set(GENERATED_ALPHABET) if any(not n.startswith("file:") for n in names) else set()
    for text in texts.values():
        alphabet.update(text)
    vocabulary = "".join(sorted(alphabet))
    vocab_points = np.frombuffer(vocabulary.encode("utf-32-le"), dtype=np.uint32)
    generated_codes = np.searchsorted(
        vocab_points, np.frombuffer(GENERATED_ALPHABET.encode("utf-32-le"), dtype=np.uint32)
    ).astype(np.int32)

    streams = []
    for name in names:
        if name in texts:
            points = np.frombuffer(texts[name].encode("utf-32-le"), dtype=np.uint32)
            if points.size < config.seq_len + 2:
                raise ConfigError(
                    f"task file {name[5:]!r} has {points.size} characters: it needs "
                    f"at least seq_len + 2 = {config.seq_len + 2}"
                )
            streams.append(np.searchsorted(vocab_points, points).astype(np.int32))
            continue
        if name == "easy":
            raw = generate_easy(rng, config.easy_continue_prob, need[name])
        else:
            raw = generate_hard(rng, config.group_len, need[name])
        streams.append(generated_codes[raw])

    lengths = np.array([s.size for s in streams], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return TaskData(
        vocabulary=vocabulary,
        data=np.concatenate(streams).astype(np.int32),
        stream_offset=offsets,
        stream_length=lengths,
        phase_start=np.array([p.start for p in phases], dtype=np.int64),
        phase_stream=np.array([names.index(p.task) for p in phases], dtype=np.int64),
        phase_floor=tuple(entropy_floor(p.task, config) for p in phases),
    )
