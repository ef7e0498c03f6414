"""The compile target, the build record, the cache key, and exp/log/tanh accuracy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from entry import exp_of, log_of

from engine import RunConfig, run
from engine.jit import (
    SOURCES_HASH,
    TARGET,
    X86_64_V3_FEATURES,
    TargetError,
    build_info,
    resolve_target,
)

V3 = {name: True for name in X86_64_V3_FEATURES}


def test_portable_on_any_x86_host_with_the_baseline():
    for host, extra in (("znver3", {}), ("skylake-avx512", {"avx512f": True}), ("haswell", {})):
        target = resolve_target("portable", "x86_64", host, {**V3, **extra})
        assert (target.label, target.cpu_name, target.cpu_features) == (
            "x86_64-v3",
            "x86-64-v3",
            "",
        )
    assert resolve_target("portable", "AMD64", "znver4", V3).label == "x86_64-v3"


def test_a_host_without_avx2_falls_back_with_a_warning():
    with pytest.warns(RuntimeWarning, match="lacks avx2, fma"):
        target = resolve_target("portable", "x86_64", "core2", {**V3, "avx2": False, "fma": False})
    assert (target.label, target.cpu_name) == ("x86_64-v1", "x86-64")


def test_other_architectures_use_their_generic_cpu():
    target = resolve_target("portable", "aarch64", "neoverse-n1", {"neon": True})
    assert (target.label, target.cpu_name, target.portable) == ("aarch64-generic", "generic", True)
    assert resolve_target("portable", "arm64", "apple-m1", {}).label == "aarch64-generic"


def test_host_builds_are_marked_with_cpu_and_features():
    a = resolve_target("host", "x86_64", "znver4", {**V3, "avx512f": True})
    b = resolve_target("host", "x86_64", "znver4", {**V3, "avx512f": False})
    assert a.label.startswith("host-znver4-") and not a.portable
    assert a.label != b.label  # same name, other features: another build
    assert "+avx512f" in a.cpu_features and "-avx512f" in b.cpu_features


def test_unknown_target_is_refused_in_one_line():
    with pytest.raises(TargetError, match=r"DIFFRNN_TARGET = 'fast' is not allowed: one of "):
        resolve_target("fast", "x86_64", "znver3", V3)


def _diffrnn(*args, **env):
    full = dict(os.environ, **env)
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], env=full, capture_output=True, text=True
    )


def test_cli_refuses_a_bad_target_and_a_conflicting_numba_setting():
    done = _diffrnn("run", "--cycles", "10", DIFFRNN_TARGET="fastest")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "diffrnn: error: DIFFRNN_TARGET = 'fastest' is not allowed: one of portable, host"
    ]
    done = _diffrnn("run", "--cycles", "10", NUMBA_OPT="3")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("diffrnn: error: environment variable NUMBA_OPT = '3' would change")


def test_every_run_records_its_build():
    result = run(RunConfig(), "easy", 20, 0)
    assert result.build == build_info()
    assert result.build["compile_target"] == TARGET.label
    assert result.summary()["compile_target"] == TARGET.label


def test_the_cache_key_covers_every_kernel_source():
    from engine import kernels

    run(RunConfig(), "easy", 20, 0)
    locator = kernels._train._cache._impl.locator
    assert locator.get_source_stamp()[1] == SOURCES_HASH


def test_kernels_do_no_reference_counting_and_may_not_allocate():
    import numba

    from engine.jit import _POLICY

    @numba.njit(**_POLICY)
    def inner(arrays, i):
        return arrays[0][i] + arrays[1][i]

    @numba.njit(**_POLICY)
    def outer(arrays):
        total = 0.0
        for i in range(arrays[0].size):
            total += inner(arrays, i)
        return total

    arrays = (np.arange(3.0), np.ones(3))
    assert outer(arrays) == 6.0
    ir = "".join(outer.inspect_llvm().values())
    assert "NRT_incref" not in ir and "NRT_decref" not in ir

    @numba.njit(**_POLICY)
    def allocates(n):
        buffer = np.zeros(n)
        return buffer.sum()

    refused = "NRT required|returning of array passed"
    with pytest.raises(numba.core.errors.NumbaError, match=refused):
        allocates(3)


def _ulps(got, ref):
    return np.abs(got - ref) / np.spacing(np.abs(ref))


def test_exp_within_1_ulp_and_its_limits():
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.uniform(-708, 709.78, 100_000), rng.uniform(-5, 5, 50_000)])
    got = np.empty_like(xs)
    exp_of(xs, got)
    assert _ulps(got, np.exp(xs)).max() <= 1.0
    special = np.array([np.nan, np.inf, -np.inf, 709.79, 800.0, -745.2, -1e300, 0.0, -0.0])
    out = np.empty_like(special)
    exp_of(special, out)
    assert np.isnan(out[0])
    assert list(out[1:]) == [np.inf, 0.0, np.inf, np.inf, 0.0, 0.0, 1.0, 1.0]
    subnormal = np.array([-740.0, -720.0, -708.5])  # results below 2^-1022: within 1 unit
    exp_of(subnormal, out[:3])
    assert np.all(np.abs(out[:3] - np.exp(subnormal)) <= np.spacing(np.exp(subnormal)))


def test_log_within_1_ulp_and_its_limits():
    rng = np.random.default_rng(1)
    xs = np.concatenate(
        [np.exp(rng.uniform(-745, 709, 100_000)), rng.uniform(0, 1, 50_000), [5e-324, 1e-310]]
    )
    got = np.empty_like(xs)
    log_of(xs, got)
    assert _ulps(got, np.log(xs)).max() <= 1.0
    special = np.array([0.0, -0.0, -1.0, np.nan, np.inf, 1.0, -np.inf])
    out = np.empty_like(special)
    log_of(special, out)
    assert list(out[[0, 1, 4, 5]]) == [-np.inf, -np.inf, np.inf, 0.0]
    assert np.all(np.isnan(out[[2, 3, 6]]))


def test_a_child_process_may_choose_another_target():
    """The NUMBA_* settings a parent engine process put in the environment are its own,
    not the user's: a child asking for the host build gets it (and a portable child the
    portable one), while a user's own conflicting setting is still refused."""
    code = "import engine.jit as j; print(j.TARGET.label, j.TARGET.cpu_name)"
    host = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, DIFFRNN_TARGET="host"),
        capture_output=True,
        text=True,
    )
    assert host.returncode == 0, host.stderr
    label, cpu = host.stdout.split()
    assert label.startswith("host-") and cpu != "x86-64-v3"
    portable = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True
    )
    assert portable.stdout.split() == [TARGET.label, TARGET.cpu_name]
