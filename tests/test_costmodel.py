"""The cost model: rates kept per machine and build, re-timed only when missing or stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import costmodel, scheduler
from engine.cli import main
from engine.costmodel import MAX_AGE_DAYS, CostModel, cache_dir, current_context

DAY = 86_400.0
NOW = 2_000_000_000.0  # 2033-05-18
CONTEXT = {
    "machine": {"cpu": "Test CPU 9000", "cores": 2},
    "build": {
        "compile_target": "x86_64-v3",
        "engine_version": "0.2.0",
        "numba_version": "0.68.1",
        "llvmlite_version": "0.50.0",
        "numpy_version": "2.4.6",
    },
}
A = ("float64", 40, 27)
B = ("float32", 40, 8)

STUDY = """
name = "cm"
task = "hard"
cycles = 1000
seeds = 2
[[conditions]]
name = "variable"
[[conditions]]
name = "fixed-4"
mode = "fixed"
hidden_size = 4
"""


def _model(tmp_path: Path, context: dict | None = None) -> CostModel:
    return CostModel(tmp_path / "cost-model.json", context or CONTEXT)


def _other(**changes) -> dict:
    context = json.loads(json.dumps(CONTEXT))
    for part, values in changes.items():
        context[part].update(values)
    return context


# -- where it lives ----------------------------------------------------------------------
def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFRNN_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("DIFFRNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "diffrnn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored (XDG spec)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "diffrnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "diffrnn"


def test_tests_never_use_the_real_cache():
    home = Path.home() / ".cache" / "diffrnn"
    assert os.environ.get("DIFFRNN_CACHE_DIR") and cache_dir() != home
    assert CostModel().path.parent == cache_dir()


def test_the_context_names_the_machine_and_the_build():
    context = current_context()
    assert set(context) == {"machine", "build"}
    assert context["machine"]["cores"] == os.cpu_count() and context["machine"]["cpu"]
    assert {"compile_target", "engine_version", "numba_version"} <= set(context["build"])


# -- hit, miss, stale, corrupt, key change -----------------------------------------------
def test_saved_rates_are_found_by_a_new_process(tmp_path):
    assert _model(tmp_path).lookup([A, B], now=NOW).missing == [B, A]  # sorted
    assert _model(tmp_path).save({A: 3.3e-5}, now=NOW, load=0.25)
    found = _model(tmp_path).lookup([A, B], now=NOW + DAY)
    assert found.rates == {A: 3.3e-5} and found.timed_at == {A: NOW} and found.missing == [B]
    entry = json.loads((tmp_path / "cost-model.json").read_text())["entries"][0]
    assert entry["load_average"] == 0.25 and entry["timed_at"].endswith("Z")
    assert [p.name for p in tmp_path.iterdir()] == ["cost-model.json"]  # no temporary left


def test_a_rate_is_timed_again_after_max_age_or_with_recalibrate(tmp_path):
    _model(tmp_path).save({A: 3.3e-5}, now=NOW)
    model = _model(tmp_path)
    fresh = NOW + (MAX_AGE_DAYS - 0.5) * DAY
    assert model.lookup([A], now=fresh).rates == {A: 3.3e-5}
    assert model.lookup([A], now=NOW + (MAX_AGE_DAYS + 0.5) * DAY).missing == [A]
    assert model.lookup([A], now=NOW - 2 * DAY).missing == [A]  # timed "in the future"
    assert model.lookup([A], now=fresh, recalibrate=True).missing == [A]
    # an expired rate is dropped when the file is next written
    _model(tmp_path).save({B: 1e-5}, now=NOW + (MAX_AGE_DAYS + 1) * DAY)
    entries = json.loads((tmp_path / "cost-model.json").read_text())["entries"]
    assert [e["dtype"] for e in entries] == ["float32"]


@pytest.mark.parametrize(
    "changes",
    [
        {"build": {"engine_version": "0.3.0"}},
        {"build": {"compile_target": "host-znver3-0123abcd"}},
        {"build": {"numba_version": "0.69.0"}},
        {"machine": {"cpu": "Another CPU"}},
        {"machine": {"cores": 64}},
    ],
)
def test_another_machine_or_build_misses_and_both_are_kept(tmp_path, changes):
    _model(tmp_path).save({A: 3.3e-5}, now=NOW)
    other = _model(tmp_path, _other(**changes))
    assert other.lookup([A], now=NOW).missing == [A]
    assert other.save({A: 9.9e-5}, now=NOW)
    assert _model(tmp_path).lookup([A], now=NOW).rates == {A: 3.3e-5}
    assert _model(tmp_path, _other(**changes)).lookup([A], now=NOW).rates == {A: 9.9e-5}


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "",
        "[1, 2]",
        '{"format": 99, "entries": []}',
        '{"format": 1, "entries": "nope"}',
        "\udcff",
    ],
)
def test_a_corrupt_file_is_ignored_then_rewritten(tmp_path, text):
    path = tmp_path / "cost-model.json"
    path.write_text(text, errors="surrogateescape")
    model = _model(tmp_path)
    assert model.problem and str(path) in model.problem
    assert model.lookup([A], now=NOW).missing == [A]
    assert model.save({A: 3.3e-5}, now=NOW)
    assert _model(tmp_path).lookup([A], now=NOW).rates == {A: 3.3e-5}
    assert _model(tmp_path).problem == ""


def test_bad_entries_are_dropped_one_by_one(tmp_path):
    _model(tmp_path).save({A: 3.3e-5, B: 1e-5}, now=NOW)
    path = tmp_path / "cost-model.json"
    data = json.loads(path.read_text())
    data["entries"][0]["seconds_per_cycle"] = "fast"
    data["entries"].append({"dtype": "float64"})
    path.write_text(json.dumps(data))
    found = _model(tmp_path).lookup([A, B], now=NOW)
    assert len(found.rates) == 1 and len(found.missing) == 1


def test_an_unwritable_cache_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    model = CostModel(blocker / "cost-model.json", CONTEXT)  # its directory is a file
    assert model.lookup([A], now=NOW).missing == [A]
    assert model.save({A: 3.3e-5}, now=NOW) is False
    assert model.problem.startswith(f"cannot write {blocker / 'cost-model.json'}")
    assert blocker.read_text() == ""


def test_writers_merge_what_the_other_wrote(tmp_path):
    first, second = _model(tmp_path), _model(tmp_path)  # both read an empty file
    assert first.save({A: 3.3e-5}, now=NOW)
    assert second.save({B: 1e-5}, now=NOW)
    assert _model(tmp_path).lookup([A, B], now=NOW).rates == {A: 3.3e-5, B: 1e-5}


# -- the scheduler's use of it -----------------------------------------------------------
@pytest.fixture
def counting(monkeypatch, tmp_path):
    """study_rates with a private model, no kernels and no timing: counts what is timed."""
    monkeypatch.setenv("DIFFRNN_CACHE_DIR", str(tmp_path / "cache"))
    timed: list[list] = []

    def fake_time_rates(keys, repeats=3):
        timed.append(list(keys))
        return {key: 1e-5 * key[2] for key in keys}

    monkeypatch.setattr(scheduler, "time_rates", fake_time_rates)
    monkeypatch.setattr(scheduler, "warm_up", lambda dtypes=("float64",): 0.0)
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(STUDY))
    return timed, scheduler.load_study(path)


def test_study_rates_times_only_what_the_model_lacks(counting):
    timed, study = counting
    keys = scheduler.cost_keys(study.specs)
    assert keys == [("float64", 40, 4), ("float64", 40, 30)]
    first = scheduler.study_rates(study.specs)
    assert timed == [keys] and first.timed == keys and first.problem == ""
    second = scheduler.study_rates(study.specs)
    assert timed == [keys] and second.timed == [] and second.rates == first.rates
    waited = []
    again = scheduler.study_rates(
        study.specs, recalibrate=True, before_timing=lambda: waited.append(1)
    )
    assert timed == [keys, keys] and again.timed == keys and waited == [1]


def test_study_rates_without_a_writable_cache_still_works(counting, monkeypatch, tmp_path):
    timed, study = counting
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("DIFFRNN_CACHE_DIR", str(blocker))
    for _ in range(2):
        found = scheduler.study_rates(study.specs)
        assert found.rates and found.problem.startswith("cannot write")
    assert len(timed) == 2  # nothing kept: timed at every call


def test_dry_run_says_where_the_rates_come_from(counting, tmp_path, capsys):
    timed, _ = counting
    argv = ["study", str(tmp_path / "study.toml"), "--out", str(tmp_path / "results"), "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "to run: 4" in out and "40.0 us/cycle at N=4" in out
    assert "cost model: rates 2 timed now (kept in" in out and "--recalibrate" in out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "cost model: rates 2 from" in out and "timed now" not in out
    assert main([*argv, "--recalibrate"]) == 0
    assert "rates 2 timed now" in capsys.readouterr().out
    assert len(timed) == 2


def test_dry_run_with_a_warm_model_loads_no_kernels_nor_the_store(tmp_path):
    """Every rate known and nothing stored: no kernel is loaded, pandas and pyarrow are not
    imported (what keeps a dry-run under a second)."""
    cache = tmp_path / "cache"
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(STUDY))
    keys = scheduler.cost_keys(scheduler.load_study(path).specs)
    assert CostModel(cache / costmodel.MODEL_FILE).save({key: 2e-5 for key in keys})
    code = textwrap.dedent(f"""
        import sys
        from engine.cli import main
        assert main(["study", {str(path)!r}, "--out", {str(tmp_path / "r")!r}, "--dry-run"]) == 0
        from engine import kernels
        heavy = [m for m in ("pandas", "pyarrow", "joblib") if m in sys.modules]
        print("HEAVY", heavy, "LOADED", len(kernels._train.signatures))
    """)
    env = {**os.environ, "DIFFRNN_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "cost model: rates 2 from" in done.stdout
    assert "HEAVY [] LOADED 0" in done.stdout
