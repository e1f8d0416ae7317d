"""The installed CLI: global options anywhere, `tether errors`, the import budget, the boundary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

from tether import __version__
from tether.cli.app import app
from tether.cli.boundary import run_app
from tether.cli.options import (
    GLOBAL_OPTIONS,
    Output,
    Settings,
    hoist_global_options,
    is_global,
    render_settings,
    settings,
)
from tether.errors import Code, Failure, Interrupted, Phase, TetherError

TETHER = [sys.executable, "-m", "tether"]
HEAVY = ("websocket", "keyring", "jwt", "websockets", "tether.gateway")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(COLUMNS="200", NO_COLOR="1", **extra)
    return env


def tether(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TETHER, *args], capture_output=True, text=True, timeout=30,
                          env=clean_env(**env), check=False)


def test_version() -> None:
    proc = tether("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"tether {__version__}\n"


def test_console_script_is_installed_next_to_python() -> None:
    script = Path(sys.executable).with_name("tether")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          timeout=30, env=clean_env(), check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("tether ")


def test_help_names_every_global_env_var() -> None:
    proc = tether("--help")
    assert proc.returncode == 0
    for var in ("TETHER_OUTPUT", "TETHER_GATEWAY", "TETHER_VERBOSE"):
        assert var in proc.stdout
    assert "errors" in proc.stdout


def test_errors_lists_every_code() -> None:
    proc = tether("errors")
    assert proc.returncode == 0
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {str(c) for c in Code} <= listed


def test_errors_explains_a_code() -> None:
    proc = tether("errors", "permission-denied")
    assert proc.returncode == 0
    out = " ".join(proc.stdout.split())
    assert "Permission denied" in out
    assert "403, or close 1007" in out
    assert "Ask an Admin of the gateway" in out
    assert "77 (NO_PERMISSION)" in out
    assert "refreshes it once" in out


@pytest.mark.parametrize("args", [
    ["-o", "json", "errors", "permission-denied"],
    ["errors", "permission-denied", "-o", "json"],
    ["errors", "permission-denied", "-ojson"],
    ["errors", "--output=json", "permission-denied"],
    ["--output", "json", "errors", "PERMISSION_DENIED"],
])
def test_errors_json_before_or_after_the_subcommand(args: list[str]) -> None:
    proc = tether(*args)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["code"] == "permission-denied"
    assert record["exit_code"] == 77 and record["retry"] == "refresh-once"


def test_output_from_environment() -> None:
    proc = tether("errors", TETHER_OUTPUT="json")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["code"] for r in records] == [str(c) for c in Code]


def test_unknown_code_suggests_close_matches_and_is_a_usage_error() -> None:
    proc = tether("errors", "permision-denied")
    assert proc.returncode == 2
    assert "Did you mean permission-denied" in proc.stderr and proc.stdout == ""
    proc = tether("errors", "nonsense-code", "-o", "json")
    assert proc.returncode == 2
    record = json.loads(proc.stderr)
    assert record["event"] == "error" and record["code"] == "usage-error"
    assert record["exit_code"] == 2 and "Did you mean" not in record["hint"]


def test_usage_error_exits_2_with_clicks_message() -> None:
    proc = tether("no-such-command")
    assert proc.returncode == 2
    assert "Usage:" in proc.stderr and "No such command" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = tether("-o", "xml", "errors")
    assert proc.returncode == 2 and "xml" in proc.stderr


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["errors", "--help"]])
def test_import_budget(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tether", *args],
                          capture_output=True, text=True, timeout=30, env=clean_env(),
                          check=False)
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "tether.cli.app" in imported  # the measurement itself worked
    for heavy in HEAVY:
        assert not any(m == heavy or m.startswith(heavy + ".") for m in imported), heavy


# --- hoisting global options ----------------------------------------------------------------

@pytest.mark.parametrize(("argv", "expected"), [
    (["logs", "api", "-o", "json"], ["-o", "json", "logs", "api"]),
    (["logs", "api", "-ojson", "-v"], ["-ojson", "-v", "logs", "api"]),
    (["logs", "--output=json", "api", "--verbose"], ["--output=json", "--verbose", "logs", "api"]),
    (["shell", "api", "--gateway", "wss://g", "--", "ls", "-v", "-o", "x"],
     ["--gateway", "wss://g", "shell", "api", "--", "ls", "-v", "-o", "x"]),
    (["shell", "--gateway=wss://g", "api"], ["--gateway=wss://g", "shell", "api"]),
    (["-v", "errors"], ["-v", "errors"]),
    (["errors", "-o"], ["-o", "errors"]),
])
def test_hoist_global_options(argv: list[str], expected: list[str]) -> None:
    assert hoist_global_options(argv) == expected


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["logs", "api"], {}, (Output.TEXT, False)),
    (["logs", "api", "-ojson", "--verbose"], {}, (Output.JSON, True)),
    (["logs", "--output=JSON", "api"], {}, (Output.JSON, False)),
    (["logs", "api", "-o", "text"], {"TETHER_OUTPUT": "json"}, (Output.TEXT, False)),
    (["logs", "api"], {"TETHER_OUTPUT": "json", "TETHER_VERBOSE": "yes"}, (Output.JSON, True)),
    (["shell", "api", "--", "ls", "-o", "json", "-v"], {}, (Output.TEXT, False)),
    (["errors", "-o"], {}, (Output.TEXT, False)),
])
def test_render_settings_read_argv_then_environment(
        argv: list[str], env: dict[str, str], expected: tuple[Output, bool],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TETHER_OUTPUT", "TETHER_VERBOSE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert render_settings(argv) == expected


def test_the_root_options_are_the_table() -> None:
    root = typer.main.get_command(app)
    options = {p.opts[0]: p for p in root.params if p.param_type_name == "option"}
    for option in GLOBAL_OPTIONS:
        param = options[option.name]
        assert (param.envvar, param.default) == (option.envvar, option.default)
        assert tuple(param.opts) == option.spellings
        assert is_global(option.name) is option.anywhere
        if option.anywhere:
            assert getattr(Settings(), option.dest) == option.value_default
            assert hoist_global_options(["errors", option.name, "x"])[0] == option.name
    assert not is_global("--version") and not is_global("--help") and is_global("-o")


# --- the error boundary, in process ---------------------------------------------------------

DENIED = Failure.of(Code.PERMISSION_DENIED, Phase.HANDSHAKE, "role Viewer cannot open a shell",
                    http_status=403)


def boundary_app() -> typer.Typer:
    demo = typer.Typer(pretty_exceptions_enable=False)

    @demo.callback()
    def root() -> None:
        """Commands that fail in every way."""

    @demo.command()
    def denied() -> None:
        raise TetherError(DENIED)

    @demo.command()
    def bug() -> None:
        hidden_local = "LOCAL-" + "SECRET"
        raise ValueError("broken invariant " + str(len(hidden_local)))

    @demo.command()
    def ctrl_c() -> None:
        raise KeyboardInterrupt

    @demo.command()
    def term() -> None:
        raise Interrupted("SIGTERM")

    @demo.command()
    def leave() -> None:
        raise typer.Exit(3)

    @demo.command()
    def pipe() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    @demo.command()
    def show(ctx: typer.Context) -> None:
        typer.echo(repr(settings(ctx)))

    return demo


def test_tether_error_is_rendered_once_with_its_exit_code(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(boundary_app(), ["denied"], output="text", verbose=False) == 77
    err = capsys.readouterr().err
    assert err.count("Permission denied") == 1 and "HTTP 403" in err
    assert run_app(boundary_app(), ["denied"], output="json", verbose=False) == 77
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["code"] == "permission-denied"


def test_other_exceptions_are_internal_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(boundary_app(), ["bug"], output="text", verbose=False) == 1
    err = capsys.readouterr().err
    assert err.count("Internal error") == 1 and "Unexpected ValueError" in err
    assert "Traceback" not in err
    assert run_app(boundary_app(), ["bug"], output="text", verbose=True) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in bug" in err
    assert "LOCAL-SECRET" not in err
    assert run_app(boundary_app(), ["bug"], output="json", verbose=False) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["code"] == "internal-error"


def test_verbosity_and_format_come_from_argv_and_env(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_OUTPUT", "json")
    assert run_app(boundary_app(), ["bug"]) == 1
    record = json.loads(capsys.readouterr().err)
    assert record["event"] == "error" and "traceback" not in record
    monkeypatch.setenv("TETHER_VERBOSE", "1")
    assert run_app(boundary_app(), ["bug"]) == 1
    assert "Traceback" in json.loads(capsys.readouterr().err)["traceback"]


def test_interrupts_exits_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(boundary_app(), ["ctrl-c"], output="text", verbose=False) == 130
    assert run_app(boundary_app(), ["term"], output="text", verbose=False) == 143
    assert run_app(boundary_app(), ["leave"], output="text", verbose=False) == 3
    assert run_app(boundary_app(), ["nope"], output="text", verbose=False) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "No such command" in err
    assert "Interrupted (SIGTERM)." in err


def test_settings_default_to_the_environment(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_GATEWAY", "https://gw.example")
    assert run_app(boundary_app(), ["show"]) == 0
    shown = capsys.readouterr().out.strip()
    assert shown == repr(Settings(Output.TEXT, False, "https://gw.example"))


# --- signals, in a real process -------------------------------------------------------------

SLEEPER = textwrap.dedent("""
    import sys, time
    from tether.cli import app as cli

    @cli.app.command("sleepy")
    def sleepy() -> None:
        print("ready", flush=True)
        time.sleep(30)

    cli.main(sys.argv[1:])
""")


@pytest.mark.parametrize(("sig", "status", "note"), [
    (signal.SIGTERM, 143, "Interrupted (SIGTERM)."),
    (signal.SIGHUP, 129, "Interrupted (SIGHUP)."),
    (signal.SIGINT, 130, ""),
])
def test_signals_exit_with_their_status(sig: signal.Signals, status: int, note: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, "sleepy"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == status
    assert "Traceback" not in err
    assert note in err


def test_json_signal_record() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, "sleepy", "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 143
    (line,) = err.splitlines()
    record = json.loads(line)
    assert record["code"] == "interrupted" and record["exit_code"] == 143


def test_a_closed_pipe_inside_a_command_exits_141_quietly(
        capfd: pytest.CaptureFixture[str]) -> None:
    assert run_app(boundary_app(), ["pipe"], output="text", verbose=False) == 141
    assert capfd.readouterr().err == ""
