"""``tether demo --serve`` in a real process, and the gateway's configuration file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_client import collect, dial, refusal
from tether.gateway.config import ConfigError, load_config


def test_demo_serve_prints_exports_and_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tether", "demo", "--serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        exports = dict(proc.stdout.readline().strip().removeprefix("export ").split("=", 1)
                       for _ in range(3))
        assert set(exports) == {"TETHER_GATEWAY", "TETHER_TOKEN", "TETHER_VIEWER_TOKEN"}
        url = exports["TETHER_GATEWAY"]
        assert url.startswith("http://127.0.0.1:")
        closed = collect(dial(url, "/v1/logs", exports["TETHER_VIEWER_TOKEN"], service="demo"))
        records = [json.loads(line) for frame in closed.text for line in frame.splitlines()]
        assert {r["instance"] for r in records} == {"web-1", "web-2"}
        assert refusal(url, "/v1/shell", exports["TETHER_VIEWER_TOKEN"], service="demo").status \
            == 403
        ws = dial(url, "/v1/shell", exports["TETHER_TOKEN"], service="demo", tty=0,
                  command=["sh", "-c", "cat README.txt"])
        assert b"tether demo" in collect(ws).binary
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_full_config_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("""
[gateway]
port = 0
access_ttl = "2m"
rate_limit = { rate = 1.5, burst = 3 }
ping_interval = 0

[services.api]
shell = "bash -l"
cwd = "work"
env = { A = "b" }
instances = ["api-1"]
ports = [8080]

[[services.api.logs]]
files = "logs/*.log"

[[services.api.logs]]
command = ["journalctl", "-f"]
instance = "journal"
""")
    config = load_config(path)
    api = config.services["api"]
    assert config.access_ttl == 120 and config.rate_limit.burst == 3
    assert config.ping_interval is None
    assert api.shell == ("bash", "-l") and api.cwd == (tmp_path / "work").resolve()
    assert api.logs[0].files == str(tmp_path / "logs" / "*.log")
    assert api.logs[1].command == ("journalctl", "-f") and api.logs[1].instance == "journal"


@pytest.mark.parametrize("text, key, expected", [
    ("[services.api]\nshell = 3\n", "services.api.shell", "a command"),
    ("[services.api]\ncolour = 1\n", "services.api.colour", "one of"),
    ("[gateway]\naccess_ttl = 'soon'\n[services.a]\n", "gateway.access_ttl", "a duration"),
    ("[services.api]\n[[services.api.logs]]\nstream = 'x'\n", "services.api.logs[0]",
     "exactly one of files"),
    ("[gateway]\n", "services", "a table of services"),
    ("not toml = = =", "", "valid TOML"),
])
def test_config_errors_name_file_key_and_expectation(tmp_path: Path, text: str, key: str,
                                                      expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
