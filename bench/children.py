"""Running a bench script again in a fresh process, and reading back its JSON answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_child(script: str | Path, args: list[str], env: dict, timeout: float, cwd=None) -> dict:
    """Run ``python script *args`` with ``env``; its last stdout line, parsed as JSON.
    A failed child raises ``RuntimeError`` with the end of its stderr."""
    done = subprocess.run(
        [sys.executable, str(Path(script).resolve()), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"subprocess {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
