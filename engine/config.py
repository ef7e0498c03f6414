"""The run configuration: one frozen dataclass, validated once, at the edge.

Each field carries its paper symbol, its allowed range and a one-line description, so
that the README table, the CLI's ``--set`` parsing, study files and the error messages all
come from this one place.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ConfigError(ValueError):
    """A bad parameter; the message is one line naming the field, the value and the range."""


def _spec(
    default,
    kind,
    low=None,
    high=None,
    *,
    low_open=False,
    high_open=False,
    choices=None,
    symbol="",
    doc="",
):
    """A field; ``default=None`` marks a field whose default is its criterion's (or its
    optimizer's): see ``METHOD_DEFAULTS``."""
    meta = dict(
        kind=kind,
        low=low,
        high=high,
        low_open=low_open,
        high_open=high_open,
        choices=choices,
        symbol=symbol,
        doc=doc,
    )
    return field(default=default, metadata=meta)


CRITERIA = ("multiplier", "outgoing")
DELETION_ORDERS = ("random", "oldest", "youngest", "weakest")
OPTIMIZERS = ("adagrad", "rmsprop")
# What a field left unset becomes under each criterion: the published settings of the
# first method (REFERENCE.md) and of the later one (REFERENCE-LATER.md). None: the field
# means nothing under that criterion, and setting it is refused.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "multiplier": dict(
        optimizer="adagrad",
        learning_rate=0.1,
        grad_clip=5.0,
        step_clip=0.0,
        add_prob=0.05,
        delete_prob=0.25,
        smoothing=0.999,
        min_multiplier=0.025,
        l1_strength=3e-5,
        weight_penalty=None,
    ),
    "outgoing": dict(
        optimizer="rmsprop",
        learning_rate=0.01,
        grad_clip=0.0,
        step_clip=0.01,
        add_prob=0.01,
        delete_prob=0.05,
        smoothing=0.99,
        min_multiplier=None,
        l1_strength=None,
        weight_penalty=1e-4,
    ),
}
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "adagrad": dict(rmsprop_decay=None),
    "rmsprop": dict(rmsprop_decay=0.99),
}
# Fields added after engine 0.2.0, with the value that gives the runs of that version:
# left out of a run's id at that value, so that the id of every earlier run stays the
# same (and its stored study resumes); also the value of rows stored before them.
ADDED_FIELDS = {
    "criterion": "multiplier",
    "optimizer": "adagrad",
    "rmsprop_decay": None,
    "step_clip": 0.0,
    "weight_penalty": None,
    "deletion_order": "random",
    "inherit_deleted": False,
    "model": "rnn",
    "batch_size": 32,
    "stream_width": 32,
    "input_dim": 16,
    "max_blocks": 8,
    "initial_blocks": 1,
    "fixed_depth": False,
    "fixed_width": False,
}
MODELS = ("rnn", "mlp")
# fields that mean something for one model only: setting one away from its default under
# the other model is refused (the column is still stored, at its default)
MODEL_ONLY_FIELDS = {
    "rnn": ("seq_len", "group_len", "easy_continue_prob", "inherit_deleted"),
    "mlp": (
        "batch_size",
        "stream_width",
        "input_dim",
        "max_blocks",
        "initial_blocks",
        "fixed_depth",
        "fixed_width",
    ),
}
_MEANING = {
    "min_multiplier": "a floor for multipliers",
    "l1_strength": "the L1 penalty on multipliers",
    "weight_penalty": "the L1 penalty on outgoing weights",
    "rmsprop_decay": "RMSProp's decay",
}


