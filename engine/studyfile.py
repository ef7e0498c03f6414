"""Study files: a TOML file read, validated and expanded into the runs it names.

A study file (``studies/*.toml``) names a task, a cycle count, seeds, base parameters, a grid
(cartesian product of lists) and optional named conditions; every condition is crossed with
every grid point and every seed. Everything is validated before any run starts: a bad file
is one ``StudyError`` line naming the file and the key.

Apart from ``engine.scheduler`` (which runs a study) because reading a study needs neither
the cost model nor joblib nor the store: the reports (``studies/make_tradeoff.py``) and a
dry-run read study files as well. ``engine.scheduler`` re-exports everything here.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import names
from .config import ConfigError, RunConfig, check_field, field_names
from .run import MAX_CYCLES, check_run_args, parse_model_task, run_ids
from .tasks import parse_task, read_text_file

TOP_KEYS = ("name", "description", "task", "cycles", "seeds", "params", "grid", "conditions")
RUN_KEYS = ("task", "cycles")  # besides config fields, what a condition or the grid may set
DEFAULT_TASK = "hard"
DEFAULT_CYCLES = 300_000
MAX_SEED_COUNT = 1_000_000
MAX_RUNS = 1_000_000


class StudyError(ConfigError):
    """A bad study file; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: everything that determines it, and its id."""

    study: str
    condition: str
    task: str
    cycles: int
    seed: int
    config: RunConfig
    run_id: str


@dataclass(frozen=True)
class Study:
    name: str
    path: str
    description: str
    conditions: tuple[str, ...]
    grid_points: int
    seeds: tuple[int, ...]
    specs: tuple[RunSpec, ...] = field(repr=False)


# -- parsing and validation --------------------------------------------------------------
def load_study(path: str | os.PathLike) -> Study:
    """Read, validate and expand a study file; raises StudyError (one line) if bad."""
    where = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise StudyError(f"{where}: study file does not exist") from None
    except IsADirectoryError:
        raise StudyError(f"{where}: is a directory, not a study file") from None
    except OSError as error:
        raise StudyError(f"{where}: cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"{where}: malformed TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise StudyError(f"{where}: malformed TOML: not UTF-8 ({error.reason})") from None
    return parse_study(data, where)


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _fail(where: str, text: str) -> StudyError:
    return StudyError(f"{where}: {text}")


def _check_value(where: str, section: str, name: str, value: Any) -> None:
    """Type and range of one value, alone (combinations are checked after expansion)."""
    prefix = f"{section} " if section else ""
    if name == "task":
        if not isinstance(value, str):
            raise _fail(
                where,
                f"{prefix}task = {value!r} has the wrong type: expected a "
                "string such as hard, easy, easy-hard-easy or file:PATH",
            )
        try:
            parse_model_task(value, 0, "rnn")
        except ConfigError as error:
            try:  # a feedforward task: checked against the model with the whole config
                parse_model_task(value, 0, "mlp")
            except ConfigError:
                raise _fail(where, f"{prefix}{error}") from None
        return
    if name == "cycles":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CYCLES:
            raise _fail(
                where,
                f"{prefix}cycles = {value!r} is out of range: an integer in [1, {MAX_CYCLES}]",
            )
        return
    try:
        check_field(RunConfig.__dataclass_fields__[name], value)
    except ConfigError as error:
        raise _fail(where, f"{prefix}{error}") from None


def _check_names(where: str, section: str, table: dict, extra: tuple[str, ...] = ()) -> None:
    allowed = field_names() + extra
    for name in table:
        if name not in allowed:
            raise _fail(
                where, f"{section} unknown parameter {name!r}: allowed are {', '.join(allowed)}"
            )


def _seeds(where: str, value: Any) -> tuple[int, ...]:
    allowed = (
        f"allowed a count in [1, {MAX_SEED_COUNT}] or a list of distinct integers in [0, 2**63)"
    )
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEED_COUNT:
            raise _fail(where, f"seeds = {value!r} is out of range: {allowed}")
        return tuple(range(value))
    if isinstance(value, list):
        if not value:
            raise _fail(where, f"seeds = [] is empty: {allowed}")
        for seed in value:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
                raise _fail(where, f"seeds: {seed!r} is out of range: {allowed}")
        if len(set(value)) != len(value):
            raise _fail(where, f"seeds = {value!r} has duplicates: {allowed}")
        return tuple(value)
    raise _fail(where, f"seeds = {value!r} has the wrong type ({_type_name(value)}): {allowed}")


def parse_study(data: dict[str, Any], where: str = "<study>") -> Study:
    """Validate a parsed study table and expand it into run specs (see module docstring)."""
    # names are checked by engine.names, not engine.store: a dry-run must not import pandas
    for key in data:
        if key not in TOP_KEYS:
            raise _fail(where, f"unknown key {key!r}: allowed are {', '.join(TOP_KEYS)}")
    if "name" not in data:
        raise _fail(where, "missing key 'name': the study's name, e.g. name = \"demo\"")
    name = data["name"]
    try:
        names.check_name(name)
    except ConfigError as error:
        raise _fail(where, f"name: {error}") from None
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(
            where, f"description has the wrong type ({_type_name(description)}): expected a string"
        )
    task = data.get("task", DEFAULT_TASK)
    _check_value(where, "", "task", task)
    cycles = data.get("cycles", DEFAULT_CYCLES)
    _check_value(where, "", "cycles", cycles)
    seeds = _seeds(where, data.get("seeds", 1))

    params = data.get("params", {})
    if not isinstance(params, dict):
        raise _fail(
            where,
            f"params has the wrong type ({_type_name(params)}): expected a "
            "table [params] of run-config values",
        )
    _check_names(where, "[params]", params)
    for key, value in params.items():
        _check_value(where, "[params]", key, value)

    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise _fail(
            where, f"grid has the wrong type ({_type_name(grid)}): expected a table [grid] of lists"
        )
    _check_names(where, "[grid]", grid, RUN_KEYS)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise _fail(
                where,
                f"[grid] {key} = {values!r} is not allowed: expected a non-empty list of values",
            )
        for value in values:
            _check_value(where, "[grid]", key, value)
        if len({(type(v), v) for v in values}) != len(values):
            raise _fail(where, f"[grid] {key} = {values!r} has duplicate values")
        if key in params:
            raise _fail(where, f"[grid] {key} is also set in [params]: set it in one place")

    raw_conditions = data.get("conditions", [{"name": names.DEFAULT_CONDITION}])
    if not isinstance(raw_conditions, list) or not all(isinstance(c, dict) for c in raw_conditions):
        raise _fail(where, "conditions has the wrong type: expected [[conditions]] tables")
    if not raw_conditions:
        raise _fail(where, "conditions is empty: give at least one [[conditions]] or none")
    conditions: list[tuple[str, dict]] = []
    for index, table in enumerate(raw_conditions, 1):
        if "name" not in table:
            raise _fail(where, f"[[conditions]] number {index} has no name")
        cname = table["name"]
        try:
            names.check_name(cname, "condition name")
        except ConfigError as error:
            raise _fail(where, f"[[conditions]] {error}") from None
        if cname in (c for c, _ in conditions):
            raise _fail(where, f"[[conditions]] name {cname!r} is used twice")
        section = f"[[conditions]] {cname!r}:"
        overrides = {k: v for k, v in table.items() if k != "name"}
        _check_names(where, section, overrides, RUN_KEYS)
        for key, value in overrides.items():
            _check_value(where, section, key, value)
            if key in grid:
                raise _fail(
                    where,
                    f"{section} {key} is also in [grid]: a key may be set by "
                    "the grid or by conditions, not both",
                )
        conditions.append((cname, overrides))

    keys = list(grid)
    points = list(itertools.product(*(grid[k] for k in keys)))
    total = len(conditions) * len(points) * len(seeds)
    if total > MAX_RUNS:
        raise _fail(where, f"the study has {total} runs: allowed at most {MAX_RUNS}")

    specs: list[RunSpec] = []
    owner: dict[str, str] = {}
    checked_tasks: set[tuple[str, int, int]] = set()
    for cname, overrides in conditions:
        for point in points:
            assigned = dict(zip(keys, point, strict=True))
            location = f"condition {cname!r}" + (
                ", grid " + ", ".join(f"{k}={v!r}" for k, v in assigned.items()) if keys else ""
            )
            values = {**params, **overrides, **assigned}
            run_task = values.pop("task", task)
            run_cycles = values.pop("cycles", cycles)
            try:
                config = RunConfig.from_dict(values)
            except ConfigError as error:
                raise _fail(where, f"{location}: {error}") from None
            _check_task(where, location, run_task, run_cycles, config, checked_tasks)
            for seed, rid in zip(seeds, run_ids(config, run_task, run_cycles, seeds)):
                if rid in owner:
                    raise _fail(
                        where,
                        f"{location}, seed {seed}: the same run as "
                        f"{owner[rid]} (identical config, task, cycles and "
                        "seed); make the conditions differ",
                    )
                owner[rid] = f"{location}, seed {seed}"
                specs.append(RunSpec(name, cname, run_task, run_cycles, seed, config, rid))
    return Study(
        name=name,
        path=where,
        description=description,
        conditions=tuple(c for c, _ in conditions),
        grid_points=len(points),
        seeds=seeds,
        specs=tuple(specs),
    )


def _check_task(where, location, task, cycles, config, checked) -> None:
    key = (task, cycles, config.seq_len, config.model)
    if key in checked:
        return
    checked.add(key)
    try:
        check_run_args(task, cycles, 0, config.model)
        if config.model == "mlp":
            return
        for phase in parse_task(task, cycles):
            if phase.task.startswith("file:"):
                text = read_text_file(phase.task[5:])
                if len(text) < config.seq_len + 2:
                    raise ConfigError(
                        f"task file {phase.task[5:]!r} has {len(text)} "
                        f"characters: it needs at least seq_len + 2 = "
                        f"{config.seq_len + 2}"
                    )
    except ConfigError as error:
        raise _fail(where, f"{location}: {error}") from None
