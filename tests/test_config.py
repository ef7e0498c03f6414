"""Every bad parameter is a ConfigError with one line naming the field and what is allowed."""

from __future__ import annotations

import dataclasses

import pytest

import engine
from engine import ConfigError, RunConfig
from engine.config import allowed_range, field_names, parse_assignment


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    return message


def _check(message, *parts):
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_defaults_are_the_papers():
    c = RunConfig()
    assert (c.mode, c.hidden_size, c.capacity, c.keep_below) == ("variable", 1, 100, 1)
    assert (c.deletion_threshold, c.min_multiplier, c.add_prob, c.delete_prob) == (
        0.05,
        0.025,
        0.05,
        0.25,
    )
    assert (c.l1_strength, c.spontaneous_add_prob, c.learning_rate, c.grad_clip) == (
        3e-5,
        1e-4,
        0.1,
        5.0,
    )
    assert (c.seq_len, c.init_scale, c.smoothing, c.group_len) == (40, 0.01, 0.999, 6)
    assert c.easy_continue_prob == 0.6 and c.dtype == "float64" and c.variable


def test_outgoing_alone_gives_every_published_setting_of_the_later_method():
    c = RunConfig(criterion="outgoing")
    assert (c.optimizer, c.learning_rate, c.rmsprop_decay) == ("rmsprop", 0.01, 0.99)
    assert (c.grad_clip, c.step_clip, c.weight_penalty) == (0.0, 0.01, 1e-4)
    assert (c.keep_below, c.deletion_threshold, c.add_prob, c.delete_prob) == (1, 0.05, 0.01, 0.05)
    assert c.smoothing == 0.99 and c.min_multiplier is None and c.l1_strength is None
    # the first method's, unchanged, and its new fields at what it always did
    d = RunConfig()
    assert (d.criterion, d.optimizer, d.step_clip, d.rmsprop_decay) == (
        "multiplier",
        "adagrad",
        0.0,
        None,
    )
    assert d.weight_penalty is None and d.grad_clip == 5.0
    # a field set explicitly wins over the criterion's default
    e = RunConfig(criterion="outgoing", learning_rate=0.003, optimizer="adagrad")
    assert (e.learning_rate, e.optimizer, e.rmsprop_decay, e.step_clip) == (
        0.003,
        "adagrad",
        None,
        0.01,
    )
    assert RunConfig(mode="fixed", criterion="outgoing", hidden_size=20).weight_penalty == 1e-4


@pytest.mark.parametrize(
    ("kwargs", "parts"),
    [
        ({"criterion": "outgoing", "min_multiplier": 0.01}, ("min_multiplier", "outgoing")),
        ({"criterion": "outgoing", "l1_strength": 1e-5}, ("l1_strength", "outgoing")),
        ({"weight_penalty": 1e-4}, ("weight_penalty", "multiplier")),
        ({"optimizer": "adagrad", "rmsprop_decay": 0.9}, ("rmsprop_decay", "adagrad")),
        ({"criterion": "outgoing", "optimizer": "adagrad", "rmsprop_decay": 0.9}, ("adagrad",)),
    ],
)
def test_fields_meaningless_under_a_criterion_are_refused(kwargs, parts):
    _check(_error(RunConfig, **kwargs), *parts, "leave", "unset")


def test_run_ids_of_the_first_method_do_not_move():
    # README's example run and a grid point of studies/paper-fig2.toml, as engine 0.2.0
    assert engine.run_id(RunConfig(), "hard", 300_000, 0) == "bacfea46d2a0324f"
    assert (
        "criterion" not in RunConfig().identity()
        and "criterion" in RunConfig(criterion="outgoing").identity()
    )
    assert RunConfig(step_clip=0.01).identity()["step_clip"] == 0.01
    a = engine.run_id(RunConfig(criterion="outgoing"), "hard", 1000, 0)
    assert a != engine.run_id(RunConfig(), "hard", 1000, 0)


def test_replace_follows_the_new_criterion_for_fields_left_at_defaults():
    outgoing = RunConfig(criterion="outgoing")
    assert RunConfig().replace(criterion="outgoing") == outgoing
    assert outgoing.replace(criterion="multiplier") == RunConfig()
    tuned = RunConfig(learning_rate=0.05).replace(criterion="outgoing")
    assert tuned.learning_rate == 0.05 and tuned.optimizer == "rmsprop"
    assert RunConfig.from_dict(outgoing.to_dict()) == outgoing


