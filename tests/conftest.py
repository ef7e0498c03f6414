"""Shared setup: make ``tests/naive.py`` importable whatever the import mode, and keep the
engine's per-user cache (the cost model) out of the real home directory."""

import os
import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """DIFFRNN_CACHE_DIR for the whole session (and every process it starts): tests never
    read or write the user's ~/.cache/diffrnn, and start from an empty cost model."""
    before = os.environ.get("DIFFRNN_CACHE_DIR")
    os.environ["DIFFRNN_CACHE_DIR"] = str(tmp_path_factory.mktemp("diffrnn-cache"))
    yield
    if before is None:
        os.environ.pop("DIFFRNN_CACHE_DIR", None)
    else:
        os.environ["DIFFRNN_CACHE_DIR"] = before
