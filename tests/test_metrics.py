"""Adaptability metrics on hand-built traces whose answers are known, and from a store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine import RunConfig, run, store
from engine.cli import main
from engine.metrics import adaptability, adaptability_summary, run_adaptability, settle_cycles
from engine.tasks import entropy_floor

EASY = entropy_floor("easy", RunConfig())
HARD = entropy_floor("hard", RunConfig())


def _row(task: str, cycles: int, **config) -> pd.Series:
    return pd.Series({"task": task, "cycles": cycles, **RunConfig(**config).to_dict()})


def _trace(cycles, phase, neurons, loss) -> pd.DataFrame:
    return pd.DataFrame({"cycle": cycles, "phase": phase, "neurons": neurons, "mean_loss": loss})


def test_easy_hard_easy_by_hand():
    # 3,000 cycles, a record every 100: phases [0, 1000), [1000, 2000), [2000, 3000); the
    # record at cycle c follows cycle c - 1, so it belongs to phase (c - 1) // 1000
    cycles = np.arange(100, 3001, 100)
    phase = (cycles - 1) // 1000
    neurons = np.select([phase == 0, phase == 1], [5, 5 + (cycles - 1000) * 15 // 1000], 14)
    loss = np.empty(cycles.size)
    loss[phase == 0] = EASY * 1.01
    # after the switch: 30 nats falling linearly to 1.02 x floor at cycle 1500, then flat
    hard = cycles[phase == 1]
    loss[phase == 1] = np.where(
        hard < 1500, 30 + (HARD * 1.02 - 30) * (hard - 1000) / 500, HARD * 1.02
    )
    loss[phase == 2] = EASY * 1.03
    got = run_adaptability(_row("easy-hard-easy", 3000), _trace(cycles, phase, neurons, loss))
    assert (got["n_phase1"], got["n_phase2"], got["n_phase3"]) == (5, 20, 14)
    assert got["growth"] == 15 and got["shrinkage"] == pytest.approx(6 / 15)
    assert got["hard_excess"] == pytest.approx(0.02)
    assert got["easy_excess"] == pytest.approx(0.03)
    # within 5% of 1.02 x 8.959 = 9.138 from above: 30 - 20.862 (c - 1000) / 500 <= 9.595
    # first at c - 1000 >= 489.1, that is the record at cycle 1500
    assert got["recovery_cycles_1"] == 500
    assert got["recovery_cycles_2"] == 100  # the first record after the switch back


def test_hard_easy_counts_growth_from_the_initial_size():
    cycles = np.arange(100, 2001, 100)
    phase = (cycles - 1) // 1000
    neurons = np.where(phase == 0, 31, 31)  # grew to 31 from 3, never shrank
    loss = np.where(phase == 0, HARD * 1.1, EASY * 1.2)
    got = run_adaptability(
        _row("hard-easy", 2000, hidden_size=3), _trace(cycles, phase, neurons, loss)
    )
    assert got["growth"] == 28 and got["shrinkage"] == 0.0
    assert got["hard_excess"] == pytest.approx(0.1) and got["easy_excess"] == pytest.approx(0.2)
    assert "n_phase3" not in got and "recovery_cycles_2" not in got


def test_no_growth_gives_null_shrinkage_and_file_tasks_no_excess(tmp_path):
    cycles = np.arange(100, 3001, 100)
    phase = (cycles - 1) // 1000
    got = run_adaptability(
        _row("easy-hard-easy", 3000), _trace(cycles, phase, np.full(30, 4), np.full(30, 10.0))
    )
    assert got["growth"] == 0 and math.isnan(got["shrinkage"])
    text = tmp_path / "t.txt"
    text.write_text("abcd" * 200)
    schedule = f"file:{text}@0,easy@1000"
    got = run_adaptability(
        _row(schedule, 2000), _trace(cycles[:20], phase[:20], np.full(20, 4), np.full(20, 10.0))
    )
    assert math.isnan(got["hard_excess"]) and got["easy_excess"] == pytest.approx(10 / EASY - 1)


def test_settle_cycles():
    cycles = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    loss = np.array([50, 40, 30, 20, 11, 10.4, 10, 10, 10, 10])
    assert settle_cycles(cycles, loss, 0, 100) == 60  # 10.4 is within 5% of 10, 11 is not
    assert math.isnan(settle_cycles(cycles, loss, 100, 200))  # no records


def test_adaptability_from_a_store_and_the_command(tmp_path, capsys):
    config = RunConfig(log_every=200, add_prob=0.5)
    items = [("ehe", run(config, "easy-hard-easy", 6000, seed)) for seed in range(3)]
    items.append(("one", run(config, "hard", 2000, 0)))  # no switch: left out
    store.write_batch(tmp_path, "s", items)
    frame = adaptability(tmp_path, "s")
    assert len(frame) == 3 and set(frame["condition"]) == {"ehe"}
    for _, result in items[:3]:
        row = frame[frame["run_id"] == result.run_id].iloc[0]
        traces = result.traces
        for k in range(3):
            assert row[f"n_phase{k + 1}"] == traces["neurons"][traces["phase"] == k][-1]
    table = adaptability_summary(frame, ["condition"])
    assert table.loc[0, "n_runs"] == 3
    assert table.loc[0, "growth_median"] == frame["growth"].median()
    assert main(["results", "adaptability", str(tmp_path), "--study", "s"]) == 0
    out = capsys.readouterr().out
    assert "shrinkage" in out and "recovery_cycles_2" in out
    assert main(["results", "adaptability", str(tmp_path), "--study", "s", "--by", "nope"]) == 2
    assert "not a column of runs" in capsys.readouterr().err
