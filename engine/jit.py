"""The one place that says how kernels are compiled, and for which CPU.

**Target.** By default every kernel is compiled for a fixed baseline instruction set, not
for the host CPU, so that a run gives the same bits on every machine of that baseline:

- on x86-64 the baseline is ``x86-64-v3`` (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE), the
  level of every x86-64 server CPU since Intel Haswell (2013) and AMD Zen (2017). It keeps
  the two things the kernels gain most from, 4-wide float64 vectors and fused
  multiply-add, and leaves out AVX-512, which many current machines lack and whose
  different vector width would round reductions differently. A host without it (old or
  low-power CPUs) falls back to the plain ``x86-64`` baseline, with a warning: those runs
  are labelled ``x86_64-v1`` and do not match ``x86_64-v3`` runs.
- on other architectures (aarch64, ...) LLVM's ``generic`` CPU of that architecture.

``DIFFRNN_TARGET=host`` compiles for the host CPU instead (its scheduling model, every
vector extension it has: AVX-512 on such machines). It is an opt-in for the last percent
of speed; its runs are labelled ``host-<cpu>-<hash of the feature set>`` in the ``runs``
table and are reproducible on the same CPU model and features only.

The target is process-wide (Numba has one code generator per process), so it is chosen
here, before Numba builds that code generator, through Numba's own environment variables.

**Flags.** Every ``@kernel`` is nopython, releases the GIL (so the threading backend runs
kernels in parallel) and is cached on disk. fastmath is on, but without ``nnan`` and
``ninf``: the run loop checks the loss for NaN/inf to stop diverged runs, and those flags
would let LLVM fold such checks away. ``error_model="numpy"`` drops the division-by-zero
checks that Python semantics would add inside hot loops. LLVM runs at ``-O1`` (with the
vectorisers on): measured here, that compiles 20% faster than -O3 for the same speed.
Intel SVML is switched off: its vector exp/log choose their code by the host CPU.

**No reference counting.** Kernels never allocate (the caller allocates every buffer), so
Numba's runtime (NRT) is off for them (``_nrt=False``): without it Numba emits no
incref/decref of every array of the ``Network`` and ``Scratch`` tuples at every call of a
kernel taking them, which took a quarter of the cold compile (a float64 run's kernels:
17.1-17.8 s with it, 12.4-14.3 s without, the same bits). A kernel that allocates fails
to compile (Numba says "NRT required but not enabled", or that it accepts "only returning
of array passed into the function as argument"): pass it a buffer instead.

**Cache.** Kernels are cached on disk (``NUMBA_CACHE_DIR`` or ``__pycache__``), keyed by
Numba on the target and on each function's own source file. A kernel here calls kernels
of other modules, whose changes Numba does not see; so every kernel's key also carries a
hash of all the engine's kernel sources (``KERNEL_SOURCES``, this module included): an
edited or upgraded engine never runs stale machine code.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError
from .version import ENGINE_VERSION

TARGET_ENV = "DIFFRNN_TARGET"
_SETTINGS_MARK = "DIFFRNN_NUMBA_SETTINGS"  # which NUMBA_* variables the engine set itself
TARGETS = ("portable", "host")
PORTABLE_X86 = "x86-64-v3"
# what x86-64-v3 (and the v2 level below it) requires of the host, in LLVM's feature names
X86_64_V3_FEATURES = (
    "cx16", "popcnt", "sse4.1", "sse4.2", "ssse3", "sahf",  # v2
    "avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave",  # v3
)  # fmt: skip
# Numba settings that change the machine code, with the values this module gives them
NUMBA_SETTINGS = {
    "NUMBA_OPT": "1",
    "NUMBA_LOOP_VECTORIZE": "1",
    "NUMBA_SLP_VECTORIZE": "1",
    "NUMBA_DISABLE_INTEL_SVML": "1",
}
FASTMATH_FLAGS = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


class TargetError(ConfigError):
    """The compile target asked for cannot be used in this process."""


@dataclass(frozen=True)
class CompileTarget:
    label: str  # what the runs table records
    cpu_name: str  # what LLVM compiles for
    cpu_features: str  # LLVM feature string ("" = the CPU's own)
    portable: bool


def resolve_target(
    requested: str, machine: str, host_name: str, host_features: dict[str, bool]
) -> CompileTarget:
    """The target for ``requested`` on a host (pure: the host is passed in, for tests)."""
    if requested not in TARGETS:
        raise TargetError(
            f"{TARGET_ENV} = {requested!r} is not allowed: one of {', '.join(TARGETS)}"
        )
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())
    if requested == "host":
        enabled = ",".join(sorted(("+" if on else "-") + k for k, on in host_features.items()))
        digest = hashlib.sha256(enabled.encode()).hexdigest()[:8]
        return CompileTarget(f"host-{host_name}-{digest}", host_name, enabled, False)
    if arch == "x86_64":
        missing = [f for f in X86_64_V3_FEATURES if not host_features.get(f, False)]
        if not missing:
            return CompileTarget("x86_64-v3", PORTABLE_X86, "", True)
        warnings.warn(
            f"this CPU lacks {', '.join(missing)} of the portable baseline x86-64-v3: "
            "compiling for plain x86-64 instead; its runs are labelled x86_64-v1 and give "
            "other bits than x86_64-v3 runs",
            RuntimeWarning,
            stacklevel=2,
        )
        return CompileTarget("x86_64-v1", "x86-64", "", True)
    return CompileTarget(f"{arch}-generic", "generic", "", True)


def _host() -> tuple[str, dict[str, bool]]:
    import llvmlite.binding as llvm

    try:
        features = dict(llvm.get_host_cpu_features())
    except RuntimeError:  # LLVM cannot tell on some platforms
        features = {}
    return llvm.get_host_cpu_name(), features


def _configure_numba(target: CompileTarget) -> None:
    """Point Numba's code generator at ``target`` (before it exists) and check it took."""
    wanted = {"NUMBA_CPU_NAME": target.cpu_name, "NUMBA_CPU_FEATURES": target.cpu_features}
    wanted.update(NUMBA_SETTINGS)
    # values a parent process of the engine set (and child processes inherit) are not the
    # user's: a child may choose another target (DIFFRNN_TARGET=host in its environment)
    try:
        inherited = json.loads(os.environ.get(_SETTINGS_MARK, "{}"))
    except ValueError:
        inherited = {}
    for name, value in wanted.items():
        current = os.environ.get(name)
        if current is not None and inherited.get(name) == current:
            current = None
        if current is not None and current != value and target.portable:
            raise TargetError(
                f"environment variable {name} = {current!r} would change the portable "
                f"build (it needs {value!r}): unset it, or set {TARGET_ENV}=host"
            )
        if current is None:
            os.environ[name] = value
            inherited[name] = value
        else:
            inherited.pop(name, None)
    os.environ[_SETTINGS_MARK] = json.dumps(inherited, sort_keys=True)
    import numba.core.config
    from numba.core.registry import cpu_target

    numba.core.config.reload_config()
    if target.portable and "_toplevel_target_context" in vars(cpu_target):
        # Numba compiled something before this module was imported: its code generator
        # was built for whatever target was configured then
        built = cpu_target.target_context.codegen()._tm_features
        if built != target.cpu_features:
            raise TargetError(
                "Numba's code generator was set up before the engine was imported, for "
                f"another CPU target than {target.label}: import engine before compiling "
                f"other Numba code, or set {TARGET_ENV}=host"
            )


