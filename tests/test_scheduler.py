"""Studies: parsing and validation, expansion, fan-out on every backend, kill and resume."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import ConfigError, RunConfig, run, run_id, store
from engine.cli import main
from engine.costmodel import CostModel
from engine.jit import build_info
from engine.scheduler import (
    AUTO_THREADS_BELOW_SECONDS,
    StudyError,
    choose_backend,
    cost_keys,
    load_study,
    make_batches,
    parse_study,
    plan_study,
    run_batch,
    run_one,
    run_study,
)

REPO = Path(__file__).resolve().parents[1]

SMALL = """
name = "small"
task = "hard"
cycles = 3000
seeds = [0, 5]
[params]
log_every = 500
[grid]
delete_prob = [0.1, 0.25]
[[conditions]]
name = "variable"
[[conditions]]
name = "fixed-8"
mode = "fixed"
hidden_size = 8
[[conditions]]
name = "blowup"
learning_rate = 1000
"""
SMALL_RUNS = 12

KILL = """
name = "kill"
task = "hard"
cycles = 5000
seeds = 16
[params]
log_every = 500
"""


def _write(directory: Path, text: str, name: str = "study.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def _frames(results) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    runs = store.load_runs(results).drop(columns=list(store.TIMING_COLUMNS))
    return runs, store.load_traces(results), store.load_events(results)


def _assert_same(left, right) -> None:
    for a, b in zip(_frames(left), _frames(right), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("study"), SMALL)


@pytest.fixture(scope="module")
def reference(small_file, tmp_path_factory) -> Path:
    """The small study run with threads: the results other backends must equal."""
    out = tmp_path_factory.mktemp("reference")
    report = run_study(load_study(small_file), out, jobs=2, backend="threading")
    assert report.done == SMALL_RUNS
    return out


# -- parsing -------------------------------------------------------------------------------
def test_demo_study_expands_as_documented():
    study = load_study(REPO / "studies" / "demo.toml")
    assert study.name == "demo" and study.conditions == ("variable", "fixed-27")
    assert len(study.specs) == 2 * 2 * 4 and study.seeds == (0, 1, 2, 3)
    for spec in study.specs:
        assert spec.task == "hard" and spec.cycles == 20000
        assert spec.config.delete_prob == 0.25
        assert spec.config.l1_strength in (1e-5, 3e-5)
        assert spec.run_id == run_id(spec.config, spec.task, spec.cycles, spec.seed)
        if spec.condition == "fixed-27":
            assert spec.config.mode == "fixed" and spec.config.hidden_size == 27
        else:
            assert spec.config == RunConfig(delete_prob=0.25, l1_strength=spec.config.l1_strength)
    assert len({s.run_id for s in study.specs}) == 16


def test_conditions_override_task_cycles_and_grid_over_task():
    study = parse_study(
        {
            "name": "x",
            "seeds": [3, 9],
            "cycles": 100,
            "grid": {"task": ["easy", "hard"]},
            "conditions": [{"name": "short", "cycles": 50}, {"name": "long", "seq_len": 20}],
        },
        "x.toml",
    )
    assert len(study.specs) == 8
    assert {(s.condition, s.task, s.cycles) for s in study.specs} == {
        ("short", "easy", 50),
        ("short", "hard", 50),
        ("long", "easy", 100),
        ("long", "hard", 100),
    }
    assert {s.seed for s in study.specs} == {3, 9}
    assert all(s.config.seq_len == 20 for s in study.specs if s.condition == "long")
    default = parse_study({"name": "y", "cycles": 10}, "y.toml")
    assert [(s.condition, s.seed, s.task) for s in default.specs] == [("default", 0, "hard")]


BAD_STUDIES = {
    "malformed": ('name = "x"\ncycles = \n', ["malformed TOML", "line 2"]),
    "unknown key": ('name = "x"\nrepeats = 3\n', ["unknown key 'repeats'", "allowed are"]),
    "missing name": ("cycles = 10\n", ["missing key 'name'"]),
    "bad name": ('name = "my study"\n', ["name", "not allowed"]),
    "unknown param": (
        'name = "x"\n[params]\ndelet_prob = 0.1\n',
        ["[params] unknown parameter 'delet_prob'", "allowed are"],
    ),
    "unknown grid param": ('name = "x"\n[grid]\nl1 = [1, 2]\n', ["[grid] unknown parameter 'l1'"]),
    "unknown condition param": (
        'name = "x"\n[[conditions]]\nname = "c"\nhiden_size = 3\n',
        ["'c'", "unknown parameter 'hiden_size'"],
    ),
    "out of range": (
        'name = "x"\n[params]\ndelete_prob = 1.5\n',
        ["[params] delete_prob = 1.5 is out of range", "allowed [0.0, 1.0]"],
    ),
    "out of range in grid": (
        'name = "x"\n[grid]\nl1_strength = [1e-5, -1.0]\n',
        ["[grid] l1_strength = -1.0 is out of range", "allowed"],
    ),
    "wrong type": (
        'name = "x"\n[params]\nhidden_size = 2.5\n',
        ["hidden_size = 2.5 has the wrong type", "allowed"],
    ),
    "bad choice": (
        'name = "x"\n[[conditions]]\nname = "c"\nmode = "dynamic"\n',
        ["mode = 'dynamic' is not allowed", "variable, fixed"],
    ),
    "cycles type": ('name = "x"\ncycles = "many"\n', ["cycles = 'many'", "[1, 1000000000]"]),
    "cycles range": ('name = "x"\ncycles = 0\n', ["cycles = 0 is out of range"]),
    "combination": (
        'name = "x"\n[[conditions]]\nname = "big"\nhidden_size = 200\n',
        ["condition 'big'", "hidden_size = 200 is out of range", "[1, 99]"],
    ),
    "seeds zero": ('name = "x"\nseeds = 0\n', ["seeds = 0 is out of range", "allowed"]),
    "seeds negative": ('name = "x"\nseeds = -3\n', ["seeds = -3"]),
    "seeds empty": ('name = "x"\nseeds = []\n', ["seeds = [] is empty"]),
    "seeds duplicate": ('name = "x"\nseeds = [1, 1]\n', ["seeds = [1, 1] has duplicates"]),
    "seeds type": ('name = "x"\nseeds = "four"\n', ["seeds = 'four' has the wrong type"]),
    "seeds float": ('name = "x"\nseeds = 2.5\n', ["seeds = 2.5"]),
    "seed negative": ('name = "x"\nseeds = [0, -1]\n', ["seeds: -1 is out of range"]),
    "seed bool": ('name = "x"\nseeds = [true]\n', ["seeds: True is out of range"]),
    "grid not a list": (
        'name = "x"\n[grid]\nl1_strength = 1e-5\n',
        ["[grid] l1_strength", "non-empty list"],
    ),
    "grid empty": ('name = "x"\n[grid]\nl1_strength = []\n', ["non-empty list"]),
    "grid duplicate": ('name = "x"\n[grid]\nseq_len = [20, 20]\n', ["duplicate values"]),
    "grid and params": (
        'name = "x"\n[params]\nseq_len = 20\n[grid]\nseq_len = [10, 20]\n',
        ["[grid] seq_len is also set in [params]"],
    ),
    "grid and condition": (
        'name = "x"\n[grid]\nseq_len = [10, 20]\n[[conditions]]\nname = "c"\nseq_len = 5\n',
        ["seq_len is also in [grid]"],
    ),
    "condition twice": (
        'name = "x"\n[[conditions]]\nname = "c"\n[[conditions]]\nname = "c"\n',
        ["'c' is used twice"],
    ),
    "condition unnamed": ('name = "x"\n[[conditions]]\nseq_len = 5\n', ["has no name"]),
    "same run twice": (
        'name = "x"\n[[conditions]]\nname = "a"\n[[conditions]]\nname = "b"\ndelete_prob = 0.25\n',
        ["the same run as condition 'a'"],
    ),
    "bad task": ('name = "x"\ntask = "medium"\n', ["task = 'medium' is not allowed"]),
    "missing task file": (
        'name = "x"\ntask = "file:/nonexistent/text.txt"\n',
        ["task file '/nonexistent/text.txt' does not exist"],
    ),
    "params not a table": ('name = "x"\nparams = 3\n', ["params has the wrong type"]),
}


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_bad_study_files_are_refused_in_one_line(case, tmp_path, capsys):
    text, expected = BAD_STUDIES[case]
    path = _write(tmp_path, text, "bad.toml")
    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for part in expected:
        assert part in message
    # the command: one line on stderr, status 2, nothing started or created
    out = tmp_path / "results"
    assert main(["study", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"diffrnn: error: {message}\n" and captured.out == ""
    assert not out.exists()


def test_missing_study_file(tmp_path, capsys):
    assert main(["study", str(tmp_path / "none.toml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.toml: study file does not exist" in err


# -- batches -------------------------------------------------------------------------------
def test_batches_keep_every_run_in_order():
    specs = load_study(REPO / "studies" / "demo.toml").specs
    for costs, workers, expected in (
        ([1.0] * 16, 2, [3, 3, 2, 2, 1, 1, 1, 1, 1, 1]),  # guided: shrinking to 1 s
        ([1e-3] * 16, 2, [3, 3, 3, 3, 3, 1]),  # tiny study: 3 batches per worker
        ([100.0] * 16, 8, [1] * 16),
    ):
        batches = make_batches(specs, costs, workers)
        assert [s for b in batches for s in b] == list(specs)
        assert [len(b) for b in batches] == expected
    assert [len(b) for b in make_batches(specs, [1.0] * 16, 2, batch_size=5)] == [5, 5, 5, 1]
    many = list(specs) * 50  # 800 runs of 0.5 s on 2 workers: 5 s batches, then smaller
    sizes = [len(b) for b in make_batches(many, [0.5] * 800, 2)]
    assert sizes[0] == 10 and sizes == sorted(sizes, reverse=True) and min(sizes) == 2
    assert sum(sizes) == 800


# -- running -------------------------------------------------------------------------------
def test_small_study_end_to_end(small_file, reference, tmp_path, capsys):
    study = load_study(small_file)
    runs = store.load_runs(reference)
    assert len(runs) == SMALL_RUNS and runs["run_id"].is_unique
    assert set(runs["run_id"]) == {s.run_id for s in study.specs}
    assert list(runs.columns) == list(store.RUN_COLUMNS)
    assert (runs["study"] == "small").all()
    assert runs.groupby("condition").size().to_dict() == {"blowup": 4, "fixed-8": 4, "variable": 4}
    # a divergent config is stored as diverged, with its message; the study went on
    blowup = runs[runs["condition"] == "blowup"]
    assert (blowup["status"] == "diverged").all()
    assert blowup["error"].str.contains("non-finite").all()
    assert (runs[runs["condition"] != "blowup"]["status"] == "ok").all()
    # values bit-identical to engine.run of the same config and seed
    traces, events = store.load_traces(reference), store.load_events(reference)
    for spec in study.specs:
        result = run(spec.config, spec.task, spec.cycles, spec.seed)
        assert result.status == ("diverged" if spec.condition == "blowup" else "ok")
        row = runs[runs["run_id"] == spec.run_id].iloc[0]
        assert row["condition"] == spec.condition and row["seed"] == spec.seed
        np.testing.assert_array_equal(row["final_loss"], result.final_loss)
        assert row["final_neurons"] == result.final_neurons
        assert row["cycles_done"] == result.cycles_done
        mine = traces[traces["run_id"] == spec.run_id]
        assert len(mine) == len(result.traces)
        for name in result.traces.dtype.names:
            np.testing.assert_array_equal(mine[name].to_numpy(), result.traces[name])
        mine = events[events["run_id"] == spec.run_id]
        for name in result.events.dtype.names:
            np.testing.assert_array_equal(mine[name].to_numpy(), result.events[name])
    # and to `diffrnn run` of the same config and seed
    out = tmp_path / "single"
    argv = [
        "run",
        "--task",
        "hard",
        "--cycles",
        "3000",
        "--seed",
        "5",
        "--set",
        "delete_prob=0.1",
        "--set",
        "log_every=500",
        "--out",
        str(out),
        "--json",
        "-q",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    single = store.load_runs(out)
    assert list(single["study"]) == [store.ADHOC_STUDY]
    mine = runs[runs["run_id"] == single["run_id"].iloc[0]]
    assert len(mine) == 1 and mine["condition"].iloc[0] == "variable"
    skip = ["study", "condition", *store.TIMING_COLUMNS]
    pd.testing.assert_frame_equal(
        single.drop(columns=skip).reset_index(drop=True),
        mine.drop(columns=skip).reset_index(drop=True),
    )
    left = store.load_traces(out).drop(columns=["study", "condition"])
    right = (
        traces[traces["run_id"] == mine["run_id"].iloc[0]]
        .drop(columns=["study", "condition"])
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(left, right)


def test_loky_and_sequential_equal_threading(small_file, reference, tmp_path):
    study = load_study(small_file)
    states = []
    report = run_study(
        study,
        tmp_path / "loky",
        jobs=2,
        backend="loky",
        batch_size=2,
        progress=lambda s: states.append(dataclasses.replace(s)),
    )
    assert report.done == SMALL_RUNS and report.diverged == 4 and report.errors == 0
    assert len(report.peak_rss_kb) == 2  # two worker processes
    assert states[0].done == 0 and states[-1].done == SMALL_RUNS
    assert [s.done for s in states] == sorted(s.done for s in states)
    assert states[-1].failed == 4 and states[-1].remaining == pytest.approx(0, abs=1e-6)
    _assert_same(tmp_path / "loky", reference)
    run_study(study, tmp_path / "one", jobs=1)
    _assert_same(tmp_path / "one", reference)


def test_dask_local_cluster_equals_threading(small_file, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        report = run_study(
            load_study(small_file),
            tmp_path / "dask",
            backend="dask",
            scheduler=cluster.scheduler_address,
        )
    assert report.done == SMALL_RUNS and report.workers == 2
    assert len(report.peak_rss_kb) == 2 and os.getpid() not in report.peak_rss_kb
    _assert_same(tmp_path / "dask", reference)


def test_resume_skips_stored_runs_and_plan_counts_them(small_file, reference, tmp_path):
    import shutil

    study = load_study(small_file)
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    files = sorted(out.rglob("*.parquet"))
    plan = plan_study(study, out)
    assert plan.stored == SMALL_RUNS and plan.todo == [] and plan.estimated_seconds == 0
    report = run_study(study, out, jobs=2)
    assert report.done == 0 and report.skipped == SMALL_RUNS
    assert sorted(out.rglob("*.parquet")) == files  # nothing run, no session recorded
    sessions = store.load_sessions(out)
    assert len(sessions) == 1 and sessions.loc[0, "study"] == "small"
    assert sessions.loc[0, "runs_done"] == SMALL_RUNS and sessions.loc[0, "runs_skipped"] == 0
    assert sessions.loc[0, "wall_seconds"] >= sessions.loc[0, "warm_up_seconds"] > 0
    assert sessions.loc[0, "backend"] == "threading" and sessions.loc[0, "workers"] == 2
    with store.study_lock(out, "small"):  # a second process on the same study is refused
        with pytest.raises(store.StoreError, match="already being run"):
            run_study(study, out)
    fresh = plan_study(study, tmp_path / "fresh", jobs=2)
    assert fresh.stored == 0 and len(fresh.todo) == SMALL_RUNS and fresh.workers == 2
    assert 0 < fresh.estimated_seconds < 60 and fresh.rates


def test_dry_run_of_a_stored_study_reads_the_store_without_pandas(small_file, reference):
    """The stored-run and build checks of a dry-run use pyarrow.parquet alone: pandas (and
    pyarrow.dataset, which imports it) would add half a second to every dry-run."""
    code = textwrap.dedent(
        f"""
        import sys
        from engine.scheduler import load_study, plan_study
        plan = plan_study(load_study({str(small_file)!r}), {str(reference)!r}, jobs=2)
        assert plan.stored == {SMALL_RUNS} and plan.todo == [], plan
        heavy = [m for m in ("pandas", "pyarrow.dataset") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_auto_backend_threads_for_short_studies_processes_for_long_ones(
    small_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("DIFFRNN_CACHE_DIR", str(tmp_path / "cache"))
    specs = load_study(small_file).specs
    for named in ("loky", "threading", "dask"):
        assert choose_backend(named, specs, 2) == named
    assert choose_backend("auto", specs, 1) == "threading"  # one worker: no process to start
    assert choose_backend("auto", specs, 2) == "loky"  # length unknown: the cost model is empty
    rate = 1e-5  # seconds per cycle
    CostModel().save({key: rate for key in cost_keys(specs)})
    work = sum(s.cycles for s in specs) * rate
    assert work / 2 < AUTO_THREADS_BELOW_SECONDS
    assert choose_backend("auto", specs, 2) == "threading"
    long_runs = [
        dataclasses.replace(s, cycles=int(3 * AUTO_THREADS_BELOW_SECONDS / rate)) for s in specs
    ]
    assert choose_backend("auto", long_runs, 2) == "loky"
    assert choose_backend("auto", long_runs, 4 * len(long_runs)) == "threading"
    # a study and its dry-run say which backend "auto" chose
    plan = plan_study(load_study(small_file), tmp_path / "out", jobs=2)
    assert plan.backend == "threading"
    report = run_study(load_study(small_file), tmp_path / "out", jobs=2)
    assert report.backend == "threading" and report.done == len(specs)
    assert store.load_sessions(tmp_path / "out").loc[0, "backend"] == "threading"


def test_a_run_that_raises_is_stored_as_error(small_file, tmp_path):
    study = load_study(small_file)
    bad = dataclasses.replace(
        study.specs[0], task="file:/nonexistent/data.txt", run_id="0000000000000000"
    )
    result = run_one(bad)
    assert result.status == "error" and "does not exist" in result.message
    assert len(run_batch([bad, study.specs[1]]).items) == 2
    study = dataclasses.replace(study, specs=(bad,) + study.specs[1:3])
    report = run_study(study, tmp_path, jobs=2, backend="threading")
    assert report.done == 3 and report.errors == 1
    runs = store.load_runs(tmp_path)
    row = runs[runs["run_id"] == bad.run_id].iloc[0]
    assert row["status"] == "error" and "ConfigError" in row["error"]
    assert row["cycles_done"] == 0 and np.isnan(row["final_loss"])
    assert (runs[runs["run_id"] != bad.run_id]["status"] == "ok").all()
    assert store.summary(tmp_path)["n_error"].sum() == 1


def test_divergent_config_really_diverges():
    result = run(RunConfig(learning_rate=1000.0), "hard", 2000, 0)
    assert result.status == "diverged" and result.cycles_done < 2000


# -- kill -9 and resume --------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_mid_study_then_resume_equals_uninterrupted(tmp_path):
    path = _write(tmp_path, KILL, "kill.toml")
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "engine",
        "study",
        str(path),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--batch-size",
        "1",
        "-q",
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    runs_dir = out / "runs" / "study=kill"
    deadline = time.monotonic() + 120
    try:
        while not list(runs_dir.glob("part-*.parquet")):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no batch stored in 120 s"
            time.sleep(0.01)
        workers = _children(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    # the workers notice and exit on their own
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "study workers outlived the killed study"

    partial = store.load_runs(out)
    assert 1 <= len(partial) < 16 and partial["run_id"].is_unique
    assert set(store.load_traces(out)["run_id"]) <= set(partial["run_id"])
    store.load_events(out)
    # what a kill at other instants leaves: a temporary file and an orphan batch
    study = load_study(path)
    missing = [s for s in study.specs if s.run_id not in set(partial["run_id"])]
    orphan = [("default", run(missing[0].config, "hard", 5000, missing[0].seed))]
    name = store.new_part_name()
    import pyarrow.parquet as pq

    pq.write_table(
        store.traces_table(orphan), runs_dir.parent.parent / "traces" / "study=kill" / name
    )
    (runs_dir / ".part-zzz.parquet.0000.tmp").write_bytes(b"PAR1 half a file")
    assert store.stored_run_ids(out, "kill") == set(partial["run_id"])
    assert missing[0].run_id not in set(store.load_traces(out)["run_id"])

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    # the uninterrupted study, for comparison
    reference = tmp_path / "reference"
    run_study(study, reference, jobs=2, backend="threading")
    _assert_same(out, reference)
    runs = store.load_runs(out)
    assert len(runs) == 16 and runs["run_id"].is_unique
    # nothing stored twice, even for readers that bypass the loaders
    raw = pd.read_parquet(out / "traces")
    assert not raw.duplicated(["run_id", "cycle"]).any() and len(raw) == 16 * 10
    assert len(pd.read_parquet(out / "runs")) == 16
    assert not list(runs_dir.glob(".*"))


def _restamp_runs(results: Path, **build) -> None:
    """Rewrite every stored runs file as if another build had made its runs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in sorted((results / "runs").rglob("*.parquet")):
        table = pq.read_table(path, schema=store.RUNS_FILE_SCHEMA)
        for name, value in build.items():
            column = pa.array([value] * table.num_rows, type=pa.string())
            table = table.set_column(table.schema.get_field_index(name), name, column)
        pq.write_table(table, path)


def test_resume_with_another_build_stops_unless_mixing_is_asked(small_file, reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    runs = store.load_runs(out)
    assert set(runs["compile_target"]) == {build_info()["compile_target"]}
    assert set(runs["numba_version"]) == {build_info()["numba_version"]}
    _restamp_runs(out, compile_target="host-znver4-0badc0de", numba_version="0.60.0")
    text = small_file.read_text().replace("seeds = [0, 5]", "seeds = [0, 5, 6]")
    bigger = load_study(_write(tmp_path, text))
    with pytest.raises(store.StoreError) as caught:
        run_study(bigger, out, jobs=1)
    message = str(caught.value)
    assert "\n" not in message
    assert "compile target host-znver4-0badc0de" in message and "numba 0.60.0" in message
    assert f"compile target {build_info()['compile_target']}" in message
    assert "--mix-builds" in message
    plan = plan_study(bigger, out)
    assert "another build" in plan.build_conflict
    assert len(store.load_runs(out)) == SMALL_RUNS  # nothing was run or stored
    code = main(["study", str(tmp_path / "study.toml"), "--out", str(out), "-q"])
    assert code == 2
    report = run_study(bigger, out, jobs=1, mix_builds=True)
    assert report.done == SMALL_RUNS // 2 and report.skipped == SMALL_RUNS
    mixed = store.load_runs(out)
    assert set(mixed["compile_target"]) == {"host-znver4-0badc0de", build_info()["compile_target"]}


def test_a_store_of_schema_1_reads_with_null_builds(reference, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    out = tmp_path / "old"
    shutil.copytree(reference, out)
    for path in sorted((out / "runs").rglob("*.parquet")):
        table = pq.read_table(path)
        old = table.drop_columns(
            ["compile_target", "numba_version", "llvmlite_version", "numpy_version"]
        )
        pq.write_table(old.replace_schema_metadata({"schema_version": "1"}), path)
    runs = store.load_runs(out)
    assert len(runs) == SMALL_RUNS and runs["compile_target"].isna().all()
    with pytest.raises(store.StoreError, match=r"unknown \(stored before schema 2"):
        store.check_build(out, "small", build_info())


# -- start-up ------------------------------------------------------------------------------
def test_study_names_follow_the_store_rule():
    from engine import names

    assert names.DEFAULT_CONDITION == store.DEFAULT_CONDITION
    for name in ["demo", "a", "paper-fig1", "x.y_z+1", "9lives", "-x", "", "a b", "é", 5, None]:
        try:
            store.check_name(name)
            by_store = True
        except store.StoreError:
            by_store = False
        try:
            names.check_name(name)
            by_names = True
        except ConfigError:
            by_names = False
        assert by_names == by_store, name
    assert parse_study({"name": "n", "cycles": 10}).conditions == (store.DEFAULT_CONDITION,)


def test_workers_wait_at_the_gate_until_the_kernels_are_ready():
    """A starting worker loads kernels only once this process says they are in the cache;
    a gate closed without that (this process failed or died) never lets it compile."""
    import threading

    from engine.scheduler import _Gate, _wait_at_gate

    for ready in (True, False):
        gate = _Gate()
        answers: list[bool] = []

        def wait(path: str, into: list[bool]) -> None:
            into.append(_wait_at_gate(path))

        waiting = threading.Thread(target=wait, args=(gate.path, answers))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and answers == []  # held until opened
        gate.open(ready)
        waiting.join(10)
        assert answers == [ready]
        gate.remove()
        assert not os.path.exists(gate.path) and _wait_at_gate(gate.path) is False


def test_nothing_stored_is_told_without_the_store(small_file, reference, tmp_path):
    from engine.scheduler import _nothing_stored

    assert _nothing_stored(tmp_path / "none", "small")
    assert not _nothing_stored(reference, "small") and _nothing_stored(reference, "other")
    hidden = tmp_path / "runs" / "study=small"
    hidden.mkdir(parents=True)
    (hidden / ".part-x.parquet.tmp").write_bytes(b"")  # a temporary left by a kill
    assert _nothing_stored(tmp_path, "small")
    (hidden / "part-x.parquet").write_bytes(b"")
    assert not _nothing_stored(tmp_path, "small")


def test_run_ids_of_many_seeds_equal_run_id():
    from engine.run import run_ids

    seeds = [0, 1, 7, 2**63 - 1]
    for config, task in [
        (RunConfig(), "hard"),
        (RunConfig(mode="fixed", hidden_size=27, dtype="float32"), "easy-hard-easy"),
        (RunConfig(criterion="outgoing", delete_prob=0.1), 'file:dir/ä "quoted".txt'),
    ]:
        expected = [run_id(config, task, 12_345, seed) for seed in seeds]
        assert run_ids(config, task, 12_345, seeds) == expected
