"""The benchmark harness still works: `python -m bench --quick` writes a full results table.

Speed is not asserted here (bench/RESULTS.md holds the measured figures); only
that every suite ran and produced numbers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(600)
def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--runs", "2",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=580, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    for section in ("Startup", "Port-forward throughput", "Port-forward round trip",
                    "Shell keystroke echo", "Shell output", "Errors", "Logs", "Gateway"):
        assert f"## {section}" in table, f"no {section} section in:\n{table}"
    for name in ("tether --help", "direct TCP", "tether ws://", "tether shell",
                 "refusal to exit", "Python floor: two bare relays, TLS between",
                 "Python floor: a bare terminal relay"):
        row = next((line for line in table.splitlines() if line.startswith(f"| {name}")), "")
        assert re.search(r"\| [\d,.]+ \(", row), f"no figure for {name!r}: {row!r}"
    if shutil.which("sshd") or Path("/usr/sbin/sshd").exists():
        assert "| ssh -L |" in table and "| ssh -tt |" in table
    assert "failed" not in table
