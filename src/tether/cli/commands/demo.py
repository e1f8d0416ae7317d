"""``tether demo``: everything on one machine, a gateway in this process and a ``demo`` service.

``tether demo --serve`` runs only the gateway, in the foreground, and first
prints ``export`` lines (TETHER_GATEWAY, TETHER_TOKEN for a Deployer,
TETHER_VIEWER_TOKEN for a Viewer) for another terminal, a script or a test.
"""

from __future__ import annotations

import enum
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


def demo_arguments(name: str, http_port: int) -> list[str]:
    """The ``tether`` command line that shows ``name`` off against the demo service."""
    if name == "port-forward":
        return ["port-forward", SERVICE, f":{http_port}"]
    if name == "logs":
        return ["logs", SERVICE, "--follow"]
    return [name, SERVICE]


_TRY = {
    "logs": "Following the logs of service 'demo' (tether logs demo -f); Ctrl+C to stop.",
    "shell": "A shell in service 'demo' (tether shell demo); `exit` or Ctrl+D to leave.",
    "port-forward": "Forwarding a local port to the demo's web server; open the printed "
                    "address in a browser or with curl, Ctrl+C to stop.",
}


def run_demo_command(ctx: typer.Context, name: str, gateway_url: str, token: str, *,
                     http_port: int = 0) -> int:
    """Run the real ``tether NAME`` client command against the demo gateway; its exit status.

    The command tree is the root of ``ctx``, the one this command runs in. Its
    failures propagate to the error boundary this command runs under, so each
    is rendered once.
    """
    os.environ["TETHER_GATEWAY"] = gateway_url
    os.environ["TETHER_TOKEN"] = token
    result = ctx.find_root().command.main(args=demo_arguments(name, http_port),
                                          prog_name="tether", standalone_mode=False)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def export_lines(gateway_url: str, deployer: str, viewer: str) -> str:
    """Shell ``export`` lines for the demo gateway and its two tokens."""
    return (f"export TETHER_GATEWAY={gateway_url}\n"
            f"export TETHER_TOKEN={deployer}\n"
            f"export TETHER_VIEWER_TOKEN={viewer}\n")


def demo_command(
    ctx: typer.Context,
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
        name = (what or DemoCommand.LOGS).value
        typer.echo(f"tether demo: a gateway on {gateway.url} serving service {SERVICE!r} "
                   f"(a shell, the logs of web-1 and web-2, a web server on port "
                   f"{demo.http_port}).\n{_TRY[name]}\nAlso try `tether demo shell`, "
                   "`tether demo port-forward`; `tether demo --serve` keeps the gateway up for "
                   "other terminals.\n", err=True)
        code = run_demo_command(ctx, name, gateway.url, deployer, http_port=demo.http_port)
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
