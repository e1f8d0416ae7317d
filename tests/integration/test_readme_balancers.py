"""The README's HAProxy and nginx configurations work, in front of two gateways on PostgreSQL:
they spread sessions, survive a dead gateway, and route a tether.v2 resume to its gateway.

Each is taken from README.md as written, but for what differs on this
machine: the addresses (127.0.0.1, free ports) and TLS (plain HTTP here).
The gateways are nodes g1 and g2, as the README names them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_client import dial, http_request
from tests.gateways import GatewayProcess, gateway_cli, gateway_toml
from tests.middleboxes import require, stop, wait_listening
from tests.servers import free_port
from tests.v2_client import KIB, V2Client, refused
from tether.protocol import SESSION_GONE_REASON, CloseCode

pytestmark = pytest.mark.timeout(120)
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(language: str) -> str:
    """The README's one fenced block in ``language``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(blocks) == 1, f"expected one {language} block in README.md"
    return str(blocks[0])


def haproxy_config(port: int, backends: list[int]) -> str:
    text = readme_block("haproxy").replace("bind :443 ssl crt /etc/haproxy/tether.pem",
                                           f"bind 127.0.0.1:{port}")
    text = text.replace("inter 2s", "inter 200ms")  # notice the killed gateway sooner
    for i, backend in enumerate(backends, 1):
        text = text.replace(f"10.0.0.1{i}:7443", f"127.0.0.1:{backend}")
    assert "10.0.0." not in text and "ssl" not in text
    return text


def nginx_config(port: int, backends: list[int], directory: Path) -> str:
    text = readme_block("nginx").replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    text = "\n".join(line for line in text.splitlines() if "ssl_certificate" not in line)
    for i, backend in enumerate(backends, 1):
        text = text.replace(f"10.0.0.1{i}:7443", f"127.0.0.1:{backend}")
    assert "10.0.0." not in text and "ssl" not in text
    temp = directory / "temp"
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (f"{user}worker_processes 1;\ndaemon off;\npid {directory}/nginx.pid;\n"
            f"error_log {directory}/error.log warn;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n"
            f"  proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n"
            f"  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n{text}}}\n")


@pytest.fixture(params=["haproxy", "nginx"])
def balancer(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, log_dir: Path,
             echo_server: int) -> Iterator[tuple[str, list[GatewayProcess]]]:
    kind = str(request.param)
    binary = require(kind, "haproxy" if kind == "haproxy" else "nginx-light")
    port, backends = free_port(), [free_port(), free_port()]
    directory = tmp_path / kind
    (directory / "temp").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(issuer=f"http://127.0.0.1:{port}", log_dir=log_dir,
                                   work=work, echo=echo_server))
    gateways: list[GatewayProcess] = []
    try:
        for i, backend in enumerate(backends):
            gateways.append(GatewayProcess.start(config, pg_url, backend,
                                                 tmp_path / f"gateway{i}.log", node=f"g{i + 1}"))
        if kind == "haproxy":
            (directory / "haproxy.cfg").write_text(haproxy_config(port, backends))
            argv = [binary, "-db", "-f", str(directory / "haproxy.cfg")]
        else:
            (directory / "nginx.conf").write_text(nginx_config(port, backends, directory))
            argv = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
        log = directory / "output.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=directory)
        try:
            wait_listening(port, proc, log)
            yield f"http://127.0.0.1:{port}", gateways
        finally:
            stop(proc)
    finally:
        for gateway in gateways:
            gateway.stop()


def test_the_readme_balancer_config_spreads_sessions_and_survives_a_dead_gateway(
        balancer: tuple[str, list[GatewayProcess]], pg_url: str, tmp_path: Path) -> None:
    url, gateways = balancer
    token = gateway_cli("token", "create", "--role", "Viewer", state=pg_url,
                        directory=tmp_path).strip()
    for _ in range(4):
        dial(url, "/v1/logs", token, service="api").close()
    answer = http_request(url, "POST", "/v1/auth/device")
    assert answer.status == 200
    assert json.loads(answer.body)["verification_uri"].startswith(url)
    gateways[0].kill()
    for _ in range(4):  # each one reaches the live gateway
        dial(url, "/v1/logs", token, service="api", open_timeout=10).close()


def test_the_readme_balancer_config_routes_a_resume_to_the_gateway_holding_it(
        balancer: tuple[str, list[GatewayProcess]], pg_url: str, tmp_path: Path) -> None:
    url, gateways = balancer
    token = gateway_cli("token", "create", "--role", "Deployer", state=pg_url,
                        directory=tmp_path).strip()
    client = V2Client(url, "/v1/shell", token, shell=True, service="api", tty=0,
                      command=["cat"])
    sent = bytearray()
    for _ in range(4):  # each resume drops the last connection without a close frame
        client.resume()
        piece = os.urandom(32 * KIB)
        client.send(piece)
        sent += piece
        client.pump(lambda c: len(c.received) >= len(sent))
    assert client.text() == bytes(sent)
    [holder] = [g for g in gateways if g.node == client.node]
    holder.kill()
    gone = refused(client)  # the other gateway answers: never a hang
    assert (gone.code, gone.reason) == (CloseCode.SESSION_GONE, SESSION_GONE_REASON)