def test_frozen_and_round_trip():
    c = RunConfig(hidden_size=3, add_prob=1)
    assert isinstance(c.add_prob, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.hidden_size = 4  # type: ignore[misc]
    assert RunConfig.from_dict(c.to_dict()) == c
    assert c.replace(seq_len=20).seq_len == 20 and c.seq_len == 40


@pytest.mark.parametrize(
    "call",
    [
        lambda: RunConfig.from_dict({"hidden_sise": 3}),
        lambda: RunConfig().replace(hidden_sise=3),
        lambda: parse_assignment("hidden_sise=3"),
    ],
)
def test_unknown_field(call):
    _check(_error(call), "hidden_sise", "hidden_size", "capacity")


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("capacity", 1.5, "int"),
        ("capacity", True, "int"),
        ("hidden_size", "3", "int"),
        ("seq_len", None, "int"),
        ("add_prob", "0.5", "float"),
        ("learning_rate", False, "float"),
        ("mode", 1, "str"),
        ("dtype", None, "str"),
    ],
)
def test_wrong_type(name, value, kind):
    message = _error(RunConfig, **{name: value})
    _check(message, name, repr(value), kind, allowed_range(name))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("add_prob", -0.01),
        ("add_prob", 1.01),
        ("delete_prob", 2.0),
        ("delete_prob", -1e-9),
        ("spontaneous_add_prob", 1.5),
        ("easy_continue_prob", 1.0),
        ("smoothing", 1.0),
        ("smoothing", -0.1),
        ("capacity", 1),
        ("capacity", 5000),
        ("hidden_size", 0),
        ("seq_len", 0),
        ("group_len", 0),
        ("group_len", 65),
        ("learning_rate", 0.0),
        ("grad_clip", -5.0),
        ("step_clip", -0.01),
        ("rmsprop_decay", 1.0),
        ("weight_penalty", -1e-4),
        ("criterion", "incoming"),
        ("optimizer", "adam"),
        ("deletion_threshold", 0.0),
        ("l1_strength", -1.0),
        ("keep_below", -1),
        ("log_every", 0),
        ("min_multiplier", -0.01),
        ("init_scale", -0.1),
        ("learning_rate", float("nan")),
        ("l1_strength", float("inf")),
    ],
)
def test_out_of_range(name, value):
    message = _error(RunConfig, **{name: value})
    _check(message, name, allowed_range(name))


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("add_prob", 1.01, "[0.0, 1.0]"),
        ("smoothing", 1.0, "[0.0, 1.0)"),
        ("capacity", 1, "[2, 4096]"),
        ("deletion_threshold", 0.0, "(0.0, inf)"),
    ],
)
def test_range_text(name, value, text):
    _check(_error(RunConfig, **{name: value}), text)


@pytest.mark.parametrize(
    ("name", "value"),
    [("dtype", "float16"), ("dtype", "Float64"), ("mode", "growing"), ("mode", "")],
)
def test_bad_choices(name, value):
    _check(
        _error(RunConfig, **{name: value}),
        name,
        repr(value),
        "float64" if name == "dtype" else "variable",
        "float32" if name == "dtype" else "fixed",
    )


@pytest.mark.parametrize(("threshold", "floor"), [(0.05, 0.05), (0.05, 0.06), (0.01, 0.025)])
def test_min_multiplier_must_be_below_threshold(threshold, floor):
    message = _error(RunConfig, deletion_threshold=threshold, min_multiplier=floor)
    _check(message, "min_multiplier", "deletion_threshold", f"[0, {threshold!r})")


def test_hidden_size_versus_capacity():
    assert RunConfig(mode="fixed", capacity=10, hidden_size=10).hidden_size == 10
    assert RunConfig(mode="variable", capacity=10, hidden_size=9).hidden_size == 9
    _check(
        _error(RunConfig, mode="fixed", capacity=10, hidden_size=11), "hidden_size", "11", "[1, 10]"
    )
    _check(
        _error(RunConfig, mode="variable", capacity=10, hidden_size=10),
        "hidden_size",
        "10",
        "[1, 9]",
    )
    _check(_error(RunConfig, capacity=10, keep_below=10), "keep_below", "[0, 9]")


def test_from_dict_prefixes_where():
    message = _error(RunConfig.from_dict, {"add_prob": 3.0}, where="study x.toml: ")
    assert message.startswith("study x.toml: add_prob")


def test_parse_assignment():
    assert parse_assignment("hidden_size=7") == ("hidden_size", 7)
    assert parse_assignment(" add_prob = 0.5 ") == ("add_prob", 0.5)
    assert parse_assignment("mode=fixed") == ("mode", "fixed")
    _check(_error(parse_assignment, "hidden_size=1.5"), "hidden_size", "int", "[1, inf)")
    _check(_error(parse_assignment, "add_prob=half"), "add_prob", "float", "[0.0, 1.0]")
    _check(_error(parse_assignment, "add_prob"), "add_prob", "name=value")


def test_every_field_has_a_range_and_doc():
    for f in dataclasses.fields(RunConfig):
        assert f.metadata["doc"], f.name
        assert allowed_range(f.name)
    assert field_names()[:2] == ("model", "mode")


@pytest.mark.parametrize(
    ("kwargs", "parts"),
    [
        ({"cycles": 0}, ("cycles", "0", "[1, ")),
        ({"cycles": -5}, ("cycles", "-5", "[1, ")),
        ({"cycles": 2.5}, ("cycles", "2.5", "[1, ")),
        ({"cycles": True}, ("cycles", "True", "[1, ")),
        ({"seed": -1}, ("seed", "-1", "[0, 2**63)")),
        ({"seed": 2**63}, ("seed", "[0, 2**63)")),
        ({"seed": 1.0}, ("seed", "1.0", "[0, 2**63)")),
        ({"task": "medium"}, ("task", "medium", "easy", "hard")),
    ],
)
def test_run_refuses_bad_arguments(kwargs, parts):
    args = {"task": "easy", "cycles": 10, "seed": 0, **kwargs}
    _check(_error(engine.run, RunConfig(), args["task"], args["cycles"], args["seed"]), *parts)


def test_run_refuses_a_non_config():
    _check(_error(engine.run, {"mode": "fixed"}, "easy", 10, 0), "RunConfig")
