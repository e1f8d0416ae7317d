"""``tether status [SERVICE]``: the gateway's health and each service's backend health.

Each service's row names its instances and the ports open for port-forward
(PORTS: ``none`` when it opens none, ``?`` when the gateway does not say).

Reads ``GET /v1/health`` (no credential needed) with the global TLS options.
Exit status: 0 whenever the gateway answers, even when some backend is down
(the table says which); with SERVICE, 69 and the ``backend-unavailable``
record when that service's backend is not ok, 69 and ``not-found`` when the
gateway does not know it. A gateway that cannot be reached exits with the
classified failure's code (connection-refused 69, tls-error 78, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tether.cli.commands.completion import complete_services
from tether.cli.options import settings
from tether.errors import Code, Failure, Phase, TetherError

if TYPE_CHECKING:
    from tether.client.health import Health, ServiceHealth


def _show_text(health: Health, services: list[ServiceHealth]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from tether.cli.output.render import clean, columns, get_stdout_console

    console = get_stdout_console()
    line = Text("Gateway ", style="bold")
    line.append(clean(health.gateway, limit=300))
    line.append("  ")
    line.append(health.status, style="green" if health.status == "ok" else "yellow")
    facts = [f"tether {health.version}" if health.version else None,
             f"{health.sessions} session{'' if health.sessions == 1 else 's'}"
             if health.sessions is not None else None]
    shown = [f for f in facts if f]
    if shown:
        line.append(f"  ({', '.join(shown)})", style="dim")
    console.print(line, soft_wrap=True)
    if not services:
        console.print(Text("The gateway lists no services.", style="dim"))
        return
    header = ("SERVICE", "BACKEND", "INSTANCES", "PORTS")
    rows = [(service.name, "✓ ok" if service.healthy else f"✗ {service.status}",
             ", ".join(service.instances) or "-",
             "?" if service.ports is None else ", ".join(map(str, service.ports)) or "none")
            for service in services]
    if not console.is_terminal:  # a pipe: one line per service, never wrapped
        console.file.write("".join(line + "\n" for line in columns([header, *rows])))
        return
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for title in header:
        table.add_column(title)
    for name, mark, instances, ports in rows:
        table.add_row(Text(name), Text(mark, style="green" if mark.startswith("✓") else "red"),
                      Text(instances), Text(ports))
    console.print(table)


def _show(health: Health, services: list[ServiceHealth], as_json: bool) -> None:
    if as_json:
        import json

        from tether.cli.output.render import sanitize

        data = health.as_dict()
        data["services"] = [s.as_dict() for s in services]
        typer.echo(json.dumps(sanitize(data), ensure_ascii=False, separators=(",", ":")))
    else:
        _show_text(health, services)


def _unknown(health: Health, name: str) -> TetherError:
    from tether.cli.output.render import clean

    known = ", ".join(health.names) or "none"
    return TetherError(Failure.of(
        Code.NOT_FOUND, Phase.HANDSHAKE,
        f"The gateway has no service named `{clean(name, limit=100)}`.",
        hint=f"Services the gateway knows: {known}.", request_id=health.request_id))


def _unhealthy(health: Health, service: ServiceHealth) -> TetherError:
    return TetherError(Failure.of(
        Code.BACKEND_UNAVAILABLE, Phase.HANDSHAKE,
        f"The gateway reports the backend of `{service.name}` as {service.status}: "
        f"shell, logs and port-forward on it fail until it recovers.",
        hint=f"Verify that the cluster hosting {service.name} is running and healthy; "
             f"`tether status {service.name}` exits 0 once it is back.",
        request_id=health.request_id))


def status_command(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(
        metavar="SERVICE", autocompletion=complete_services,
        help="Show only this service; exit 69 unless its backend is healthy.")] = None,
) -> None:
    """Show the gateway's health, each service's backend health and its forwardable ports.

    Exits 0 when the gateway answers; with SERVICE, 69 when that service's
    backend is unavailable (backend-unavailable) or unknown (not-found).
    """
    from tether.auth.contexts import resolve_gateway
    from tether.client.health import fetch_health

    s = settings(ctx)
    gateway = resolve_gateway(s.gateway, context=s.context).gateway
    if s.insecure and gateway.startswith("https:"):
        from tether.cli.output.reporters import StatusReporter

        StatusReporter(s, live=False).warning(
            "TLS certificate verification is disabled (--insecure): the gateway is not "
            "authenticated.")
    health = fetch_health(gateway, timeout=s.connect_timeout, ca_cert=s.ca_cert,
                          insecure=s.insecure)
    if service is None:
        _show(health, list(health.services), s.json)
        return
    found = health.service(service)
    if found is None:
        raise _unknown(health, service)
    _show(health, [found], s.json)
    if not found.healthy:
        raise _unhealthy(health, found)
