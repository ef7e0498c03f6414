"""Regenerate studies/FEEDFORWARD.md, the feedforward networks of the paper's section 5
(issue 11), from a results store.

    python studies/make_feedforward.py RESULTS [--out studies/FEEDFORWARD.md] [--figures DIR]

Reads the studies ``ff-size``, ``ff-fixed``, ``ff-digits`` and ``ff-ehe`` (whatever part of
them is stored; the report says how many runs are in). Every number comes from the store:
final sizes, losses, floors and test accuracies from ``runs``, the adaptability metrics
from ``engine.metrics.adaptability``, wall times from ``engine.store.load_sessions``. The
figures are drawn by ``engine.plots_feedforward`` and ``engine.plots`` into ``--figures``
(default: a ``figures`` folder beside the report) and linked relatively.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from engine import store
from engine.metrics import adaptability, adaptability_summary
from engine.plots import draw_study, ok_runs
from engine.plots_feedforward import (
    draw_digits,
    draw_size_against_teacher,
    draw_variable_against_fixed,
    quartiles,
    teacher_shape,
)
from engine.plots_tradeoff import save_figures

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_report beside this script
from make_report import md_table, minutes, shown_path  # noqa: E402

HERE = Path(__file__).resolve().parent
STUDIES = ("ff-size", "ff-fixed", "ff-digits", "ff-ehe")
ALONE = {"width-only": "width alone (depth fixed at 2)", "depth-only": "depth alone (widths 32)"}


def iqr(values, digits: int = 3, integer: bool = False) -> str:
    """``median [q25, q75]`` of the finite values."""
    q25, median, q75 = quartiles(values)
    if math.isnan(median):
        return "—"
    if integer:
        return f"{median:g} [{q25:g}, {q75:g}]"
    return f"{median:.{digits}f} [{q25:.{digits}f}, {q75:.{digits}f}]"


def figure_link(path: Path, out_dir: Path) -> str:
    return os.path.relpath(path, out_dir).replace(os.sep, "/")


def spearman(x, y) -> float:
    frame = pd.DataFrame({"x": list(x), "y": list(y)}).dropna()
    if len(frame) < 3 or frame["x"].nunique() < 2 or frame["y"].nunique() < 2:
        return float("nan")
    return float(frame["x"].rank().corr(frame["y"].rank()))


def load(results: Path) -> dict[str, pd.DataFrame]:
    """Each study's runs (all stored ones), with the loss above each run's own floor."""
    stored = set(store.stored_studies(results)) if results.exists() else set()
    data = {}
    for study in STUDIES:
        if study not in stored:
            continue
        runs = store.load_runs(results, study)
        data[study] = runs.assign(excess_loss=runs["final_loss"] - runs["entropy_floor"])
    return data


def wall_time(results: Path, study: str) -> float:
    sessions = store.load_sessions(results, study)
    return float(sessions["wall_seconds"].sum()) if len(sessions) else float("nan")


def counts_line(runs: pd.DataFrame) -> str:
    done = ok_runs(runs)
    return f"{len(done)} of {len(runs)} stored runs finished"


# -- sections ---------------------------------------------------------------------------------
def size_section(runs: pd.DataFrame, links: dict[str, str]) -> tuple[list[str], dict]:
    done = ok_runs(runs)
    shapes = done["task"].map(teacher_shape)
    done = done.assign(W=[w for w, _ in shapes], D=[d for _, d in shapes])
    rows = []
    for task, part in sorted(done.groupby("task"), key=lambda item: teacher_shape(item[0])):
        width, depth = teacher_shape(task)
        widths = part["final_widths"].map(lambda w: max(w) if len(w) else 0)
        rows.append(
            [
                f"{width} x {depth}",
                str(len(part)),
                iqr(part["entropy_floor"]),
                iqr(part["final_neurons"], integer=True),
                iqr(part["final_blocks"], integer=True),
                iqr(widths, integer=True),
                iqr(part["excess_loss"]),
            ]
        )
    shallow, narrow = done[done["D"] == 1], done[done["W"] == 8]
    facts = {
        "rho_width": spearman(shallow["W"], shallow["final_neurons"]),
        "rho_depth": spearman(narrow["D"], narrow["final_blocks"]),
        "neurons_by_width": {w: quartiles(p["final_neurons"])[1] for w, p in shallow.groupby("W")},
        "blocks_by_depth": {d: quartiles(p["final_blocks"])[1] for d, p in narrow.groupby("D")},
    }
    lines = [
        "## (a) Learned width and depth against the teacher's",
        "",
        f"Study `ff-size` ({counts_line(runs)}): the first method, every width and the depth "
        "learned, on teachers of width 2, 8, 32 and 128 (depth 1) and of depth 1, 2 and 4 "
        "(width 8). Medians [inter-quartile range] over seeds at the end of the run; the "
        "floor is each run's own teacher's conditional entropy.",
        "",
        *md_table(
            [
                "teacher W x D",
                "runs",
                "floor (nats)",
                "neurons learned",
                "blocks learned",
                "widest block",
                "loss above floor",
            ],
            rows,
        ),
        "",
        f"Rank correlation over runs (Spearman): teacher width against neurons learned "
        f"(depth-1 teachers) rho = {facts['rho_width']:.2f}; teacher depth against blocks "
        f"learned (width-8 teachers) rho = {facts['rho_depth']:.2f}.",
        "",
        f"![learned size against the teacher's]({links['size']})",
        "",
    ]
    return lines, facts


def fixed_section(runs: pd.DataFrame, links: dict[str, str]) -> tuple[list[str], dict]:
    done = ok_runs(runs)
    order = ["variable", *ALONE]
    fixed = sorted(
        (c for c in done["condition"].unique() if c not in order),
        key=lambda c: done[done["condition"] == c]["final_neurons"].median(),
    )
    rows, medians = [], {}
    for condition in [c for c in order if c in set(done["condition"])] + fixed:
        part = done[done["condition"] == condition]
        medians[condition] = quartiles(part["excess_loss"])[1]
        rows.append(
            [
                condition,
                str(len(part)),
                iqr(part["final_neurons"], integer=True),
                iqr(part["final_blocks"], integer=True),
                iqr(part["final_loss"]),
                iqr(part["excess_loss"]),
            ]
        )
    best = min(fixed, key=lambda c: medians[c]) if fixed else None
    # a fixed network of the learned network's median size: interpolated between the
    # fixed sizes in log(size)
    sizes = [done[done["condition"] == c]["final_neurons"].median() for c in fixed]
    learned = done[done["condition"] == "variable"]["final_neurons"].median()
    same_size = (
        float(np.interp(np.log2(learned), np.log2(sizes), [medians[c] for c in fixed]))
        if fixed and learned > 0
        else float("nan")
    )
    facts = {
        "medians": medians,
        "best_fixed": best,
        "fixed": fixed,
        "same_size": same_size,
        "learned_size": learned,
        "sizes": dict(zip(fixed, sizes)),
    }
    lines = [
        "## (b) Variable against fixed sizes on one teacher",
        "",
        f"Study `ff-fixed` ({counts_line(runs)}), as the paper's Figure 2: the teacher "
        "32 x 2; the network of learned width and depth, each mechanism alone, and fixed "
        "networks of 2 blocks of 4 to 64 neurons each (multipliers held at 1).",
        "",
        *md_table(
            ["condition", "runs", "neurons", "blocks", "final loss", "loss above floor"], rows
        ),
        "",
        f"![variable against fixed sizes]({links['fixed']})",
        "",
    ]
    return lines, facts


def digits_section(runs: pd.DataFrame, links: dict[str, str]) -> tuple[list[str], dict]:
    done = ok_runs(runs)
    rows, accuracy = [], {}
    for condition, part in sorted(
        done.groupby("condition"), key=lambda i: i[1]["final_neurons"].median()
    ):
        accuracy[condition] = quartiles(part["test_accuracy"])[1]
        rows.append(
            [
                condition,
                str(len(part)),
                iqr(part["final_neurons"], integer=True),
                iqr(part["final_blocks"], integer=True),
                iqr(part["test_accuracy"], 4),
                iqr(part["test_loss"]),
            ]
        )
    lines = [
        "## (c) Digits: accuracy and size against fixed MLPs",
        "",
        f"Study `ff-digits` ({counts_line(runs)}): the 8x8 digits of scikit-learn, 1,438 "
        "training and 359 test images on a fixed stratified split; the learned network "
        "against fixed networks of one block of 4, 16 and 64 neurons.",
        "",
        *md_table(["condition", "runs", "neurons", "blocks", "test accuracy", "test loss"], rows),
        "",
        f"![digits accuracy against size]({links['digits']})",
        "",
    ]
    return lines, {"accuracy": accuracy}


def ehe_section(results: Path, links: dict[str, str]) -> tuple[list[str], dict]:
    frame = adaptability(results, "ff-ehe")
    if frame.empty:
        return ["## (d) Easy-hard-easy teachers", "", "No finished run is stored yet.", ""], {}
    summary = adaptability_summary(frame, ["condition"])
    names = [
        ("n_phase1", "N end easy", True),
        ("n_phase2", "N end hard", True),
        ("n_phase3", "N end", True),
        ("growth", "growth", True),
        ("shrinkage", "shrinkage", False),
        ("hard_excess", "hard loss above floor", False),
        ("easy_excess", "final loss above floor", False),
    ]
    rows, facts = [], {}
    for condition, part in frame.groupby("condition"):
        row = [condition, str(len(part))]
        for name, _, integer in names:
            if integer:
                row.append(iqr(part[name], integer=True))
            else:
                q25, median, q75 = quartiles(part[name])
                row.append(
                    "—"
                    if math.isnan(median)
                    else f"{100 * median:.0f}% [{100 * q25:.0f}%, {100 * q75:.0f}%]"
                )
        rows.append(row)
        facts[condition] = {name: quartiles(part[name])[1] for name, _, _ in names}
    switch = switch_losses(results, frame)
    lines = [
        "## (d) Easy-hard-easy teachers: the adaptability metrics",
        "",
        f"Study `ff-ehe` ({len(frame)} finished runs): teacher 4 x 1, then 32 x 2 from step "
        "50,000, then the same 4 x 1 teacher again from step 100,000; both methods at their "
        "published settings. The metrics are TRADEOFF.md's (`engine.metrics`): N at the end "
        "of each phase, growth in the hard phase, the share of it given back at the end "
        "(shrinkage), and the loss over the last 10% of a phase relative to its floor.",
        "",
        *md_table(["method", "runs", *[text for _, text, _ in names]], rows),
        "",
        f"![easy-hard-easy teachers]({links['ehe']})",
        "",
        "Right after the switch to the hard teacher (neurons at the last trace record "
        "before it and at the first after it, 1,000 steps later; blocks deleted in those "
        "steps):",
        "",
        *md_table(
            [
                "method",
                "neurons before",
                "neurons 1,000 steps after",
                "blocks deleted",
                "first deletion (steps after the switch)",
            ],
            [
                [
                    c,
                    iqr(part["before"], integer=True),
                    iqr(part["after"], integer=True),
                    iqr(part["blocks_deleted"], integer=True),
                    iqr(part["first_deletion"], integer=True),
                ]
                for c, part in switch.groupby("condition")
            ],
        ),
        "",
        "A block is deleted, with every neuron in it, when its multiplier |mu| falls to "
        "the threshold. When the teacher changes, lowering a block that has learned the "
        "old teacher lowers the loss at once, so its mu falls fast: RMSProp's clipped "
        "steps move it by up to 0.01 per step from the first step after the switch, "
        "while Adagrad's have shrunk with 50,000 steps of accumulated gradients. Where "
        "the later method lost its blocks, it was left with one block, which regrew "
        "slowly (N 1,000 steps after the switch in the table).",
        "",
    ]
    del summary
    return lines, facts


def switch_losses(results: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: neurons at the last trace record before the first switch and at the
    first after it, and the blocks deleted between them."""
    runs = store.load_runs(results, "ff-ehe").set_index("run_id")
    traces = store.load_traces(results, "ff-ehe", run_id=list(frame["run_id"]))
    events = store.load_events(results, "ff-ehe", run_id=list(frame["run_id"]))
    rows = []
    for run_id, trace in traces.groupby("run_id"):
        trace = trace.sort_values("cycle")
        start = trace[trace["phase"] == 1]["cycle"].min() - runs.loc[run_id, "log_every"]
        before = trace[trace["cycle"] <= start]
        after = trace[trace["cycle"] > start]
        if before.empty or after.empty:
            continue
        end = after["cycle"].iloc[0]
        mine = events[(events["run_id"] == run_id) & (events["level"] == 1)]
        switch = start  # the last record of the easy phase is at the switch itself
        gone = mine[(mine["kind"] == 1) & (mine["cycle"] > start) & (mine["cycle"] <= end)]
        rows.append(
            dict(
                condition=runs.loc[run_id, "condition"],
                before=before["neurons"].iloc[-1],
                after=after["neurons"].iloc[0],
                blocks_deleted=len(gone),
                first_deletion=gone["cycle"].min() - switch if len(gone) else float("nan"),
            )
        )
    columns = ["condition", "before", "after", "blocks_deleted", "first_deletion"]
    return pd.DataFrame(rows, columns=columns)


