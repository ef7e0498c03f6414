"""Figures of the feedforward studies (FEEDFORWARD.md): learned size against the teacher's,
variable against fixed sizes, digits accuracy against size.

Every function takes the store's ``runs`` rows of finished runs (``engine.store.load_runs``,
with ``final_neurons``, ``final_blocks``, ``entropy_floor``, ``test_accuracy``) and builds
a Figure without saving it; ``engine.plots_tradeoff.save_figures`` writes them. Points are
medians over seeds, bars inter-quartile ranges, as in the other figures of the project.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .fftasks import parse_ff_task  # noqa: E402

VARIABLE_COLOR, FIXED_COLOR, ALONE_COLORS = "tab:red", "tab:blue", ("tab:green", "tab:purple")


def quartiles(values) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile) of the finite values; NaN if none."""
    data = pd.Series(values, dtype=float).dropna()
    if data.empty:
        return (float("nan"),) * 3
    q25, median, q75 = data.quantile([0.25, 0.5, 0.75]).tolist()
    return q25, median, q75


def teacher_shape(task: str) -> tuple[int, int]:
    """(W, D) of a single-teacher task."""
    (phase,) = parse_ff_task(task, 0)
    return phase.width, phase.depth


def _point(ax, x, values, color, label=None, marker="o"):
    q25, median, q75 = quartiles(values)
    ax.errorbar(
        [x],
        [median],
        yerr=[[median - q25], [q75 - median]],
        fmt=marker,
        color=color,
        capsize=3,
        label=label,
    )
    return median


def draw_size_against_teacher(runs: pd.DataFrame) -> Figure:
    """Left: neurons learned against the teacher's width (teachers of depth 1); right:
    blocks learned against the teacher's depth (teachers of width 8). The dotted lines
    are "as many as the teacher"."""
    shapes = runs["task"].map(teacher_shape)
    runs = runs.assign(teacher_width=[w for w, _ in shapes], teacher_depth=[d for _, d in shapes])
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    shallow = runs[runs["teacher_depth"] == 1]
    widths = sorted(shallow["teacher_width"].unique())
    for width in widths:
        part = shallow[shallow["teacher_width"] == width]
        _point(left, width, part["final_neurons"], VARIABLE_COLOR)
    if widths:
        line = np.array([min(widths), max(widths)], dtype=float)
        left.plot(line, line, ":", color="0.4", label="teacher's width")
    left.set_xscale("log", base=2)
    left.set_yscale("log", base=2)
    left.set_xlabel("teacher width W (depth 1)")
    left.set_ylabel("neurons learned (all blocks, end of run)")
    left.set_title("width: learned against the teacher's")
    left.legend(loc="upper left", fontsize=9)
    narrow = runs[runs["teacher_width"] == 8]
    depths = sorted(narrow["teacher_depth"].unique())
    for depth in depths:
        part = narrow[narrow["teacher_depth"] == depth]
        _point(right, depth, part["final_blocks"], VARIABLE_COLOR)
    if depths:
        right.plot(depths, depths, ":", color="0.4", label="teacher's depth")
    right.set_xticks(depths)
    right.set_xlabel("teacher depth D (width 8)")
    right.set_ylabel("residual blocks learned (end of run)")
    right.set_title("depth: learned against the teacher's")
    right.legend(loc="upper left", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig


def draw_variable_against_fixed(runs: pd.DataFrame, alone: dict[str, str]) -> Figure:
    """Loss above the floor against size: fixed networks (by neurons), the variable one
    (learned width and depth) and each mechanism alone, placed at their median size."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    fixed = runs[runs["mode"] == "fixed"]
    sizes = sorted(fixed["final_neurons"].unique())
    medians = []
    for size in sizes:
        part = fixed[fixed["final_neurons"] == size]
        medians.append(_point(ax, size, part["excess_loss"], FIXED_COLOR))
    ax.plot(sizes, medians, "-", color=FIXED_COLOR, alpha=0.5, label="fixed size (2 blocks)")
    variable = runs[(runs["mode"] == "variable")]
    conditions = [c for c in variable["condition"].unique() if c not in alone]
    for condition in conditions:
        part = variable[variable["condition"] == condition]
        _, size, _ = quartiles(part["final_neurons"])
        _point(ax, size, part["excess_loss"], VARIABLE_COLOR, f"{condition} (width and depth)", "s")
    for (condition, text), color in zip(alone.items(), ALONE_COLORS):
        part = variable[variable["condition"] == condition]
        if len(part):
            _, size, _ = quartiles(part["final_neurons"])
            _point(ax, size, part["excess_loss"], color, text, "D")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("neurons (all blocks; learned: median at the end)")
    ax.set_ylabel("final loss above the teacher's floor (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return fig


def draw_digits(runs: pd.DataFrame) -> Figure:
    """Test accuracy against size on the digits: fixed widths and the learned network."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    fixed = runs[runs["mode"] == "fixed"]
    sizes = sorted(fixed["final_neurons"].unique())
    medians = [
        _point(ax, size, fixed[fixed["final_neurons"] == size]["test_accuracy"], FIXED_COLOR)
        for size in sizes
    ]
    ax.plot(sizes, medians, "-", color=FIXED_COLOR, alpha=0.5, label="fixed width (1 block)")
    variable = runs[runs["mode"] == "variable"]
    if len(variable):
        _, size, _ = quartiles(variable["final_neurons"])
        _point(ax, size, variable["test_accuracy"], VARIABLE_COLOR, "learned width and depth", "s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("neurons (all blocks; learned: median at the end)")
    ax.set_ylabel("test accuracy (held-out 20%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    return fig
