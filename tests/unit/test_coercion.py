"""Values without pydantic: no command imports it, and every kind of value converts as before."""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer

from tether.cli.boundary import run_app
from tether.cli.help import Typer

ROOT = Path(__file__).resolve().parents[2]

REPORT = """
import json, os, sys
from tether.cli.app import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.partition(".")[0] in ("pydantic", "pydantic_core"))
with open(os.environ["TETHER_TEST_REPORT"], "w") as report:
    json.dump({"code": code, "heavy": heavy}, report)
"""


@pytest.mark.parametrize(("args", "status"), [
    (["--help"], 0),
    (["errors"], 0),
    (["errors", "rate-limited", "-o", "json"], 0),
    (["logs", "--help"], 0),
    (["gateway", "token", "create", "-h"], 0),
    (["--retry-for", "1h30m", "logs", "api", "--tail", "5", "--since", "2m30s", "-f",
      "--instance", "a", "--instance", "b", "--no-prefix"], 78),
    (["port-forward", "api", ":80", "--address", "::1", "-o", "json"], 78),
    (["-o", "json", "logs", "api", "--tail", "x"], 2),
    (["version"], 0),
])
def test_no_command_imports_pydantic(args: list[str], status: int, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(TETHER_TEST_REPORT=str(report), TETHER_CONFIG_DIR=str(tmp_path / "config"),
               TETHER_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.run([sys.executable, "-c", REPORT, *args], capture_output=True, text=True,
                          env=env, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(report.read_text())
    assert found["code"] == status, proc.stderr
    assert found["heavy"] == [], f"{args} imported {found['heavy'][:3]}"


# --- conversions, in process ---------------------------------------------------------------------


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


def _app(factory: type[typer.Typer] = Typer) -> typer.Typer:
    app = factory()

    @app.callback()
    def root() -> None:
        """Conversions."""

    @app.command()
    def show(
        flag: Annotated[bool, typer.Option("--flag", envvar="T_FLAG")] = False,
        count: Annotated[int, typer.Option("--count", min=-1, max=9)] = 0,
        ratio: Annotated[float, typer.Option("--ratio")] = 1.5,
        colour: Annotated[Colour, typer.Option("--colour", case_sensitive=False)] = Colour.RED,
        size: Annotated[Literal["s", "m"], typer.Option("--size")] = "s",
        names: Annotated[list[str] | None, typer.Option("--name")] = None,
        doubled: Annotated[list[int] | None, typer.Option(
            "--double", parser=lambda v: int(v) * 2)] = None,
        where: Annotated[Path | None, typer.Option("--where", exists=True)] = None,
        clamped: Annotated[int, typer.Option("--clamped", min=0, max=5, clamp=True)] = 0,
    ) -> None:
        typer.echo(repr((flag, count, ratio, colour, size, names, doubled, where, clamped)))

    return app


def shown(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = run_app(_app(), ["show", *args], output="text", verbose=False)
    captured = capsys.readouterr()
    return status, captured.out.strip(), captured.err


def _all_kinds(where: Path) -> list[str]:
    return ["--flag", "--count", " 7", "--ratio", "2", "--colour", "BLUE", "--size", "m",
            "--name", "a", "--name", "b", "--double", "4", "--where", str(where),
            "--clamped", "99"]


def test_values_convert_as_typer_does(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    assert shown(capsys)[1] == repr((False, 0, 1.5, Colour.RED, "s", None, None, None, 0))
    status, out, _ = shown(capsys, *_all_kinds(tmp_path))
    assert status == 0
    assert out == repr((True, 7, 2.0, Colour.BLUE, "m", ["a", "b"], [8], tmp_path, 5))


def test_the_same_values_as_typers_own_conversion(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    """Typer's own (pydantic) conversion, in a process where nothing replaced it, agrees."""
    script = ("import sys, typer\nfrom tests.unit.test_coercion import _app\n"
              "_app(typer.Typer)(['show', *sys.argv[1:]], standalone_mode=False)\n")
    for args in ([], _all_kinds(tmp_path)):
        theirs = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=30, check=False)
        assert theirs.returncode == 0, theirs.stderr
        assert shown(capsys, *args)[1] == theirs.stdout.strip()


@pytest.mark.parametrize(("value", "expected"), [
    ("yes", True), ("1", True), ("ON", True), ("no", False), ("0", False), ("", False)])
def test_flags_from_the_environment(value: str, expected: bool,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_FLAG", value)
    status, out, _ = shown(capsys)
    assert status == 0 and out.startswith(f"({expected},")


@pytest.mark.parametrize(("args", "message"), [
    (["--count", "x"], "'x' is not a valid integer."),
    (["--count", "10"], "10 is out of range: it must be from -1 to 9."),
    (["--ratio", "fast"], "'fast' is not a valid number."),
    (["--colour", "green"], "'green' is not one of 'red', 'blue'."),
    (["--size", "xl"], "'xl' is not one of 's', 'm'."),
    (["--where", "/no/such/place"], "does not exist"),
])
def test_bad_values_are_usage_errors(args: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = shown(capsys, *args)
    assert status == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_bad_flag_from_the_environment(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_FLAG", "maybe")
    status, _, err = shown(capsys)
    assert status == 2 and "'maybe' is not a valid boolean" in err
