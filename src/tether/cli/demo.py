"""``tether demo``: everything on one machine, a gateway in this process and a ``demo`` service.

``tether demo --serve`` runs only the gateway, in the foreground, and first
prints ``export`` lines (TETHER_GATEWAY, TETHER_TOKEN for a Deployer,
TETHER_VIEWER_TOKEN for a Viewer) for another terminal, a script or a test.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import sys
from typing import Annotated

import typer

SERVICE = "demo"


class DemoCommand(enum.StrEnum):
    """What the demo runs against its gateway."""

    SHELL = "shell"
    LOGS = "logs"
    PORT_FORWARD = "port-forward"


_MODULES = {"shell": "shell", "logs": "logs", "port-forward": "port_forward"}


def demo_arguments(name: str, http_port: int) -> list[str]:
    """The ``tether`` command line that shows ``name`` off against the demo service."""
    if name == "port-forward":
        return ["port-forward", SERVICE, f":{http_port}"]
    return [name, SERVICE]


def run_demo_command(name: str, gateway_url: str, token: str, *, http_port: int = 0) -> int:
    """Run the real ``tether NAME`` client command against the demo gateway; its exit status.

    When that client command is not part of this build yet, say so and return 0.
    """
    module = _MODULES.get(name, name)
    if importlib.util.find_spec(f"tether.cli.{module}") is None:
        typer.echo(f"(the `tether {name}` command is not in this build yet: the gateway above "
                   "is ready for any client)", err=True)
        return 0
    from tether.cli.app import app, run_app

    os.environ["TETHER_GATEWAY"] = gateway_url
    os.environ["TETHER_TOKEN"] = token
    return run_app(app, ["--gateway", gateway_url, *demo_arguments(name, http_port)])


def export_lines(gateway_url: str, deployer: str, viewer: str) -> str:
    """Shell ``export`` lines for the demo gateway and its two tokens."""
    return (f"export TETHER_GATEWAY={gateway_url}\n"
            f"export TETHER_TOKEN={deployer}\n"
            f"export TETHER_VIEWER_TOKEN={viewer}\n")


def demo_command(
    what: Annotated[DemoCommand | None, typer.Argument(
        help="Run this command against the demo service (default: logs).")] = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="Run only the demo gateway, until Ctrl+C or SIGTERM; print export "
                        "lines first.")] = False,
) -> None:
    """Try tether on this machine: a gateway and a demo service, in this process."""
    from tether.gateway.demo import Demo

    demo = Demo()
    try:
        gateway = demo.start()
        deployer = gateway.create_api_token("Deployer", "demo-deployer")
        viewer = gateway.create_api_token("Viewer", "demo-viewer")
        if serve:
            sys.stdout.write(export_lines(gateway.url, deployer, viewer))
            sys.stdout.flush()
            _wait_for_signal()
            return
        typer.echo(f"tether demo: a gateway on {gateway.url} serving service {SERVICE!r} "
                   f"(shell, logs of web-1 and web-2, HTTP on port {demo.http_port}).", err=True)
        typer.echo("To use it from another terminal while this runs, `tether demo --serve` "
                   "prints these:", err=True)
        typer.echo(export_lines(gateway.url, deployer, viewer), err=True)
        name = (what or DemoCommand.LOGS).value
        code = run_demo_command(name, gateway.url, deployer, http_port=demo.http_port)
        if code:
            raise typer.Exit(code)
    finally:
        demo.stop()


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    import signal
    import threading

    done = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: done.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in range(10**9):
            if done.wait(3600):
                break
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
