"""Golden runs: a few short runs whose results are committed bit for bit.

``tests/golden_runs.json`` holds, per run, the final loss as an exact hexadecimal float,
the final size, and SHA-256 digests of the trace and event records and of the final
network (every active weight and optimizer memory). ``tests/test_golden.py`` recomputes
them and requires equality; ``bench/portability.py`` recomputes them in processes that
believe they run on other CPUs.

    python tests/golden_runs.py            # print the digests of this build
    python tests/golden_runs.py --write    # rewrite the committed file (numerics changed)

The digests hold for one compile target (``x86_64-v3``) and the package versions the
file names: the promise of ``engine.jit``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
GOLDEN_FILE = HERE / "golden_runs.json"

# name: (config changes, task, cycles, seed); a few thousand cycles each, about 2 s in all
CASES = {
    "easy": ({}, "easy", 3000, 11),
    "hard": ({}, "hard", 4000, 12),
    "easy-hard-easy": ({"log_every": 250}, "easy-hard-easy", 4500, 13),
    "fixed-20": ({"mode": "fixed", "hidden_size": 20}, "hard", 3000, 14),
    "float32": ({"dtype": "float32"}, "hard", 3000, 15),
    "variable-grown": ({"add_prob": 0.5, "delete_prob": 0.5, "capacity": 40}, "hard", 2500, 16),
    # the later method (its studies are stored too), and inheritance under the first
    "later-easy-hard-easy": (
        {"criterion": "outgoing", "optimizer": "rmsprop", "log_every": 250},
        "easy-hard-easy",
        4000,
        17,
    ),
    "inherit": ({"inherit_deleted": True, "add_prob": 0.5, "delete_prob": 0.5}, "hard", 3000, 18),
    # the feedforward model: widths and depth learned, a schedule of teachers, the later
    # method on digits, float32, and a fixed network
    "mlp-teacher": ({"model": "mlp", "log_every": 250}, "teacher:8x2", 3000, 21),
    "mlp-schedule": (
        {"model": "mlp", "add_prob": 0.3, "delete_prob": 0.5, "log_every": 250},
        "teacher:2x1@0,teacher:16x2@1000,teacher:2x1@2000",
        3000,
        22,
    ),
    "mlp-digits-outgoing": ({"model": "mlp", "criterion": "outgoing"}, "digits", 2000, 23),
    "mlp-float32": ({"model": "mlp", "dtype": "float32"}, "teacher:8x1", 2000, 24),
    "mlp-fixed": (
        {"model": "mlp", "mode": "fixed", "hidden_size": 8, "initial_blocks": 2},
        "teacher:8x2",
        2000,
        25,
    ),
}


def _sha(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def digest(name: str) -> dict:
    """Run the golden case ``name`` and return its digests."""
    from engine import RunConfig, run
    from engine.mlp.state import active_mlp_view
    from engine.state import active_view

    changes, task, cycles, seed = CASES[name]
    result = run(RunConfig(**changes), task, cycles, seed, keep_network=True)
    view = (active_mlp_view if result.final_blocks is not None else active_view)(result.network)
    return {
        "run_id": result.run_id,
        "status": result.status,
        "final_loss": float(result.final_loss).hex(),
        "final_neurons": result.final_neurons,
        "traces_sha256": _sha(result.traces),
        "events_sha256": _sha(result.events),
        "network_sha256": _sha(*(view[k] for k in sorted(view))),
    } | (_feedforward(result) if result.final_blocks is not None else {})


def _feedforward(result) -> dict:
    """A feedforward run's own outcome: its depth and widths, its floor (the teacher's
    Monte Carlo estimate, compiled portably too) and its test set's loss."""

    def hexed(value):
        return None if value is None else float(value).hex()

    return {
        "final_widths": list(result.final_widths),
        "entropy_floor": hexed(result.entropy_floor),
        "test_loss": hexed(result.test_loss),
    }


def all_digests(names=None) -> dict:
    """The build and the digests of ``names`` (default: every case)."""
    from engine.jit import build_info

    names = CASES if names is None else names
    return {"build": build_info(), "runs": {name: digest(name) for name in names}}


def main(argv: list[str]) -> int:
    data = all_digests()
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if "--write" in argv:
        GOLDEN_FILE.write_text(text)
        print(f"wrote {GOLDEN_FILE}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main(sys.argv[1:]))