@dataclass(frozen=True)
class RunConfig:
    """All meta-parameters of one run. Defaults are the paper's (REFERENCE.md)."""

    model: str = _spec(
        "rnn",
        str,
        choices=MODELS,
        doc="rnn: the paper's recurrent network; mlp: residual feedforward blocks of learned "
        "width and depth (its section 5), trained on minibatches of teacher: or digits tasks",
    )
    mode: str = _spec(
        "variable",
        str,
        choices=("variable", "fixed"),
        doc="variable: the paper's method; fixed: Figure 2's baseline",
    )
    hidden_size: int = _spec(
        1,
        int,
        1,
        None,
        symbol="N0",
        doc="neurons at the start (variable) or always (fixed); mlp: of each block",
    )
    capacity: int = _spec(
        100,
        int,
        2,
        4096,
        symbol="MAX",
        doc="buffer size; a variable network never exceeds capacity-1 (mlp: per block)",
    )
    batch_size: int = _spec(32, int, 1, 4096, symbol="B", doc="mlp: examples per minibatch")
    stream_width: int = _spec(
        32, int, 1, 4096, symbol="S", doc="mlp: width of the residual stream the blocks add to"
    )
    input_dim: int = _spec(
        16, int, 1, 4096, doc="mlp: inputs of a teacher: task (digits has its 64 pixels)"
    )
    max_blocks: int = _spec(
        8,
        int,
        2,
        64,
        doc="mlp: block buffer size; a network of variable depth never exceeds max_blocks-1",
    )
    initial_blocks: int = _spec(1, int, 1, None, doc="mlp: residual blocks at the start")
    fixed_depth: bool = _spec(
        False, bool, doc="mlp: no block is added or deleted, block multipliers stay 1"
    )
    fixed_width: bool = _spec(
        False,
        bool,
        doc="mlp: no neuron is added or deleted, neuron multipliers stay 1 (the widths of "
        "variable depth's new blocks stay 1)",
    )
    keep_below: int = _spec(
        1, int, 0, None, symbol="k", doc="below-threshold neurons kept as a reserve"
    )
    criterion: str = _spec(
        "multiplier",
        str,
        choices=CRITERIA,
        doc="a neuron's strength: multiplier: |m| (the paper); outgoing: the L1 norm of its "
        "outgoing weights (the author's later method, with its own defaults)",
    )
    deletion_threshold: float = _spec(
        0.05,
        float,
        0.0,
        None,
        low_open=True,
        symbol="T_D",
        doc="a strength at or below it marks a neuron for deletion",
    )
    min_multiplier: float | None = _spec(
        None,
        float,
        0.0,
        None,
        symbol="M_min",
        doc="multipliers are clipped from below to it (multiplier only)",
    )
    add_prob: float | None = _spec(
        None,
        float,
        0.0,
        1.0,
        symbol="P_add",
        doc="chance per cycle to add a neuron when none is in reserve",
    )
    delete_prob: float | None = _spec(
        None,
        float,
        0.0,
        1.0,
        symbol="P_del",
        doc="chance to delete each excess below-threshold neuron",
    )
    l1_strength: float | None = _spec(
        None,
        float,
        0.0,
        None,
        symbol="A_L1",
        doc="L1 penalty on multipliers, added to their gradient at every step (multiplier only)",
    )
    weight_penalty: float | None = _spec(
        None,
        float,
        0.0,
        None,
        symbol="A",
        doc="L1 penalty on the outgoing weights (Why, Whh): w -= A sign(w) after each update, "
        "also in fixed mode (outgoing only)",
    )
    spontaneous_add_prob: float = _spec(
        1e-4, float, 0.0, 1.0, doc="chance per cycle to add a neuron regardless"
    )
    deletion_order: str = _spec(
        "random",
        str,
        choices=DELETION_ORDERS,
        doc="which below-threshold neurons are candidates first, beyond the k kept: random "
        "(the paper), oldest, youngest or weakest (smallest strength); P_del still applies",
    )
    inherit_deleted: bool = _spec(
        False,
        bool,
        doc="a new neuron takes the stored connections of the most recently deleted one "
        "not yet reused (random ones when none is stored)",
    )
    optimizer: str | None = _spec(
        None,
        str,
        choices=OPTIMIZERS,
        doc="adagrad: mem += g^2; rmsprop: mem += (1 - rmsprop_decay) (g^2 - mem); "
        "step -lr g / sqrt(mem + 1e-8)",
    )
    learning_rate: float | None = _spec(
        None, float, 0.0, None, low_open=True, symbol="lr", doc="the optimizer's learning rate"
    )
    rmsprop_decay: float | None = _spec(
        None,
        float,
        0.0,
        1.0,
        high_open=True,
        doc="RMSProp's memory decay (rmsprop only)",
    )
    grad_clip: float | None = _spec(
        None,
        float,
        0.0,
        None,
        doc="gradients are clipped elementwise to [-grad_clip, grad_clip]; 0: not clipped",
    )
    step_clip: float | None = _spec(
        None,
        float,
        0.0,
        None,
        doc="each update step is clipped elementwise to [-step_clip, step_clip]; 0: not clipped",
    )
    seq_len: int = _spec(40, int, 1, 100000, doc="characters per cycle (truncated BPTT length)")
    init_scale: float = _spec(
        0.01, float, 0.0, None, doc="standard deviation of initial and new weights"
    )
    smoothing: float | None = _spec(
        None,
        float,
        0.0,
        1.0,
        high_open=True,
        doc="smoothed loss s = smoothing*s + (1-smoothing)*loss",
    )
    group_len: int = _spec(
        6, int, 1, 64, doc="letters per group of the hard task (published code 6, text 5)"
    )
    easy_continue_prob: float = _spec(
        0.6,
        float,
        0.0,
        1.0,
        high_open=True,
        doc="easy task: chance of another 'ab' after each 'ab'",
    )
    log_every: int = _spec(1000, int, 1, None, doc="cycles between trace records")
    dtype: str = _spec(
        "float64",
        str,
        choices=("float64", "float32"),
        doc="floating-point type of weights and kernels",
    )

    def __post_init__(self) -> None:
        fields = dataclasses.fields(self)
        for f in fields:
            value = getattr(self, f.name)
            if isinstance(value, (np.integer, np.floating, np.str_, np.bool_)):
                value = value.item()  # values from numpy or pandas count as plain ones
            if value is None and f.default is None:
                continue  # unset: its criterion's or optimizer's default, below
            check_field(f, value)
            if f.metadata["kind"] is float:
                value = float(value)  # 0 and 0.0 must give the same config and run id
            object.__setattr__(self, f.name, value)
        self._resolve(METHOD_DEFAULTS[self.criterion], f"criterion = {self.criterion!r}")
        self._resolve(OPTIMIZER_DEFAULTS[self.optimizer], f"optimizer = {self.optimizer!r}")
        threshold = self.deletion_threshold
        if self.min_multiplier is not None and self.min_multiplier >= threshold:
            raise ConfigError(
                f"min_multiplier = {self.min_multiplier!r} is out of range: must be below "
                f"deletion_threshold ({threshold!r}), allowed [0, {threshold!r})"
            )
        self._check_model_fields()
        top = self.capacity if self.mode == "fixed" or self.fixed_width else self.capacity - 1
        if self.hidden_size > top:
            limit = "capacity" if self.mode == "fixed" else "capacity - 1"
            raise ConfigError(
                f"hidden_size = {self.hidden_size!r} is out of range: allowed [1, {top}] "
                f"({limit} in {self.mode} mode; raise capacity)"
            )
        if self.keep_below > self.capacity - 1:
            raise ConfigError(
                f"keep_below = {self.keep_below!r} is out of range: "
                f"allowed [0, {self.capacity - 1}] (capacity - 1)"
            )

    def _check_model_fields(self) -> None:
        """Fields of the other model stay at their defaults; the depth limits of mlp."""
        for model, names in MODEL_ONLY_FIELDS.items():
            if model == self.model:
                continue
            for name in names:
                value = getattr(self, name)
                default = RunConfig.__dataclass_fields__[name].default
                if value != default:
                    raise ConfigError(
                        f"{name} = {value!r} is not allowed with model = {self.model!r}: "
                        f"it is a {model} field; leave {name} unset"
                    )
        if self.model == "mlp":
            fixed = self.mode == "fixed" or self.fixed_depth
            top = self.max_blocks if fixed else self.max_blocks - 1
            if self.initial_blocks > top:
                limit = "max_blocks" if fixed else "max_blocks - 1"
                raise ConfigError(
                    f"initial_blocks = {self.initial_blocks!r} is out of range: allowed "
                    f"[1, {top}] ({limit}; raise max_blocks)"
                )

    @property
    def learns_width(self) -> bool:
        """Neurons are added and deleted (variable mode, widths not fixed)."""
        return self.mode == "variable" and not self.fixed_width

    @property
    def learns_depth(self) -> bool:
        """mlp: blocks are added and deleted (variable mode, depth not fixed)."""
        return self.model == "mlp" and self.mode == "variable" and not self.fixed_depth

    def _resolve(self, defaults: dict[str, Any], owner: str) -> None:
        """Unset fields take ``owner``'s defaults; a field that means nothing under it
        (default None) is refused when set."""
        for name, default in defaults.items():
            value = getattr(self, name)
            if default is None and value is not None:
                raise ConfigError(
                    f"{name} = {value!r} is not allowed with {owner}: "
                    f"{_MEANING.get(name, 'it')} does not exist there; leave {name} unset"
                )
            if value is None:
                object.__setattr__(self, name, default)

    # -- construction from outside data -------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "") -> RunConfig:
        """Build from plain values (a study file, JSON); refuses unknown names."""
        known = field_names()
        for name in values:
            if name not in known:
                raise ConfigError(
                    f"{where}unknown parameter {name!r}: allowed are {', '.join(known)}"
                )
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{where}{error}") from None

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``. Changing the criterion (or the optimizer) makes the
        fields still at the old one's defaults take the new one's."""
        values = self.to_dict()
        for key, table in (("criterion", METHOD_DEFAULTS), ("optimizer", OPTIMIZER_DEFAULTS)):
            old = getattr(self, key)
            if values[key] is None or (key in changes and changes[key] != old):
                for name, default in table[old].items():
                    if name not in changes and values[name] == default:
                        values[name] = None  # follows the new criterion (optimizer)
        return RunConfig.from_dict({**values, **changes})

    def to_dict(self) -> dict[str, Any]:
        # every field holds a plain int, float, str or None (__post_init__), so this
        # equals dataclasses.asdict, whose deep copies made a 2,000-run study file 0.4 s
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def identity(self) -> dict[str, Any]:
        """What names the run's config in its id: every field, except those added after
        engine 0.2.0 when they hold the value that version ran with (``ADDED_FIELDS``)."""
        return {
            name: value
            for name, value in self.to_dict().items()
            if name not in ADDED_FIELDS or value != ADDED_FIELDS[name]
        }

    @property
    def variable(self) -> bool:
        return self.mode == "variable"


def config_from_row(row: Any) -> RunConfig:
    """The RunConfig stored in a runs row (a pandas row or a dict; every config field is its
    own column; null where a field means nothing under the run's criterion)."""
    values = {}
    for name in field_names():
        if name not in row:
            continue
        value = row[name]
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        values[name] = value
    return RunConfig.from_dict(values)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RunConfig))


