"""Task parsing, the generated streams, the entropy floors, files and phase schedules."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from entry import draws_from

import engine
from engine import ConfigError, RunConfig
from engine.kernels import _one_cycle, _train
from engine.state import (
    CYCLE,
    EVENT_DTYPE,
    PHASE,
    POSITION,
    TRACE_DTYPE,
    Network,
    allocate_scratch,
    init_network,
    make_hyper,
)
from engine.tasks import Phase, build_task_data, entropy_floor, parse_task, read_text_file

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def _text(task_data, stream=0):
    off, length = task_data.stream_offset[stream], task_data.stream_length[stream]
    codes = task_data.data[off : off + length]
    return "".join(np.array(list(task_data.vocabulary))[codes])


def _build(task, cycles, config=None, seed=0):
    config = config or RunConfig()
    return build_task_data(parse_task(task, cycles), config, cycles, np.random.default_rng(seed))


def _error(call, *args) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# -- parsing --------------------------------------------------------------------------------
def test_parse_simple_and_shortcuts():
    assert parse_task("easy", 10) == (Phase("easy", 0),)
    assert parse_task(" hard ", 10) == (Phase("hard", 0),)
    assert parse_task("file:x.txt", 10) == (Phase("file:x.txt", 0),)
    assert parse_task("easy-hard-easy", 300_000) == (
        Phase("easy", 0),
        Phase("hard", 100_000),
        Phase("easy", 200_000),
    )
    assert parse_task("hard-easy", 1000) == (Phase("hard", 0), Phase("easy", 500))
    assert parse_task("easy@0,hard@50,file:a@b.txt@70", 100) == (
        Phase("easy", 0),
        Phase("hard", 50),
        Phase("file:a@b.txt", 70),
    )


@pytest.mark.parametrize(
    "text", ["", "  ", "medium", "Easy", "file:", "easy-hard", "hard-easy-hard", "easy@0,medium@5"]
)
def test_bad_task_names(text):
    message = _error(parse_task, text, 100)
    assert "task" in message and "easy" in message and "file:PATH" in message


@pytest.mark.parametrize(
    "text",
    [
        "easy@5,hard@10",
        "easy@0,hard@0",
        "easy@0,hard@50,easy@20",
        "easy@0,hard@x",
        "easy@0,hard",
        "easy@0,hard@-3",
        "easy@0,hard@100",
    ],
)
def test_bad_schedules(text):
    message = _error(parse_task, text, 100)
    assert "task schedule" in message
    assert any(word in message for word in ("begin at 0", "cycle >= 0", "allowed [0, 99]"))


def test_non_string_task():
    assert "task" in _error(parse_task, None, 10)


# -- generated streams ----------------------------------------------------------------------
def test_easy_stream_follows_the_grammar():
    config = RunConfig()
    task_data = _build("easy", 5000, config, seed=1)
    assert task_data.vocabulary == "()ab"
    text = _text(task_data)
    assert len(text) >= 5000 * config.seq_len
    cut = text.rindex(")") + 1  # the last group may be cut off by the buffer's end
    assert re.fullmatch(r"(\((?:ab)+\))+", text[:cut])
    assert re.fullmatch(r"(\((?:ab)*a?)?", text[cut:])
    pairs = np.array([len(g) // 2 for g in re.findall(r"\(((?:ab)+)\)", text[:cut])])
    # one decision per 'ab': continue (another 'ab') or close
    freq = (pairs - 1).sum() / pairs.sum()
    assert abs(freq - 0.6) < 0.01, freq
    assert abs(np.mean(pairs * 2 + 2) - 7.0) < 0.1


def test_easy_continue_probability_is_a_parameter():
    text = _text(_build("easy", 3000, RunConfig(easy_continue_prob=0.2), seed=2))
    pairs = np.array([len(g) // 2 for g in re.findall(r"\(((?:ab)+)\)", text)])
    assert abs((pairs - 1).sum() / pairs.sum() - 0.2) < 0.015


@pytest.mark.parametrize("group_len", [5, 6])
def test_hard_stream_reverses_and_flips_one_letter(group_len):
    config = RunConfig(group_len=group_len)
    text = _text(_build("hard", 3000, config, seed=group_len))
    unit = group_len + 2
    full = len(text) // unit * unit
    assert re.fullmatch(rf"(\([ab]{{{group_len}}}\))+", text[:full])
    groups = [text[i + 1 : i + 1 + group_len] for i in range(0, full, unit)]
    flips = np.zeros(group_len, int)
    for prev, cur in zip(groups, groups[1:], strict=False):
        diff = [j for j, (a, b) in enumerate(zip(prev[::-1], cur, strict=True)) if a != b]
        assert len(diff) == 1, (prev, cur)
        flips[diff[0]] += 1
    # the flipped letter is uniformly chosen
    share = flips / flips.sum()
    assert np.all(np.abs(share - 1 / group_len) < 0.03), share
    # and both letters appear about equally
    assert abs(text.count("a") / (text.count("a") + text.count("b")) - 0.5) < 0.05


def test_streams_depend_on_the_seed_only():
    a, b, c = (_build("easy-hard-easy", 900, seed=s) for s in (5, 5, 6))
    assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, c.data)


# -- floors ---------------------------------------------------------------------------------
def test_entropy_floors():
    assert entropy_floor("easy", RunConfig()) == pytest.approx(9.61, abs=0.01)
    assert entropy_floor("hard", RunConfig()) == pytest.approx(8.96, abs=0.01)
    assert entropy_floor("hard", RunConfig(group_len=5)) == pytest.approx(9.20, abs=0.01)
    assert entropy_floor("easy", RunConfig(seq_len=80)) == pytest.approx(2 * 9.6146, abs=0.01)
    assert entropy_floor("file:x", RunConfig()) is None
    assert engine.entropy_floor is entropy_floor


# -- files ----------------------------------------------------------------------------------
def test_file_vocabulary_is_sorted_distinct_characters(tmp_path):
    text = "zébra (ab) €uro 😀 — ünïcode\tline\n" * 20
    path = tmp_path / "uni.txt"
    path.write_bytes(text.encode("utf-8"))
    task_data = _build(f"file:{path}", 100)
    assert task_data.vocabulary == "".join(sorted(set(text)))
    assert task_data.vocab_size == len(set(text))
    assert _text(task_data) == text
    assert task_data.phase_floor == (None,)


def test_file_text_is_read_verbatim(tmp_path):
    """A character model sees the file's characters as they are: no newline translation."""
    text = "ab\r\nba\rab\n" * 10
    path = tmp_path / "crlf.txt"
    path.write_bytes(text.encode("utf-8"))
    assert read_text_file(str(path)) == text
    assert _build(f"file:{path}", 10).vocabulary == "".join(sorted(set(text)))


