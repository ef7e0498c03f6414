"""Merging and compaction of the store: rows kept exactly, a kill at every step, old stores."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine import RunConfig, run, scheduler, store
from engine.jit import build_info
from engine.records import SCHEMA_VERSION

CYCLES = 600
HERE = Path(__file__).resolve().parent
OLD_STORE = HERE / "data" / "store-0.2.0"  # written by engine 0.2.0's store (parts only)
OLD_STUDY = HERE / "data" / "store-0.2.0.toml"


@pytest.fixture(scope="module")
def items():
    """Six short runs in two conditions (variable size: births and deaths in events)."""
    out = []
    for seed in range(3):
        out.append(("a", run(RunConfig(log_every=100), "hard", CYCLES, seed)))
        out.append(("b", run(RunConfig(log_every=150, delete_prob=0.1), "easy", CYCLES, seed)))
    return out


def _snapshot(root: Path, study: str | None = None) -> tuple[pd.DataFrame, ...]:
    """What the loaders give, in a canonical order."""
    runs = store.load_runs(root, study).drop(columns=list(store.TIMING_COLUMNS))
    traces = store.load_traces(root, study)
    events = store.load_events(root, study)
    return runs, traces, events


def _assert_same(a: tuple[pd.DataFrame, ...], b: tuple[pd.DataFrame, ...]) -> None:
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x.reset_index(drop=True), y.reset_index(drop=True))


def _raw_rows(root: Path, dataset: str) -> int:
    """Rows a plain pandas reader sees (no loader, no knowledge of merges)."""
    directory = root / dataset
    return len(pd.read_parquet(directory)) if directory.is_dir() else 0


def _store(root: Path, items, batches: int) -> None:
    size = -(-len(items) // batches)
    for start in range(0, len(items), size):
        store.write_batch(root, "s", items[start : start + size], durable=False)


def test_merge_small_files_keeps_every_row_once(tmp_path, items):
    _store(tmp_path, items, 6)  # one run per batch: six parts per dataset
    before = _snapshot(tmp_path)
    raw = {d: _raw_rows(tmp_path, d) for d in store.DATASETS}
    assert store.merge_small_files(tmp_path, "s", fanin=7) == 0  # nothing to merge
    assert store.merge_small_files(tmp_path, "s", fanin=6) == 3  # all six into one file
    for dataset in store.DATASETS:
        (path,) = store.part_files(tmp_path, dataset, "s")
        assert store.file_level(path) == 1
        assert _raw_rows(tmp_path, dataset) == raw[dataset]  # nothing twice, even raw
        assert not [p for p in (tmp_path / dataset / "study=s").iterdir() if p.name[0] == "."]
    _assert_same(_snapshot(tmp_path), before)


def test_merging_after_every_batch_keeps_few_files_per_level(tmp_path, items):
    merges = 0
    for index in range(len(items)):  # as the scheduler does: merge after every batch
        store.write_batch(tmp_path, "s", items[index : index + 1], durable=False)
        merges += store.merge_small_files(tmp_path, "s", fanin=2, durable=False)
    # fanin 2: parts pair into level 1 (batches 2, 4, 6), level-1 pairs into level 2 (4)
    assert merges == 3 * 4
    for dataset in store.DATASETS:
        levels = sorted(store.file_level(p) for p in store.part_files(tmp_path, dataset, "s"))
        assert levels == [1, 2]
    before = _snapshot(tmp_path)
    assert len(before[0]) == len(items)
    _assert_same(_snapshot(tmp_path), before)
    # a resumed study adds parts beside merged files; the loaders see everything
    extra = [("c", run(RunConfig(log_every=100), "hard", CYCLES, 7))]
    store.write_batch(tmp_path, "s", extra, durable=False)
    assert len(store.load_runs(tmp_path)) == len(items) + 1
    assert store.stored_run_ids(tmp_path, "s") == {r.run_id for _, r in items + extra}
    with pytest.raises(store.StoreError, match="fanin"):
        store.merge_small_files(tmp_path, "s", fanin=1)


def test_compaction_sorts_by_run_and_sizes_row_groups(tmp_path, items, monkeypatch):
    _store(tmp_path, items, 3)
    before = _snapshot(tmp_path)
    monkeypatch.setitem(store.ROW_GROUP_ROWS, "traces", 7)  # several groups in a small file
    report = store.compact_study(tmp_path, "s")
    assert report.files_before == {"traces": 3, "events": 3, "runs": 3}
    assert report.files_after == {"traces": 1, "events": 1, "runs": 1}
    assert report.rows["runs"] == len(items)
    assert report.rows["traces"] == sum(len(r.traces) for _, r in items)
    _assert_same(_snapshot(tmp_path), before)
    for dataset in store.DATASETS:
        (path,) = store.part_files(tmp_path, dataset, "s")
        assert store.file_level(path) == store.COMPACT_LEVEL
        table = pq.read_table(path)
        ids = table.column("run_id").to_pylist()
        assert ids == sorted(ids)  # sorted by run id ...
        if dataset == "traces":  # ... then cycle; each run's events in their own order
            cycles = table.to_pandas().groupby("run_id")["cycle"].apply(list)
            assert all(c == sorted(c) for c in cycles)
            meta = pq.read_metadata(path)
            assert meta.num_row_groups == -(-meta.num_rows // 7)
        if dataset == "events":
            for _, result in items:
                mine = table.to_pandas()
                mine = mine[mine["run_id"] == result.run_id]
                assert list(mine["neuron_id"]) == list(result.events["neuron_id"])
        assert pq.read_schema(path).metadata[b"schema_version"] == str(SCHEMA_VERSION).encode()
    # compacting a compacted study changes nothing; a filter on run ids reads few groups
    again = store.compact_study(tmp_path, "s")
    assert again.files_before == again.files_after == {"traces": 1, "events": 1, "runs": 1}
    one = items[2][1].run_id
    traces = store.load_traces(tmp_path, run_id=one)
    assert set(traces["run_id"]) == {one} and len(traces) == len(items[2][1].traces)


# -- a kill at every step of compaction --------------------------------------------------
KILLED, FINISHED, FAILED = 71, 72, 73


def _compact_until_step(root: Path, step: int) -> int:
    """Compact ``root`` in a forked child that dies (``os._exit``, no clean-up runs, as
    under SIGKILL) right before its ``step``-th file-system step: a rename, a deletion, a
    flush of a file or of a directory to disk. Returns the child's exit code."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            count = [0]

            def killing(real):
                def step_then(*args, **kwargs):
                    count[0] += 1
                    if count[0] == step:
                        os._exit(KILLED)
                    return real(*args, **kwargs)

                return step_then

            os.replace = killing(os.replace)
            os.fsync = killing(os.fsync)
            store._remove = killing(store._remove)
            store._fsync_dir = killing(store._fsync_dir)
            store.compact_study(root, "s")
            os._exit(FINISHED)
        except BaseException:  # noqa: BLE001 - any failure must end the child here
            os._exit(FAILED)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_kill_at_every_step_of_compaction_loses_and_doubles_nothing(tmp_path, items):
    base = tmp_path / "base"
    _store(base, items[:3], 3)
    store.merge_small_files(base, "s", fanin=2, durable=False)  # a level-1 file and a part
    _store(base, items[3:], 2)  # then two more parts
    expected = _snapshot(base)
    raw = {d: _raw_rows(base, d) for d in store.DATASETS}
    step = 1
    while True:
        root = tmp_path / f"killed-at-{step}"
        shutil.copytree(base, root)
        code = _compact_until_step(root, step)
        assert code in (KILLED, FINISHED), f"compaction failed at step {step}"
        # right after the kill: the loaders see every run once
        _assert_same(_snapshot(root), expected)
        assert store.stored_run_ids(root, "s") == {r.run_id for _, r in items}
        # the next start cleans up; then even a plain pandas reader sees every row once
        store.clean_study(root, "s")
        for dataset in store.DATASETS:
            assert _raw_rows(root, dataset) == raw[dataset], (step, dataset)
        _assert_same(_snapshot(root), expected)
        # and compacting again completes the job
        report = store.compact_study(root, "s")
        assert set(report.files_after.values()) == {1}
        _assert_same(_snapshot(root), expected)
        for dataset in store.DATASETS:
            assert not [p for p in (root / dataset / "study=s").iterdir() if p.name[0] == "."]
        shutil.rmtree(root)
        if code == FINISHED:
            break
        step += 1
    # three datasets, each: temporary fsync, list rename, merged rename, directory syncs,
    # deletions; a kill was tried before every one of them
    assert step > 3 * 8


