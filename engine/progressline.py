"""The progress lines of ``diffrnn run`` and ``diffrnn study`` on stderr: one status line,
redrawn in place on a terminal and printed every tenth of the way otherwise, with a bar
and durations in words.

Apart from ``engine.cli`` (which re-exports it) because it is a small terminal utility
that needs nothing of the engine.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


class ProgressLine:
    """One status line on a stream: redrawn in place with \\r on a terminal; otherwise
    printed as a new line every tenth of the way (logs and pipes stay readable)."""

    def __init__(
        self, stream: TextIO | None = None, enabled: bool = True, interval: float = 0.2
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.interval = interval
        self.width = 0
        self.last_draw = -math.inf
        self.next_tenth = 0.0

    def update(self, text: str, fraction: float, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            now = time.monotonic()
            if not force and now - self.last_draw < self.interval:
                return
            self.last_draw = now
            self.stream.write("\r" + text.ljust(self.width))
            self.width = max(self.width, len(text))
            self.stream.flush()
        elif fraction >= self.next_tenth - 1e-12:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.next_tenth = math.floor(fraction * 10 + 1e-9) / 10 + 0.1

    def close(self) -> None:
        if self.enabled and self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"