def test_file_and_generated_tasks_share_one_vocabulary(tmp_path):
    path = tmp_path / "xyz.txt"
    path.write_text("xyzzy" * 20, encoding="utf-8")
    task_data = _build(f"easy@0,file:{path}@50", 100)
    assert task_data.vocabulary == "()abxyz"
    assert _text(task_data, 1) == "xyzzy" * 20
    assert set(_text(task_data, 0)) == set("()ab")


def test_file_errors(tmp_path):
    missing = tmp_path / "missing.txt"
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    short = tmp_path / "short.txt"
    short.write_text("(ab)" * 10, encoding="utf-8")  # 40 characters < seq_len + 2
    just = tmp_path / "just.txt"
    just.write_text("x" * 42, encoding="utf-8")

    cases = [
        (missing, "does not exist"),
        (empty, "empty"),
        (latin, "UTF-8"),
        (short, "seq_len + 2 = 42"),
        (tmp_path, "cannot be read"),
    ]
    for path, text in cases:
        message = _error(_build, f"file:{path}", 10)
        assert str(path) in message and text in message, message
        # run() refuses before training, with the same message
        assert _error(engine.run, RunConfig(), f"file:{path}", 10, 0) == message
    assert _build(f"file:{just}", 10).vocabulary == "x"


def test_reference_hard_file():
    path = DATA_DIR / "reference-hard.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    task_data = _build(f"file:{path}", 1000)
    assert task_data.vocabulary == "()ab"
    text = _text(task_data)
    assert len(text) == path.stat().st_size
    groups = re.findall(r"\(([ab]+)\)", text)
    assert {len(g) for g in groups} == {6}
    assert all(
        sum(a != b for a, b in zip(p[::-1], c, strict=True)) == 1
        for p, c in zip(groups[:2000], groups[1:2001], strict=True)
    )
    result = engine.run(RunConfig(log_every=100), f"file:{path}", 2000, 0)
    assert result.status == "ok" and result.entropy_floor is None
    assert result.final_loss < 40 * np.log(4)


# -- phases ---------------------------------------------------------------------------------
def test_easy_hard_easy_phases_in_the_trace():
    cycles = 3000
    result = engine.run(RunConfig(log_every=10), "easy-hard-easy", cycles, 0)
    tr = result.traces
    assert np.array_equal(tr["cycle"], np.arange(10, cycles + 1, 10))
    # a record at cycle c describes the state after c cycles: cycle c - 1 ran in its phase
    expected = np.where(tr["cycle"] <= 1000, 0, np.where(tr["cycle"] <= 2000, 1, 2))
    assert np.array_equal(tr["phase"], expected)
    # on a switch, the data position goes back to the start of the phase's stream
    step = RunConfig().seq_len
    at = {int(c): int(p) for c, p in zip(tr["cycle"], tr["data_position"], strict=True)}
    assert at[1010] == 10 * step and at[2010] == 10 * step
    assert at[1000] == 1000 * step
    assert result.entropy_floor == engine.entropy_floor("easy", RunConfig())


