"""The feedforward model's minibatch step: the engine beside PyTorch and plain NumPy.

    python bench/mlp_speed.py             # about 4 minutes: bench/results/mlp_speed.md
    python bench/mlp_speed.py --quick     # fewer repetitions, no cold compile (smoke test)
    python bench/mlp_speed.py --out PATH  # the Markdown table elsewhere

A step: forward, backward, Adagrad with gradients clipped to +-5 (batch 32, stream 32,
16 inputs, 10 classes; widths 8, 32, 128 x depths 1-4), each implementation doing the
engine's fixed-mode work (multipliers held at 1). Engine: ``_mlp_step`` from a compiled
loop (as the run loop calls it), in variable mode (structure held), and once per Python
call; PyTorch (optional): autograd, the clipped Adagrad written with ``torch._foreach_*``
(a per-tensor loop was 1.5x slower in float64); NumPy: whole-batch products. One thread
each; warm-ups untimed; repetitions interleaved; minimum [median]. Parity first (float64,
1e-10, 3 steps, every shape) or exit 1. bench/README.md has the details and the numbers.
"""

from __future__ import annotations

import os

# one BLAS thread for NumPy, set before numpy is imported (not OMP_NUM_THREADS: torch's
# own default thread count is read and reported before it is set to one)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from engine.config import RunConfig  # noqa: E402
from engine.costmodel import cpu_name  # noqa: E402
from engine.mlp.loop import _mlp_step  # noqa: E402
from engine.mlp.state import MLP_EVENT_DTYPE, init_mlp, make_mlp_hyper  # noqa: E402
from engine.state import Draws  # noqa: E402

HERE = Path(__file__).resolve().parent
WIDTHS, DEPTHS = (8, 32, 128), (1, 2, 3, 4)
BATCH, STREAM, INPUTS, CLASSES = 32, 32, 16, 10
LR, CLIP, EPS = 0.1, 5.0, 1e-8  # the multiplier criterion's Adagrad (engine defaults)
SEED, POOL = 3, 16  # a pool of 16 batches, cycled through
PARITY_STEPS = 3  # lr 0.1 from zero memories: roundoff grows ~10x a step after that
TARGET = 5.0  # issue: at least 5x faster than PyTorch at width 32, depth 2
COLUMNS = ("engine f64", "engine f32", "engine var f64", "engine f64 per call")
COLUMNS += ("torch f64", "torch f32", "numpy f64")
RATIOS = (("torch f64", "engine f64"), ("torch f32", "engine f32"), ("numpy f64", "engine f64"))


