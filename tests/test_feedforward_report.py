"""studies/make_feedforward.py on a tiny store: the four feedforward studies shrunk to 2
seeds and a few hundred steps (same names and conditions as the study files), the
report's numbers checked against medians computed here from the store."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from engine import store
from engine.metrics import adaptability
from engine.scheduler import parse_study, run_study

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "studies" / "make_feedforward.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_feedforward", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_feedforward"] = module
    spec.loader.exec_module(module)
    return module


def _shrunk(name: str) -> dict:
    """The study file of ``name``, with 2 seeds, short runs (schedules rescaled) and the
    conditions of ``KEPT``."""
    import tomllib

    data = tomllib.loads((ROOT / "studies" / f"{name}.toml").read_text())
    data["seeds"] = 2
    data["cycles"] = 600
    data["params"]["log_every"] = 50
    if "@" in data["task"]:
        data["task"] = "teacher:4x1@0,teacher:32x2@200,teacher:4x1@400"
    kept = []
    for condition in data.get("conditions", []):
        if condition["name"] not in KEPT.get(name, (condition["name"],)):
            continue
        if condition.get("hidden_size", 0) > 16:
            condition["hidden_size"] = 12
        kept.append(condition)
    data["conditions"] = kept
    return data


# the conditions kept of each study (all of ff-ehe): enough for every section's rows
KEPT = {
    "ff-size": ("teacher-2x1", "teacher-8x1", "teacher-8x2"),
    "ff-fixed": ("variable", "width-only", "depth-only", "fixed-4", "fixed-8"),
    "ff-digits": ("variable", "fixed-4"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if sys.version_info < (3, 11):
        pytest.skip("tomllib")
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("ff") / "results"
    for name in ("ff-size", "ff-fixed", "ff-digits", "ff-ehe"):
        run_study(parse_study(_shrunk(name), name), out, jobs=2, backend="threading")
    return out


def test_report_numbers_come_from_the_store(results, tmp_path):
    script = _load_script()
    out = tmp_path / "FEEDFORWARD.md"
    assert script.main([str(results), "--out", str(out), "--figures", str(tmp_path / "f")]) == 0
    text = out.read_text()
    for heading in ("(a) Learned width", "(b) Variable against fixed", "(c) Digits", "(d) Easy"):
        assert heading in text
    assert "## Does the conjecture hold?" in text
    for stem in ("ff-size-learned", "ff-fixed-sizes", "ff-digits-accuracy", "ff-ehe-by-condition"):
        assert (tmp_path / "f" / f"{stem}.png").exists()
        assert f"f/{stem}.png" in text
    runs = store.load_runs(results, "ff-fixed")
    variable = runs[runs["condition"] == "variable"]
    excess = (variable["final_loss"] - variable["entropy_floor"]).median()
    row = re.search(r"^\| variable \| 2 \|.*$", text, re.MULTILINE).group(0)
    assert row.split("|")[-2].strip().startswith(f"{excess:.3f}")
    digits = store.load_runs(results, "ff-digits")
    accuracy = digits[digits["condition"] == "fixed-4"]["test_accuracy"].median()
    section = text[text.index("## (c)") :]
    assert f"{accuracy:.4f}" in re.search(r"^\| fixed-4 \|.*$", section, re.MULTILINE).group(0)
    shrinkage = adaptability(results, "ff-ehe")
    assert len(shrinkage) == 4 and set(shrinkage["condition"]) == {"multiplier", "outgoing"}
    growth = shrinkage[shrinkage["condition"] == "outgoing"]["growth"].median()
    assert f"growth {growth:g} neurons" in text or "did not grow" in text


def test_the_hard_phase_of_a_teacher_schedule_is_its_largest_teacher(results):
    frame = adaptability(results, "ff-ehe")
    runs = store.load_runs(results, "ff-ehe").set_index("run_id")
    for _, row in frame.iterrows():
        floors = runs.loc[row["run_id"], "phase_floors"]
        assert len(floors) == 3 and floors[0] == floors[2]
        assert pd.notna(row["hard_excess"])
