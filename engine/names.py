"""Study and condition names: the rule the study files and the store share.

Kept apart from ``engine.store`` so that reading a study file (``diffrnn study --dry-run``)
does not import pandas and pyarrow (half a second) just to check a name. The store applies
the same rule (``store.check_name``); ``tests/test_scheduler.py`` checks they agree.
"""

from __future__ import annotations

import re
from typing import Any

from .config import ConfigError

DEFAULT_CONDITION = "default"  # the condition of a study without [[conditions]]
NAME = re.compile(r"[A-Za-z][A-Za-z0-9._+-]{0,99}")


def check_name(name: Any, what: str = "study name") -> str:
    """A letter, then up to 99 letters, digits, '.', '_', '+' or '-'; else ConfigError."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not allowed: a letter then up to 99 letters, "
            "digits, '.', '_', '+' or '-'"
        )
    return name