def batches(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The pool of batches every implementation cycles through (the same for all)."""
    rng = np.random.default_rng(SEED + 1)
    xs = rng.standard_normal((POOL, BATCH, INPUTS)).astype(dtype)
    return xs, rng.integers(0, CLASSES, (POOL, BATCH)).astype(np.int64)


class Stepped:
    """A model stepped once per Python call, over its pool of batches."""

    def calls(self, n: int) -> None:
        for i in range(n):
            self.step(i % POOL)


class Engine(Stepped):
    """One engine network, everything ``_mlp_step`` takes besides the batch, its pool."""

    def __init__(self, width: int, depth: int, dtype: str, variable: bool = False) -> None:
        # variable mode with the structure held (no addition or deletion): the size stays
        held = dict(add_prob=0.0, spontaneous_add_prob=0.0, delete_prob=0.0) if variable else {}
        mode = "variable" if variable else "fixed"
        cfg = RunConfig(model="mlp", mode=mode, hidden_size=width, initial_blocks=depth,
                        capacity=max(100, width + 1), dtype=dtype, stream_width=STREAM,
                        input_dim=INPUTS, batch_size=BATCH, **held)  # fmt: skip
        rng = np.random.default_rng(SEED)
        self.net, self.scratch = init_mlp(cfg, INPUTS, CLASSES, rng)
        self.hyper, self.variable = make_mlp_hyper(cfg), variable
        self.depth, self.width = depth, width
        # the structure step draws uniforms at every step even when nothing changes (up to
        # 2 width + 2 per block, 2 depth + 2 for the blocks): ``steps`` rewinds the pool
        self.draws = Draws(rng.random(1 << 18), rng.standard_normal(1 << 12), np.zeros(2, np.int64))
        self.chunk = (1 << 18) // (depth * (2 * width + 2) + 2 * depth + 2)
        self.events = np.zeros(100_000, MLP_EVENT_DTYPE)
        self.fill = np.zeros(2, np.int64)
        self.xs, self.ys = batches(dtype)

    def step(self, k: int) -> float:
        """One step on batch k, one Python call (the dispatcher unboxes every array)."""
        net, s, hp = self.net, self.scratch, self.hyper
        x, y = self.xs[k], self.ys[k]
        return _mlp_step(net, s, hp, x, y, self.draws, 0, self.events, self.fill, self.variable)

    def steps(self, n: int) -> None:
        """n steps from a compiled loop, as the run loop takes them."""
        net, s, hp, draws = self.net, self.scratch, self.hyper, self.draws
        for start in range(0, n, self.chunk):  # never past the end of the draws
            draws.cursor[:] = 0
            _engine_steps(net, s, hp, self.xs, self.ys, draws, self.events, self.fill,
                          self.variable, min(self.chunk, n - start))  # fmt: skip

    def weights(self) -> dict[str, np.ndarray]:
        """Every learned array and its Adagrad memory ("mem_" + name), float64, in the
        maths' shapes (the engine stores W2 transposed)."""
        net, out = self.net, {}
        for pre in ("", "mem_"):
            for name in ("W_in", "b_in", "W_out", "b_out"):
                out[pre + name] = getattr(net, pre + name)
            for b in range(self.depth):
                out[f"{pre}W1.{b}"] = getattr(net, pre + "W1")[b, : self.width]
                out[f"{pre}c.{b}"] = getattr(net, pre + "c")[b, : self.width]
                out[f"{pre}W2.{b}"] = getattr(net, pre + "W2")[b, : self.width].T
        return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


@numba.njit(cache=False)
def _engine_steps(net, s, hp, xs, ys, draws, events, fill, structure, steps):
    """``steps`` engine steps over the pool of batches, without a Python call each (the
    run loop's situation); returns the last loss."""
    loss = 0.0
    for i in range(steps):
        k = i % xs.shape[0]
        loss = _mlp_step(net, s, hp, xs[k], ys[k], draws, i, events, fill, structure)
    return loss


class NumpyMLP(Stepped):
    """The fixed-mode step in plain NumPy: whole-batch matrix products, in-place update."""

    def __init__(self, weights: dict[str, np.ndarray], depth: int) -> None:
        self.p = {k: v.copy() for k, v in weights.items() if not k.startswith("mem_")}
        self.mem = {k: weights["mem_" + k].copy() for k in self.p}
        self.depth, self.pool = depth, list(zip(*batches("float64")))

    def step(self, k: int) -> np.float64:
        (x, y), p = self.pool[k], self.p
        rows = np.arange(x.shape[0])
        s = x @ p["W_in"].T + p["b_in"]
        streams, zs = [s], []
        for b in range(self.depth):
            z = np.tanh(s @ p[f"W1.{b}"].T + p[f"c.{b}"])
            s = s + z @ p[f"W2.{b}"].T
            streams.append(s)
            zs.append(z)
        logits = s @ p["W_out"].T + p["b_out"]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        total = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(total[:, 0]) - logits[rows, y])
        d = e / total
        d[rows, y] -= 1.0
        d /= x.shape[0]  # the loss is a mean over the batch
        g = {"W_out": d.T @ s, "b_out": d.sum(axis=0)}
        ds = d @ p["W_out"]
        for b in reversed(range(self.depth)):
            z = zs[b]
            g[f"W2.{b}"] = ds.T @ z
            da = (ds @ p[f"W2.{b}"]) * (1.0 - z * z)
            g[f"W1.{b}"] = da.T @ streams[b]
            g[f"c.{b}"] = da.sum(axis=0)
            ds = ds + da @ p[f"W1.{b}"]
        g["W_in"] = ds.T @ x
        g["b_in"] = ds.sum(axis=0)
        for name, grad in g.items():
            np.clip(grad, -CLIP, CLIP, out=grad)
            mem = self.mem[name]
            mem += grad * grad
            p[name] -= LR * grad / np.sqrt(mem + EPS)
        return loss

    def weights(self) -> dict[str, np.ndarray]:
        return self.p | {"mem_" + k: m for k, m in self.mem.items()}


