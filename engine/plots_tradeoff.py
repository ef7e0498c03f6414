"""The trade-off figures of a study whose runs have phases (easy-hard-easy, hard-easy, any
schedule), drawn from the adaptability metrics of each run (``engine.metrics``), a setting
being a condition and grid point:

- ``NAME-pareto``: the hard-phase loss above its floor against the shrinkage, a point per
  setting (median, inter-quartile ranges as bars), the Pareto front in black;
- ``NAME-by-setting``: every metric per setting (median and inter-quartile range);
- ``NAME-sweeps``, when its conditions are one-factor sweeps around a ``published`` one
  (``<field>_<level>``): each metric against each parameter's level, and each grid point;
- ``NAME-settling``: how long each phase takes to settle, against its length.

The points come from ``engine.tradeoff`` (:func:`setting_summary`, the sweeps, the
settling fractions: the data, apart from the drawing and re-exported here), so they can
be checked against the store.
``diffrnn figures`` draws them beside the paper's figures (``engine.plots``), whose
grouping and text-fitting helpers they share. Matplotlib through its Agg canvas only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter, MaxNLocator

from .plots import (
    FORMATS,
    fit_text,
    group_labels,
    ok_runs,
    sort_runs,
    text_width,
)
from .tradeoff import (  # noqa: F401 (the data of the figures, re-exported)
    PUBLISHED,
    TRADEOFF_METRICS,
    _families,
    pareto_front,
    pareto_rows,
    setting_summary,
    settle_fractions,
    sweep_runs,
    sweep_summary,
    tradeoff_frame,
    tradeoff_metrics,
    variant_columns,
    variant_label,
    variant_summary,
)

PERCENT_METRICS = ("hard_excess", "shrinkage", "easy_excess")


METRIC_TEXT = {
    "hard_excess": "hard-phase loss above its floor",
    "shrinkage": "shrinkage (share of the hard-phase growth given back)",
    "growth": "growth during the hard phase (neurons)",
    "easy_excess": "last-phase loss above its floor",
}


FAMILY_STYLES = (
    ("tab:blue", "o"),
    ("tab:orange", "^"),
    ("tab:green", "s"),
    ("tab:purple", "D"),
    ("tab:brown", "v"),
    ("tab:pink", "P"),
)


def metric_text(name: str) -> str:
    """A metric's axis label: what it measures, in words."""
    if name in METRIC_TEXT:
        return METRIC_TEXT[name]
    if name.startswith("n_phase"):
        return f"neurons, end of phase {name[len('n_phase') :]}"
    if name.startswith("recovery_cycles_"):
        return f"cycles to settle after switch {name[len('recovery_cycles_') :]}"
    return name


def _family_styles(values: Sequence) -> dict:
    return {v: FAMILY_STYLES[i % len(FAMILY_STYLES)] for i, v in enumerate(values)}


class _Percent(Formatter):
    """Fractions as percentages, with as many decimals as the tick step needs (5% steps:
    none; 2.5% steps: one), the same for every tick of the axis."""

    _ticks = np.zeros(0)

    def set_locs(self, locs) -> None:
        # kept here: the base class' ``locs`` attribute is deprecated
        self._ticks = np.asarray(locs, dtype=float)

    def __call__(self, x: float, pos: int | None = None) -> str:
        ticks = self._ticks
        step = float(np.min(np.diff(np.sort(ticks)))) if ticks.size > 1 else 1.0
        digits = next((d for d in range(5) if abs(round(100 * step, d) - 100 * step) < 1e-6), 4)
        return f"{100 * x:.{digits}f}%"


def _percent_axis(ax, axis: str) -> None:
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(_Percent())


def _span(values: np.ndarray, pad: float = 0.08) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    low, high = float(values.min()), float(values.max())
    width = high - low if high > low else max(abs(high), 1e-3)
    return low - pad * width, high + pad * width


