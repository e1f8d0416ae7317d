"""Startup: `tether --help`, each command's `--help` and `--version` beside a minimal Typer app.

Every case is timed once per round, round after round, so that what the
machine is doing at the time weighs on each the same: the ratios come from
one run. Each command's `--help` is compared with the minimal app's own
subcommand `--help` (the goal: within 1.1x of it).
"""

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
MINIMAL = "minimal Typer app --help"
MINIMAL_COMMAND = "minimal Typer app logs --help"
GOAL = "within 1.1x of the minimal app"


def tether_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m tether``."""
    script = Path(sys.executable).with_name("tether")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tether"]


def command_names() -> list[str]:
    """The commands ``tether --help`` lists, in its order."""
    import typer.main

    from tether.cli.app import app

    root = typer.main.get_command(app)
    return [name for name, command in getattr(root, "commands", {}).items()
            if not command.hidden]


def run(results: Results, runs: int) -> None:
    """Measure start-up: python, the minimal app, tether's root and every command's help."""
    section = "Startup (wall clock of one process, seconds)"
    tether = tether_command()
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        minimal = Path(tmp) / "minimal_app.py"
        minimal.write_text(MINIMAL_APP)
        cases: list[tuple[str, list[str], str | None, str]] = [
            ("python -c pass", [sys.executable, "-c", "pass"], None, ""),
            (MINIMAL, [sys.executable, str(minimal), "--help"], None, ""),
            (MINIMAL_COMMAND, [sys.executable, str(minimal), "logs", "--help"], None, ""),
            ("tether --help", [*tether, "--help"], MINIMAL, GOAL),
            ("tether --version", [*tether, "--version"], MINIMAL, ""),
        ]
        cases += [(f"tether {name} --help", [*tether, name, "--help"], MINIMAL_COMMAND, GOAL)
                  for name in command_names()]
        samples: dict[str, list[float]] = {name: [] for name, _, _, _ in cases}
        for _, argv, _, _ in cases:
            time_command(argv)  # warm the page cache and the bytecode
        for _ in range(runs):
            for name, argv, _, _ in cases:
                samples[name].append(time_command(argv))
        for name, _, peer, goal in cases:
            results.add(Figure(name, "s", samples[name], peer=peer, goal=goal), section)
