"""README promises that must stay true: the config table and the CI test command."""

from __future__ import annotations

import re
from pathlib import Path

from engine.config import default_of, field_specs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_config_table_lists_every_field_with_its_default():
    rows = {
        match[1]: match[2]
        for match in re.finditer(r"^\| `(\w+)` \|[^|]*\| ([^|]*) \|", README, re.MULTILINE)
    }
    for spec in field_specs():
        assert spec.name in rows, f"README's config table lacks {spec.name}"
        first, second = (default_of(spec.name, c) for c in ("multiplier", "outgoing"))
        if spec.default is not None:  # the same under both criteria
            text = f"`{spec.default!r}`"
        else:
            text = f"`{first!r}` (outgoing: `{second!r}`)"
        assert rows[spec.name] == text, (spec.name, rows[spec.name])


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.DOTALL)
    test_command = next(line for block in blocks for line in block.splitlines() if "pytest" in line)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci
