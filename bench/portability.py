"""Same bits whatever the host CPU: the golden runs compiled as if on other machines.

    python bench/portability.py            # about two minutes: one cold compile per row
    python bench/portability.py --quick    # three rows

Each row is a fresh process with an empty Numba cache, in which LLVM's host detection
(``llvmlite.binding.get_host_cpu_name`` and ``get_host_cpu_features``) is made to report
another CPU before the engine is imported; everything else (Numba, the engine) runs
unchanged. The process compiles the run loop, runs the golden runs of
``tests/golden_runs.py`` and reports their digests and a hash of the run loop's machine
code. Portable builds must give the committed golden digests and one machine code on
every pretended host. Host builds (``DIFFRNN_TARGET=host``) show what the portable default
prevents: other machine code, other bits. A host build for an AVX-512 CPU is compiled but
not run (this machine would fault on its instructions); its machine code is inspected
for 512-bit registers instead.

Writes bench/results/portability.md and .json (``-quick`` with --quick).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

from children import run_child

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AVX512 = ("avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "evex512")
NOT_V3 = ("avx2", "fma", "bmi2", "avx", "f16c", "lzcnt", "movbe", "bmi")

# name: (LLVM CPU name reported, features switched on, features switched off, target, run?)
ROWS = {
    "this machine": (None, (), (), "portable", True),
    "Intel Skylake-SP (AVX-512)": ("skylake-avx512", AVX512, (), "portable", True),
    "AMD Zen 4 (AVX-512)": ("znver4", AVX512 + ("avx512bf16", "avx512vbmi"), (), "portable", True),
    "Intel Haswell (AVX2)": ("haswell", (), ("sha", "vaes", "vpclmulqdq"), "portable", True),
    "x86-64 without AVX2": ("x86-64", (), NOT_V3, "portable", True),
    "host build, this machine": (None, (), (), "host", True),
    "host build, Haswell": ("haswell", (), ("sha", "vaes", "vpclmulqdq"), "host", True),
    "host build, Skylake-SP (AVX-512)": ("skylake-avx512", AVX512, (), "host", False),
}
QUICK_ROWS = ("this machine", "Intel Skylake-SP (AVX-512)", "host build, Haswell")


def pretend(cpu: str | None, on: tuple[str, ...], off: tuple[str, ...]) -> None:
    """Make LLVM's host detection report ``cpu`` with features ``on`` and without ``off``."""
    import llvmlite.binding as llvm

    real_features = llvm.get_host_cpu_features
    if cpu is not None:
        llvm.get_host_cpu_name = lambda: cpu

    def features():
        table = real_features()
        for name in on:
            table[name] = True
        for name in off:
            table[name] = False
        return table

    llvm.get_host_cpu_features = features


def child(row: str) -> None:
    cpu, on, off, target, runnable = ROWS[row]
    os.environ["DIFFRNN_TARGET"] = target
    pretend(cpu, on, off)
    sys.path.insert(0, str(ROOT / "tests"))
    import numba

    import engine.kernels as K
    from engine.jit import TARGET

    out = {"row": row, "compile_target": TARGET.label, "ran": runnable}
    real = K._train

    class CompileOnly:
        def __call__(self, *args):
            real.compile(tuple(numba.typeof(a) for a in args))
            raise StopIteration

    if runnable:
        import golden_runs

        out["runs"] = golden_runs.all_digests()["runs"]
    else:
        K._train = CompileOnly()
        from engine import RunConfig, run

        # a file task: the generated tasks' data kernels would run (and fault) here
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as text:
            text.write("(abba)(ab)" * 100)
        try:
            run(RunConfig(), f"file:{text.name}", 10, 0)
        except StopIteration:
            pass
        finally:
            os.unlink(text.name)
        K._train = real
    asm = "\n".join(real.inspect_asm().values())
    # the instructions are what counts: not the directives (a symbol name, which carries
    # a hash of the compile flags, is also the size of a string constant), not the names
    code = "\n".join(
        re.sub(r"_ZN\w+", "SYMBOL", line.split("#")[0])
        for line in asm.splitlines()
        if line.startswith("\t") and not line.startswith("\t.")
    )
    out["machine_code_sha256"] = hashlib.sha256(code.encode()).hexdigest()[:16]
    out["zmm_registers"] = asm.count("%zmm")
    out["ymm_registers"] = asm.count("%ymm")
    print(json.dumps(out))


def measure(rows: list[str]) -> list[dict]:
    found = []
    for row in rows:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
            env.pop("DIFFRNN_TARGET", None)
            try:
                found.append(run_child(__file__, ["--child", row], env, timeout=900))
            except RuntimeError as error:
                raise SystemExit(f"{row}: {error}") from None
        print(f"  {row}: {found[-1]['compile_target']}", flush=True)
    return found


def render(found: list[dict], golden: dict, machine: str) -> tuple[str, bool]:
    reference, build = golden["runs"], golden["build"]
    lines = [
        "# Portability: the golden runs as if on other CPUs",
        "",
        f"Measured {datetime.date.today()} on {machine}; engine "
        f"{build['engine_version']}, numba {build['numba_version']}, llvmlite "
        f"{build['llvmlite_version']}.",
        "",
        "| pretended host | compile target | run loop machine code | 512-bit registers "
        "| golden runs equal to the committed ones |",
        "|---|---|---|---|---|",
    ]
    ok = True
    portable_code = {r["machine_code_sha256"] for r in found if r["compile_target"] == "x86_64-v3"}
    for r in found:
        if r["ran"]:
            equal = sum(r["runs"][k] == reference[k] for k in reference)
            verdict = f"{equal} of {len(reference)}"
        else:
            verdict = "not run (this CPU has no AVX-512)"
        lines.append(
            f"| {r['row']} | `{r['compile_target']}` | `{r['machine_code_sha256']}` "
            f"| {r['zmm_registers']} | {verdict} |"
        )
        if r["compile_target"] == "x86_64-v3" and r["ran"]:
            ok &= all(r["runs"][k] == reference[k] for k in reference)
    ok &= len(portable_code) == 1
    lines += [
        "",
        "Portable builds (`x86_64-v3`): one machine code and the committed golden bits on "
        f"every pretended host: **{'yes' if ok else 'NO'}**.",
        "",
    ]
    return "\n".join(lines), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rows = list(QUICK_ROWS if args.quick else ROWS)
    golden = json.loads((ROOT / "tests" / "golden_runs.json").read_text())
    found = measure(rows)
    import llvmlite.binding as llvm

    machine = (
        f"{platform.processor() or platform.machine()} (LLVM host CPU `{llvm.get_host_cpu_name()}`)"
    )
    text, ok = render(found, golden, machine)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "portability-quick" if args.quick else "portability"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(found, indent=2) + "\n")
    print(text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