def test_a_reader_during_a_merge_retries_instead_of_failing(tmp_path, items, monkeypatch):
    _store(tmp_path, items, 6)
    expected = _snapshot(tmp_path)
    real = store.ds.dataset
    merged = []

    def merge_first(*args, **kwargs):  # a merge lands between listing and reading
        if not merged:
            merged.append(0)
            merged[0] = store.merge_small_files(tmp_path, "s", fanin=2, durable=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.ds, "dataset", merge_first)
    got = _snapshot(tmp_path)
    monkeypatch.undo()
    assert merged == [3]  # the reader's first listing named files that were then gone
    _assert_same(got, expected)


# -- stores written before merging existed ---------------------------------------------------
def test_a_store_of_engine_0_2_0_is_read_resumed_and_compacted(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(OLD_STORE, root)
    assert len(store.part_files(root, "runs", "old")) == 6  # one part per run
    before = _snapshot(root)
    assert len(before[0]) == 6 and set(before[0]["condition"]) == {"a", "b"}
    # read in today's schema: renamed columns under their new names, added fields filled
    runs, traces, events = before
    assert set(runs["criterion"]) == {"multiplier"} and set(runs["optimizer"]) == {"adagrad"}
    assert (runs["step_clip"] == 0).all() and runs["weight_penalty"].isna().all()
    assert len(store.load_runs(root, criterion="multiplier", optimizer="adagrad")) == 6
    assert store.load_runs(root, criterion="outgoing").empty
    assert traces["strength_sum"].notna().all() and "multiplier_sum" not in traces
    assert events["strength"].notna().all() and (events["strength"] > 0).all()
    study = scheduler.load_study(OLD_STUDY)
    assert {s.run_id for s in study.specs} == set(before[0]["run_id"])
    # resume the same study with a fourth seed: only the two new runs run, then compaction
    grown = scheduler.parse_study(
        {
            "name": "old",
            "task": "hard",
            "cycles": 300,
            "seeds": 4,
            "params": {"log_every": 100},
            "conditions": [{"name": "a"}, {"name": "b", "delete_prob": 0.1}],
        },
        "<grown>",
    )
    stored_build = store.stored_builds(root, "old")[0]
    report = scheduler.run_study(
        grown, root, jobs=1, mix_builds=not store.same_build(stored_build, build_info())
    )
    assert report.skipped == 6 and report.done == 2
    assert report.compaction.files_after == {"traces": 1, "events": 1, "runs": 1}
    after = _snapshot(root)
    old_ids = set(before[0]["run_id"])
    for new, old in zip(after, before, strict=True):
        kept = new[new["run_id"].isin(old_ids)].reset_index(drop=True)
        pd.testing.assert_frame_equal(kept, old.reset_index(drop=True))
    assert len(after[0]) == 8
    (merged,) = store.part_files(root, "traces", "old")
    assert "strength_sum" in pq.read_schema(merged).names  # rewritten in today's schema
    assert "multiplier_sum" not in pq.read_schema(merged).names
    # and the compacted store still resumes: nothing left to run
    again = scheduler.run_study(grown, root, jobs=1, mix_builds=True)
    assert again.skipped == 8 and again.done == 0


def test_cli_compact(tmp_path, items, capsys):
    from engine.cli import main

    _store(tmp_path, items[:2], 2)
    store.write_batch(tmp_path, "t", items[2:3], durable=False)
    assert main(["results", "compact", str(tmp_path), "--study", "s"]) == 0
    out = capsys.readouterr().out
    assert "study s: 2 runs, 6 files -> 3" in out
    assert len(store.part_files(tmp_path, "runs", "t")) == 1
    assert main(["results", "compact", str(tmp_path)]) == 0
    assert "study t: 1 runs" in capsys.readouterr().out
    assert main(["results", "compact", str(tmp_path), "--study", "nope"]) == 2
    assert "stored studies are s, t" in capsys.readouterr().err
    assert main(["results", "compact", str(tmp_path / "missing")]) == 2
