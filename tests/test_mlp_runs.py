"""Whole feedforward runs: bad input refused in one line, the same bits whatever drives
them, statistics against the teachers' floors, digits, the store and the summaries."""

from __future__ import annotations

import numpy as np
import pytest

from engine import RunConfig, run, store
from engine.cli import main
from engine.config import ConfigError
from engine.scheduler import load_study, run_study

TEACHER = "teacher:8x1"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--set", "model=cnn"], "model = 'cnn' is not allowed: one of rnn, mlp"),
        (["--set", "model=mlp", "--task", "hard"], "is a task of the recurrent model"),
        (["--task", "teacher:8x1"], "is a task of the feedforward model: set model = 'mlp'"),
        (["--set", "batch_size=64"], "batch_size = 64 is not allowed with model = 'rnn'"),
        (["--set", "model=mlp", "--set", "seq_len=8"], "seq_len = 8 is not allowed with model"),
        (
            ["--set", "model=mlp", "--set", "inherit_deleted=true"],
            "inherit_deleted = True is not allowed with model = 'mlp'",
        ),
        (["--set", "model=mlp", "--set", "batch_size=0"], "batch_size = 0 is out of range"),
        (["--set", "model=mlp", "--set", "max_blocks=65"], "allowed [2, 64]"),
        (
            ["--set", "model=mlp", "--set", "initial_blocks=8"],
            "initial_blocks = 8 is out of range: allowed [1, 7] (max_blocks - 1",
        ),
        (
            ["--set", "model=mlp", "--task", "teacher:2000x1"],
            "teacher width W must be in [1, 1024]",
        ),
        (
            ["--set", "model=mlp", "--task", "teacher:4x1@0,digits@50"],
            "mixes digits with teacher phases",
        ),
    ],
)
def test_bad_feedforward_input_gives_one_line(argv, expected, capsys):
    assert main(["run", "--cycles", "100", "-q", *argv]) == 2
    captured = capsys.readouterr()
    assert expected in _one_error_line(captured.err) and captured.out == ""


def test_a_bad_study_file_names_the_condition(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\ntask = "teacher:4x1"\ncycles = 100\nseeds = 1\n[params]\nmodel = "mlp"\n'
        '[[conditions]]\nname = "bad"\ntask = "hard"\n'
    )
    with pytest.raises(ConfigError, match="bad.*is a task of the recurrent model"):
        load_study(path)


def test_same_seed_same_bits_and_default_rnn_ids_unchanged():
    """Two runs of one seed are identical to the last bit; a recurrent run's id does not
    see the feedforward fields (README's example id)."""
    config = RunConfig(model="mlp", add_prob=0.3, log_every=100)
    first = run(config, "teacher:4x2", 600, 3)
    second = run(config, "teacher:4x2", 600, 3)
    assert first.traces.tobytes() == second.traces.tobytes()
    assert first.events.tobytes() == second.events.tobytes()
    assert first.final_loss.hex() == second.final_loss.hex()
    other = run(config, "teacher:4x2", 600, 4)
    assert other.final_loss != first.final_loss
    assert first.run_id != run(config.replace(batch_size=16), "teacher:4x2", 600, 3).run_id
    from engine.run import run_id

    assert run_id(RunConfig(), "hard", 300_000, 0) == "bacfea46d2a0324f"


def test_a_network_of_the_teachers_size_learns_to_near_its_floor():
    """A fixed network of the teacher's shape ends within 0.25 nats of the teacher's
    conditional entropy, and never measurably below it: the smoothed loss averages
    about 32,000 examples, so its noise is a few thousandths of a nat."""
    config = RunConfig(model="mlp", mode="fixed", hidden_size=8, log_every=1000)
    result = run(config, TEACHER, 20_000, 0)
    floor = result.entropy_floor
    assert 0.3 < floor < np.log(10)
    assert floor - 0.02 < result.final_loss < floor + 0.25
    assert result.phase_floors == (floor,)