def judge(rho: float, medians: list[float]) -> str:
    """yes: strong rank correlation and medians rising with the teacher; partly: a
    moderate correlation; no: neither."""
    rising = all(a < b for a, b in zip(medians, medians[1:]))
    if rho > 0.5 and rising:
        return "yes"
    return "partly" if rho > 0.3 else "no"


def verdict(facts: dict) -> list[str]:
    """The plain statement: does the paper's conjecture hold, mechanism by mechanism."""
    lines = ["## Does the conjecture hold?", ""]
    size = facts.get("size", {})
    if size:
        for what, by, rho, unit in (
            ("Width", size["neurons_by_width"], size["rho_width"], "W"),
            ("Depth", size["blocks_by_depth"], size["rho_depth"], "D"),
        ):
            learned = ", ".join(f"{unit} = {k}: {n:g}" for k, n in by.items())
            lines.append(
                f"- **{what} follows the task: {judge(rho, list(by.values()))}.** Learned, "
                f"by teacher {what.lower()}: {learned} (rho = {rho:.2f})."
            )
    fixed = facts.get("fixed", {})
    if fixed and fixed.get("best_fixed"):
        medians, best = fixed["medians"], fixed["best_fixed"]
        mine = medians.get("variable", float("nan"))
        worse = sum(1 for c in fixed["fixed"] if medians[c] < mine)
        lines.append(
            f"- **Variable against fixed (Figure 2's test):** the learned network ends "
            f"{mine:.3f} nats above the floor; the best fixed network ({best}) "
            f"{medians[best]:.3f}; {worse} of {len(fixed['fixed'])} fixed sizes do better."
        )
    ehe = facts.get("ehe", {})
    for condition, values in ehe.items():
        lines.append(
            f"- **Shrinking when the task gets easier ({condition}):** growth "
            f"{values['growth']:g} neurons in the hard phase, {100 * values['shrinkage']:.0f}% "
            "of it given back by the end."
            if math.isfinite(values["shrinkage"])
            else f"- **Shrinking ({condition}):** the network did not grow in the hard phase."
        )
    lines += ["", conclusion(facts), ""]
    return lines


