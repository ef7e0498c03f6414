"""studies/make_report.py regenerates REPRODUCTION.md from a (tiny) results store."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine import store
from engine.cli import main as diffrnn

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "studies" / "make_report.py"

# the paper's studies, shrunk to 2 seeds and a few thousand cycles (same names and conditions)
STUDIES = {
    "paper-fig1": """
task = "easy"
[[conditions]]
name = "easy"
[[conditions]]
name = "hard"
task = "hard"
""",
    "paper-fig2": """
task = "hard"
[[conditions]]
name = "variable"
[[conditions]]
name = "fixed-10"
mode = "fixed"
hidden_size = 10
[[conditions]]
name = "fixed-27"
mode = "fixed"
hidden_size = 27
""",
    "paper-fig3": """
task = "easy-hard-easy"
[[conditions]]
name = "easy-hard-easy"
""",
    "paper-hard5": """
task = "hard"
[params]
group_len = 5
log_every = 100
[[conditions]]
name = "hard-5"
""",
    "later-easy-hard": """
[params]
criterion = "outgoing"
log_every = 100
[[conditions]]
name = "easy"
task = "easy"
[[conditions]]
name = "hard"
task = "hard"
""",
    "later-fixed": """
task = "hard"
[params]
criterion = "outgoing"
log_every = 100
[[conditions]]
name = "variable"
[[conditions]]
name = "fixed-20"
mode = "fixed"
hidden_size = 20
[[conditions]]
name = "fixed-37"
mode = "fixed"
hidden_size = 37
""",
    "later-ehe": """
task = "easy-hard-easy"
[params]
criterion = "outgoing"
log_every = 100
[[conditions]]
name = "easy-hard-easy"
""",
    "quickstart": """