def _choose_target() -> tuple[CompileTarget, TargetError | None]:
    """The target this process compiles for. A bad request is kept, not raised, so that
    importing the package works and ``check_target`` (called before any run) reports it
    in one line; meanwhile Numba is pointed at the portable target."""
    host = _host()
    try:
        target = resolve_target(os.environ.get(TARGET_ENV, "portable"), platform.machine(), *host)
        _configure_numba(target)
        return target, None
    except TargetError as error:
        fallback = resolve_target("portable", platform.machine(), *host)
        return fallback, error


TARGET, _TARGET_ERROR = _choose_target()


def check_target() -> None:
    """Raise the one-line ``TargetError`` if the compile target asked for is unusable."""
    if _TARGET_ERROR is not None:
        raise _TARGET_ERROR


import numba  # noqa: E402  (after the target is configured)

# _nrt: Numba's option for its reference-counting runtime (see the module docstring)
_POLICY = dict(nogil=True, fastmath=set(FASTMATH_FLAGS), error_model="numpy", _nrt=False)
EXACT_FASTMATH_FLAGS = frozenset({"nsz", "contract"})
_INTERNAL = dict(no_cpython_wrapper=True, no_cfunc_wrapper=True)


# the modules whose code ends up in compiled kernels; a change to any of them must miss
# the cache of every kernel
KERNEL_SOURCES = ("version.py", "jit.py", "mathfn.py", "state.py", "cycle.py", "structure.py")
KERNEL_SOURCES += ("kernels.py", "tasks.py", "growth.py")
KERNEL_SOURCES += ("mlp/state.py", "mlp/kernels.py", "mlp/structure.py", "mlp/loop.py")
KERNEL_SOURCES += ("mlp/teacher.py",)


def _sources_hash() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in KERNEL_SOURCES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


SOURCES_HASH = _sources_hash()


