"""What kubectl, ssh and gh users type, against a real gateway: version, exec, --prefix, --since
with offsets, port-forward on both loopbacks, contexts, and completion of instances and contexts.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli import assert_no_secrets, json_events, run_tether, spawn_tether, tether_env
from tether import __version__
from tether.auth.contexts import load_config
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
COMPLETIONS = ROOT / "completions"
BIN = str(Path(sys.executable).parent)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def has_ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.fixture
def env(gateway: RunningGateway, deployer_token: str, tmp_path: Path) -> dict[str, str]:
    return tether_env(gateway.url, deployer_token, tmp_path)


# --- version -------------------------------------------------------------------------------------


def test_version_names_the_client_and_the_reachable_gateway(env: dict[str, str],
                                                            gateway: RunningGateway) -> None:
    text = run_tether("version", env=env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.decode().splitlines() == [
        f"Client version: tether {__version__}",
        f"Gateway version: tether {__version__} ({gateway.url})"]
    data = run_tether("version", "-o", "json", env=env)
    assert json.loads(data.stdout) == {"client": {"version": __version__},
                                       "gateway": {"url": gateway.url, "version": __version__}}


def test_version_without_a_reachable_gateway_still_exits_0(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    down = run_tether("-o", "json", "version", env=tether_env(nowhere, None, tmp_path))
    assert down.returncode == 0
    record = json.loads(down.stdout)
    assert record["client"] == {"version": __version__}
    assert record["gateway"]["url"] == nowhere and record["gateway"]["version"] is None
    assert record["gateway"]["error"]["code"] == "connection-refused"
    text = run_tether("version", env=tether_env(nowhere, None, tmp_path))
    assert f"Gateway: {nowhere} not reachable (connection-refused" in text.stdout.decode()
    none = run_tether("version", "-o", "json", env=tether_env(None, None, tmp_path))
    assert json.loads(none.stdout) == {"client": {"version": __version__}, "gateway": None}


# --- exec, --prefix, --since ---------------------------------------------------------------------


def test_exec_is_shell(env: dict[str, str], deployer_token: str) -> None:
    via_exec = run_tether("exec", "api", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                          env=env)
    via_shell = run_tether("shell", "api", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                           env=env)
    assert (via_exec.returncode, via_exec.stdout, via_exec.stderr) == (
        via_shell.returncode, via_shell.stdout, via_shell.stderr) == (3, b"out\n", b"err\n")
    piped = run_tether("exec", "api", "--", "cat", env=env, input=b"through exec\n")
    assert piped.stdout == b"through exec\n"
    assert_no_secrets([deployer_token], via_exec.stdout, via_exec.stderr)


def test_logs_prefix_is_kubectls_flag_and_the_default(env: dict[str, str]) -> None:
    default = run_tether("logs", "api", "--tail", "1", env=env).stdout.decode().splitlines()
    prefixed = run_tether("logs", "api", "--tail", "1", "--prefix", env=env)
    bare = run_tether("logs", "api", "--tail", "1", "--no-prefix", env=env)
    assert sorted(default) == ["[api-1] api-1 line 3", "[api-2] api-2 line 3"]
    assert sorted(prefixed.stdout.decode().splitlines()) == sorted(default)
    assert sorted(bare.stdout.decode().splitlines()) == ["api-1 line 3", "api-2 line 3"]


def test_since_takes_an_offset_and_warns_when_it_assumed_utc(env: dict[str, str]) -> None:
    offset = run_tether("logs", "api", "--since", "2026-01-02T05:04:02+02:00", "--no-prefix",
                        env=env)
    assert offset.returncode == 0, offset.stderr
    assert sorted(offset.stdout.decode().splitlines()) == [
        "api-1 line 2", "api-1 line 3", "api-2 line 2", "api-2 line 3"]
    assert offset.stderr == b""
    naive = run_tether("logs", "api", "--since", "2026-01-02T03:04:03", "--no-prefix", env=env)
    assert sorted(naive.stdout.decode().splitlines()) == ["api-1 line 3", "api-2 line 3"]
    assert naive.stderr.decode() == (
        "warning: --since 2026-01-02T03:04:03 has no UTC offset: read as UTC "
        "(2026-01-02T03:04:03.000000Z); add Z or +HH:MM to name the zone.\n")
    as_json = run_tether("-o", "json", "logs", "api", "--since", "2026-01-02T03:04:03", env=env)
    (event,) = json_events(as_json.stderr)
    assert event["event"] == "warning" and "read as UTC" in event["message"]
    spelled = run_tether("logs", "api", "--since", "1h30m", env=env)
    assert spelled.returncode == 0 and spelled.stdout == b""  # the records are from 2026-01-02


# --- port-forward on both loopbacks --------------------------------------------------------------


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float = 10.0) -> list[str]:
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\n") < count:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"no output in time: {buf!r}"
        data = os.read(proc.stdout.fileno(), 65536)
        assert data, f"tether ended: {proc.wait(5)}"
        buf += data
    return buf.decode().splitlines()


def echo_through(family: socket.AddressFamily, host: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        assert sock.family == family
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while data := sock.recv(65536):
            out += data
        return out


def test_port_forward_listens_on_both_loopbacks_by_default(env: dict[str, str],
                                                           echo_server: int) -> None:
    ipv6 = has_ipv6_loopback()
    proc = spawn_tether("port-forward", "api", f":{echo_server}", env=env)
    try:
        lines = read_lines(proc, 2 if ipv6 else 1)
        port = int(lines[0].split()[2].rsplit(":", 1)[1])
        assert lines[0] == f"Forwarding from 127.0.0.1:{port} -> api:{echo_server}"
        assert echo_through(socket.AF_INET, "127.0.0.1", port, b"four") == b"four"
        if ipv6:  # kubectl's localhost: the same port on ::1, said on its own line
            assert lines[1] == f"Forwarding from [::1]:{port} -> api:{echo_server}"
            assert echo_through(socket.AF_INET6, "::1", port, b"six") == b"six"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
        assert proc.returncode == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


# --- contexts, through a real login --------------------------------------------------------------


def test_login_saves_the_context_named_by_the_global_option(
        make_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = make_gateway(device_interval=0.2, device_expires=30)
    env = tether_env(None, None, tmp_path)
    login = spawn_tether("-o", "json", "auth", "login", gw.url, "--context", "lab", env=env,
                         stdin=subprocess.DEVNULL)
    try:
        assert login.stderr is not None
        line = login.stderr.readline()
        device = json.loads(line)
        assert device["event"] == "device-code"
        assert gw.gateway.oauth.decide(device["user_code"], approve=True, role="Viewer",
                                       sub="lab-user")
        out, err = login.communicate(timeout=20)
    finally:
        if login.poll() is None:
            login.kill()
            login.communicate(timeout=5)
    assert login.returncode == 0, err
    assert json.loads(out)["context"] == "lab"
    config = load_config(tmp_path / "config" / "config.toml")
    assert config.current_context == "lab" and config.contexts["lab"].gateway == gw.url
    status = run_tether("auth", "status", env=env).stdout.decode().splitlines()
    assert status[:2] == ["Contexts:", f"* lab  {gw.url}"]
    assert "Context:  lab" in status and "Subject:  lab-user" in status


# --- completion of instances and contexts --------------------------------------------------------


def _bash_complete(line: str, env: dict[str, str]) -> list[str]:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed (Debian package bash)")
    script = r"""
