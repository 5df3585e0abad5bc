"""The headless core: ``zoengine`` imports and its CLI runs where ``textual`` is not importable.

The import graph itself is checked statically by ``lint-imports`` (contracts in pyproject.toml);
this runs ``tests/headless_check.py`` (also a step of ``.ci/run``) in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).with_name("headless_check.py")


def test_zoengine_imports_and_runs_without_textual():
    proc = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "without textual" in proc.stdout