def _engine_locator(base):
    """Numba's locator class ``base``, its freshness stamp extended with SOURCES_HASH."""

    class Locator(base):
        def get_source_stamp(self):
            return (super().get_source_stamp(), SOURCES_HASH)

    Locator.__name__ = Locator.__qualname__ = "Engine" + base.__name__
    return Locator


def _make_cache_class():
    from numba.core import caching

    class EngineCacheImpl(caching.CompileResultCacheImpl):
        _locator_classes = [
            _engine_locator(c) for c in caching.CompileResultCacheImpl._locator_classes
        ]

    class EngineFunctionCache(caching.FunctionCache):
        _impl_class = EngineCacheImpl

    return EngineFunctionCache


_EngineFunctionCache = _make_cache_class()


def _cached(dispatcher):
    """Give ``dispatcher`` the engine's on-disk cache (see the module docstring)."""
    dispatcher._cache = _EngineFunctionCache(dispatcher.py_func)
    return dispatcher


def kernel(function=None, *, exact: bool = False, internal: bool = False, inline: bool = False):
    """Compile ``function`` with the engine's policy (see module docstring).

    ``exact=True``: no reassociation either, for the functions of ``engine.mathfn``, whose
    range reductions are exact only in the order written; LLVM keeps each instruction's
    flags when it inlines such a function into a kernel compiled with the fast policy, so
    they stay exact wherever they are called from. Element-wise loops still vectorise.

    ``internal=True``: a kernel only other kernels call. No Python wrapper is built for
    it (calling it from Python crashes the interpreter: tests call such kernels through
    kernels of their own). It is compiled once and linked into its callers, where LLVM
    inlines it when small: the loops that call ``_tanh`` still vectorise. Numba's own
    IR-level inlining (``inline="always"``) deep-copies the callee's IR at every call
    site and cost a third of the cold compile time, so the engine keeps it for a few
    helpers of a few lines (``inline=True``), which would cost more as functions of their
    own; they take the flags of the kernel they are inlined into.
    """
    options = dict(_POLICY)
    if exact:
        options["fastmath"] = set(EXACT_FASTMATH_FLAGS)
    if internal or inline:
        options.update(_INTERNAL)
    if inline:
        options["inline"] = "always"
    if inline:  # compiled into its callers: nothing of its own to cache
        options["cache"] = False
        build = numba.njit(**options)
    else:
        options["cache"] = False

        def build(f):
            return _cached(numba.njit(**options)(f))

    return build if function is None else build(function)


def internal_kernel(function):
    """``kernel(function, internal=True)``: a helper only kernels call."""
    return kernel(function, internal=True)


def by_type(name: str, implementations: dict[type, object]):
    """A function for kernels, ``f(selector, ...)``, that is
    ``implementations[type(selector)](selector, ...)``.

    ``selector`` is a NamedTuple (say the run's optimizer settings, ``Adagrad`` or
    ``RMSProp``); the implementation is chosen by its class when the calling kernel is
    compiled, not at run time, so a run compiles (and caches) only the implementations
    its own method uses, and the others cost nothing. Implementations are kernels with
    the same parameters (names included), which ``f`` takes too.

    The chosen implementation's Python function is compiled as ``f`` itself (Numba's
    ``overload``), with the policy of internal kernels: no forwarding function between
    the caller and it, whose own module, optimisation and machine code cost 0.1 s of a
    cold compile apiece.
    """
    import inspect

    from numba.core import types
    from numba.extending import overload

    signatures = {inspect.signature(k.py_func) for k in implementations.values()}
    if len(signatures) != 1:
        raise TypeError(f"{name}: the implementations' parameters differ: {signatures}")
    signature = signatures.pop()
    parameters, first = str(signature), next(iter(signature.parameters))
    namespace = {"message": f"{name} is called from compiled kernels only"}
    exec(f"def {name}{parameters}:\n    raise TypeError(message)\n", namespace)
    function = namespace[name]

    def choose(selector):
        if not isinstance(selector, types.BaseNamedTuple):
            return None
        target = implementations.get(selector.instance_class)
        return None if target is None else target.py_func

    # Numba requires the typing function's parameters to be the implementation's
    namespace["choose"] = choose
    exec(f"def {name}_typing{parameters}:\n    return choose({first})\n", namespace)
    overload(function, jit_options=dict(_POLICY, **_INTERNAL))(namespace[f"{name}_typing"])
    return function


def build_info() -> dict[str, str]:
    """What can change a run's bits besides its config: recorded in every runs row."""
    check_target()
    import llvmlite
    import numpy

    return {
        "compile_target": TARGET.label,
        "engine_version": ENGINE_VERSION,
        "numba_version": numba.__version__,
        "llvmlite_version": llvmlite.__version__,
        "numpy_version": numpy.__version__,
    }
