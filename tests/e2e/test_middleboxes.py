"""tether through the real programs deployments put in front of a gateway.

nginx and HAProxy as reverse proxies, tinyproxy as a forward proxy (HTTP_PROXY),
each started on 127.0.0.1 with its own configuration by ``tests/middleboxes.py``
and stopped by its PID; the suite's hostile server as a hung gateway and as a
captive portal. The installed ``tether`` runs as a subprocess, with ``-o json``
where the record is checked. Every row of the README's "Middleboxes" table
(``tests/middlebox_table.py``) is one test here.

The forward-proxy cases reach the gateway as ``http://0.0.0.0:PORT``: loopback
is never proxied, 0.0.0.0 is not loopback, yet a connection to it arrives on
this machine (see ``tests/integration/test_proxy_rules.py``).
"""

from __future__ import annotations

import io
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests import middlebox_table, secrets_guard
from tests.cli import TETHER, assert_no_secrets, json_events, run_tether, tether_env
from tests.hostile import HostileServer, portal, silent
from tests.middleboxes import Middlebox, haproxy, nginx, tinyproxy
from tests.servers import free_port
from tether.errors import Code
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(60)

SHORT = ("--retry-for", "1s", "--connect-timeout", "2s")


def error_record(done: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The final error record of a ``-o json`` run, and its retry events."""
    events = json_events(done.stderr)
    assert events, done.stderr
    last = events[-1]
    assert last["event"] == "error", last
    return last, [e for e in events if e["event"] == "retry"]


def unreachable_behind(done: Any, program: str, box: Middlebox, status: int) -> dict[str, Any]:
    """Checks a run that ended gateway-unreachable, answered by ``program`` at ``box``."""
    assert done.returncode == 69, done.stderr[-2000:]
    last, retries = error_record(done)
    assert last["code"] == Code.GATEWAY_UNREACHABLE and last["exit_code"] == 69
    assert last["http_status"] == status
    assert last["answered_by"] == f"{program} at 127.0.0.1:{box.port}"
    assert f"{program} at 127.0.0.1:{box.port}, in front of the gateway" in last["message"]
    assert "cluster hosting" not in last["message"] + last["hint"]
    assert f"The gateway behind {program}" in last["hint"]
    assert retries and {e["code"] for e in retries} == {"gateway-unreachable"}
    assert last["attempts"] == len(retries) + 1
    return last


@pytest.fixture
def stopped_gateway(make_gateway: Callable[..., RunningGateway]) -> int:
    """The port of a gateway that ran and was stopped."""
    gw = make_gateway()
    port = gw.port
    gw.stop()
    return port


# --- reverse proxies in front of a gateway that is down -----------------------------------------


def test_nginx_in_front_of_a_stopped_gateway(stopped_gateway: int, tmp_path: Path) -> None:
    with nginx(tmp_path / "nginx", stopped_gateway) as box:
        env = tether_env(box.url, "tth_" + "n" * 40, tmp_path)
        done = run_tether("-o", "json", *SHORT, "logs", "api", env=env, timeout=30)
        unreachable_behind(done, "nginx", box, 502)
        status = run_tether("-o", "json", "--connect-timeout", "2s", "status", env=env,
                            timeout=30)
        assert status.returncode == 69
        assert error_record(status)[0]["code"] == Code.GATEWAY_UNREACHABLE
        text = run_tether(*SHORT, "logs", "api", env=env, timeout=30)
    assert text.returncode == 69
    shown = text.stderr.decode()
    assert "Gateway unreachable behind a proxy" in shown and "nginx at 127.0.0.1" in shown


def test_haproxy_in_front_of_a_stopped_gateway(stopped_gateway: int, tmp_path: Path) -> None:
    with haproxy(tmp_path / "haproxy", [stopped_gateway], extra_backend="  retries 0\n") as box:
        env = tether_env(box.url, "tth_" + "h" * 40, tmp_path)
        done = run_tether("-o", "json", *SHORT, "logs", "api", env=env, timeout=30)
    last = unreachable_behind(done, "HAProxy", box, 503)
    assert "no gateway available" in last["message"]


def test_nginx_in_front_of_a_hung_gateway(tmp_path: Path) -> None:
    with HostileServer(silent(), lifetime=40) as hung, \
            nginx(tmp_path / "nginx", hung.port, read_timeout="1s") as box:
        env = tether_env(box.url, "tth_" + "w" * 40, tmp_path)
        done = run_tether("-o", "json", "--retry-for", "2s", "--connect-timeout", "5s",
                          "logs", "api", env=env, timeout=40)
        assert hung.dials >= 2  # nginx passed each attempt on to the hung gateway
    last = unreachable_behind(done, "nginx", box, 504)
    assert "timed out waiting for the gateway" in last["message"]


# --- a forward proxy ----------------------------------------------------------------------------


def via_proxy(gw: RunningGateway, token: str, tmp_path: Path, proxy: str,
              **extra: str) -> dict[str, str]:
    return tether_env(f"http://0.0.0.0:{gw.port}", token, tmp_path, HTTP_PROXY=proxy, **extra)


def test_tinyproxy_refusing_connect(gateway: RunningGateway, viewer_token: str,
                                    tmp_path: Path) -> None:
    with tinyproxy(tmp_path / "tinyproxy", connect_ports=[443]) as box:
        env = via_proxy(gateway, viewer_token, tmp_path, box.url)
        done = run_tether("-o", "json", "logs", "api", env=env, timeout=30)
    assert done.returncode == 78, done.stderr
    last, retries = error_record(done)
    assert last["code"] == Code.PROXY_ERROR and not retries
    assert last["http_status"] == 403
    assert last["answered_by"] == f"tinyproxy at 127.0.0.1:{box.port}"
    assert "refused the tunnel (CONNECT)" in last["message"]
    assert "CONNECT method not allowed" in last["message"]  # tinyproxy's own words
    assert f"port {gateway.port}" in last["hint"]
    assert gateway.dial_count.get("/v1/logs", 0) == 0
    assert_no_secrets([viewer_token], done.stdout, done.stderr)


def test_tinyproxy_asking_for_credentials(gateway: RunningGateway, viewer_token: str,
                                          tmp_path: Path) -> None:
    password = "proxy-pass-" + "q" * 12
    secrets_guard.register_secret(password, "the proxy's password")
    with tinyproxy(tmp_path / "tinyproxy", basic_auth=("tether", password)) as box:
        refused = run_tether("-o", "json", "logs", "api", timeout=30,
                             env=via_proxy(gateway, viewer_token, tmp_path, box.url))
        signed = f"http://tether:{password}@127.0.0.1:{box.port}"
        through = run_tether("logs", "api", timeout=30,
                             env=via_proxy(gateway, viewer_token, tmp_path, signed))
    assert refused.returncode == 78, refused.stderr
    last, _ = error_record(refused)
    assert last["code"] == Code.PROXY_ERROR and last["http_status"] == 407
    assert "tinyproxy" in last["answered_by"] and "asks for authentication" in last["message"]
    assert "USER:PASSWORD" in last["hint"]
    assert through.returncode == 0, through.stderr
    assert b"line 3" in through.stdout
    assert_no_secrets([password, viewer_token], refused.stdout, refused.stderr, through.stdout,
                      through.stderr)


def test_proxy_that_is_down(gateway: RunningGateway, viewer_token: str, tmp_path: Path) -> None:
    closed = free_port()
    env = via_proxy(gateway, viewer_token, tmp_path, f"http://127.0.0.1:{closed}")
    done = run_tether("-o", "json", "logs", "api", env=env, timeout=30)
    assert done.returncode == 78, done.stderr
    last, retries = error_record(done)
    assert last["code"] == Code.PROXY_ERROR and not retries
    assert f"Nothing accepts connections at the proxy 127.0.0.1:{closed}" in last["message"]
    assert "HTTP_PROXY" in last["message"] and "NO_PROXY" in last["hint"]
    assert gateway.dial_count.get("/v1/logs", 0) == 0


def test_no_proxy_bypasses_tinyproxy(gateway: RunningGateway, viewer_token: str,
                                     tmp_path: Path) -> None:
    with tinyproxy(tmp_path / "refusing", connect_ports=[443]) as refusing:
        direct = run_tether("logs", "api", timeout=30, env=via_proxy(
            gateway, viewer_token, tmp_path, refusing.url, NO_PROXY="localhost,0.0.0.0"))
        assert direct.returncode == 0, direct.stderr
        assert b"line 3" in direct.stdout
        assert f"CONNECT 0.0.0.0:{gateway.port}" not in refusing.log()
    with tinyproxy(tmp_path / "allowing") as allowing:
        proxied = run_tether("logs", "api", timeout=30,
                             env=via_proxy(gateway, viewer_token, tmp_path, allowing.url))
        assert proxied.returncode == 0, proxied.stderr
        assert b"line 3" in proxied.stdout
        assert f"CONNECT 0.0.0.0:{gateway.port}" in allowing.log()
    assert gateway.dial_count.get("/v1/logs") == 2


# --- a captive portal ---------------------------------------------------------------------------


def test_captive_portal(tmp_path: Path) -> None:
    with HostileServer(portal("Guest Wi-Fi: sign in")) as server:
        env = tether_env(server.url, "tth_" + "c" * 40, tmp_path)
        done = run_tether("-o", "json", "logs", "api", env=env, timeout=30)
        assert server.dials == 1
    assert done.returncode == 65, done.stderr
    last, retries = error_record(done)
    assert last["code"] == Code.PROTOCOL_ERROR and not retries and last["http_status"] == 200
    assert '"Guest Wi-Fi: sign in"' in last["message"]
    assert "captive portal or a sign-in page" in last["message"]
    assert "sign in" in last["hint"] and last["answered_by"]


# --- an idle shell through nginx -------------------------------------------------------------


@pytest.fixture
def terminal() -> Iterator[list[pexpect.spawn]]:
    started: list[pexpect.spawn] = []
    yield started
    for child in started:
        if child.isalive():
            child.terminate(force=True)


def test_idle_shell_through_nginx(gateway: RunningGateway, deployer_token: str, tmp_path: Path,
                                  terminal: list[pexpect.spawn]) -> None:
    with nginx(tmp_path / "nginx", gateway.port, read_timeout="2s") as box:
        env = tether_env(box.url, deployer_token, tmp_path)
        child = pexpect.spawn(sys.executable, [*TETHER[1:], "--keepalive-interval", "0.5s",
                                               "shell", "api"],
                              env=env, cwd=str(tmp_path), timeout=10, dimensions=(24, 80))
        child.logfile_read = seen = io.BytesIO()
        terminal.append(child)
        child.expect(r"[$#] $")
        child.sendline("echo shell-pid-$$")
        child.expect(r"shell-pid-(\d+)")
        first = child.match.group(1)
        time.sleep(4)  # idle: twice nginx's proxy_read_timeout
        child.sendline("echo shell-pid-$$")
        child.expect(r"shell-pid-(\d+)")
        assert child.match.group(1) == first
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.wait()
    output = seen.getvalue()
    secrets_guard.record_output("the output of a tether subprocess", output)
    assert child.exitstatus == 0
    assert not re.search(rb"reconnect", output, re.IGNORECASE)
    assert gateway.dial_count.get("/v1/shell") == 1  # never dialled again


# --- the table ----------------------------------------------------------------------------------


def test_every_row_of_the_table_is_a_test_here() -> None:
    here = sys.modules[__name__]
    assert [c.id for c in middlebox_table.CASES if not hasattr(here, f"test_{c.id}")] == []
    text = middlebox_table.README.read_text(encoding="utf-8")
    assert middlebox_table.is_current(text), (
        "README.md's Middleboxes table is stale: run `python -m tests.middlebox_table --write`")