def conclusion(facts: dict) -> str:
    """One plain paragraph: does the method extend to feedforward networks as the paper
    says it would, on these tasks and at these settings."""
    size, fixed, ehe = facts.get("size", {}), facts.get("fixed", {}), facts.get("ehe", {})
    parts = []
    if size:
        width = judge(size["rho_width"], list(size["neurons_by_width"].values()))
        depth = judge(size["rho_depth"], list(size["blocks_by_depth"].values()))
        parts.append(
            "the mechanism itself works (gradient descent adds and deletes neurons in every "
            f"block and whole blocks); the learned depth follows the teacher's: {depth}; "
            f"the learned width follows the teacher's: {width}"
        )
    if fixed and fixed.get("best_fixed"):
        medians = fixed["medians"]
        mine = medians.get("variable", float("nan"))
        better = [c for c in fixed["fixed"] if medians[c] < mine]
        same = fixed["same_size"]
        verb = (
            "about as close to the floor as"
            if abs(mine - same) <= 0.02
            else ("closer to the floor than" if mine < same else "further from the floor than")
        )
        parts.append(
            f"the learned network ({fixed['learned_size']:g} neurons) ends {verb} a fixed "
            f"network of its size ({mine:.3f} against {same:.3f} nats, interpolated), "
            + (
                f"and {len(better)} of {len(fixed['fixed'])} fixed sizes"
                + (
                    ", all larger,"
                    if min(fixed["sizes"][c] for c in better) > fixed["learned_size"]
                    else ""
                )
                + " end closer to the floor: unlike the paper's Figure 2"
                if better
                else "and closer than every fixed size, as in the paper's Figure 2"
            )
        )
    gives_back = [
        c for c, v in ehe.items() if math.isfinite(v["shrinkage"]) and v["shrinkage"] >= 0.5
    ]
    if ehe:
        parts.append(
            f"after the hard teacher the network gives back half its growth or more under: "
            f"{', '.join(gives_back)}"
            if gives_back
            else "neither method gives back half of its hard-phase growth when the easy "
            "teacher returns"
        )
    if not parts:
        return "**In sum:** no study is stored yet."
    holds = "holds in part" if len(parts) > 1 else "is untested here"
    return (
        f"**In sum, the conjecture {holds}:** " + "; ".join(parts) + ". These are 10 seeds "
        "per point, 100,000 minibatch steps (150,000 for the schedule) at the recurrent "
        "model's published settings, untuned for feedforward networks."
    )


