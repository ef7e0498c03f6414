"""The Parquet store: layout, schema, atomic writes, orphans, duplicates, loaders, summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine import RunConfig, run, store
from engine.records import EVENTS_SCHEMA, RUNS_SCHEMA, SCHEMA_VERSION, TRACES_SCHEMA
from engine.store import StoreError

CYCLES = 2000


@pytest.fixture(scope="module")
def items():
    """Four finished runs: three ok (two conditions), one diverged."""
    return [
        ("a", run(RunConfig(log_every=500), "hard", CYCLES, 0)),
        ("a", run(RunConfig(log_every=500), "hard", CYCLES, 1)),
        ("b", run(RunConfig(log_every=500, delete_prob=0.1), "easy", CYCLES, 0)),
        ("b", run(RunConfig(log_every=500, learning_rate=1000.0), "hard", CYCLES, 0)),
    ]


def _parts(root, dataset, study="s"):
    return sorted((root / dataset / f"study={study}").glob("part-*.parquet"))


def test_layout_schema_and_pandas(tmp_path, items):
    name = store.write_batch(tmp_path, "s", items)
    for dataset, schema in (
        ("runs", store.RUNS_FILE_SCHEMA),
        ("traces", TRACES_SCHEMA),
        ("events", EVENTS_SCHEMA),
    ):
        files = _parts(tmp_path, dataset)
        assert [f.name for f in files] == [name]  # one file per dataset, one shared name
        assert pq.read_schema(files[0]).equals(schema, check_metadata=False)
        assert pq.read_schema(files[0]).metadata[b"schema_version"] == str(SCHEMA_VERSION).encode()
    # study is the partition key only, and pandas reads the datasets directly
    assert "study" not in store.RUNS_FILE_SCHEMA.names
    runs = pd.read_parquet(tmp_path / "runs")
    assert len(runs) == 4 and set(runs["study"].astype(str)) == {"s"}
    assert set(runs.columns) == set(RUNS_SCHEMA.names)
    traces = pd.read_parquet(tmp_path / "traces")
    assert len(traces) == sum(len(r.traces) for _, r in items)
    assert len(pd.read_parquet(tmp_path / "events")) == sum(len(r.events) for _, r in items)


def test_loaded_values_equal_results(tmp_path, items):
    store.write_batch(tmp_path, "s", items)
    runs = store.load_runs(tmp_path)
    assert list(runs.columns) == RUNS_SCHEMA.names
    for condition, result in items:
        row = runs[runs["run_id"] == result.run_id].iloc[0]
        assert row["study"] == "s" and row["condition"] == condition
        assert row["status"] == result.status and row["seed"] == result.seed
        assert row["cycles"] == CYCLES and row["cycles_done"] == result.cycles_done
        assert row["final_neurons"] == result.final_neurons
        assert row["final_loss"] == result.final_loss or (
            math.isnan(row["final_loss"]) and math.isnan(result.final_loss)
        )
        for name, value in result.config.to_dict().items():
            assert row[name] == value or (value is None and pd.isna(row[name]))
        traces = store.load_traces(tmp_path, run_id=result.run_id)
        for name in result.traces.dtype.names:
            np.testing.assert_array_equal(traces[name].to_numpy(), result.traces[name])
        events = store.load_events(tmp_path, run_id=result.run_id)
        for name in result.events.dtype.names:
            np.testing.assert_array_equal(events[name].to_numpy(), result.events[name])
    diverged = runs[runs["status"] == "diverged"].iloc[0]
    assert "non-finite" in diverged["error"] and runs["error"].isna().sum() == 3


def test_filters(tmp_path, items):
    store.write_batch(tmp_path, "s", items[:2])
    store.write_batch(tmp_path, "t", items[2:])
    assert len(store.load_runs(tmp_path)) == 4
    assert set(store.load_runs(tmp_path, study="t")["condition"]) == {"b"}
    assert len(store.load_runs(tmp_path, condition="a")) == 2
    assert len(store.load_runs(tmp_path, task="easy")) == 1
    assert len(store.load_runs(tmp_path, delete_prob=[0.1, 0.25])) == 4
    assert len(store.load_runs(tmp_path, study="s", seed=1)) == 1
    assert store.load_runs(tmp_path, study="nope").empty
    assert list(store.load_runs(tmp_path, columns=["seed", "status"]).columns) == ["seed", "status"]
    traces = store.load_traces(tmp_path, condition="a", run_columns=["condition", "seed"])
    assert set(traces["seed"]) == {0, 1} and set(traces["study"]) == {"s"}
    assert len(traces) == len(items[0][1].traces) + len(items[1][1].traces)
    with pytest.raises(StoreError, match="not a column"):
        store.load_runs(tmp_path, not_a_column=1)
    with pytest.raises(StoreError, match="unknown runs column"):
        store.load_runs(tmp_path, columns=["nope"])


def test_missing_results_give_empty_frames(tmp_path):
    assert store.load_runs(tmp_path / "none").empty
    assert list(store.load_runs(tmp_path / "none").columns) == RUNS_SCHEMA.names
    assert store.load_traces(tmp_path / "none").empty
    assert store.stored_run_ids(tmp_path / "none", "s") == set()
    assert store.summary(tmp_path / "none").empty


def test_temporaries_orphans_and_corrupt_files_are_ignored(tmp_path, items):
    store.write_batch(tmp_path, "s", items[:2])
    partition = "study=s"
    # a writer killed mid-file leaves a dot-temporary; killed between files, an orphan
    for dataset in store.DATASETS:
        (tmp_path / dataset / partition / ".part-x.parquet.0123.tmp").write_bytes(b"PAR1junk")
    orphan = store.new_part_name()
    pq.write_table(store.traces_table(items[2:3]), tmp_path / "traces" / partition / orphan)
    pq.write_table(store.events_table(items[2:3]), tmp_path / "events" / partition / orphan)
    # pandas and pyarrow skip dot-files by default
    assert len(pd.read_parquet(tmp_path / "runs")) == 2
    assert store.stored_run_ids(tmp_path, "s") == {r.run_id for _, r in items[:2]}
    traces = store.load_traces(tmp_path)
    assert set(traces["run_id"]) == {r.run_id for _, r in items[:2]}  # orphan rows dropped
    assert len(store.load_events(tmp_path)) == sum(len(r.events) for _, r in items[:2])
    # clean_study removes exactly the leftovers
    assert store.clean_study(tmp_path, "s") == 5
    assert len(pd.read_parquet(tmp_path / "traces")) == len(traces)
    for dataset in store.DATASETS:
        assert not list((tmp_path / dataset / partition).glob(".*"))
        assert len(_parts(tmp_path, dataset)) == 1
    # a file that is not Parquet at all under a final name: skipped with a warning
    (tmp_path / "runs" / partition / store.new_part_name()).write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="skipping unreadable"):
        assert len(store.load_runs(tmp_path)) == 2


def test_crash_between_files_leaves_no_stored_run(tmp_path, items, monkeypatch):
    real = store._write_atomic

    def crash_on_runs(table, directory, name, durable):
        if directory.parent.name == "runs":
            raise KeyboardInterrupt  # stands for SIGKILL right before the runs file
        return real(table, directory, name, durable)

    monkeypatch.setattr(store, "_write_atomic", crash_on_runs)
    with pytest.raises(KeyboardInterrupt):
        store.write_batch(tmp_path, "s", items[:2])
    monkeypatch.undo()
    assert store.stored_run_ids(tmp_path, "s") == set()
    assert store.load_traces(tmp_path).empty and store.load_events(tmp_path).empty
    assert store.load_runs(tmp_path).empty
    assert store.clean_study(tmp_path, "s") == 2


def test_duplicates_are_dropped_on_load(tmp_path, items):
    store.write_batch(tmp_path, "s", items)
    store.write_batch(tmp_path, "s", items)  # never done by the scheduler; defensive
    assert len(store.load_runs(tmp_path)) == 4
    assert len(store.load_traces(tmp_path)) == sum(len(r.traces) for _, r in items)
    assert len(store.load_events(tmp_path)) == sum(len(r.events) for _, r in items)
    # the same run in two studies is two rows: studies are separate namespaces
    store.write_batch(tmp_path, "t", items[:1])
    assert len(store.load_runs(tmp_path)) == 5


def test_summary(tmp_path, items):
    store.write_batch(tmp_path, "s", items)
    extra = [("a", run(RunConfig(log_every=500), "hard", CYCLES, seed)) for seed in (2, 3)]
    store.write_batch(tmp_path, "s", extra)
    table = store.summary(tmp_path, by="condition")
    assert list(table["condition"]) == ["a", "b"]
    a = table.iloc[0]
    finals = np.array([r.final_neurons for c, r in items + extra if c == "a"], float)
    losses = np.array([r.final_loss for c, r in items + extra if c == "a"])
    assert a["n_runs"] == 4 and a["n_ok"] == 4 and a["n_diverged"] == 0
    assert a["final_neurons_median"] == np.median(finals)
    assert a["final_neurons_q25"] == np.quantile(finals, 0.25)
    assert a["final_loss_q75"] == pytest.approx(np.quantile(losses, 0.75), rel=1e-12)
    assert a["entropy_floor"] == pytest.approx(40 * math.log(6) / 8)
    b = table.iloc[1]  # one easy run ok, one hard run diverged: floors differ
    assert b["n_runs"] == 2 and b["n_ok"] == 1 and b["n_diverged"] == 1
    assert math.isnan(b["entropy_floor"])
    two = store.summary(tmp_path, by=["condition", "task"])
    assert len(two) == 3
    assert store.summary(tmp_path, by="task", task="easy")["entropy_floor"].iloc[
        0
    ] == pytest.approx(9.61, abs=0.01)
    with pytest.raises(StoreError, match="cannot group by"):
        store.summary(tmp_path, by="nope")


def test_study_lock_and_names(tmp_path):
    with store.study_lock(tmp_path, "s"):
        with pytest.raises(StoreError, match="already being run"):
            with store.study_lock(tmp_path, "s"):
                pass
        with store.study_lock(tmp_path, "other"):
            pass
    with store.study_lock(tmp_path, "s"):
        pass
    for bad in ("", "1abc", "a/b", "a b", "../x", 3):
        with pytest.raises(StoreError):
            store.check_name(bad)