def test_phase_streams():
    task_data = _build("easy-hard-easy", 300)
    assert list(task_data.phase_start) == [0, 100, 200]
    assert list(task_data.phase_stream) == [0, 1, 0]  # the third phase re-reads the first's
    assert task_data.phase_floor == pytest.approx((9.6146, 8.9588, 9.6146), abs=1e-3)


def test_data_for_300k_cycles():
    cycles, seq_len = 300_000, RunConfig().seq_len
    task_data = _build("easy-hard-easy", cycles, seed=9)
    assert task_data.data.dtype == np.int32
    assert list(task_data.phase_start) == [0, 100_000, 200_000]
    # long enough that no phase wraps around (which would reset the hidden state)
    assert np.all(task_data.stream_length >= 100_000 * seq_len + seq_len + 1)
    assert task_data.data.min() >= 0 and task_data.data.max() < task_data.vocab_size
    easy, hard = _text(task_data, 0), _text(task_data, 1)
    assert re.fullmatch(r"(\((?:ab)+\))+", easy[: easy.rindex(")") + 1])
    assert re.fullmatch(r"(\([ab]{6}\))+", hard[: len(hard) // 8 * 8])


@pytest.mark.parametrize("cycles", [1, 2])
def test_shortcut_on_too_few_cycles(cycles):
    """easy-hard-easy on fewer than 3 cycles gives phases with equal start cycles (which an
    explicit schedule is refused for); the run loop then skips the first phase."""
    try:
        result = engine.run(RunConfig(log_every=1), "easy-hard-easy", cycles, 0)
    except ConfigError as error:
        assert "\n" not in str(error) and "cycles" in str(error)
        return
    assert result.traces["phase"][0] == 0  # the first cycle belongs to the first phase


# -- the run loop's data bookkeeping --------------------------------------------------------
def _loop(task, cycles, config):
    td = _build(task, cycles, config)
    net = init_network(config, td.vocab_size, np.random.default_rng(1))
    s = allocate_scratch(config.capacity, td.vocab_size, config.seq_len, config.dtype)
    hp = make_hyper(config, td.vocab_size)
    task_tuple = (td.data, td.stream_offset, td.stream_length, td.phase_start, td.phase_stream)
    trace = np.zeros(cycles + 2, TRACE_DTYPE)
    events = np.zeros(4096 + config.capacity, EVENT_DTYPE)
    fill = np.zeros(2, np.int64)

    def train(n):
        draws = draws_from(np.random.default_rng(2), config.capacity, td.vocab_size)
        return _train(net, s, hp, task_tuple, draws, n, trace, events, fill)

    return td, net, s, hp, train, trace, fill


def _after_one_cycle(net, s, hp, data, start, zero_hidden):
    copy = Network(*(a.copy() for a in net))
    if zero_hidden:
        copy.hidden[:] = 0.0
    _one_cycle(
        copy,
        s,
        hp,
        data,
        start,
        draws_from(np.random.default_rng(0), net.hidden.size, hp.vocab),
        0,
        np.zeros(4, EVENT_DTYPE),
        np.zeros(2, np.int64),
        False,
    )
    return copy


def _same_params(a, b):
    return all(
        np.array_equal(getattr(a, k), getattr(b, k))
        for k in ("Wxh", "Whh", "Wiy", "bh", "by", "hidden", "mem_Whh")
    )


def test_phase_switch_goes_to_position_zero_and_keeps_the_hidden_state():
    config = RunConfig(mode="fixed", hidden_size=3, init_scale=0.5, log_every=1)
    td, net, s, hp, train, trace, fill = _loop("easy@0,hard@5", 10, config)
    assert train(5) == 0 and net.counters[CYCLE] == 5 and net.counters[POSITION] == 200
    assert np.all(net.hidden[:3] != 0.0)
    start = int(td.stream_offset[1])  # the hard stream, from its first character
    kept = _after_one_cycle(net, s, hp, td.data, start, zero_hidden=False)
    reset = _after_one_cycle(net, s, hp, td.data, start, zero_hidden=True)
    train(1)
    assert net.counters[PHASE] == 1 and net.counters[POSITION] == config.seq_len
    assert _same_params(net, kept)
    assert not _same_params(net, reset)
    assert list(trace["phase"][:6]) == [0, 0, 0, 0, 0, 1]


def test_data_wraps_with_a_blank_hidden_state(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("(ab)(abab)" * 10, encoding="utf-8")  # 100 characters
    config = RunConfig(mode="fixed", hidden_size=3, init_scale=0.5, log_every=1)
    td, net, s, hp, train, trace, fill = _loop(f"file:{path}", 10, config)
    train(2)  # windows at 0 and 40; one at 80 would need 80 + 41 < 100 characters
    assert np.all(net.hidden[:3] != 0.0)
    kept = _after_one_cycle(net, s, hp, td.data, 0, zero_hidden=False)
    reset = _after_one_cycle(net, s, hp, td.data, 0, zero_hidden=True)
    train(1)
    assert _same_params(net, reset)
    assert not _same_params(net, kept)
    train(2)
    assert list(trace["data_position"][:5]) == [40, 80, 40, 80, 40]