task = "easy"
cycles = 1500
[[conditions]]
name = "easy"
""",
}


def make_store(root: Path, names) -> Path:
    results = root / "results"
    for name in names:
        body = STUDIES[name]
        head = f'name = "{name}"\nseeds = 2\n'
        if "cycles =" not in body:
            head += "cycles = 3000\n"
        tail = "" if "[params]" in body else "[params]\nlog_every = 100\n"
        path = root / f"{name}.toml"
        path.write_text(head + body + tail)
        assert (
            diffrnn(
                [
                    "study",
                    str(path),
                    "--jobs",
                    "1",
                    "--backend",
                    "threading",
                    "--out",
                    str(results),
                    "-q",
                ]
            )
            == 0
        )
    return results


def load_script():
    if "make_report" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_report", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_report"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["make_report"]


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("report"), list(STUDIES))


@pytest.fixture(scope="module")
def report(full_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "REPRODUCTION.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(full_store), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    return out, out.read_text()


def table_row(text: str, section: str, first_cell: str) -> list[str]:
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in section {section!r}")


def test_report_has_every_section_and_figure(report):
    out, text = report
    for title in (
        "Figure 1",
        "Figure 2",
        "Figure 3",
        "The hard task: five letters",
        "Study `quickstart`",
        "Wall time",
        "Machine and software",
    ):
        assert f"## {title}" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "figures/paper-fig1-by-condition.png" in links
    assert "figures/paper-fig2-sizes-hard.png" in links
    assert "figures/hard-5-vs-6-letters-by-condition.png" in links
    for link in links:
        png = out.parent / link
        assert png.is_file() and png.stat().st_size > 10_000
    assert "not in the store yet" not in text
    assert "diffrnn study studies/paper-fig3.toml --jobs 2 --out" in text


def test_final_values_come_from_the_store(report, full_store):
    _, text = report
    table = store.summary(full_store, by=["study", "condition"])
    for _, row in table.iterrows():
        if row["study"] == "paper-hard5":
            continue  # reported in the five-letter section
        section = {
            "paper-fig1": "Figure 1",
            "paper-fig2": "Figure 2",
            "paper-fig3": "Figure 3",
            "later-easy-hard": "Later method, Figure 1",
            "later-fixed": "Later method, Figure 2",
            "later-ehe": "Later method, Figure 3",
            "quickstart": "Study `quickstart`",
        }[row["study"]]
        cells = table_row(text, section, f"**{row['condition']}**")
        n = (
            f"{row['final_neurons_median']:g} [{row['final_neurons_q25']:g}–"
            f"{row['final_neurons_q75']:g}]"
        )
        loss = (
            f"{row['final_loss_median']:.2f} [{row['final_loss_q25']:.2f}–"
            f"{row['final_loss_q75']:.2f}]"
        )
        assert cells[5] == n and cells[7] == loss
        assert cells[9] == f"{row['entropy_floor']:.2f}"
        assert cells[3] == f"{row['n_ok']}/{row['n_runs']}"
    # the paper's values sit beside ours
    assert table_row(text, "Figure 1", "**easy**")[6] == "about 6-7"
    assert table_row(text, "Figure 2", "**fixed-27**")[8] == "about 14.5"
    assert table_row(text, "Figure 1", "**hard**")[10].startswith("+")


def test_schedule_phases_and_five_letter_comparison(report):
    _, text = report
    fig3 = text.split("## Figure 3", 1)[1].split("\n## ", 1)[0]
    phases = [line for line in fig3.splitlines() if line.startswith("| **easy-hard-easy** | ")]
    assert [p.split("|")[2].strip() for p in phases[1:]] == ["1: easy", "2: hard", "3: easy"]
    five = text.split("## The hard task", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\| 5 \| 3,000 \| paper-hard5 \| 2 \|", five)
    # paper-fig2's "variable" runs are paper-fig1's "hard" runs (same ids): counted once
    assert re.search(r"\| 6 \| 3,000 \| paper-fig1, paper-fig2 \| 2 \|", five)
    assert (
        "The paper's 9.5 is +3.3% from the five-letter floor and +6.0% from the six-letter" in five
    )
    fig2 = text.split("## Figure 2", 1)[1].split("\n## ", 1)[0]
    assert "- Ours (hard): the best fixed size is" in fig2
    assert (
        "- The paper (hard, the same sizes): the best is 27 (14.5), the poorest 10 (17.7)" in fig2
    )


def test_wall_times_are_summed_from_runs(report, full_store):
    _, text = report
    runs = store.load_runs(full_store)
    script = load_script()
    for study, part in runs.groupby("study"):
        cells = table_row(text, "Wall time", study)
        assert cells[1] == str(len(part))
        assert cells[3] == script.minutes(part["wall_seconds"].sum())


def test_regenerating_gives_the_same_report(report, full_store):
    out, text = report
    script = load_script()
    assert script.main([str(full_store), "--out", str(out)]) == 0
    assert out.read_text() == text


def test_missing_studies_are_named_with_their_command(tmp_path):
    results = make_store(tmp_path, ["quickstart"])
    out = tmp_path / "report" / "REPRODUCTION.md"
    assert load_script().main([str(results), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("not in the store yet") == 6  # three figures of each method
    assert f"diffrnn study studies/paper-fig2.toml --jobs 2 --out {results}" in text
    assert f"diffrnn study studies/later-ehe.toml --jobs 2 --out {results}" in text
    assert "No finished variable-size hard runs in the store" in text
    assert load_script().main([str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_later_method_sections_and_the_two_methods_side_by_side(report, full_store):
    from engine.metrics import adaptability

    _, text = report
    for title in ("Later method, Figure 1", "Later method, Figure 2", "Later method, Figure 3"):
        assert f"## {title}" in text
    # the revised paper's values beside ours, the first method's table untouched
    assert table_row(text, "Later method, Figure 1", "**easy**")[6].startswith("about 14")
    assert "about 13.5-15.5" in table_row(text, "Later method, Figure 2", "**fixed-20**")[8]
    assert "variable network is below every fixed size" in text
    side = text.split("## The two methods side by side", 1)[1].split("\n## ", 1)[0]
    assert table_row(text, "The two methods side by side", "easy")[1] == "first (multiplier)"
    frame = adaptability(full_store, "later-ehe")
    median = frame["n_phase2"].median()
    row = table_row(text, "The two methods side by side", "later (outgoing)")
    assert row[1] == "2" and row[3].startswith(f"{median:.0f} [")
    assert "**Does the network shed neurons once the task is easy again?**" in side
    assert "## Where ours differ from the revised paper, and why" in text
