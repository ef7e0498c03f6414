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


@dataclass(frozen=True)
class RunConfig:
    """All meta-parameters of one run. Defaults are the paper's (REFERENCE.md)."""

    mode: str = _spec(
        "variable",
        str,
        choices=("variable", "fixed"),
        doc="variable: the paper's method; fixed: Figure 2's baseline",
    )
    hidden_size: int = _spec(
        1, int, 1, None, symbol="N0", doc="neurons at the start (variable) or always (fixed)"
    )
    capacity: int = _spec(
        100,
        int,
        2,
        4096,
        symbol="MAX",
        doc="buffer size; a variable network never exceeds capacity-1",
    )
    keep_below: int = _spec(
        1, int, 0, None, symbol="k", doc="below-threshold neurons kept as a reserve"
    )
    deletion_threshold: float = _spec(
        0.05,
        float,
        0.0,
        None,
        low_open=True,
        symbol="T_D",
        doc="|m| at or below it marks a neuron for deletion",
    )
    min_multiplier: float = _spec(
        0.025, float, 0.0, None, symbol="M_min", doc="multipliers are clipped from below to it"
    )
    add_prob: float = _spec(
        0.05,
        float,
        0.0,
        1.0,
        symbol="P_add",
        doc="chance per cycle to add a neuron when none is in reserve",
    )
    delete_prob: float = _spec(
        0.25,
        float,
        0.0,
        1.0,
        symbol="P_del",
        doc="chance to delete each excess below-threshold neuron",
    )
    l1_strength: float = _spec(
        3e-5, float, 0.0, None, symbol="A_L1", doc="L1 penalty on multipliers, added at every step"
    )
    spontaneous_add_prob: float = _spec(
        1e-4, float, 0.0, 1.0, doc="chance per cycle to add a neuron regardless"
    )
    learning_rate: float = _spec(
        0.1, float, 0.0, None, low_open=True, symbol="lr", doc="Adagrad learning rate"
    )
    grad_clip: float = _spec(
        5.0,
        float,
        0.0,
        None,
        low_open=True,
        doc="gradients are clipped elementwise to [-grad_clip, grad_clip]",
    )
    seq_len: int = _spec(40, int, 1, 100000, doc="characters per cycle (truncated BPTT length)")
    init_scale: float = _spec(
        0.01, float, 0.0, None, doc="standard deviation of initial and new weights"
    )
    smoothing: float = _spec(
        0.999,
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
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (np.integer, np.floating, np.str_)):
                value = value.item()  # values from numpy or pandas count as plain ones
            check_field(f, value)
            if f.metadata["kind"] is float:
                value = float(value)  # 0 and 0.0 must give the same config and run id
            object.__setattr__(self, f.name, value)
        threshold = self.deletion_threshold
        if self.min_multiplier >= threshold:
            raise ConfigError(
                f"min_multiplier = {self.min_multiplier!r} is out of range: must be below "
                f"deletion_threshold ({threshold!r}), allowed [0, {threshold!r})"
            )
        top = self.capacity if self.mode == "fixed" else self.capacity - 1
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
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def variable(self) -> bool:
        return self.mode == "variable"


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RunConfig))


def field_specs() -> list[dataclasses.Field]:
    return list(dataclasses.fields(RunConfig))


def _range_text(meta) -> str:
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
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(
            f"{f.name} = {value!r} has the wrong type: expected {kind.__name__}, allowed {allowed}"
        )
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
