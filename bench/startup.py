"""Startup: `tether --help` and `--version` beside `python -c pass` and a minimal Typer app."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.harness import Figure, Results, time_command

MINIMAL_APP = '''
import typer

app = typer.Typer()


@app.command()
def shell(service: str) -> None:
    """Open a shell."""


@app.command()
def logs(service: str) -> None:
    """Show logs."""


@app.command("port-forward")
def port_forward(service: str, port: str) -> None:
    """Forward a port."""


app()
'''


def tether_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m tether``."""
    script = Path(sys.executable).with_name("tether")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tether"]


def run(results: Results, runs: int) -> None:
    """Measure the four start-up figures."""
    section = "Startup (wall clock of one process, seconds)"
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        minimal = Path(tmp) / "minimal_app.py"
        minimal.write_text(MINIMAL_APP)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], None, ""),
            ("minimal Typer app --help", [sys.executable, str(minimal), "--help"], None, ""),
            ("tether --help", [*tether_command(), "--help"], "minimal Typer app --help",
             "within 1.1x of the minimal app"),
            ("tether --version", [*tether_command(), "--version"], "minimal Typer app --help",
             ""),
        ]
        for name, argv, peer, goal in cases:
            time_command(argv)  # warm the page cache and the bytecode
            fig = Figure(name, "s", [time_command(argv) for _ in range(runs)], peer=peer,
                         goal=goal)
            results.add(fig, section)