# -- drawing -----------------------------------------------------------------------------
def draw_pareto(
    summary: pd.DataFrame,
    name: str,
    *,
    label: str = "setting",
    family: str | None = None,
    references: dict | None = None,
    loss_margin: float = 0.05,
    shrink_target: float = 0.5,
) -> Figure:
    """Hard-phase loss (``hard_excess``, low is good) against ``shrinkage`` (high is good):
    a point per row of ``summary`` (``setting_summary``) at its medians, inter-quartile
    ranges as error bars, one colour and marker per ``family`` value; the Pareto front in
    black, its points numbered as in :func:`pareto_rows`. ``references`` maps a family
    value to the ``label`` of its reference setting: drawn as a star, with the loss
    ``loss_margin`` above its loss (``(1 + e)(1 + margin) - 1``) as a dashed line, and
    ``shrink_target`` as a dotted vertical line."""
    fig = Figure(figsize=(8.6, 7.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x, y = "shrinkage", "hard_excess"
    families = _families(summary, family)
    styles = _family_styles(families)
    plotted = summary[
        np.isfinite(summary[f"{x}_median"].to_numpy(dtype=float))
        & np.isfinite(summary[f"{y}_median"].to_numpy(dtype=float))
    ]
    for value in families:
        part = plotted if value is None else plotted[plotted[family] == value]
        if part.empty:
            continue
        color, marker = styles[value]
        xm, ym = part[f"{x}_median"].to_numpy(float), part[f"{y}_median"].to_numpy(float)
        container = ax.errorbar(
            xm,
            ym,
            xerr=[xm - part[f"{x}_q25"].to_numpy(float), part[f"{x}_q75"].to_numpy(float) - xm],
            yerr=[ym - part[f"{y}_q25"].to_numpy(float), part[f"{y}_q75"].to_numpy(float) - ym],
            fmt=marker,
            color=color,
            markersize=4.5,
            alpha=0.75,
            ecolor=color,
            elinewidth=0.6,
            capsize=0,
            label=f"{family} = {value}" if value is not None else "setting",
            zorder=3,
        )
        container.lines[0].set_gid(f"pareto:{value}")
    front = pareto_rows(summary)
    if len(front):
        fx, fy = front[f"{x}_median"].to_numpy(float), front[f"{y}_median"].to_numpy(float)
        order = np.argsort(fx, kind="stable")
        (line,) = ax.plot(
            fx[order], fy[order], color="black", linewidth=1.2, zorder=4, label="Pareto front"
        )
        line.set_gid("pareto-front")
        ax.scatter(fx, fy, s=70, facecolors="none", edgecolors="black", linewidths=1.4, zorder=5)
        for rank, px, py in zip(front["front_rank"], fx, fy):
            ax.annotate(
                str(rank),
                (px, py),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=8,
                zorder=6,
            )
    bounds = []
    for value, ref_label in (references or {}).items():
        rows = summary[summary[label] == ref_label]
        if family is not None and family in summary.columns:
            rows = rows[rows[family] == value]
        if rows.empty:
            continue
        ref = rows.iloc[0]
        color, _marker = styles.get(value, ("black", "o"))
        ax.scatter(
            [ref[f"{x}_median"]],
            [ref[f"{y}_median"]],
            marker="*",
            s=260,
            color=color,
            edgecolors="black",
            linewidths=0.8,
            zorder=7,
            label=f"{value}: reference, {ref_label}" if value is not None else ref_label,
        )
        if math.isfinite(ref[f"{y}_median"]):
            bound = (1 + ref[f"{y}_median"]) * (1 + loss_margin) - 1
            bounds.append(bound)
            ax.axhline(
                bound,
                color=color,
                linestyle="--",
                linewidth=1.0,
                zorder=2,
                label=(f"{value}: " if value is not None else "")
                + f"{100 * loss_margin:g}% above the reference's hard-phase loss",
            )
    if references:
        ax.axvline(
            shrink_target,
            color="0.3",
            linestyle=":",
            linewidth=1.2,
            zorder=2,
            label=f"shrinkage {100 * shrink_target:g}%",
        )
    xs = plotted[f"{x}_median"].to_numpy(float)
    ys = np.concatenate([plotted[f"{y}_median"].to_numpy(float), np.array(bounds, float)])
    if references:
        xs = np.concatenate([xs, [shrink_target]])
    # limits from the medians (and guides): a few wide IQRs would squash every point
    for setter, span in ((ax.set_xlim, _span(xs)), (ax.set_ylim, _span(ys))):
        if span is not None:
            setter(*span)
    _percent_axis(ax, "x")
    _percent_axis(ax, "y")
    ax.set_xlabel(fit_text(f"{metric_text(x)}: higher is better", 7.6, 10), fontsize=10)
    ax.set_ylabel(fit_text(f"{metric_text(y)}: lower is better", 5.4, 10), fontsize=10)
    ax.grid(True, color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)
    handles, texts = ax.get_legend_handles_labels()
    if handles:
        # the points first, then the front, then each family's reference and bound
        kinds = [0 if isinstance(h, ErrorbarContainer) else 1 for h in handles]
        order = sorted(range(len(handles)), key=lambda i: (kinds[i], i))
        fig.legend(
            [handles[i] for i in order],
            [fit_text(texts[i], 3.6, 8) for i in order],
            loc="outside lower center",
            ncols=2,
            fontsize=8,
            framealpha=0.9,
        )
    fig.suptitle(
        fit_text(
            f"{name}: hard-phase loss against shrinkage, one point per setting "
            f"({len(plotted)} of {len(summary)} with growth): median over seeds, "
            "inter-quartile ranges as bars; the Pareto front in black",
            8.2,
            11,
        ),
        fontsize=11,
    )
    return fig


def draw_setting_metrics(
    summary: pd.DataFrame,
    name: str,
    *,
    label: str = "setting",
    family: str | None = None,
    metrics: Sequence[str] | None = None,
) -> Figure:
    """Every metric per setting: a row per setting (top to bottom in ``summary``'s order),
    a panel per metric, the median as a point and the inter-quartile range as a bar."""
    metrics = [m for m in (metrics or TRADEOFF_METRICS) if f"{m}_median" in summary.columns]
    labels = [str(v) for v in summary[label]]
    label_width = max((text_width(t, 7) for t in labels), default=1.0)
    panel = 2.1
    width = label_width + 0.6 + panel * max(1, len(metrics))
    height = 1.9 + 0.15 * max(len(labels), 4)
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(metrics)), sharey=True, squeeze=False)[0]
    families = _families(summary, family)
    styles = _family_styles(families)
    positions = np.arange(len(labels))[::-1]  # the first setting on top
    colors = [
        styles[v][0]
        for v in (summary[family] if family in summary.columns else [None] * len(labels))
    ]
    for ax, metric in zip(axes, metrics):
        median = summary[f"{metric}_median"].to_numpy(float)
        ax.hlines(
            positions,
            summary[f"{metric}_q25"].to_numpy(float),
            summary[f"{metric}_q75"].to_numpy(float),
            colors=colors,
            linewidth=1.2,
            alpha=0.6,
        )
        points = ax.scatter(median, positions, c=colors, s=12, zorder=3)
        points.set_gid(f"setting-metric:{metric}")
        if metric in PERCENT_METRICS:
            _percent_axis(ax, "x")
        ax.set_title(fit_text(metric_text(metric), panel - 0.15, 9), fontsize=9)
        ax.grid(True, axis="x", color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # narrow panels: few labels
    axes[0].set_yticks(positions, labels, fontsize=7)
    axes[0].set_ylim(-0.8, len(labels) - 0.2)
    if family is not None and family in summary.columns and len(families) > 1:
        handles = [
            Line2D([], [], color=c, marker="o", linestyle="", label=f"{family} = {v}")
            for v, (c, _m) in styles.items()
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle(
        fit_text(
            f"{name}: adaptability metrics per setting (median over seeds, bar: "
            "inter-quartile range)",
            width - 0.4,
            11,
        ),
        fontsize=11,
    )
    return fig


def _log_levels(levels: np.ndarray) -> bool:
    levels = levels[np.isfinite(levels)]
    return bool(levels.size) and bool((levels > 0).all()) and levels.max() / levels.min() >= 10


def draw_sweeps(
    sweeps: pd.DataFrame,
    variants: pd.DataFrame,
    name: str,
    *,
    family: str | None = None,
    metrics: Sequence[str] | None = None,
    parameters: Sequence[str] | None = None,
) -> Figure:
    """Small multiples: a row per metric, a column per swept parameter (median against
    level, one line per family, the inter-quartile range shaded, the published level as a
    star) and a last column for the grid's variants (``variant_summary``)."""
    metrics = [m for m in (metrics or TRADEOFF_METRICS) if f"{m}_median" in sweeps.columns]
    if parameters is None:
        parameters = list(dict.fromkeys(sweeps["parameter"])) if len(sweeps) else []
    columns = [*parameters, *(["variants"] if len(variants) else [])]
    panel_w, panel_h = 2.5, 1.75
    # at least room for a readable title above a single column
    width = max(6.0, panel_w * max(1, len(columns)) + 1.0)
    fig = Figure(figsize=(width, panel_h * max(1, len(metrics)) + 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    # a column shares its x axis (levels, or variants), a row its metric's y axis
    axes = fig.subplots(
        max(1, len(metrics)), max(1, len(columns)), sharex="col", sharey="row", squeeze=False
    )
    families = list(
        dict.fromkeys(
            value for part in (sweeps, variants) if len(part) for value in _families(part, family)
        )
    ) or [None]
    styles = _family_styles(families)
    variant_order = list(dict.fromkeys(variants["variant"])) if len(variants) else []
    for row, metric in enumerate(metrics):
        for col, column in enumerate(columns):
            ax = axes[row, col]
            for value in families:
                color, marker = styles[value]
                if column == "variants":
                    part = variants if value is None else variants[variants[family] == value]
                    x = np.array([variant_order.index(v) for v in part["variant"]], float)
                else:
                    part = sweeps[sweeps["parameter"] == column]
                    part = part if value is None else part[part[family] == value]
                    part = part.sort_values("level")
                    x = part["level"].to_numpy(float)
                if part.empty:
                    continue
                median = part[f"{metric}_median"].to_numpy(float)
                ax.fill_between(
                    x,
                    part[f"{metric}_q25"].to_numpy(float),
                    part[f"{metric}_q75"].to_numpy(float),
                    color=color,
                    alpha=0.15,
                    linewidth=0,
                )
                (line,) = ax.plot(
                    x,
                    median,
                    color=color,
                    marker=marker,
                    markersize=3.5,
                    linewidth=1.3,
                    label=f"{family} = {value}" if value is not None else "median",
                )
                line.set_gid(f"sweep:{metric}:{column}:{value}")
                if column != "variants":
                    centre = part["published"].to_numpy(bool)
                    ax.scatter(
                        x[centre],
                        median[centre],
                        marker="*",
                        s=90,
                        color=color,
                        edgecolors="black",
                        linewidths=0.5,
                        zorder=4,
                        label="published level" if value == families[0] else None,
                    )
            if column == "variants" and row == len(metrics) - 1:
                ax.set_xticks(range(len(variant_order)), variant_order)
                ax.tick_params(axis="x", labelrotation=60, labelsize=7)
                for tick in ax.get_xticklabels():
                    tick.set_horizontalalignment("right")
                    tick.set_rotation_mode("anchor")
            elif column != "variants":
                levels = sweeps.loc[sweeps["parameter"] == column, "level"].to_numpy(float)
                if _log_levels(levels):
                    ax.set_xscale("log")
                ax.tick_params(axis="x", labelsize=7)
            ax.tick_params(axis="y", labelsize=7)
            if metric in PERCENT_METRICS:
                _percent_axis(ax, "y")
            ax.grid(True, color="0.9", linewidth=0.8)
            ax.set_axisbelow(True)
            if row == 0:
                title = "variant (every condition)" if column == "variants" else column
                ax.set_title(fit_text(title, panel_w - 0.2, 9), fontsize=9)
            if row == len(metrics) - 1 and column != "variants":
                ax.set_xlabel("level", fontsize=8)
        axes[row, 0].set_ylabel(fit_text(metric_text(metric), panel_h - 0.1, 8), fontsize=8)
    handles, texts = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, texts, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle(
        fit_text(
            f"{name}: each metric's median (line) and inter-quartile range (band) over runs, "
            "against each swept parameter's level (the others at their published values"
            + (
                ", pooled over the variants) and against each variant (pooled over the conditions)"
                if len(variants)
                else ")"
            ),
            width - 0.4,
            11,
        ),
        fontsize=11,
    )
    return fig


def draw_settling(frame: pd.DataFrame, name: str, *, family: str | None = None) -> Figure:
    """Empirical distribution of the cycles to settle after each switch, as a share of the
    phase they settle in: a line per family and switch; the last 10% (where the phase's
    final value is measured) shaded."""
    from .metrics import TAIL

    shares = settle_fractions(frame)
    fig = Figure(figsize=(7.6, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    families = _families(frame, family)
    styles = _family_styles(families)
    dashes = ("-", "--", ":", "-.")
    for value in families:
        ids = frame["run_id"] if value is None else frame.loc[frame[family] == value, "run_id"]
        mine = shares[shares["run_id"].isin(set(ids))] if len(shares) else shares
        for switch in sorted(set(mine["switch"])) if len(mine) else []:
            part = mine[mine["switch"] == switch]
            values = np.sort(part["fraction"].to_numpy(float))
            if not values.size:
                continue
            reached = np.arange(1, values.size + 1) / values.size  # NaN (never) sort last
            finite = np.isfinite(values)
            color, _marker = styles[value]
            (line,) = ax.step(
                np.concatenate([[0.0], values[finite]]),
                np.concatenate([[0.0], reached[finite]]),
                where="post",
                color=color,
                linestyle=dashes[(switch - 1) % len(dashes)],
                linewidth=1.6,
                label=(f"{family} = {value}, " if value is not None else "")
                + f"after switch {switch} ({len(part)} runs)",
            )
            line.set_gid(f"settle:{value}:{switch}")
    ax.axvspan(1 - TAIL, 1.0, color="0.85", zorder=0, label="the phase's last 10%")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    _percent_axis(ax, "x")
    _percent_axis(ax, "y")
    ax.set_xlabel(
        fit_text(
            "cycles after the switch until the mean loss is within 5% of the phase's final "
            "value, as a share of the phase",
            7.0,
            10,
        ),
        fontsize=10,
    )
    ax.set_ylabel("share of runs settled", fontsize=10)
    ax.grid(True, color="0.9", linewidth=0.8)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.suptitle(
        fit_text(f"{name}: how soon runs settle after each task switch", 7.2, 11), fontsize=11
    )
    return fig


def draw_tradeoff(frame: pd.DataFrame, name: str) -> list[tuple[str, Figure]]:
    """The trade-off figures of a study's phased runs (``tradeoff_frame``): the Pareto
    scatter and the metrics per setting (plus the sweeps when its conditions are
    one-factor sweeps around ``published``); settings are ``group_labels`` (condition and
    grid point). None with fewer than two settings: there is nothing to trade off."""
    if frame.empty:
        return []
    frame = sort_runs(frame)
    frame = frame.assign(setting=group_labels(frame).to_numpy())
    if frame["setting"].nunique() < 2:
        return []
    family = "criterion" if "criterion" in frame and frame["criterion"].nunique() > 1 else None
    keys = ([family] if family else []) + ["setting"]
    summary = setting_summary(frame, keys)
    figures = [
        (f"{name}-pareto", draw_pareto(summary, name, family=family)),
        (f"{name}-by-setting", draw_setting_metrics(summary, name, family=family)),
    ]
    sweeps = sweep_summary(frame, family)
    if len(sweeps):
        variants = variant_summary(frame, family)
        figures.append((f"{name}-sweeps", draw_sweeps(sweeps, variants, name, family=family)))
    return figures


def save_figures(figures: Sequence[tuple[str, Figure]], out_dir: str | Path) -> list[Path]:
    """Write each (stem, figure) as PNG and SVG into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in figures:
        for fmt in FORMATS:
            path = out / f"{stem}.{fmt}"
            fig.savefig(path, dpi=130 if fmt == "png" else None)
            paths.append(path)
            # the layout is settled by the first save: keep it rather than solve it again
            # (seconds for a figure of many panels; the drawing is the same)
            fig.set_layout_engine("none")
    return paths


def plot_tradeoff(
    results: str | Path, name: str, out_dir: str | Path, runs_df: pd.DataFrame | None = None
) -> list[Path]:
    """Draw a study's trade-off figures (``draw_tradeoff``) into ``out_dir``; [] when it has
    fewer than two settings with phased, finished runs."""
    from . import store
    from .metrics import adaptability

    metrics = adaptability(results, name)
    if metrics.empty:
        return []
    runs = runs_df if runs_df is not None else store.load_runs(results, study=name)
    return save_figures(draw_tradeoff(tradeoff_frame(metrics, ok_runs(runs)), name), out_dir)
