"""Golden runs: the committed bits, recomputed, and recomputed as if on an AVX-512 CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from golden_runs import CASES, GOLDEN_FILE, REPO_ROOT, digest

from engine.jit import TARGET, build_info

GOLDEN = json.loads(GOLDEN_FILE.read_text())
PORTABLE = GOLDEN["build"]["compile_target"]
needs_portable_build = pytest.mark.skipif(
    TARGET.label != PORTABLE,
    reason=f"the golden bits are those of {PORTABLE}; this process compiles for {TARGET.label}",
)


def test_golden_file_covers_every_case_and_names_its_build():
    assert set(GOLDEN["runs"]) == set(CASES)
    assert set(GOLDEN["build"]) == set(build_info())


def test_golden_build_is_the_pinned_one():
    # numba and llvmlite are pinned in pyproject.toml: other versions make other code
    current = build_info()
    for key in ("engine_version", "numba_version", "llvmlite_version"):
        assert current[key] == GOLDEN["build"][key], (
            f"{key} is {current[key]}, the golden runs were made with {GOLDEN['build'][key]}: "
            "if the change is intended, rerun python tests/golden_runs.py --write"
        )


@needs_portable_build
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_run_is_bit_identical(name):
    assert digest(name) == GOLDEN["runs"][name]


@needs_portable_build
def test_golden_runs_compiled_as_if_on_an_avx512_cpu(tmp_path):
    """A fresh process, an empty cache, LLVM told the host is a Skylake-SP with AVX-512:
    the portable build compiles the same code and gives the same bits. Every recurrent
    case, and of the feedforward ones the schedule (one compiled variant: each costs a
    cold compile of tens of seconds; bench/portability.py runs them all)."""
    names = [n for n in sorted(CASES) if not n.startswith("mlp-") or n == "mlp-schedule"]
    code = textwrap.dedent(f"""
        import json, sys
        sys.path[:0] = [{str(REPO_ROOT / "bench")!r}, {str(REPO_ROOT / "tests")!r}]
        import portability
        portability.pretend("skylake-avx512", portability.AVX512, ())
        import golden_runs
        from engine.jit import TARGET
        names = {names!r}
        print(json.dumps({{"target": TARGET.label, **golden_runs.all_digests(names)}}))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("DIFFRNN_TARGET", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["target"] == PORTABLE
    assert found["runs"] == {name: GOLDEN["runs"][name] for name in names}
