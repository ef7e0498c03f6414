"""Figures from a results store: a tiny study through ``diffrnn study`` and ``figures``.

The plotted medians are read back from the figures' lines and compared with medians
computed here, independently, from the store's traces.
"""

from __future__ import annotations

import math
from argparse import Namespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection

from engine import RunConfig, entropy_floor, store
from engine.cli import main as diffrnn
from engine.plots import (
    draw_study,
    group_labels,
    median_curves,
    phases_of,
    plot_study,
    sort_runs,
)

CYCLES = 3000
STUDY = """\
name = "tiny"
task = "hard"
cycles = {cycles}
seeds = 3
[params]
log_every = 100
[[conditions]]
name = "easy"
task = "easy"
[[conditions]]
name = "hard"
[[conditions]]
name = "easy-hard-easy"
task = "easy-hard-easy"
[[conditions]]
name = "fixed-4"
mode = "fixed"
hidden_size = 4
[[conditions]]
name = "fixed-12"
mode = "fixed"
hidden_size = 12
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    study = root / "tiny.toml"
    study.write_text(STUDY.format(cycles=CYCLES))
    code = diffrnn(
        [
            "study",
            str(study),
            "--jobs",
            "1",
            "--backend",
            "threading",
            "--out",
            str(root / "results"),
            "-q",
        ]
    )
    assert code == 0
    return root / "results"


@pytest.fixture(scope="module")
def stored(results):
    runs = store.load_runs(results, study="tiny")
    traces = store.load_traces(results, study="tiny")
    assert len(runs) == 15 and (runs["status"] == "ok").all()
    return runs, traces


def medians_from_store(runs, traces, quantity):
    """Per condition and cycle, the plain median over seeds (independent of engine.plots)."""
    merged = traces.drop(columns=["condition"]).merge(runs[["run_id", "condition"]], on="run_id")
    return {
        name: part.groupby("cycle")[quantity].median() for name, part in merged.groupby("condition")
    }


def median_lines(figures):
    lines = {}
    for _stem, fig in figures:
        for ax in fig.axes:
            for line in ax.get_lines():
                gid = line.get_gid() or ""
                if gid.startswith("median:"):
                    _, quantity, label = gid.split(":", 2)
                    lines.setdefault((quantity, label), []).append(line)
    return lines


def test_figures_command_writes_png_and_svg(results, tmp_path, capsys):
    out = tmp_path / "figs"
    code = diffrnn(["figures", str(results), "--study", "tiny", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.rsplit("/", 1)[-1] for p in printed)
    assert names == [
        "tiny-by-condition.png",
        "tiny-by-condition.svg",
        "tiny-sizes-hard.png",
        "tiny-sizes-hard.svg",
    ]
    for path in printed:
        data = open(path, "rb").read()
        assert len(data) > 10_000
        if path.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert b"<svg" in data[:2000] and b"median:smoothed_loss:hard" in data


def test_plotted_medians_equal_store_medians(stored):
    runs, traces = stored
    lines = median_lines(draw_study(runs, traces, "tiny"))
    # every condition's loss and N medians are drawn; the variable hard run in both figures
    assert {label for _, label in lines} == set(runs["condition"])
    assert len(lines[("smoothed_loss", "hard")]) == 2
    for quantity in ("smoothed_loss", "neurons"):
        expected = medians_from_store(runs, traces, quantity)
        for condition, series in expected.items():
            for line in lines[(quantity, condition)]:
                np.testing.assert_array_equal(line.get_xdata(), series.index.to_numpy())
                np.testing.assert_allclose(line.get_ydata(), series.to_numpy(), rtol=0, atol=1e-12)


def test_median_curves_quartiles_match_numpy(stored):
    runs, traces = stored
    curves = median_curves(runs, traces, by="condition")
    hard = traces[traces["condition"] == "hard"]
    for cycle in (100, 1500, CYCLES):
        values = hard.loc[hard["cycle"] == cycle, "neurons"].to_numpy(dtype=float)
        row = curves[(curves["condition"] == "hard") & (curves["cycle"] == cycle)].iloc[0]
        assert row["runs"] == 3
        assert row["neurons_median"] == np.median(values)
        assert row["neurons_q25"] == pytest.approx(np.percentile(values, 25))
        assert row["neurons_q75"] == pytest.approx(np.percentile(values, 75))


def test_task_switches_and_entropy_floors_are_drawn(stored):
    runs, traces = stored
    figures = dict(draw_study(runs, traces, "tiny"))
    fig = figures["tiny-by-condition"]
    titles = [ax.get_title().splitlines()[0] for ax in fig.axes[:3]]
    assert titles == ["easy", "hard", "easy-hard-easy"]  # the paper's order
    schedule = fig.axes[2]
    switches = sorted(
        line.get_xdata()[0] for line in schedule.get_lines() if line.get_linestyle() == ":"
    )
    assert switches == [1000, 2000]  # easy-hard-easy switches at 1/3 and 2/3 of 3000 cycles
    config = RunConfig()
    floors = []
    for collection in schedule.collections:
        if isinstance(collection, LineCollection) and collection.get_label() != "_nolegend_":
            floors += [(seg[0][0], seg[1][0], seg[0][1]) for seg in collection.get_segments()]
    assert sorted(floors) == [
        (0, 1000, entropy_floor("easy", config)),
        (1000, 2000, entropy_floor("hard", config)),
        (2000, 3000, entropy_floor("easy", config)),
    ]
    assert "nats per 40 characters" in fig.axes[0].get_ylabel()
    assert fig.axes[3].get_ylabel() == "number of neurons N"


def test_fixed_sizes_thin_and_variable_thick_black(stored):
    runs, traces = stored
    fig = dict(draw_study(runs, traces, "tiny"))["tiny-sizes-hard"]
    loss_ax = fig.axes[0]
    widths = {
        line.get_gid().split(":", 2)[2]: (line.get_linewidth(), line.get_color())
        for line in loss_ax.get_lines()
        if (line.get_gid() or "").startswith("median:")
    }
    assert set(widths) == {"hard", "fixed-4", "fixed-12"}
    assert widths["hard"] == (3.0, "black")
    assert widths["fixed-4"][0] < 2 and widths["fixed-12"][0] < 2
    legend = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert "fixed-12 (fixed N = 12)" in legend and "entropy floor" in legend


def test_failed_runs_are_left_out(stored, tmp_path):
    runs, traces = stored
    runs = runs.copy()
    broken = runs.index[runs["condition"] == "hard"][0]
    runs.loc[broken, "status"] = "diverged"
    curves = median_curves(runs, traces, by="condition")
    assert set(curves.loc[curves["condition"] == "hard", "runs"]) == {2}
    paths = plot_study(runs, traces, tmp_path, "tiny")
    assert all(p.stat().st_size > 0 for p in paths)
    with pytest.raises(ValueError, match="no finished runs"):
        plot_study(runs.assign(status="error"), traces, tmp_path, "tiny")


def test_cli_figures_errors(results, tmp_path, capsys):
    from engine.plots import cli_figures

    assert cli_figures(Namespace(results=str(results), study="nope", out=str(tmp_path))) == 1
    assert "no runs" in capsys.readouterr().err
    assert cli_figures(Namespace(results=str(tmp_path), study="tiny", out=str(tmp_path))) == 2
    assert list(tmp_path.iterdir()) == []


def test_group_labels_name_grid_parameters():
    base = dict(task="hard", cycles=1000, mode="variable", hidden_size=1, seed=0)
    runs = pd.DataFrame(
        [
            dict(base, run_id="a", condition="variable", l1_strength=1e-5),
            dict(base, run_id="b", condition="variable", l1_strength=3e-5),
            dict(
                base, run_id="c", condition="fixed", mode="fixed", hidden_size=27, l1_strength=1e-5
            ),
            dict(base, run_id="d", condition=None, l1_strength=3e-5),
        ]
    )
    assert list(group_labels(runs)) == [
        "variable (l1_strength=1e-05)",
        "variable (l1_strength=3e-05)",
        "fixed",
        "hard variable",
    ]
    # variable size before fixed sizes, whatever the stored order
    assert list(sort_runs(runs.iloc[::-1])["run_id"])[-1] == "c"


def test_phases_of_schedule():
    phases = phases_of("easy-hard-easy", 300_000, RunConfig(group_len=5))
    assert [(t, s, e) for t, s, e, _ in phases] == [
        ("easy", 0, 100_000),
        ("hard", 100_000, 200_000),
        ("easy", 200_000, 300_000),
    ]
    assert math.isclose(phases[1][3], 40 * math.log(5) / 7)