def capacity_note(data: dict[str, pd.DataFrame]) -> list[str]:
    """Runs whose depth or a block's width reached its buffer's limit: their size is
    bounded by it, not learned freely."""
    rows = []
    for study, runs in data.items():
        done = ok_runs(runs)
        if done.empty:
            continue
        deep = done["final_blocks"] >= done["max_blocks"] - 1
        wide = [max(w) >= c - 1 for w, c in zip(done["final_widths"], done["capacity"])]
        full = deep | pd.Series(wide, index=done.index)
        if full.any():
            conditions = sorted(set(done.loc[full, "condition"]))
            rows.append(
                f"- `{study}`: {int(full.sum())} of {len(done)} runs ended at the depth limit "
                f"(max_blocks - 1) or with a block at its width limit (capacity - 1): "
                + ", ".join(conditions)
            )
    if not rows:
        return []
    return (
        ["Runs whose size the buffers bounded (a larger buffer would let them grow on):", ""]
        + rows
        + [""]
    )


def build_report(results: Path, out: Path, figures_dir: Path) -> str:
    data = load(results)
    links, paths = {}, []
    facts: dict = {}
    figures = []
    if "ff-size" in data and len(ok_runs(data["ff-size"])):
        figures.append(("ff-size-learned", draw_size_against_teacher(ok_runs(data["ff-size"]))))
    if "ff-fixed" in data and len(ok_runs(data["ff-fixed"])):
        figures.append(
            ("ff-fixed-sizes", draw_variable_against_fixed(ok_runs(data["ff-fixed"]), ALONE))
        )
    if "ff-digits" in data and len(ok_runs(data["ff-digits"])):
        figures.append(("ff-digits-accuracy", draw_digits(ok_runs(data["ff-digits"]))))
    if "ff-ehe" in data and len(ok_runs(data["ff-ehe"])):
        traces = store.load_traces(results, "ff-ehe")
        figures += draw_study(data["ff-ehe"], traces, "ff-ehe")[:1]
    paths = save_figures(figures, figures_dir)
    for key, stem in (
        ("size", "ff-size-learned"),
        ("fixed", "ff-fixed-sizes"),
        ("digits", "ff-digits-accuracy"),
        ("ehe", "ff-ehe-by-condition"),
    ):
        png = [p for p in paths if p.name == f"{stem}.png"]
        links[key] = figure_link(png[0], out.parent) if png else ""
    body: list[str] = []
    if "ff-size" in data:
        lines, facts["size"] = size_section(data["ff-size"], links)
        body += lines
    if "ff-fixed" in data:
        lines, facts["fixed"] = fixed_section(data["ff-fixed"], links)
        body += lines
    if "ff-digits" in data:
        lines, facts["digits"] = digits_section(data["ff-digits"], links)
        body += lines
    if "ff-ehe" in data:
        lines, facts["ehe"] = ehe_section(results, links)
        body += lines
    walls = {s: wall_time(results, s) for s in data}
    head = [
        "# Feedforward networks whose width and depth are learned (the paper's section 5)",
        "",
        f"Generated by `python studies/make_feedforward.py {shown_path(results)}` from the "
        "stored results; every number below comes from the store.",
        "",
        'The model (`model = "mlp"`, README\'s *Feedforward networks*): residual blocks '
        "`s <- s + mu_b W2_b (m_b * tanh(W1_b s + c_b))` on a stream of 32 units, "
        "minibatches of 32, the recurrent model's optimizers, criteria and structure rule "
        "applied to the neurons of every block and to the blocks (a new block enters on "
        "top with mu = T_D, a reserve block). Tasks with a known answer: `teacher:WxD` "
        "labels Gaussian inputs by sampling a fixed random tanh network of width W and "
        "depth D, whose conditional entropy (the floor, estimated per run to a standard "
        "error of 1e-3 nats) is the best loss possible; and the 8x8 digits.",
        "",
        "To run the studies again (they resume; the wall times are in the table): "
        + ", ".join(f"`diffrnn study studies/{s}.toml --out RESULTS`" for s in STUDIES)
        + "; then this script on RESULTS.",
        "",
        *md_table(
            ["study", "runs stored", "finished", "wall time (2 cores)"],
            [[s, str(len(data[s])), str(len(ok_runs(data[s]))), minutes(walls[s])] for s in data],
        ),
        "",
    ]
    text = "\n".join(head + verdict(facts) + capacity_note(data) + body)
    return text.rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=HERE / "FEEDFORWARD.md")
    parser.add_argument("--figures", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        print(f"make_feedforward: results {str(args.results)!r} does not exist", file=sys.stderr)
        return 2
    figures = args.figures or args.out.parent / "figures"
    args.out.write_text(build_report(args.results, args.out, figures))
    print(f"wrote {shown_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
