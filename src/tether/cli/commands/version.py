"""``tether version``: the client's version, and the gateway's, as ``kubectl version`` prints both.

The gateway's comes from ``GET /v1/health`` (no credential needed) within
:data:`GATEWAY_TIMEOUT` seconds. A gateway that is not configured or not
reachable is said so on the gateway's line (and in the ``gateway`` object of
``-o json``); the exit status is 0 either way: the client's version is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from tether.cli.options import settings

if TYPE_CHECKING:
    from tether.cli.options import Settings
    from tether.errors import Failure

#: Seconds the gateway has to answer; a version is not worth a long wait.
GATEWAY_TIMEOUT = 2.0


def _gateway(s: Settings) -> dict[str, Any] | None:
    """``{"url", "version"}`` of the gateway, ``{"url", "error"}``, or None when none is set."""
    from tether.auth.contexts import resolve_gateway
    from tether.client.health import fetch_health
    from tether.errors import Code, TetherError

    try:
        gateway = resolve_gateway(s.gateway, context=s.context).gateway
    except TetherError as err:
        if err.failure.code is Code.NOT_CONFIGURED:
            return None
        return {"url": None, "version": None, "error": _error(err.failure)}
    try:
        health = fetch_health(gateway, timeout=min(s.connect_timeout, GATEWAY_TIMEOUT),
                              ca_cert=s.ca_cert, insecure=s.insecure)
    except TetherError as err:
        return {"url": gateway, "version": None, "error": _error(err.failure)}
    return {"url": gateway, "version": health.version}


def _error(failure: Failure) -> dict[str, str]:
    from tether.cli.output.render import clean

    return {"code": str(failure.code), "message": clean(failure.message, limit=300)}


def version_command(ctx: typer.Context) -> None:
    """Print tether's version, and the gateway's when one is configured and reachable."""
    from tether import __version__

    s = settings(ctx)
    gateway = _gateway(s)
    if s.json:
        import json

        from tether.cli.output.render import sanitize

        record = {"client": {"version": __version__}, "gateway": gateway}
        typer.echo(json.dumps(sanitize(record), ensure_ascii=False, separators=(",", ":")))
        return
    typer.echo(f"Client version: tether {__version__}")
    if gateway is None:
        typer.echo("Gateway: none configured (--gateway, --context, TETHER_GATEWAY or "
                   "`tether auth login URL`)")
    elif "error" in gateway:
        error = gateway["error"]
        state = f"{gateway['url']} not reachable" if gateway["url"] else "unknown"
        typer.echo(f"Gateway: {state} ({error['code']}: {error['message']})")
    elif gateway["version"]:
        typer.echo(f"Gateway version: tether {gateway['version']} ({gateway['url']})")
    else:
        typer.echo(f"Gateway: {gateway['url']} answers but does not say its version")
