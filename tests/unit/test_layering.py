"""The layering rules (.importlinter) hold, and the checker would notice a break."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"


def lint_imports(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run import-linter in a subprocess: it imports the packages it analyses by name."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_contract_is_kept():
    result = lint_imports(str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = configparser.ConfigParser()
    contracts.read(CONFIG)
    names = [contracts[s]["name"] for s in contracts.sections() if ":contract:" in s]
    assert len(names) >= 8
    assert f"Contracts: {len(names)} kept, 0 broken." in result.stdout


def test_a_wrong_way_import_is_reported(tmp_path):
    """A copy of the tree in which the gateway borrows from the sink breaks the contract."""
    for package in ("pipeline", "agents"):
        subprocess.run(["cp", "-r", str(ROOT / package), str(tmp_path / package)], check=True)
    ingest = tmp_path / "pipeline" / "gateway" / "ingest.py"
    ingest.write_text(ingest.read_text() + "\nfrom pipeline.sink import documents  # noqa\n")
    result = lint_imports(str(CONFIG), cwd=tmp_path)
    assert result.returncode != 0
    assert "pipeline.gateway.ingest -> pipeline.sink.documents" in result.stdout
    assert "BROKEN" in result.stdout
