"""The paper's figures, drawn from a results store (median and inter-quartile range over seeds).

Two kinds of figure per study:

- ``NAME-by-condition``: one column per variable-size condition (Figures 1 and 3), smoothed
  loss on top and number of neurons below, each as the median over seeds with the
  inter-quartile range shaded; task switches as vertical lines, the entropy floor of each
  phase as a dashed line.
- ``NAME-sizes-TASK``: for each task that has fixed-size conditions (Figure 2), every
  fixed size as a thin coloured median line and the variable-size network as a thick black
  one (inter-quartile ranges left out for clarity, as in the paper).

And, for a study with two or more settings whose runs have phases, the trade-off figures
of ``engine.plots_tradeoff`` (``diffrnn figures`` draws both).

The curves come from :func:`engine.plotgroups.median_curves` (re-exported here), so they
can be checked against the store.
Matplotlib is used through its Agg canvas only: no display, no pyplot state.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FuncFormatter

from .plotgroups import (  # noqa: F401  (re-exported: the figures' data)
    FORMATS,
    IDENTITY,
    NOT_IDENTITY,
    QUANTITIES,
    REFERENCE_SEQ_LEN,
    TASK_ORDER,
    GroupInfo,
    _key_columns,
    clean_value,
    config_of,
    format_value,
    group_info,
    group_labels,
    median_curves,
    median_phase_floors,
    ok_runs,
    phases_of,
    sort_runs,
)


def loss_scale(infos: Sequence[GroupInfo]) -> tuple[float, str]:
    """Factor and axis label for the loss: as stored when every run has one seq_len,
    otherwise converted to the paper's nats per 40 characters."""
    lengths = {info.seq_len for info in infos}
    if lengths == {0}:  # the feedforward model: a mean over a minibatch
        return 1.0, "smoothed loss (nats per example)"
    if len(lengths) == 1:
        (length,) = lengths
        return 1.0, f"smoothed loss (nats per {length} characters)"
    return float("nan"), f"smoothed loss (nats per {REFERENCE_SEQ_LEN} characters)"


def _scale_for(info: GroupInfo, common: float) -> float:
    if info.seq_len == 0:
        return 1.0
    return common if not math.isnan(common) else REFERENCE_SEQ_LEN / info.seq_len


# -- drawing -------------------------------------------------------------------------------
def _cycles_formatter():
    def fmt(x, _pos):
        if abs(x) >= 1000:
            return f"{x / 1000:g}k"
        return f"{x:g}"

    return FuncFormatter(fmt)


def _mark_phases(ax, info: GroupInfo, *, names: bool) -> None:
    if len(info.phases) < 2:
        return
    for task, start, end, _floor in info.phases:
        if start > 0:
            ax.axvline(
                start,
                color="0.35",
                linestyle=":",
                linewidth=1.2,
                zorder=1,
                label="task switch" if start == info.phases[1][1] else None,
            )
        if names:
            ax.text(
                (start + end) / 2,
                0.98,
                task,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=9,
                color="0.25",
            )


def _draw_floors(ax, info: GroupInfo, scale: float, color: str = "0.2", label: bool = True):
    drawn = False
    for _task, start, end, floor in info.phases:
        if floor is None:
            continue
        ax.hlines(
            floor * scale,
            start,
            end,
            colors=color,
            linestyles="dashed",
            linewidth=1.3,
            zorder=3,
            label="entropy floor" if label and not drawn else None,
        )
        drawn = True


def _loss_limits(curves: pd.DataFrame, floors: list[float], cycles: int, column: str):
    """Y range of a loss panel: from just under the floor to the curve after the start-up
    transient (the smoothed loss starts at 40 ln 4 = 55.5 and would flatten the rest)."""
    late = curves[curves["cycle"] >= 0.1 * cycles]
    if late.empty:
        late = curves
    top = float(np.nanmax(late[column].to_numpy(dtype=float))) if len(late) else 1.0
    values = curves[[c for c in curves.columns if c.startswith("smoothed_loss_")]]
    low = float(np.nanmin(values.to_numpy(dtype=float))) if len(values) else 0.0
    low = min([low, *floors]) if floors else low
    span = max(top - low, 0.05 * max(abs(top), 1.0))
    return low - 0.08 * span, top + 0.12 * span