source "$1"
read -ra COMP_WORDS <<< "$2"
[[ $2 == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_tether
printf '%s\n' "${COMPREPLY[@]}"
"""
    proc = subprocess.run(["bash", "--norc", "-c", script, "bash",
                           str(COMPLETIONS / "tether.bash"), line],
                          env={**env, "PATH": BIN + os.pathsep + env.get("PATH", "")},
                          capture_output=True, text=True, timeout=20, check=False)
    assert proc.stderr == "", proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


def test_instances_complete_from_the_health_endpoint_and_are_cached(
        gateway: RunningGateway, tmp_path: Path) -> None:
    env = tether_env(gateway.url, None, tmp_path)
    helper = run_tether("completion", "instances", "api", env=env)
    assert helper.stdout.decode().split() == ["api-1", "api-2"] and helper.stderr == b""
    assert run_tether("completion", "instances", "nope", env=env).stdout == b""
    (cache,) = (tmp_path / "state" / "completion").glob("services-*.json")
    assert json.loads(cache.read_text())["instances"] == {"api": ["api-1", "api-2"]}
    for line in ("tether logs api --instance ", "tether shell api --instance a",
                 "tether port-forward --instance ", "tether logs -f api --instance=api-"):
        expected = [] if "port-forward" in line else ["api-1", "api-2"]
        if "=" in line:
            expected = ["--instance=api-1", "--instance=api-2"]
        assert _bash_complete(line, env) == expected, line
    gateway.stop()  # within 30 s the cache answers alone
    assert _bash_complete("tether exec api --instance ", env) == ["api-1", "api-2"]


def test_typer_completion_offers_instances(gateway: RunningGateway, tmp_path: Path) -> None:
    env = tether_env(gateway.url, None, tmp_path)
    words = run_tether(env={**env, "_TETHER_COMPLETE": "complete_bash",
                            "COMP_WORDS": "tether logs api --instance ", "COMP_CWORD": "4"})
    assert words.stdout.decode().split() == ["api-1", "api-2"]


def test_contexts_complete_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        'current-context = "prod"\n\n[contexts.prod]\ngateway = "https://gw.example"\n\n'
        '[contexts.lab]\ngateway = "https://lab.example"\n')
    env = tether_env(None, None, tmp_path)
    assert _bash_complete("tether --context ", env) == ["prod", "lab"]
    assert _bash_complete("tether logs --context l", env) == ["lab"]
    assert _bash_complete("tether auth switch ", env) == ["prod", "lab"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_static_script(shell: str, tmp_path: Path) -> None:
    name = {"bash": "tether.bash", "zsh": "_tether", "fish": "tether.fish"}[shell]
    proc = run_tether("completion", shell, env=tether_env(None, None, tmp_path))
    assert proc.returncode == 0 and proc.stderr == b""
    assert proc.stdout == (COMPLETIONS / name).read_bytes()
