"""Usage errors with -o json, one field for the exit status, and output that pipes into grep."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from tests.cli import run_tether, tether_env
from tether.cli.output.render import columns, render_failure
from tether.errors import CATALOG, Code, Failure, Phase

BOX = re.compile(r"[\u2500-\u257f]")  # box drawing


def test_a_usage_error_with_json_is_one_record_exit_2(tmp_path: Path) -> None:
    for args in (["-o", "json", "logs", "api", "--bogus"], ["logs", "api", "--bogus", "-ojson"],
                 ["-o", "json", "logs"], ["-o", "json", "nope"],
                 ["-o", "json", "logs", "api", "--tail", "many"],
                 ["-o", "json", "shell", "api", "-t", "-T"],
                 ["-o", "json", "port-forward", "api", "99999"]):
        proc = run_tether(*args, env=tether_env(None, None, tmp_path))
        assert proc.returncode == 2, args
        assert proc.stdout == b""
        (record,) = [json.loads(line) for line in proc.stderr.decode().splitlines()]
        assert record["event"] == "error" and record["code"] == "usage-error", record
        assert record["exit_code"] == 2 and record["phase"] == "config"
        assert record["message"] and "-h` shows what it accepts" in record["hint"]


def test_a_usage_error_in_text_is_clicks(tmp_path: Path) -> None:
    proc = run_tether("logs", "api", "--bogus", env=tether_env(None, None, tmp_path))
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.startswith("Usage: tether logs [OPTIONS] SERVICE\nTry 'tether logs -h' for help.")
    assert "Error: No such option: --bogus" in err


def test_an_unknown_error_code_carries_a_code(tmp_path: Path) -> None:
    proc = run_tether("-o", "json", "errors", "UNKNOWN", env=tether_env(None, None, tmp_path))
    assert proc.returncode == 2 and proc.stdout == b""
    (record,) = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    assert (record["code"], record["exit_code"]) == ("usage-error", 2)
    assert "'UNKNOWN'" in record["message"]


def test_every_json_record_names_the_exit_status_exit_code(tmp_path: Path) -> None:
    listed = run_tether("-o", "json", "errors", env=tether_env(None, None, tmp_path))
    entries = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert {e["code"]: e["exit_code"] for e in entries} == {
        str(code): int(entry.exit_status) for code, entry in CATALOG.items()}
    assert all("exit_status" not in e for e in entries)
    failed = run_tether("-o", "json", "logs", "api", env=tether_env(None, None, tmp_path))
    (record,) = [json.loads(line) for line in failed.stderr.decode().splitlines()]
    assert record["code"] == "not-configured" and record["exit_code"] == failed.returncode == 78


# --- output in a pipe ----------------------------------------------------------------------------


def test_errors_in_a_pipe_are_whole_rows(tmp_path: Path) -> None:
    """`tether errors | grep refresh-failed` finds the whole row, however narrow COLUMNS is."""
    proc = run_tether("errors", env=tether_env(None, None, tmp_path, COLUMNS="80"))
    assert proc.returncode == 0
    lines = proc.stdout.decode().splitlines()
    rows = [line for line in lines if "refresh-failed" in line]
    assert len(rows) == 1
    assert rows[0].split() == ["refresh-failed", "credentials", "no", "77", "Could", "not",
                               "refresh", "the", "token"]
    widest = max(len(line) for line in lines)
    assert widest > 80  # nothing was wrapped to fit 80 columns
    assert all(len(line.split()) >= 5 for line in lines[1:]), "a wrapped row"
    assert not BOX.search(proc.stdout.decode())


def test_one_code_in_a_pipe_is_one_line_per_fact(tmp_path: Path) -> None:
    proc = run_tether("errors", "rate-limited", env=tether_env(None, None, tmp_path,
                                                               COLUMNS="40"))
    lines = proc.stdout.decode().splitlines()
    retry = next(line for line in lines if line.startswith("Retry: "))
    assert retry.endswith("until --retry-for runs out.")
    assert "Exit status: 75 (TEMPORARY)" in lines


def test_an_error_record_in_a_pipe_is_plain_lines(tmp_path: Path) -> None:
    proc = run_tether("logs", "api", env=tether_env(None, None, tmp_path, COLUMNS="40"))
    assert proc.returncode == 78
    err = proc.stderr.decode()
    assert not BOX.search(err), err
    lines = err.splitlines()
    assert lines[0] == "error: No gateway configured"
    assert lines[1].startswith("No gateway is set: no --gateway or --context, no TETHER_GATEWAY")
    assert "`tether errors not-configured` explains this" in lines[-1]


def test_a_failure_is_a_panel_on_a_terminal_and_lines_elsewhere() -> None:
    long = "role Viewer cannot open a shell on api, which needs Deployer" + " and more" * 9
    failure = Failure.of(Code.PERMISSION_DENIED, Phase.HANDSHAKE, long, http_status=403,
                         request_id="r-1")
    outputs = {}
    for terminal in (True, False):
        buffer = io.StringIO()
        console = Console(file=buffer, width=60, force_terminal=terminal, color_system=None)
        render_failure(failure, output="text", verbose=False, console=console)
        outputs[terminal] = buffer.getvalue()
    assert BOX.search(outputs[True])
    assert not BOX.search(outputs[False])
    plain = outputs[False].splitlines()
    assert plain[0] == "error: Permission denied"
    assert plain[1] == "R" + long[1:]  # one line, wider than the console
    assert "request id r-1 · HTTP 403 · `tether errors permission-denied` explains this" in plain


@pytest.mark.parametrize(("rows", "lines"), [
    ([("a", "bb", "c"), ("ddd", "e", "")], ["a    bb  c", "ddd  e"]),
    ([], []),
])
def test_columns(rows: list[tuple[str, ...]], lines: list[str]) -> None:
    assert columns(rows) == lines
