"""The ``diffrnn`` command: ``run``, ``study``, ``results summary|compact`` and ``figures``.

Every bad input (a bad parameter, study file, path or option) prints one line
``diffrnn: error: ...`` on stderr and exits with status 2, never a traceback. A run that
diverges is a result, not an error: it exits 0 with status ``diverged``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

from .config import ConfigError, RunConfig, field_names, parse_assignment
from .progressline import ProgressLine, _bar, format_duration  # noqa: F401 (re-exported)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_RESULTS = "results"


class UsageError(Exception):
    """Bad command-line usage (argparse's complaints, made one line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        raise UsageError(message)


# -- diffrnn run ---------------------------------------------------------------------------
def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from . import store
    from .run import check_run_args, run

    values: dict = {}
    for text in args.set or []:
        name, value = parse_assignment(text)
        values[name] = value
    config = RunConfig.from_dict(values)
    check_run_args(args.task, args.cycles, args.seed, config.model)
    out = None
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {args.out!r} is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        if not args.mix_builds:  # before the run: a run that could not be stored is lost
            from .jit import build_info

            store.check_build(out, store.ADHOC_STUDY, build_info())

    line = ProgressLine(enabled=not args.quiet)

    def progress(done: int, cycles: int, neurons: int, loss: float, seconds: float) -> None:
        rate = done / seconds if seconds > 0 else 0.0
        text = f"cycle {done:,}/{cycles:,}  N {neurons}  loss {loss:.3f}  {rate:,.0f} cycles/s"
        line.update(text, done / cycles, force=done >= cycles)

    try:
        result = run(config, args.task, args.cycles, args.seed, progress=progress)
    finally:
        line.close()

    stored = False
    if out is not None:
        if result.run_id in store.stored_run_ids(out, store.ADHOC_STUDY):
            print(
                f"diffrnn: note: run {result.run_id} is already stored in {out}; not stored again",
                file=sys.stderr,
            )
        else:
            store.write_batch(out, store.ADHOC_STUDY, [(store.DEFAULT_CONDITION, result)])
            stored = True
            # many single runs into one store: merge their files as a study does, unless
            # another process holds the study (it merges them itself)
            with contextlib.suppress(store.StoreError), store.study_lock(out, store.ADHOC_STUDY):
                store.merge_small_files(out, store.ADHOC_STUDY)

    if args.json:
        summary = {k: _json_safe(v) for k, v in result.summary().items()}
        summary["out"] = str(out) if out is not None else None
        summary["stored"] = stored
        print(json.dumps(summary))
    else:
        floor = (
            "" if result.entropy_floor is None else f" (entropy floor {result.entropy_floor:.3f})"
        )
        print(
            f"run {result.run_id}: {result.status}  final loss {result.final_loss:.3f}"
            f"{floor}  N {result.final_neurons}  {result.cycles_done:,} cycles in "
            f"{result.wall_seconds:.2f} s ({result.cycles_per_second:,.0f} cycles/s), "
            f"compiled for {result.build['compile_target']}"
        )
        if result.final_blocks is not None:
            widths = ", ".join(str(w) for w in result.final_widths or ())
            tested = (
                ""
                if result.test_accuracy is None
                else f"; test accuracy {result.test_accuracy:.3f}, test loss {result.test_loss:.3f}"
            )
            print(f"  depth {result.final_blocks} blocks, widths [{widths}]{tested}")
        if result.message:
            print(f"  {result.message}")
        if stored:
            print(f"stored in {out}/{{runs,traces,events}}/study={store.ADHOC_STUDY}/")
    return EXIT_OK


# -- diffrnn study -------------------------------------------------------------------------
def _calibration_text(rates: dict) -> str:
    parts = [
        f"{seconds * 1e6:.1f} us/cycle at N={n} ("
        + (f"{dtype}, seq_len {seq_len})" if seq_len else f"{dtype})")
        for (dtype, seq_len, n), seconds in sorted(rates.items())
    ]
    return "; ".join(parts)


def _cost_model_text(found) -> str:
    """Where the dry-run's rates came from: the cost model, timed now, or both."""
    from .costmodel import MAX_AGE_DAYS

    path = found.path
    home = str(Path.home())
    if path.startswith(home + os.sep):
        path = "~" + path[len(home) :]
    parts = []
    if found.timed_at:
        days = sorted({datetime.date.fromtimestamp(t).isoformat() for t in found.timed_at.values()})
        when = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
        parts.append(f"{len(found.timed_at)} from {path} (timed {when})")
    if found.timed:
        kept = f"not kept: {found.problem}" if found.problem else f"kept in {path}"
        parts.append(f"{len(found.timed)} timed now ({kept})")
    elif found.problem:
        parts.append(found.problem)
    return (
        f"cost model: rates {'; '.join(parts)}; a rate is timed again after {MAX_AGE_DAYS} "
        "days, or now with --recalibrate"
    )


def cmd_study(args: argparse.Namespace) -> int:
    from . import scheduler

    study = scheduler.load_study(args.file)
    shape = (
        f"{len(study.conditions)} condition{'s' * (len(study.conditions) != 1)} x "
        f"{study.grid_points} grid point{'s' * (study.grid_points != 1)} x "
        f"{len(study.seeds)} seed{'s' * (len(study.seeds) != 1)}"
    )
    if args.dry_run:
        plan = scheduler.plan_study(
            study,
            args.out,
            jobs=args.jobs,
            backend=args.backend,
            scheduler=args.scheduler,
            recalibrate=args.recalibrate,
        )
        print(f"study {study.name} ({args.file}): {len(study.specs)} runs = {shape}")
        print(f"already stored in {args.out}: {plan.stored}; to run: {len(plan.todo)}")
        if plan.build_conflict and not args.mix_builds:
            print(f"running it would stop: {plan.build_conflict}")
        if plan.todo:
            print(
                f"estimated time: {format_duration(plan.estimated_seconds)} on "
                f"{plan.workers} worker{'s' * (plan.workers != 1)} ({plan.backend}); "
                f"estimated from short fixed-size runs timed on this machine at each "
                f"expected N: {_calibration_text(plan.rates)}"
            )
            print(_cost_model_text(plan.cost_model))
        return EXIT_OK

    line = ProgressLine(enabled=not args.quiet)
    started = time.perf_counter()
    announced = False

    def progress(state: scheduler.StudyProgress) -> None:
        nonlocal announced
        if not announced and not args.quiet:
            announced = True
            print(
                f"study {study.name}: {len(study.specs)} runs ({shape}); "
                f"{state.skipped} already stored, {state.total} to run on "
                f"{state.workers} worker{'s' * (state.workers != 1)} ({state.backend})",
                file=sys.stderr,
            )
        if state.total == 0:
            return
        fraction = state.done / state.total
        text = (
            f"{_bar(fraction)} {state.done}/{state.total} runs  failed {state.failed}  "
            f"{state.runs_per_minute:.1f} runs/min  "
            f"{format_duration(state.remaining)} left"
        )
        line.update(text, fraction, force=state.done in (0, state.total))

    try:
        report = scheduler.run_study(
            study,
            args.out,
            jobs=args.jobs,
            backend=args.backend,
            scheduler=args.scheduler,
            batch_size=args.batch_size,
            progress=progress,
            mix_builds=args.mix_builds,
            recalibrate=args.recalibrate,
        )
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as error:  # a worker died, the cluster went away, the disk is full
        line.close()
        text = " ".join(str(error).split()) or type(error).__name__
        print(
            f"diffrnn: error: study {study.name} stopped: {type(error).__name__}: {text}; "
            f"finished runs are stored in {args.out}, run the same command again to "
            "resume",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        line.close()
    ok = report.done - report.diverged - report.errors
    print(
        f"study {study.name}: {report.total} runs, {report.skipped} already stored, "
        f"{report.done} run ({ok} ok, {report.diverged} diverged, {report.errors} error) "
        f"in {format_duration(time.perf_counter() - started)}; results in {args.out}"
    )
    if not args.quiet:
        _print_summary(args.out, ["condition"], study.name)
    return EXIT_OK


# -- diffrnn results -----------------------------------------------------------------------
def _print_summary(results: str, by: list[str], study: str | None) -> bool:
    import pandas as pd

    from . import store

    table = store.summary(results, by=by, study=study)
    if table.empty:
        return False
    with pd.option_context("display.width", 200, "display.max_columns", 100):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return True


def cmd_results_summary(args: argparse.Namespace) -> int:
    results = Path(args.results)
    if not results.is_dir():
        raise ConfigError(f"results directory {args.results!r} does not exist")
    by = [b.strip() for b in args.by.split(",") if b.strip()]
    if not _print_summary(args.results, by, args.study):
        where = f" for study {args.study!r}" if args.study else ""
        print(f"no runs stored in {args.results}{where}")
    return EXIT_OK


def cmd_results_compact(args: argparse.Namespace) -> int:
    from . import store

    results = Path(args.results)
    if not results.is_dir():
        raise ConfigError(f"results directory {args.results!r} does not exist")
    studies = store.stored_studies(results)
    if args.study is not None:
        store.check_name(args.study)
        if args.study not in studies:
            raise ConfigError(
                f"--study {args.study!r} is not in {args.results}: stored studies are "
                f"{', '.join(studies) or 'none'}"
            )
        studies = [args.study]
    for name in studies:
        report = store.compact_study(results, name)
        before = sum(report.files_before.values())
        after = sum(report.files_after.values())
        size = sum(report.bytes_after.values()) / 1e6
        cleaned = f", {report.cleaned} leftover files removed" if report.cleaned else ""
        print(
            f"study {name}: {report.rows.get('runs', 0):,} runs, {before} files -> {after} "
            f"({size:.1f} MB) in {report.seconds:.2f} s{cleaned}"
        )
    if not studies:
        print(f"no studies stored in {args.results}")
    return EXIT_OK


def cmd_results_adaptability(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import store
    from .metrics import adaptability, adaptability_summary

    if not Path(args.results).is_dir():
        raise ConfigError(f"results directory {args.results!r} does not exist")
    store.check_name(args.study)
    by = [b.strip() for b in args.by.split(",") if b.strip()]
    for key in by:
        if key not in store.RUN_COLUMNS:
            raise ConfigError(
                f"--by {key!r} is not a column of runs; columns are {', '.join(store.RUN_COLUMNS)}"
            )
    frame = adaptability(
        args.results, args.study, run_columns=list(dict.fromkeys(["condition", "task", *by]))
    )
    if frame.empty:
        print(f"no runs with task switches stored in {args.results} for study {args.study!r}")
        return EXIT_OK
    table = adaptability_summary(frame, by)
    columns = [*by, "n_runs"]
    for name in [c[: -len("_median")] for c in table.columns if c.endswith("_median")]:
        table[name] = [
            f"{m:.4g} [{a:.4g}, {b:.4g}]"
            for m, a, b in zip(
                table[f"{name}_median"], table[f"{name}_q25"], table[f"{name}_q75"], strict=True
            )
        ]
        columns.append(name)
    with pd.option_context("display.width", 250, "display.max_columns", 100):
        print("median [25th, 75th percentile] per group; definitions: engine/metrics.py")
        print(table[columns].T.to_string(header=False))
    return EXIT_OK


# -- diffrnn figures -----------------------------------------------------------------------
def cmd_figures(args: argparse.Namespace) -> int:
    if not Path(args.results).is_dir():
        raise ConfigError(f"results directory {args.results!r} does not exist")
    try:
        from engine.plots import cli_figures
    except ModuleNotFoundError as error:
        if error.name not in ("engine.plots", "matplotlib"):
            raise
        print(f"diffrnn: error: figures are not available: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    code = cli_figures(args)
    return EXIT_OK if code is None else int(code)


# -- the parser and main -------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range: allowed [1, inf)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .costmodel import MAX_AGE_DAYS

    parser = _Parser(
        prog="diffrnn",
        description="Recurrent networks with differentiable "
        "structure (Miconi 2016): single runs, studies and their results.",
    )
    parser.add_argument("--version", action="version", version=f"diffrnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("run", help="train one network")
    p.add_argument(
        "--task",
        default="hard",
        help="easy, hard, easy-hard-easy, hard-easy, file:PATH or a schedule "
        "task@cycle,task@cycle (default hard)",
    )
    p.add_argument("--cycles", type=int, default=300_000, help="default 300000")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="a config field (repeatable): " + ", ".join(field_names()),
    )
    p.add_argument(
        "--out", metavar="DIR", help="store the run in DIR/{runs,traces,events} (study 'adhoc')"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--mix-builds",
        action="store_true",
        help="store into --out even if its runs come from another build",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("study", help="run a study file's grid of runs")
    p.add_argument("file", metavar="FILE", help="a TOML study file (see studies/)")
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        help="workers (default: all cores; dask: the cluster's threads)",
    )
    p.add_argument(
        "--out",
        default=DEFAULT_RESULTS,
        metavar="RESULTS",
        help=f"results directory (default {DEFAULT_RESULTS})",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "loky", "threading", "dask"),
        help="where runs go: auto (default) = threads for a study of under about 2.5 "
        "minutes of runs per worker, loky processes otherwise; the bits are the same",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler address, e.g. tcp://host:8786 (with --backend dask)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="runs per batch (default: automatic, about 5 s of work each)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the number of runs, how many are stored, and a time estimate",
    )
    p.add_argument(
        "--mix-builds",
        action="store_true",
        help="add runs to a study stored by another build (compile target or versions)",
    )
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="time the study's rates (seconds per cycle) now instead of taking them from "
        "the cost model (kept in DIFFRNN_CACHE_DIR or ~/.cache/diffrnn, re-timed after "
        f"{MAX_AGE_DAYS} days)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_study)

    p = commands.add_parser("results", help="query a results directory")
    sub = p.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    s = sub.add_parser("summary", help="median and IQR of final N and loss per group")
    s.add_argument("results", metavar="RESULTS")
    s.add_argument(
        "--by",
        default="condition",
        metavar="COL[,COL]",
        help="runs columns to group by (default condition)",
    )
    s.add_argument("--study", default=None, help="only this study")
    s.set_defaults(func=cmd_results_summary)
    s = sub.add_parser(
        "compact",
        help="rewrite each study's files into one per dataset (done when a study finishes; "
        "for a store left by an interrupted study)",
    )
    s.add_argument("results", metavar="RESULTS")
    s.add_argument("--study", default=None, help="only this study (default every study)")
    s.set_defaults(func=cmd_results_compact)
    s = sub.add_parser(
        "adaptability",
        help="size and loss around task switches (easy-hard-easy, hard-easy, schedules): "
        "median and IQR per group",
    )
    s.add_argument("results", metavar="RESULTS")
    s.add_argument("--study", required=True, help="the study")
    s.add_argument(
        "--by",
        default="condition",
        metavar="COL[,COL]",
        help="runs columns to group by (default condition)",
    )
    s.set_defaults(func=cmd_results_adaptability)

    p = commands.add_parser("figures", help="draw a study's figures")
    p.add_argument("results", metavar="RESULTS")
    p.add_argument("--study", required=True)
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=cmd_figures)
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffrnn`` console script; returns the exit status.

    Called without ``argv`` (the console script, ``python -m engine``), it ends the process
    itself when the command is done (``_end_process``)."""
    code = _main(argv)
    if argv is None:
        _end_process(code)
    return code


def _end_process(code: int) -> None:
    """End the process now, without the interpreter's own teardown.

    After a command the interpreter spends 0.3-0.7 s tearing down Numba, LLVM, pandas and
    pyarrow (bench/README.md, *The fixed cost*), and loky would wait for every idle worker
    process to do the same. So: stop the workers (``scheduler.stop_workers``), run the exit
    handlers (they remove joblib's semaphores and temporary folders), flush the output and
    ``os._exit``. Only when nothing else runs in this process (the main thread alone):
    otherwise this returns, and the interpreter ends as usual.
    """
    scheduler = sys.modules.get("engine.scheduler")
    if scheduler is not None:
        scheduler.stop_workers()
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None or threading.active_count() > 1:
        return
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return args.func(args)
    except (UsageError, ConfigError) as error:
        print(f"diffrnn: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as error:
        name = f"{error.filename}: " if error.filename else ""
        print(f"diffrnn: error: {name}{error.strerror or _one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffrnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exit_:  # --help, --version
        return exit_.code if isinstance(exit_.code, int) else EXIT_OK
    except Exception as error:
        if os.environ.get("DIFFRNN_TRACEBACK"):
            raise
        print(
            f"diffrnn: internal error: {type(error).__name__}: {_one_line(error)} "
            "(set DIFFRNN_TRACEBACK=1 to see the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
