"""The cost model: seconds per training cycle on this machine, kept between invocations.

``diffrnn study`` needs each run's compute time, for the ``--dry-run`` estimate and to cut
a study into batches of a few seconds: its cycles times a rate (seconds per cycle) that
depends on the dtype, seq_len and network size N (a variable-size run's expected N,
``planning.expected_neurons``). A rate is measured by timing short fixed-size runs
(``planning.time_rates``), which needs the kernels loaded and costs about 0.2 s per rate.

Timing them at every start cost every invocation about a second, so the rates are kept in a
small JSON file in a per-user cache directory (``cache_dir``), each under what makes it
valid: the machine (CPU model name and core count) and the build (compile target, engine,
numba, llvmlite and numpy versions: ``engine.jit.build_info``). Another machine, a new
engine version or ``DIFFRNN_TARGET=host`` finds no rate of its own and times them once.

How stale a rate may get: it is used for MAX_AGE_DAYS (30 days) after it was timed, then
timed again; ``diffrnn study --recalibrate`` times the study's rates now. What the key
cannot see (the same CPU model made slower by its VM's neighbours or a BIOS setting) is
wrong for at most those 30 days; the rates only size batches and estimate, so a wrong rate
never changes a result.

The file is a cache: written atomically (a temporary file, then ``os.replace``), so a
reader never sees half of it; concurrent writers each merge what is on disk before
replacing it (the last one wins for a rate both timed); a file that is unreadable, corrupt
or of another format is ignored and rewritten; a directory that cannot be written leaves
the rates timed in memory only (``CostModel.problem`` says why). Nothing here raises.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE_ENV = "DIFFRNN_CACHE_DIR"
MODEL_FILE = "cost-model.json"
FORMAT = 1  # of the file; a file of another format is ignored (and rewritten)
MAX_AGE_DAYS = 30
MAX_ENTRIES = 1000  # oldest dropped first: every build and machine that shares the file
Key = tuple[str, int, int]  # (dtype, seq_len, N)


def cache_dir() -> Path:
    """``DIFFRNN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/diffrnn``, else
    ``~/.cache/diffrnn`` (a relative XDG_CACHE_HOME is ignored, as the XDG spec says)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "diffrnn"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """What identifies this machine's speed in the cost model."""
    return {"cpu": cpu_name(), "cores": os.cpu_count() or 1}


def current_context() -> dict[str, Any]:
    """The key under which this process's rates are kept: machine and build."""
    from .jit import build_info

    return {"machine": machine(), "build": build_info()}


def _stamp(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


@dataclass
class Lookup:
    """What the model knows of some keys: fresh rates, and the keys to time."""

    rates: dict[Key, float] = field(default_factory=dict)  # seconds per cycle
    timed_at: dict[Key, float] = field(default_factory=dict)  # epoch seconds, per rate
    missing: list[Key] = field(default_factory=list)  # absent, stale, or recalibrating


class CostModel:
    """The rates kept for one context (machine and build) in one file.

    ``path`` defaults to ``cache_dir() / MODEL_FILE``, ``context`` to ``current_context()``
    (tests pass their own). ``problem`` is "" or one line saying why the file could not be
    read or written.
    """

    def __init__(
        self, path: str | os.PathLike | None = None, context: dict[str, Any] | None = None
    ) -> None:
        self.path = Path(path) if path is not None else cache_dir() / MODEL_FILE
        self.context = context if context is not None else current_context()
        self.problem = ""
        self._entries = self._read()

    # -- reading ---------------------------------------------------------------------------
    def _read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            self.problem = f"cannot read {self.path}: {_reason(error)}"
            return []
        try:
            data = json.loads(text)
        except ValueError as error:
            self.problem = f"{self.path} is corrupt ({error}): ignored, and rewritten"
            return []
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            self.problem = f"{self.path} is not a cost model of format {FORMAT}: ignored"
            return []
        entries = data.get("entries")
        if not isinstance(entries, list):
            self.problem = f"{self.path} has no list of entries: ignored, and rewritten"
            return []
        return [e for e in entries if _valid(e)]  # a bad entry alone is dropped

    def _mine(self, entry: dict[str, Any]) -> bool:
        return (
            entry["machine"] == self.context["machine"] and entry["build"] == self.context["build"]
        )

    def lookup(
        self, keys: Iterable[Key], *, recalibrate: bool = False, now: float | None = None
    ) -> Lookup:
        """Fresh rates of ``keys`` (timed at most MAX_AGE_DAYS ago, in this context);
        the others, or all of them with ``recalibrate``, are ``missing``."""
        now = time.time() if now is None else now
        known: dict[Key, tuple[float, float]] = {}
        for entry in self._entries:
            if self._mine(entry):
                key = (entry["dtype"], entry["seq_len"], entry["neurons"])
                known[key] = (entry["seconds_per_cycle"], _epoch(entry["timed_at"]))
        found = Lookup()
        for key in sorted(set(keys)):
            if key in known and not recalibrate and _fresh(known[key][1], now):
                found.rates[key], found.timed_at[key] = known[key]
            else:
                found.missing.append(key)
        return found

    # -- writing ---------------------------------------------------------------------------
    def save(
        self, rates: Mapping[Key, float], *, now: float | None = None, load: float | None = None
    ) -> bool:
        """Keep ``rates`` (just timed; ``load`` is the load average then, for the record).

        Merges with what is on disk now, drops expired rates, writes atomically. Returns
        False (and sets ``problem``) if the file cannot be written; never raises."""
        now = time.time() if now is None else now
        if not rates:
            return True
        new = [
            {
                **self.context,
                "dtype": dtype,
                "seq_len": seq_len,
                "neurons": neurons,
                "seconds_per_cycle": float(seconds),
                "timed_at": _stamp(now),
                **({"load_average": round(load, 2)} if load is not None else {}),
            }
            for (dtype, seq_len, neurons), seconds in sorted(rates.items())
        ]
        replaced = {_identity(e) for e in new}
        problem = self.problem
        on_disk = self._read()  # what other processes wrote meanwhile
        self.problem = problem
        kept = [
            e
            for e in on_disk
            if _identity(e) not in replaced and _fresh(_epoch(e["timed_at"]), now)
        ]
        entries = sorted(kept + new, key=lambda e: _epoch(e["timed_at"]) or 0.0)
        entries = entries[-MAX_ENTRIES:]
        text = json.dumps({"format": FORMAT, "entries": entries}, indent=1, sort_keys=True)
        try:
            self._write(text + "\n")
        except OSError as error:
            self.problem = f"cannot write {self.path}: {_reason(error)}"
            return False
        self._entries = entries
        return True

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or " ".join(str(error).split())


def _fresh(timed_at: float | None, now: float) -> bool:
    if timed_at is None:
        return False
    age = now - timed_at
    # a rate from the future (a clock set back) is not trusted either
    return -86_400.0 <= age <= MAX_AGE_DAYS * 86_400.0


def _identity(entry: dict[str, Any]) -> str:
    return json.dumps(
        [entry["machine"], entry["build"], entry["dtype"], entry["seq_len"], entry["neurons"]],
        sort_keys=True,
    )


def _valid(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    seconds = entry.get("seconds_per_cycle")
    return (
        isinstance(entry.get("machine"), dict)
        and isinstance(entry.get("build"), dict)
        and isinstance(entry.get("dtype"), str)
        and type(entry.get("seq_len")) is int
        and type(entry.get("neurons")) is int
        and type(seconds) is float
        and 0.0 < seconds < 3600.0
        and _epoch(entry.get("timed_at")) is not None
    )