def _neurons_top(curves: pd.DataFrame, column: str) -> float:
    values = curves[column].to_numpy(dtype=float)
    top = float(np.nanmax(values)) if values.size else 1.0
    return max(2.0, 1.08 * top + 0.5)


@functools.lru_cache(maxsize=1)
def _measurer() -> RendererAgg:
    # a 72-dpi Agg renderer: its pixels are points, and it lays text out exactly as the
    # figures are drawn (a fixed average character width clipped titles with wide letters)
    return RendererAgg(8, 8, 72)


def text_width(text: str, fontsize: float) -> float:
    """Width in inches of one line of ``text`` at ``fontsize`` points, as Agg draws it."""
    if not text:
        return 0.0
    width, _height, _descent = _measurer().get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=False
    )
    return width / 72.0


def fit_text(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` wrapped at spaces so that each line, measured as the Agg renderer draws it,
    fits ``width_inches`` at ``fontsize`` points; a word wider than that is broken."""
    out = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if text_width(candidate, fontsize) <= width_inches:
                line = candidate
                continue
            if line:
                out.append(line)
            # the word alone: broken into pieces that fit when it is too wide by itself
            line = ""
            for char in word:
                if line and text_width(line + char, fontsize) > width_inches:
                    out.append(line)
                    line = ""
                line += char
        out.append(line)
    return "\n".join(out)


def _finish_axes(ax) -> None:
    ax.grid(True, color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.xaxis.set_major_formatter(_cycles_formatter())
    ax.tick_params(labelsize=9)


def draw_by_condition(curves: pd.DataFrame, infos: dict[str, GroupInfo], name: str) -> Figure:
    """Figures 1 and 3: a column per group, loss (top) and N (bottom), medians with IQR."""
    labels = [label for label in infos if label in set(curves["group"])]
    columns = max(1, len(labels))
    width = 4.6 * columns + 0.6
    fig = Figure(figsize=(width, 6.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, columns, sharex="col", sharey="row", squeeze=False)
    scale, ylabel = loss_scale([infos[label] for label in labels] or list(infos.values()))
    limits = []
    for col, label in enumerate(labels):
        info = infos[label]
        k = _scale_for(info, scale)
        data = curves[curves["group"] == label]
        x = data["cycle"].to_numpy()
        loss_ax, n_ax = axes[0, col], axes[1, col]
        loss_ax.fill_between(
            x,
            data["smoothed_loss_q25"] * k,
            data["smoothed_loss_q75"] * k,
            color="tab:blue",
            alpha=0.25,
            linewidth=0,
            label="inter-quartile range",
        )
        (line,) = loss_ax.plot(
            x, data["smoothed_loss_median"] * k, color="tab:blue", linewidth=1.8, label="median"
        )
        line.set_gid(f"median:smoothed_loss:{label}")
        _draw_floors(loss_ax, info, k)
        _mark_phases(loss_ax, info, names=True)
        floors = [f * k for *_rest, f in info.phases if f is not None]
        scaled = data.assign(
            **{c: data[c] * k for c in data.columns if c.startswith("smoothed_loss_")}
        )
        limits.append(_loss_limits(scaled, floors, info.cycles, "smoothed_loss_q75"))

        n_ax.fill_between(
            x,
            data["neurons_q25"],
            data["neurons_q75"],
            color="tab:red",
            alpha=0.25,
            linewidth=0,
            label="inter-quartile range",
        )
        (line,) = n_ax.plot(
            x, data["neurons_median"], color="tab:red", linewidth=1.8, label="median"
        )
        line.set_gid(f"median:neurons:{label}")
        _mark_phases(n_ax, info, names=False)

        failed = f", {info.failed} failed run(s) left out" if info.failed else ""
        loss_ax.set_title(
            fit_text(
                f"{label}\n{info.task}, {info.mode} size, {info.seeds} seeds{failed}", 4.0, 11
            ),
            fontsize=11,
        )
        n_ax.set_xlabel(
            f"cycle ({info.seq_len}-character sequences)"
            if info.seq_len
            else "cycle (minibatch steps)",
            fontsize=10,
        )
        for ax in (loss_ax, n_ax):
            _finish_axes(ax)
    if limits:
        axes[0, 0].set_ylim(min(lo for lo, _ in limits), max(hi for _, hi in limits))
    axes[1, 0].set_ylim(0, _neurons_top(curves[curves["group"].isin(labels)], "neurons_q75"))
    axes[0, 0].set_ylabel(ylabel, fontsize=10)
    axes[1, 0].set_ylabel("number of neurons N", fontsize=10)
    if labels:
        axes[0, -1].legend(
            loc="upper right",
            fontsize=8,
            framealpha=0.9,
            bbox_to_anchor=(1.0, 0.9) if len(infos[labels[-1]].phases) > 1 else None,
        )
        axes[1, -1].legend(loc="lower right", fontsize=8, framealpha=0.9)
    # wrapped to the figure's width: a single column has room for less than one line
    fontsize = 12 if columns > 1 else 10
    fig.suptitle(
        fit_text(
            f"{name}: smoothed loss and network size (median and inter-quartile range over seeds)",
            width - 0.4,
            fontsize,
        ),
        fontsize=fontsize,
    )
    return fig


def draw_sizes(curves: pd.DataFrame, infos: dict[str, GroupInfo], name: str, task: str) -> Figure:
    """Figure 2: fixed sizes as thin coloured medians, variable size as a thick black one."""
    members = [
        infos[label]
        for label in infos
        if infos[label].task == task and label in set(curves["group"])
    ]
    fixed = sorted((i for i in members if i.mode == "fixed"), key=lambda i: i.hidden_size)
    variable = [i for i in members if i.mode == "variable"]
    scale, ylabel = loss_scale(members)
    fig = Figure(figsize=(8.0, 7.0), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, n_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    colors = matplotlib.colormaps["viridis"]
    limits = []
    for i, info in enumerate(fixed + variable):
        data = curves[curves["group"] == info.label]
        k = _scale_for(info, scale)
        x = data["cycle"].to_numpy()
        if info.mode == "fixed":
            color = colors(0.85 * i / max(1, len(fixed) - 1)) if len(fixed) > 1 else "tab:blue"
            style = dict(color=color, linewidth=1.2)
            text = f"{info.label} (fixed N = {info.hidden_size})"
        else:
            style = dict(color="black", linewidth=3.0, zorder=5)
            text = f"{info.label} (variable size)"
        (line,) = loss_ax.plot(x, data["smoothed_loss_median"] * k, label=text, **style)
        line.set_gid(f"median:smoothed_loss:{info.label}")
        (line,) = n_ax.plot(x, data["neurons_median"], label=text, **style)
        line.set_gid(f"median:neurons:{info.label}")
        cycles = info.cycles
        floors = [f * k for *_r, f in info.phases if f is not None]
        scaled = data.assign(smoothed_loss_median=data["smoothed_loss_median"] * k)
        limits.append(
            _loss_limits(
                scaled[["cycle", "smoothed_loss_median"]], floors, cycles, "smoothed_loss_median"
            )
        )
    if members:
        reference = variable[0] if variable else members[0]
        _draw_floors(loss_ax, reference, _scale_for(reference, scale))
        _mark_phases(loss_ax, reference, names=True)
        _mark_phases(n_ax, reference, names=False)
    if limits:
        loss_ax.set_ylim(min(lo for lo, _ in limits), max(hi for _, hi in limits))
    seeds = sorted({i.seeds for i in members})
    seeds_text = "/".join(str(s) for s in seeds)
    loss_ax.set_title(
        fit_text(
            f"{name}: {task} task, fixed versus variable size\nmedians over "
            f"{seeds_text} seeds (inter-quartile ranges not shown, as in the paper)",
            7.2,
            11,
        ),
        fontsize=11,
    )
    loss_ax.set_ylabel(ylabel, fontsize=10)
    n_ax.set_ylabel("number of neurons N", fontsize=10)
    n_ax.set_xlabel("cycle (40-character sequences)", fontsize=10)
    shown = curves[curves["group"].isin([i.label for i in members])]
    n_ax.set_ylim(0, _neurons_top(shown, "neurons_median"))
    loss_ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    for ax in (loss_ax, n_ax):
        _finish_axes(ax)
    return fig


def draw_study(
    runs_df: pd.DataFrame, traces_df: pd.DataFrame, name: str
) -> list[tuple[str, Figure]]:
    """Build (without saving) every figure of a study: ``[(file stem, Figure), ...]``."""
    runs = sort_runs(runs_df)
    curves = median_curves(runs, traces_df)
    done = ok_runs(runs)
    infos = group_info(runs)
    drawn = set(curves["group"]) if len(curves) else set()
    figures = []
    variable = {
        label: info for label, info in infos.items() if info.mode == "variable" and label in drawn
    }
    if variable:
        figures.append((f"{name}-by-condition", draw_by_condition(curves, variable, name)))
    tasks_with_fixed = dict.fromkeys(
        info.task for label, info in infos.items() if info.mode == "fixed" and label in drawn
    )
    for task in tasks_with_fixed:
        figures.append((f"{name}-sizes-{_slug(task)}", draw_sizes(curves, infos, name, task)))
    if not figures and len(done):
        raise ValueError(f"study {name!r}: no trace records for its {len(done)} finished runs")
    return figures


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-") or "task"


def plot_study(
    runs_df: pd.DataFrame, traces_df: pd.DataFrame, out_dir: str | Path, name: str
) -> list[Path]:
    """Draw a study's figures into ``out_dir`` as PNG and SVG; returns the written paths.

    ``runs_df`` and ``traces_df`` are the study's rows of the store's ``runs`` and
    ``traces`` tables (see engine/records.py). Raises ValueError if no run finished.
    """
    if ok_runs(runs_df).empty:
        raise ValueError(f"study {name!r} has no finished runs to plot")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in draw_study(runs_df, traces_df, name):
        for fmt in FORMATS:
            path = out / f"{stem}.{fmt}"
            fig.savefig(path, dpi=130 if fmt == "png" else None)
            paths.append(path)
    return paths


# -- loading and the CLI -------------------------------------------------------------------
def load_study(results: str | Path, study: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and traces of one study (or of every study) from a results store."""
    from . import store

    runs = store.load_runs(results, study=study)
    traces = store.load_traces(results, study=study)
    return runs, traces


def studies_in(results: str | Path) -> list[str]:
    """Names of the studies a store holds, sorted."""
    from . import store

    runs = store.load_runs(results, columns=["study"])
    return sorted(set(runs["study"]))


def cli_figures(args) -> int:
    """``diffrnn figures RESULTS --study NAME --out DIR``: draw, save, print the paths
    (the paper's figures, and the trade-off figures of a study with phased runs)."""
    from .plots_tradeoff import plot_tradeoff

    results = Path(args.results)
    study = getattr(args, "study", None)
    out = Path(getattr(args, "out", None) or "figures")
    if not (results / "runs").is_dir():
        print(f"figures: {results} is not a results store (no runs/ in it)", file=sys.stderr)
        return 2
    names = [study] if study else studies_in(results)
    if not names:
        print(f"figures: no study in {results}", file=sys.stderr)
        return 1
    status = 0
    for name in names:
        runs, traces = load_study(results, name)
        if runs.empty:
            known = ", ".join(studies_in(results)) or "none"
            print(
                f"figures: study {name!r} has no runs in {results} (studies: {known})",
                file=sys.stderr,
            )
            status = 1
            continue
        try:
            paths = plot_study(runs, traces, out, name)
            # runs with phases: the trade-off figures too (two settings or more)
            paths += plot_tradeoff(results, name, out, runs)
        except ValueError as error:
            print(f"figures: {error}", file=sys.stderr)
            status = 1
            continue
        for path in paths:
            print(path)
    return status
