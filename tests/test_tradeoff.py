"""studies/make_tradeoff.py and the trade-off figures of ``diffrnn figures``, on a tiny store.

The two trade-off studies are shrunk to 2 seeds, a few conditions, two deletion orders and
3,000 cycles (same names, the same condition structure: ``published`` and
``<parameter>_<level>`` sweeps crossed with ``deletion_order`` x ``inherit_deleted``). The
report's numbers are checked against medians computed here, independently, from
``engine.metrics.adaptability`` and the store.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from engine import RunConfig, store
from engine.cli import main as diffrnn
from engine.metrics import adaptability
from engine.tasks import entropy_floor

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "studies" / "make_tradeoff.py"
CYCLES = 3000

GRID = """
[grid]
deletion_order = ["random", "weakest"]
inherit_deleted = [false, true]
"""
STUDIES = {
    "tradeoff-multiplier": """
[params]
criterion = "multiplier"
log_every = 100
{grid}
[[conditions]]
name = "published"
[[conditions]]
name = "delete_prob_1.0"
delete_prob = 1.0
[[conditions]]
name = "keep_below_0"
keep_below = 0
[[conditions]]
name = "keep_below_4"
keep_below = 4
""",
    "tradeoff-outgoing": """
[params]
criterion = "outgoing"
log_every = 100
{grid}
[[conditions]]
name = "published"
[[conditions]]
name = "weight_penalty_1e-3"
weight_penalty = 1e-3
[[conditions]]
name = "keep_below_4"
keep_below = 4
""",
    # any phased study: two settings, hard then easy, no grid
    "phased-demo": """
task = "hard-easy"
[params]
log_every = 100
[[conditions]]
name = "published"
[[conditions]]
name = "keep_below_3"
keep_below = 3
""",
}
METHOD = {"first (multiplier)": "multiplier", "later (outgoing)": "outgoing"}
TRADEOFF = ("tradeoff-multiplier", "tradeoff-outgoing")


@pytest.fixture(scope="module")
def design(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("design")
    for name, body in STUDIES.items():
        task = "" if "task =" in body else 'task = "easy-hard-easy"\n'
        head = f'name = "{name}"\n{task}cycles = {CYCLES}\nseeds = 2\n'
        (root / f"{name}.toml").write_text(head + body.replace("{grid}", GRID))
    return root


@pytest.fixture(scope="module")
def results(design, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "results"
    for name in STUDIES:
        args = ["study", str(design / f"{name}.toml"), "--jobs", "1", "--backend", "threading"]
        assert diffrnn([*args, "--out", str(out), "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def report(results, design, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("report") / "TRADEOFF.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(results), "--out", str(out), "--design", str(design)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return out.read_text(), out.parent / "figures"


def load_script():
    if "make_tradeoff" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_tradeoff", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_tradeoff"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["make_tradeoff"]


@pytest.fixture(scope="module")
def per_run(results) -> pd.DataFrame:
    """adaptability's rows with the variant columns of the runs table."""
    metrics = adaptability(results, list(TRADEOFF))
    runs = store.load_runs(results, study=list(TRADEOFF))
    columns = ["study", "run_id", "deletion_order", "inherit_deleted", "seq_len"]
    return metrics.merge(runs[columns], on=["study", "run_id"])