def test_learned_width_and_depth_are_reported_and_stored(tmp_path):
    """A variable run reports its depth and widths; they match its trace's last record
    and its events (births minus deaths); the store keeps them per run."""
    config = RunConfig(model="mlp", add_prob=0.2, log_every=500)
    result = run(config, TEACHER, 4000, 1)
    assert result.final_blocks == len(result.final_widths) >= 1
    assert sum(result.final_widths) == result.final_neurons == result.traces["neurons"][-1]
    assert result.traces["blocks"][-1] == result.final_blocks
    events = result.events
    neurons = events[events["level"] == 0]
    blocks = events[events["level"] == 1]
    alive = np.sum(neurons["kind"] == 0) - np.sum(neurons["kind"] == 1)
    assert alive == result.final_neurons
    assert np.sum(blocks["kind"] == 0) - np.sum(blocks["kind"] == 1) == result.final_blocks
    store.write_batch(tmp_path, "s", [("c", result)])
    runs = store.load_runs(tmp_path)
    assert list(runs["final_widths"].iloc[0]) == list(result.final_widths)
    assert runs["model"].iloc[0] == "mlp" and runs["final_blocks"].iloc[0] == result.final_blocks
    stored = store.load_events(tmp_path)
    assert len(stored) == len(events)
    assert set(stored["block_id"]) == set(events["block_id"].tolist())


def test_digits_reports_test_accuracy():
    """On the digits, 3,000 minibatch steps reach over 90% on the held-out 20%."""
    pytest.importorskip("sklearn")
    result = run(RunConfig(model="mlp", log_every=1000), "digits", 3000, 0)
    assert result.entropy_floor is None and result.phase_floors == (None,)
    assert result.test_accuracy > 0.9 and 0 < result.test_loss < 0.5
    assert np.all(np.isfinite(result.traces["test_accuracy"]))


def test_a_schedule_of_teachers_reuses_the_first_teacher():
    """teacher A, then B, then A again: the third phase has the first phase's floor (the
    same teacher), the second its own."""
    task = "teacher:2x1@0,teacher:16x2@300,teacher:2x1@600"
    result = run(RunConfig(model="mlp", log_every=100), task, 900, 5)
    easy, hard, again = result.phase_floors
    assert easy == again != hard
    assert result.entropy_floor == again
    assert list(np.unique(result.traces["phase"])) == [0, 1, 2]


def test_a_study_of_both_models_is_the_same_on_every_backend(tmp_path):
    """One study mixing recurrent and feedforward runs (two record dtypes in one batch):
    one worker, threads and processes store the same rows."""
    path = tmp_path / "mixed.toml"
    path.write_text(
        'name = "mixed"\ntask = "hard"\ncycles = 400\nseeds = 2\n[params]\nlog_every = 100\n'
        '[[conditions]]\nname = "rnn"\n'
        '[[conditions]]\nname = "mlp"\nmodel = "mlp"\ntask = "teacher:4x1"\n'
    )
    study = load_study(path)
    frames = {}
    for name, jobs, backend in (
        ("one", 1, "auto"),
        ("threads", 2, "threading"),
        ("loky", 2, "loky"),
    ):
        run_study(study, tmp_path / name, jobs=jobs, backend=backend, batch_size=4)
        frames[name] = (
            store.load_runs(tmp_path / name).drop(columns=list(store.TIMING_COLUMNS)),
            store.load_traces(tmp_path / name),
            store.load_events(tmp_path / name),
        )
    for name in ("threads", "loky"):
        for left, right in zip(frames["one"], frames[name]):
            key = [c for c in ("run_id", "cycle", "neuron_id", "kind", "block_id") if c in left]
            left = left.sort_values(key).reset_index(drop=True)
            right = right.sort_values(key).reset_index(drop=True)
            assert left.drop(columns=["final_widths", "phase_floors"], errors="ignore").equals(
                right.drop(columns=["final_widths", "phase_floors"], errors="ignore")
            )
    runs = frames["one"][0]
    assert set(runs["model"]) == {"rnn", "mlp"}
    summary = store.summary(tmp_path / "one")
    assert {"final_blocks_median", "excess_loss_median"} <= set(summary.columns)
