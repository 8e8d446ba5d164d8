"""The web UI's JavaScript unit tests (tests/ui/*.test.mjs), run by Node's own test runner
so that `pytest` covers them: pure helpers and the trace view model, no browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UI_TESTS = Path(__file__).resolve().parents[1] / "ui"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_ui_scripts_pass_their_node_tests():
    files = sorted(str(path) for path in UI_TESTS.glob("*.test.mjs"))
    assert files, f"no tests in {UI_TESTS}"
    finished = subprocess.run([NODE, "--test", *files], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout + finished.stderr