@pytest.fixture(scope="module")
def medians(per_run) -> pd.DataFrame:
    """Per setting: plain medians over seeds (NaN shrinkage left out), independently."""
    keys = ["criterion", "condition", "deletion_order", "inherit_deleted"]
    rows = []
    for key, part in per_run.groupby(keys):
        row = dict(zip(keys, key))
        row["runs"] = len(part)
        for metric in ("hard_excess", "shrinkage", "n_phase2", "n_phase3"):
            values = part[metric].to_numpy(float)
            values = values[np.isfinite(values)]
            row[metric] = float(np.median(values)) if values.size else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def table_rows(text: str, after: str) -> list[list[str]]:
    """The cells of the first Markdown table after the line that contains ``after``."""
    lines = text[text.index(after) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def setting_of(method: str, condition: str, variant: str) -> tuple:
    parts = variant.split(", ")
    return (METHOD[method], condition.strip("`"), parts[0], "inherit_deleted" in parts[1:])


def non_dominated(medians: pd.DataFrame) -> set[tuple]:
    """Settings no other beats on both shrinkage (high) and hard_excess (low)."""
    points = medians.dropna(subset=["shrinkage", "hard_excess"])
    out = set()
    for _, a in points.iterrows():
        beaten = any(
            b["shrinkage"] >= a["shrinkage"]
            and b["hard_excess"] <= a["hard_excess"]
            and (b["shrinkage"] > a["shrinkage"] or b["hard_excess"] < a["hard_excess"])
            for _, b in points.iterrows()
        )
        if not beaten:
            out.add((a["criterion"], a["condition"], a["deletion_order"], a["inherit_deleted"]))
    return out


# -- the report ---------------------------------------------------------------------------------
def test_sections_and_figures(report):
    text, figures = report
    assert "do not edit by hand" in text
    titles = re.findall(r"^## (.+)$", text, flags=re.M)
    assert [t.split(":")[0].split(",")[0] for t in titles] == [
        "Design",
        "Run lengths",
        "What is stored",
        "Reproduce",
        "The Pareto front",
        "How each parameter and each variant moves each metric",
        "The paper's question",
        "The smallest network that reaches the paper's losses",
        "Every setting",
    ]
    for stem in ("tradeoff-pareto", "tradeoff-sweeps", "tradeoff-settling"):
        png, svg = figures / f"{stem}.png", figures / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in svg.read_bytes()[:2000]
        assert f"(figures/{stem}.png)" in text
    assert "diffrnn study" in text and "make_tradeoff.py" in text
    assert "Spearman" in text and "bootstrap 95% interval" in text
    assert re.search(r"\*\*Answer: (yes|no)\.\*\*", text)
    # a one-factor design against the alternatives, counted from the design files
    assert "3^2 x 4 x 2 = 72 points" in text


def test_front_settings_are_non_dominated(report, medians):
    text, _ = report
    rows = table_rows(text, "setting(s) on the front over both methods")
    listed = {setting_of(r[1], r[2], r[3]) for r in rows}
    assert listed == non_dominated(medians)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    # each method's own front too
    own = table_rows(text, "Each method's own front")
    expected = set()
    for criterion in ("multiplier", "outgoing"):
        expected |= non_dominated(medians[medians["criterion"] == criterion])
    assert {setting_of(r[0], r[1], r[2]) for r in own} == expected


def test_numbers_equal_the_store(report, medians, per_run, results):
    text, _ = report
    rows = table_rows(section(text, "Every setting"), "Median [inter-quartile range]")
    assert len(rows) == len(medians)
    by_setting = {
        (r["criterion"], r["condition"], r["deletion_order"], r["inherit_deleted"]): r
        for _, r in medians.iterrows()
    }
    for row in rows:
        expected = by_setting[setting_of(row[0], row[1], row[2])]
        assert int(row[3]) == expected["runs"]
        assert row[4].split(" [")[0] == f"{100 * expected['hard_excess']:.1f}%"
        assert row[8].split(" [")[0] == f"{expected['n_phase2']:g}"
        assert row[9].split(" [")[0] == f"{expected['n_phase3']:g}"
    # what is stored
    stored = table_rows(text, "## What is stored")
    runs = store.load_runs(results, study=list(TRADEOFF))
    sessions = store.load_sessions(results)
    minutes = load_script().minutes
    for row in stored:
        study = row[0].strip("`")
        assert (
            int(row[1].replace(",", ""))
            == (runs["study"] == study).sum()
            == 32 - 8 * (study == "tradeoff-outgoing")
        )
        assert row[6] == minutes(sessions.loc[sessions["study"] == study, "wall_seconds"].sum())
    # the paper setting's hard-phase loss: floor x (1 + median hard_excess), per 40 characters
    for criterion, short in (
        ("multiplier", "first (multiplier)"),
        ("outgoing", "later (outgoing)"),
    ):
        ref = by_setting[(criterion, "published", "random", False)]
        floor = entropy_floor("hard", RunConfig(criterion=criterion))
        loss = floor * (1 + ref["hard_excess"])
        assert f"- {short}: paper setting's hard-phase loss {loss:.2f} " in text


def test_level_medians_and_correlations(report, per_run):
    text, _ = report
    rows = table_rows(text, "Medians per level")
    keep = [r for r in rows if r[0] == "first (multiplier)" and r[1] == "`keep_below`"]
    assert [r[2] for r in keep] == ["0", "**1**", "4"]  # the published level in bold
    mine = per_run[per_run["criterion"] == "multiplier"]
    published = mine[mine["condition"] == "published"]
    assert keep[1][3] == str(len(published))
    assert keep[1][8] == f"{np.median(published['n_phase2']):g}"
    # keep_below 0 leaves no reserve: the runs stay tiny, so N rises with keep_below
    rho = table_rows(text, "Spearman's rank correlation")
    row = next(r for r in rho if r[0] == "first (multiplier)" and r[1] == "`keep_below`")
    value, low, high = map(float, re.findall(r"[+-]\d\.\d\d", row[7]))
    assert low <= value <= high and value > 0


def test_spearman_and_bootstrap_are_reproducible():
    module = load_script()
    levels = np.repeat([1.0, 2.0, 3.0], 4)
    keys = np.repeat(["a", "b", "c"], 4)
    assert module.spearman(levels, levels * 10, keys, "x") == (1.0, 1.0, 1.0, 12)
    noisy = levels + np.random.default_rng(1).normal(0, 1, levels.size)
    first = module.spearman(levels, noisy, keys, "y")
    assert first == module.spearman(levels, noisy, keys, "y")
    assert first[1] <= first[0] <= first[2]


def test_question_intervals_and_capacity_note_by_hand():
    """A setting whose every seed has the same values has intervals of zero width; a noisy
    one's straddle its median; runs at capacity - 1 neurons are named."""
    module = load_script()

    def runs(condition, excess, shrinkage, n_hard):
        return pd.DataFrame(
            dict(
                criterion="outgoing",
                condition=condition,
                deletion_order="random",
                inherit_deleted=False,
                hard_excess=excess,
                shrinkage=shrinkage,
                n_phase2=n_hard,
                capacity=100,
            )
        )

    frame = pd.concat(
        [
            runs("published", [0.5] * 6, [0.8] * 6, [40] * 6),
            runs("same", [0.5] * 6, [0.6] * 6, [40] * 6),
            runs("noisy", [0.2, 0.4, 0.5, 0.6, 0.8, 1.0], [0.1, 0.4, 0.6, 0.7, 0.9, 1.0], 99),
        ],
        ignore_index=True,
    )
    ref, same, noisy = (
        frame[frame["condition"] == c].iloc[0] for c in ("published", "same", "noisy")
    )
    assert module.setting_intervals(frame, same, ref, "t") == pytest.approx((1.0, 0.6, 0.6))
    upper, low, high = module.setting_intervals(frame, noisy, ref, "t")
    median_ratio = np.median(1 + np.array([0.2, 0.4, 0.5, 0.6, 0.8, 1.0])) / 1.5
    assert upper > median_ratio and low < 0.65 < high
    assert (upper, low, high) == module.setting_intervals(frame, noisy, ref, "t")
    data = module.Data({}, pd.DataFrame(), frame, pd.DataFrame(), pd.DataFrame())
    (note, _blank) = module.capacity_note(data)
    assert note.startswith("Capacity: 6 of 18 runs") and "`noisy` (6)" in note
    assert "`same`" not in note and "99 neurons" in note


def test_one_study_stored(results, design, tmp_path):
    partial = tmp_path / "results"
    shutil.copytree(results, partial)
    for dataset in partial.iterdir():
        shutil.rmtree(dataset / "study=tradeoff-outgoing", ignore_errors=True)
    out = tmp_path / "TRADEOFF.md"
    argv = [str(partial), "--out", str(out), "--design", str(design)]
    assert load_script().main(argv) == 0
    text = out.read_text()
    stored = {r[0]: r for r in table_rows(text, "## What is stored")}
    assert stored["`tradeoff-multiplier`"][1] == "32"
    assert stored["`tradeoff-outgoing`"][1] == "0"
    assert stored["`tradeoff-outgoing`"][2] == "24"  # planned, from the design file
    every = table_rows(section(text, "Every setting"), "Median [inter-quartile range]")
    assert len(every) == 16 and {r[0] for r in every} == {"first (multiplier)"}
    assert "later (outgoing)" not in section(text, "The paper's question")
    assert (tmp_path / "figures" / "tradeoff-pareto.svg").exists()


# -- diffrnn figures on any phased study ----------------------------------------------------------
def test_figures_command_draws_the_tradeoff_figures(results, tmp_path, capsys):
    out = tmp_path / "figs"
    assert diffrnn(["figures", str(results), "--study", "phased-demo", "--out", str(out)]) == 0
    names = sorted(Path(p).name for p in capsys.readouterr().out.split())
    stems = ("by-condition", "by-setting", "pareto", "sweeps")
    assert names == sorted(f"phased-demo-{s}.{f}" for s in stems for f in ("png", "svg"))
    svg = (out / "phased-demo-pareto.svg").read_text()
    assert "pareto:None" in svg  # the settings' points


def texts_outside(fig) -> list[str]:
    """Titles, labels, legend entries and annotations that leave the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    texts = [*fig.texts, *(t for legend in fig.legends for t in legend.get_texts())]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        texts += [c for c in ax.get_children() if isinstance(c, matplotlib.text.Annotation)]
        if ax.get_legend():
            texts += ax.get_legend().get_texts()
    outside = []
    for text in texts:
        if not (text.get_visible() and text.get_text()):
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5:
            outside.append(text.get_text())
    return outside


def test_every_title_and_label_fits(results):
    from engine import plots, plots_tradeoff

    metrics = adaptability(results, "phased-demo")
    runs = store.load_runs(results, study="phased-demo")
    frame = plots_tradeoff.tradeoff_frame(metrics, runs)
    figures = plots_tradeoff.draw_tradeoff(frame, "phased-demo")
    traces = store.load_traces(results, study="phased-demo")
    figures += plots.draw_study(runs[runs["condition"] == "published"], traces, "phased-demo")
    assert len(figures) == 4
    for stem, fig in figures:
        assert texts_outside(fig) == [], stem


def test_pareto_front_by_hand():
    from engine.plots_tradeoff import pareto_front, pareto_rows

    summary = pd.DataFrame(
        {
            "setting": list("abcdef"),
            "shrinkage_median": [0.1, 0.5, 0.5, 0.9, math.nan, 0.2],
            "hard_excess_median": [0.10, 0.20, 0.25, 0.40, 0.01, 0.10],
        }
    )
    # c is beaten by b, a by f (same loss, more shrinkage); e has no shrinkage
    assert list(pareto_front(summary)) == [False, True, False, True, False, True]
    assert list(pareto_rows(summary)["setting"]) == ["f", "b", "d"]