class TorchMLP(Stepped):
    """The fixed-mode step as a PyTorch user would write it: autograd for the gradients,
    the clipped Adagrad written out (torch's own Adagrad divides by sqrt(mem) + eps, not
    sqrt(mem + eps), and does not clip)."""

    def __init__(self, weights: dict[str, np.ndarray], depth: int, dtype: str) -> None:
        import torch
        import torch.nn.functional as F

        self.torch, self.F, self.depth = torch, F, depth
        kind = getattr(torch, dtype)
        names = [k for k in weights if not k.startswith("mem_")]
        self.p = {k: torch.nn.Parameter(torch.tensor(weights[k], dtype=kind)) for k in names}
        self.params = list(self.p.values())
        self.mem = {k: torch.tensor(weights["mem_" + k], dtype=kind) for k in names}
        self.pool = list(zip(*map(torch.from_numpy, batches(dtype))))

    def step(self, k: int):
        (x, y), torch, F, p = self.pool[k], self.torch, self.F, self.p
        s = F.linear(x, p["W_in"], p["b_in"])
        for b in range(self.depth):
            s = s + F.linear(torch.tanh(F.linear(s, p[f"W1.{b}"], p[f"c.{b}"])), p[f"W2.{b}"])
        loss = F.cross_entropy(F.linear(s, p["W_out"], p["b_out"]), y)
        loss.backward()
        with torch.no_grad():
            grads, mem = [t.grad for t in self.params], list(self.mem.values())
            torch._foreach_clamp_min_(grads, -CLIP)
            torch._foreach_clamp_max_(grads, CLIP)
            torch._foreach_addcmul_(mem, grads, grads)
            denominators = torch._foreach_add(mem, EPS)
            torch._foreach_sqrt_(denominators)
            torch._foreach_addcdiv_(self.params, grads, denominators, value=-LR)
        for t in self.params:
            t.grad = None
        return loss  # a tensor: reading its value is left to the caller that wants it

    def weights(self) -> dict[str, np.ndarray]:
        both = self.p | {"mem_" + k: m for k, m in self.mem.items()}
        return {k: v.detach().numpy().astype(np.float64) for k, v in both.items()}


# -- parity ----------------------------------------------------------------------------------
def parity(has_torch: bool) -> dict:
    """Largest differences from the engine, float64, over every shape, in each of
    PARITY_STEPS steps: the loss, the weights, the memories (relative: after the first
    step they are the squared gradients)."""
    worst = {"loss": 0.0, "weights": 0.0, "memories (relative)": 0.0}
    for width in WIDTHS:
        for depth in DEPTHS:
            engine = Engine(width, depth, "float64")
            start = engine.weights()
            others = {"numpy": NumpyMLP(start, depth)}
            if has_torch:
                others["torch"] = TorchMLP(start, depth, "float64")
            for step in range(PARITY_STEPS):
                loss = engine.step(step)
                for other in others.values():
                    worst["loss"] = max(worst["loss"], abs(other.step(step).item() - loss))
                    theirs = other.weights()
                    for key, ours in engine.weights().items():
                        memory = key.startswith("mem_")
                        kind = "memories (relative)" if memory else "weights"
                        scale = max(np.max(np.abs(ours)), 1e-300) if memory else 1.0
                        diff = np.max(np.abs(theirs[key] - ours)) / scale
                        worst[kind] = max(worst[kind], diff)
    worst = {k: float(v) for k, v in worst.items()}
    return {"worst": worst, "ok": max(worst.values()) <= 1e-10, "against": list(others)}


