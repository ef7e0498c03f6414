"""The ``diffrnn`` command: run, study, results summary, figures; one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import RunConfig, run, store
from engine.cli import ProgressLine, format_duration, main

JSON_KEYS = {
    "run_id",
    "status",
    "final_loss",
    "final_neurons",
    "cycles",
    "wall_seconds",
    "entropy_floor",
}


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("diffrnn: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_run_json_and_out_as_a_command(tmp_path):
    """The real console entry (python -m engine), as a user runs it."""
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "engine",
        "run",
        "--task",
        "easy",
        "--cycles",
        "3000",
        "--seed",
        "2",
        "--set",
        "log_every=300",
        "--set",
        "delete_prob=0.1",
        "--out",
        str(out),
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert JSON_KEYS <= set(summary)
    assert summary["status"] == "ok" and summary["cycles"] == 3000
    assert summary["entropy_floor"] == pytest.approx(9.61, abs=0.01)
    # stderr is not a terminal here: progress as separate lines, about one per tenth
    progress = [line for line in done.stderr.splitlines() if line.startswith("cycle ")]
    assert 1 <= len(progress) <= 11 and "\r" not in done.stderr
    assert "N " in progress[-1] and "loss " in progress[-1] and "cycles/s" in progress[-1]
    # the three datasets, readable by pandas as they are
    runs = pd.read_parquet(out / "runs")
    assert len(runs) == 1 and str(runs["study"].iloc[0]) == store.ADHOC_STUDY
    assert runs["run_id"].iloc[0] == summary["run_id"]
    assert runs["final_loss"].iloc[0] == summary["final_loss"]
    assert runs["delete_prob"].iloc[0] == 0.1 and runs["task"].iloc[0] == "easy"
    assert len(pd.read_parquet(out / "traces")) == 10
    assert len(pd.read_parquet(out / "events")) >= 1
    # same values as engine.run in this process
    result = run(RunConfig(log_every=300, delete_prob=0.1), "easy", 3000, 2)
    assert result.run_id == summary["run_id"] and result.final_loss == summary["final_loss"]
    np.testing.assert_array_equal(
        store.load_traces(out)["smoothed_loss"], result.traces["smoothed_loss"]
    )


def test_run_twice_stores_once(tmp_path, capsys):
    argv = ["run", "--cycles", "500", "--set", "log_every=100", "--out", str(tmp_path), "-q"]
    assert main(argv) == 0
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "already stored" in captured.err
    assert captured.out.startswith("run ")
    assert len(store.load_runs(tmp_path)) == 1 and len(store.load_traces(tmp_path)) == 5
    assert len(list((tmp_path / "runs").rglob("part-*.parquet"))) == 1


def test_diverged_run_exits_0_and_keeps_its_records(tmp_path, capsys):
    argv = [
        "run",
        "--cycles",
        "2000",
        "--set",
        "learning_rate=1000",
        "--out",
        str(tmp_path),
        "--json",
        "-q",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "diverged" and summary["final_loss"] is None
    assert summary["cycles"] < 2000
    runs = store.load_runs(tmp_path)
    assert list(runs["status"]) == ["diverged"] and "non-finite" in runs["error"].iloc[0]
    assert len(store.load_events(tmp_path)) == 1  # the first neuron's birth


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--set", "foo=1"], "unknown parameter 'foo'"),
        (["--set", "delete_prob=2"], "delete_prob = 2.0 is out of range: allowed [0.0, 1.0]"),
        (["--set", "delete_prob=lots"], "delete_prob = 'lots' has the wrong type"),
        (["--set", "hidden_size=2.5"], "hidden_size = '2.5' has the wrong type"),
        (["--set", "mode=dynamic"], "mode = 'dynamic' is not allowed"),
        (["--set", "delete_prob"], "is malformed: expected name=value"),
        (["--set", "mode=fixed", "--set", "hidden_size=500"], "hidden_size = 500 is out of range"),
        (["--set", "min_multiplier=0.5"], "min_multiplier = 0.5 is out of range"),
        (["--cycles", "0"], "cycles = 0 is out of range"),
        (["--cycles", "many"], "argument --cycles: invalid int value"),
        (["--seed", "-1"], "seed = -1 is out of range"),
        (["--task", "medium"], "task = 'medium' is not allowed"),
        (["--task", "file:/nonexistent/x.txt"], "task file '/nonexistent/x.txt' does not exist"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_run_arguments_give_one_line(argv, expected, capsys):
    assert main(["run", "--cycles", "100", "-q", *argv]) == 2
    captured = capsys.readouterr()
    assert expected in _one_error_line(captured.err) and captured.out == ""


def test_bad_paths_and_commands_give_one_line(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    cases = [
        (["run", "--cycles", "10", "--out", str(afile)], "is not a directory"),
        (["results", "summary", str(tmp_path / "none")], "does not exist"),
        (["figures", str(tmp_path / "none"), "--study", "s", "--out", "f"], "does not exist"),
        (["study", str(afile), "--dry-run"], "malformed TOML"),
        ([], "required"),
        (["nope"], "invalid choice"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        assert expected in _one_error_line(capsys.readouterr().err)


def test_study_dry_run_run_and_summary(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(
        textwrap.dedent("""
        name = "tiny"
        task = "easy"
        cycles = 1000
        seeds = 2
        [params]
        log_every = 250
        [[conditions]]
        name = "variable"
        [[conditions]]
        name = "fixed-4"
        mode = "fixed"
        hidden_size = 4
    """)
    )
    out = tmp_path / "results"
    assert main(["study", str(path), "--out", str(out), "--dry-run", "--jobs", "2"]) == 0
    text = capsys.readouterr().out
    assert "4 runs = 2 conditions x 1 grid point x 2 seeds" in text
    assert "already stored in" in text and ": 0; to run: 4" in text
    assert "estimated time:" in text and "on 2 workers" in text and "us/cycle" in text
    assert not (out / "runs").exists()

    assert (
        main(["study", str(path), "--out", str(out), "--backend", "threading", "--jobs", "2"]) == 0
    )
    captured = capsys.readouterr()
    assert "4 run (4 ok, 0 diverged, 0 error)" in captured.out
    assert "fixed-4" in captured.out and "final_loss_median" in captured.out
    assert "4/4 runs" in captured.err and "runs/min" in captured.err and "left" in captured.err
    assert len(store.load_runs(out)) == 4

    assert main(["study", str(path), "--out", str(out), "--dry-run"]) == 0
    assert ": 4; to run: 0" in capsys.readouterr().out

    assert main(["results", "summary", str(out), "--by", "condition,seed"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["condition", "seed", "n_runs", "n_ok"]
    assert len(table) == 5
    assert main(["results", "summary", str(out), "--by", "nope"]) == 2
    assert "cannot group by 'nope'" in _one_error_line(capsys.readouterr().err)
    assert main(["results", "summary", str(out), "--study", "other"]) == 0
    assert "no runs stored" in capsys.readouterr().out

    assert main(["study", str(path), "--backend", "dask"]) == 2
    assert "needs --scheduler" in _one_error_line(capsys.readouterr().err)
    assert main(["study", str(path), "--backend", "dask", "--scheduler", "nonsense"]) == 2
    assert "is not an address" in _one_error_line(capsys.readouterr().err)
    assert main(["study", str(path), "--jobs", "0"]) == 2
    assert "--jobs" in _one_error_line(capsys.readouterr().err)


def test_figures_hands_its_arguments_to_engine_plots(tmp_path, monkeypatch):
    seen = {}

    def cli_figures(args):
        seen.update(results=args.results, study=args.study, out=args.out)
        return 0

    monkeypatch.setitem(sys.modules, "engine.plots", types.SimpleNamespace(cli_figures=cli_figures))
    assert main(["figures", str(tmp_path), "--study", "demo", "--out", "figs"]) == 0
    assert seen == {"results": str(tmp_path), "study": "demo", "out": "figs"}


def test_progress_line_on_a_terminal_and_in_a_log():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    line = ProgressLine(tty, interval=0.0)
    for i in range(1, 101):
        line.update(f"step {i}", i / 100)
    line.close()
    assert tty.getvalue().count("\r") == 100 and tty.getvalue().endswith("step 100\n")

    log = io.StringIO()
    line = ProgressLine(log)
    for i in range(1, 1001):
        line.update(f"step {i}", i / 1000)
    line.close()
    lines = log.getvalue().splitlines()
    assert lines == ["step 1"] + [f"step {i}" for i in range(100, 1001, 100)]
    assert "\r" not in log.getvalue()

    quiet = io.StringIO()
    line = ProgressLine(quiet, enabled=False)
    line.update("x", 1.0, force=True)
    assert quiet.getvalue() == ""
    assert format_duration(5) == "5.0 s" and format_duration(125) == "2 min 05 s"
    assert format_duration(7300) == "2 h 01 min" and format_duration(None) == "?"


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "diffrnn" in capsys.readouterr().out
    assert main(["study", "--help"]) == 0
    assert "--dry-run" in capsys.readouterr().out


def test_a_study_command_ends_cleanly_and_fast(tmp_path):
    """The console command ends without the interpreter's teardown (os._exit after the exit
    handlers): its output is complete, its worker processes are gone, and joblib's
    semaphores and temporary folders are removed, with no warning about leaked ones."""
    path = tmp_path / "end.toml"
    path.write_text('name = "end"\ntask = "easy"\ncycles = 500\nseeds = 4\n')
    command = [sys.executable, "-m", "engine", "study", str(path), "--jobs", "2"]
    command += ["--out", str(tmp_path / "results")]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    assert "4 run (4 ok, 0 diverged, 0 error)" in out
    assert "final_loss_median" in out  # the summary, flushed before the exit
    assert "leaked" not in err and "Traceback" not in err
    time.sleep(0.5)  # joblib's resource tracker would clean up (and warn) after the exit
    assert not list(Path("/dev/shm").glob(f"joblib_memmapping_folder_{child.pid}_*"))
    assert len(store.load_runs(tmp_path / "results")) == 4
