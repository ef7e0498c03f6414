"""One ``diffrnn`` invocation in this process, with the time of each of its parts.

    python bench/timed_invocation.py OUT.json [diffrnn arguments ...]

Used by ``study_throughput.py``, which starts it as a fresh process per invocation, as a
user runs ``diffrnn``: it is the console script (``engine.cli.main()`` with the arguments
in ``sys.argv``, so the process ends as the command's does) plus timers. Writes to
OUT.json, from an exit handler (the command ends the process with ``os._exit`` after
running the exit handlers):

- ``started_epoch``: ``time.time()`` at this script's first line (the parent subtracts its
  own launch time: the interpreter's start-up);
- ``imports``: seconds from the first line until ``engine.cli`` (and so numpy, Numba and
  the engine) is imported;
- ``spans``: [start, end] of some engine functions as they run, in seconds from the first
  line: ``load_study`` (the study file read and expanded), ``_nothing_stored`` (the store
  check of a dry-run on an empty store), ``study_rates`` (the cost model), ``make_batches``
  (the estimate), ``run_study``, ``_print_summary`` (the summary table at the end);
- ``phases``: the parts of ``run_study`` (``StudyReport.phases``), on the same clock;
- ``report``: the study report's sums (runs' own seconds, fan-out seconds, workers);
- ``main``: when the command was done (``engine.cli`` began to end the process);
- ``exit_handlers``: when the exit handlers had run (workers stopped, joblib cleaned up).
The exit code is diffrnn's.
"""

from __future__ import annotations

import time

STARTED_EPOCH = time.time()
T0 = time.perf_counter()

import atexit  # noqa: E402 - after the clocks: everything below is timed
import json  # noqa: E402
import sys  # noqa: E402

WRAPPED = ("load_study", "_nothing_stored", "study_rates", "make_batches", "run_study")


def _now() -> float:
    return time.perf_counter() - T0


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    record: dict = {"started_epoch": STARTED_EPOCH, "spans": {}}
    reports: list = []

    def write() -> None:  # an exit handler: registered first, so it runs last of them
        if "exit_handlers" in record:
            return
        record["exit_handlers"] = _now()
        if reports:
            start, report = reports[0]
            record["phases"] = {k: start + v for k, v in report.phases.items()}
            record["report"] = {
                "runs_done": report.done,
                "workers": report.workers,
                "backend": report.backend,
                "batches": report.batches,
                "run_seconds": report.run_seconds,
                "worker_seconds": report.worker_seconds,
                "fan_out_seconds": report.seconds,
            }
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(record, handle)

    atexit.register(write)
    import engine.cli as cli

    record["imports"] = _now()
    from engine import scheduler

    def timed(module, name: str) -> None:
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            start = _now()
            try:
                result = real(*args, **kwargs)
            finally:
                record["spans"].setdefault(name, [start, _now()])
            if name == "run_study":
                reports.append((start, result))
            return result

        setattr(module, name, wrapper)

    for name in WRAPPED:
        timed(scheduler, name)
    timed(cli, "_print_summary")
    real_end = cli._end_process

    def end_process(code: int) -> None:
        record["main"] = _now()
        record["exit"] = code
        real_end(code)

    cli._end_process = end_process
    sys.argv = ["diffrnn", *argv]
    code = cli.main()  # returns only if the process was not ended fast
    write()
    return code


if __name__ == "__main__":
    sys.exit(main())