# -- compile ---------------------------------------------------------------------------------
def first_calls() -> dict[str, float]:
    """Seconds of the first ``_mlp_step`` of each kind, and of the bench's compiled loop."""
    out = {}
    for label, dtype, variable in (("f64", "float64", False), ("f32", "float32", False),
                                   ("f64 variable", "float64", True)):  # fmt: skip
        engine = Engine(32, 2, dtype, variable)
        t0 = time.perf_counter()
        engine.step(0)
        out[f"_mlp_step {label}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.steps(1)
        out[f"bench loop {label}"] = time.perf_counter() - t0
    return out


def cold_compile() -> dict[str, float]:
    """The first calls in a fresh process with an empty Numba cache."""
    from children import run_child

    with tempfile.TemporaryDirectory(prefix="diffrnn-mlp-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        return run_child(__file__, ["--compile-child"], env, timeout=3600)


# -- timing ----------------------------------------------------------------------------------
def runners(width: int, depth: int, has_torch: bool) -> dict:
    """Per column: a function running n steps (the network trains on as it is timed)."""
    out = {
        "engine f64": Engine(width, depth, "float64").steps,
        "engine f32": Engine(width, depth, "float32").steps,
        "engine var f64": Engine(width, depth, "float64", variable=True).steps,
    }
    engine = Engine(width, depth, "float64")
    out["engine f64 per call"] = engine.calls
    start = engine.weights()
    out["numpy f64"] = NumpyMLP(start, depth).calls
    if has_torch:
        out["torch f64"] = TorchMLP(start, depth, "float64").calls
        out["torch f32"] = TorchMLP(start, depth, "float32").calls
    return out


def time_shape(width: int, depth: int, has_torch: bool, reps: int, rep_seconds: float) -> dict:
    """Microseconds per step of every column: min and median over ``reps`` repetitions."""
    run = runners(width, depth, has_torch)
    sizes = {}
    for column, steps in run.items():  # warm-up (not timed), which also sizes the reps
        steps(20)
        t0 = time.perf_counter()
        steps(20)
        sizes[column] = max(5, min(20_000, round(rep_seconds * 20 / (time.perf_counter() - t0))))
    times: dict[str, list[float]] = {c: [] for c in run}
    columns = list(run)
    for rep in range(reps):  # interleaved, each rep in another order
        for column in columns[rep % len(columns) :] + columns[: rep % len(columns)]:
            t0 = time.perf_counter()
            run[column](sizes[column])
            times[column].append(1e6 * (time.perf_counter() - t0) / sizes[column])
    return {c: {"min": min(t), "median": statistics.median(t)} for c, t in times.items()}


# -- report ----------------------------------------------------------------------------------
def _num(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _us(cell: dict | None) -> str:
    return "-" if cell is None else f"{_num(cell['min'])} [{_num(cell['median'])}]"


def _ratio(row: dict, slow: str, fast: str, key: str = "min") -> float:
    return row[slow][key] / row[fast][key]


def _ratios(row: dict, slow: str, fast: str) -> str:
    return f"{_ratio(row, slow, fast):.1f}x [{_ratio(row, slow, fast, 'median'):.1f}x]"


def verdicts(table: dict) -> list[str]:
    """The target (issue: >= 5x PyTorch at width 32, depth 2), and where PyTorch wins."""
    row, lines = table["32x2"], []
    if "torch f64" not in row:
        return ["PyTorch is not installed: the target was not checked."]
    for d in ("f64", "f32"):
        ratio, median = (_ratio(row, f"torch {d}", f"engine {d}", k) for k in ("min", "median"))
        met = "met." if ratio >= TARGET else "**not met**."
        text = f"{ratio:.1f}x by the minimums ({median:.1f}x by the medians): {met}"
        lines.append(f"- Target (>= {TARGET:.0f}x PyTorch) at width 32, depth 2, {d}: {text}")
    per_call = _ratio(row, "torch f64", "engine f64 per call")
    lines.append(f"- With one Python call per engine step (float64): {per_call:.1f}x.")
    pairs = [(key, r, d) for key, r in table.items() for d in ("f64", "f32")]
    wins = [f"width {k.replace('x', ', depth ')} ({d})" for k, r, d in pairs
            if r[f"torch {d}"]["min"] < r[f"engine {d}"]["min"]]  # fmt: skip
    if wins:
        return [*lines, "- PyTorch is faster at: " + "; ".join(wins) + "."]
    return [*lines, "- PyTorch is faster nowhere: the engine wins at every width, depth, dtype."]


def render(m: dict, settings: dict, par: dict, comp: dict, table: dict) -> str:
    cold = "; ".join(f"{k} {v:.1f} s" for k, v in comp["cold"].items()) or "not measured"
    head = ("width", "depth", *COLUMNS, *(f"{a.split()[0]}/{b}" for a, b in RATIOS))
    lines = [
        "# The feedforward model's minibatch step (`bench/mlp_speed.py`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy {m['numpy']}, "
        f"Numba {m['numba']}, torch {m['torch']} (default threads {m['threads']}, timed at "
        f"1); load average before {m['load_before']}, during {m['load_during']} (1 min, after "
        f"each shape), after {m['load_after']}; {m['date']}. "
        f"Batch {BATCH}, stream {STREAM}, {INPUTS} inputs, {CLASSES} classes. Microseconds "
        f"per step, minimum [median] of {settings['reps']} interleaved repetitions of about "
        f"{settings['rep_seconds'] * 1e3:.0f} ms each; speed-ups of the minimums [medians].",
        "",
        f"Parity (float64, 12 shapes, {PARITY_STEPS} steps each, engine vs "
        f"{' and '.join(par['against'])}), largest differences: "
        + ", ".join(f"{k} {v:.1e}" for k, v in par["worst"].items())
        + (": equal to 1e-10." if par["ok"] else ": **MISMATCH**."),
        "",
        "Compile, first calls in this process (from the cache): "
        + "; ".join(f"{k} {v:.2f} s" for k, v in comp["first"].items())
        + f". Cold, a fresh process with an empty cache (Numba's start-up apart): {cold}.",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for key, row in table.items():
        cells = [*key.split("x"), *(_us(row.get(c)) for c in COLUMNS)]
        for slow, fast in RATIOS:
            cells.append(_ratios(row, slow, fast) if slow in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *verdicts(table)]) + "\n"


def main() -> None:
    if sys.argv[1:] == ["--compile-child"]:
        t0 = time.perf_counter()
        numba.njit(lambda v: v + 1)(1)  # Numba's own one-time start-up, paid by any program
        print(json.dumps({"Numba start-up": time.perf_counter() - t0, **first_calls()}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    parser.add_argument("--out", help="the Markdown file (default bench/results/mlp_speed.md)")
    args = parser.parse_args()
    reps, rep_seconds = (5, 0.005) if args.quick else (61, 0.02)
    out = Path(args.out or HERE / "results" / f"mlp_speed{'-quick' if args.quick else ''}.md")
    try:
        import torch

        has_torch, torch_version, threads = True, torch.__version__, torch.get_num_threads()
        torch.set_num_threads(1)  # one core per run, as the engine's runs
    except ImportError:
        has_torch, torch_version, threads = False, "not installed", "-"

    def say(text: str) -> None:
        print(f"[mlp_speed] {text}", file=sys.stderr, flush=True)

    def load() -> str:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())

    machine = dict(cpu=cpu_name(), cores=os.cpu_count(), python=platform.python_version())
    machine |= dict(numpy=np.__version__, numba=numba.__version__, torch=torch_version)
    machine |= dict(threads=threads, load_before=load(), date=time.strftime("%Y-%m-%d"))
    compiled = {"cold": {} if args.quick else cold_compile(), "first": first_calls()}
    say(f"compile: {compiled}")
    checked = parity(has_torch)
    say(f"parity: {checked}")
    if not checked["ok"]:
        sys.exit(1)
    table, during = {}, []
    for width in WIDTHS:
        for depth in DEPTHS:
            row = table[f"{width}x{depth}"] = time_shape(width, depth, has_torch, reps, rep_seconds)
            say(f"width {width} depth {depth}: engine f64 {_us(row['engine f64'])} us")
            during.append(os.getloadavg()[0])
    machine |= dict(load_during=f"{min(during):.2f}-{max(during):.2f}", load_after=load())
    settings = {"reps": reps, "rep_seconds": rep_seconds}
    text = render(machine, settings, checked, compiled, table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