def field_specs() -> list[dataclasses.Field]:
    return list(dataclasses.fields(RunConfig))


def default_of(name: str, criterion: str = "multiplier") -> Any:
    """The value a field takes when unset, under ``criterion``."""
    return getattr(RunConfig(criterion=criterion), name)


def _range_text(meta) -> str:
    if meta["kind"] is bool:
        return "true or false"
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    low = "-inf" if meta["low"] is None else repr(meta["low"])
    high = "inf" if meta["high"] is None else repr(meta["high"])
    left = "(" if meta["low_open"] or meta["low"] is None else "["
    right = ")" if meta["high_open"] or meta["high"] is None else "]"
    return f"{left}{low}, {high}{right}"


def allowed_range(name: str) -> str:
    return _range_text(RunConfig.__dataclass_fields__[name].metadata)


def check_field(f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    kind = meta["kind"]
    allowed = _range_text(meta)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(
            f"{f.name} = {value!r} has the wrong type: expected {kind.__name__}, allowed {allowed}"
        )
    if kind is bool:
        return
    if meta["choices"]:
        if value not in meta["choices"]:
            raise ConfigError(f"{f.name} = {value!r} is not allowed: {allowed}")
        return
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{f.name} = {value!r} is out of range: allowed {allowed}")
    low, high = meta["low"], meta["high"]
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        raise ConfigError(f"{f.name} = {value!r} is out of range: allowed {allowed}")
    if high is not None and (value > high or (meta["high_open"] and value == high)):
        raise ConfigError(f"{f.name} = {value!r} is out of range: allowed {allowed}")


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one ``--set name=value`` into a typed pair (the type comes from the field)."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name:
        raise ConfigError(f"--set {text!r} is malformed: expected name=value")
    fields = RunConfig.__dataclass_fields__
    if name not in fields:
        raise ConfigError(f"unknown parameter {name!r}: allowed are {', '.join(field_names())}")
    kind = fields[name].metadata["kind"]
    if kind is bool:
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if raw.lower() not in words:
            raise ConfigError(f"{name} = {raw!r} has the wrong type: expected true or false")
        return name, words[raw.lower()]
    try:
        if kind is int:
            return name, int(raw)
        if kind is float:
            return name, float(raw)
    except ValueError:
        raise ConfigError(
            f"{name} = {raw!r} has the wrong type: expected {kind.__name__}, "
            f"allowed {allowed_range(name)}"
        ) from None
    return name, raw
