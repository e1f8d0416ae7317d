"""Without fcntl and termios (Windows has neither), every command module still loads and runs.

A ``sitecustomize`` on PYTHONPATH puts a finder first on ``sys.meta_path``
that refuses ``fcntl``, ``termios``, ``tty`` and ``pty``, as Windows' Python does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import assert_no_secrets, tether_env

HIDE = '''
import sys

HIDDEN = ("fcntl", "termios", "tty", "pty")


class _Posixless:
    """Refuse the POSIX-only modules, as an interpreter that lacks them does."""

    def find_spec(self, name, path=None, target=None):
        if name in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Posixless())
for _name in HIDDEN:
    sys.modules.pop(_name, None)
'''

IMPORTS = """
import importlib
modules = [
    "tether.cli.app", "tether.cli.commands.logs", "tether.cli.commands.port_forward",
    "tether.cli.commands.auth", "tether.cli.commands.errors", "tether.cli.commands.status",
    "tether.cli.commands.version", "tether.cli.commands.completion",
    "tether.cli.output.reporters", "tether.session.link", "tether.session.logs",
    "tether.session.forward", "tether.session.listeners", "tether.session.terminal",
    "tether.auth.credentials", "tether.auth.refresh", "tether.auth.store",
]
for name in modules:
    importlib.import_module(name)
for hidden in ("fcntl", "termios"):
    try:
        importlib.import_module(hidden)
    except ImportError:
        continue
    raise SystemExit(f"{hidden} was not hidden")
print("imported", len(modules))
"""


@pytest.fixture
def posixless(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE)
    env = tether_env(None, None, tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=30, check=False)


def test_the_commands_import_without_fcntl_and_termios(posixless: dict[str, str]) -> None:
    proc = run(posixless, "-c", IMPORTS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("imported ")


@pytest.mark.parametrize("args", [["--help"], ["errors"], ["errors", "refresh-failed"],
                                  ["logs", "-h"], ["port-forward", "--help"],
                                  ["auth", "status", "-h"]])
def test_the_cli_runs_without_fcntl_and_termios(args: list[str],
                                                posixless: dict[str, str]) -> None:
    proc = run(posixless, "-m", "tether", *args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout


def test_logs_against_a_gateway_without_fcntl_and_termios(gateway, viewer_token: str,
                                                          posixless: dict[str, str]) -> None:
    env = {**posixless, "TETHER_GATEWAY": gateway.url, "TETHER_TOKEN": viewer_token}
    proc = run(env, "-m", "tether", "logs", "api", "--tail", "1")
    assert proc.returncode == 0, proc.stderr
    assert "[api-1] api-1 line 3" in proc.stdout and "[api-2] api-2 line 3" in proc.stdout
    assert_no_secrets([viewer_token], proc.stdout, proc.stderr)


TRY_LOCK = """
import sys
from pathlib import Path
from tether.auth.refresh import gateway_lock
from tether.errors import TetherError
try:
    with gateway_lock("https://gw.example", Path(sys.argv[1]), timeout=0.3):
        print("taken")
except TetherError as err:
    print(err.failure.code)
"""

HOLD_LOCK = """
import subprocess, sys
from pathlib import Path
from tether.auth.refresh import gateway_lock
where, attempt = sys.argv[1], sys.argv[2]
def other_process():
    return subprocess.run([sys.executable, "-c", attempt, where], capture_output=True,
                          text=True, timeout=20, check=True).stdout.strip()
with gateway_lock("https://gw.example", Path(where)):
    held = other_process()
print(held, other_process(), sep="|")
"""


def test_the_refresh_lock_works_across_processes_without_fcntl(posixless: dict[str, str],
                                                                 tmp_path: Path) -> None:
    proc = run(posixless, "-c", HOLD_LOCK, str(tmp_path / "locks"), TRY_LOCK)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "refresh-failed|taken", proc.stdout
