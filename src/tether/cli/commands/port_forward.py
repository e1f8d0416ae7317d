"""``tether port-forward SERVICE [LOCAL:]REMOTE ...``: local ports to a service's ports.

kubectl's syntax (``5432``, ``8080:80``, ``:5432`` for a free local port,
``--address`` repeatable), and one WebSocket per accepted TCP connection, so
that one broken connection never ends the forward. The order of work:

1. parse and validate the mappings and addresses (usage errors, exit 2);
2. resolve the gateway and credential (config errors);
3. bind every listener (local-port-in-use, exit 71, before any dial);
4. dial once per remote port and close at once (bad token, role or service
   fails here with its panel, before anyone connects);
5. print one ``Forwarding from ADDRESS:PORT -> SERVICE:PORT`` line per listener
   and serve until Ctrl+C (130), SIGTERM (143) or a permanent failure.

The machinery lives in :mod:`tether.session.listeners` and
:mod:`tether.session.forward`, imported only when the command runs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from tether.cli.commands.completion import complete_instances, complete_services
from tether.cli.options import settings
from tether.errors import Interrupted, TetherError

if TYPE_CHECKING:
    from tether.cli.output.reporters import ForwardReporter, StatusReporter
    from tether.client.dial import ParamValue
    from tether.client.supervisor import Attempt
    from tether.session.link import Link
    from tether.session.listeners import Listener, Route

MAX_PORT = 65535
#: With no --address: kubectl's default, both loopbacks (::1 when this machine has it).
DEFAULT_ADDRESS = "localhost"
LOCALHOST = ("127.0.0.1", "::1")  # what ``localhost`` means


@dataclass(frozen=True)
class PortSpec:
    """One mapping: ``local`` 0 means "pick a free port"."""

    local: int
    remote: int


def _port(text: str, what: str, spec: str, *, zero: bool = False) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{spec!r}: the {what} port {text!r} is not a number")
    value = int(text)
    low = 0 if zero else 1
    if not low <= value <= MAX_PORT:
        raise ValueError(f"{spec!r}: the {what} port must be from {low} to {MAX_PORT}, "
                         f"not {value}")
    return value


def parse_port_spec(spec: str) -> PortSpec:
    """``REMOTE``, ``LOCAL:REMOTE``, ``:REMOTE`` or ``0:REMOTE``; ValueError says what is wrong."""
    if not spec:
        raise ValueError("an empty port mapping: expected [LOCAL:]REMOTE, e.g. 5432 or 8080:80")
    local_text, sep, remote_text = spec.rpartition(":")
    if sep and ":" in local_text:
        raise ValueError(f"{spec!r}: expected [LOCAL:]REMOTE, with one colon")
    if not sep:
        remote = _port(spec, "remote", spec)
        return PortSpec(remote, remote)
    remote = _port(remote_text, "remote", spec)
    local = _port(local_text, "local", spec, zero=True) if local_text else 0
    return PortSpec(local, remote)


def parse_port_specs(specs: Sequence[str]) -> tuple[PortSpec, ...]:
    """Every mapping, validated; a local port named twice is an error."""
    parsed = tuple(parse_port_spec(spec) for spec in specs)
    seen: set[int] = set()
    for item in parsed:
        if item.local and item.local in seen:
            raise ValueError(f"the local port {item.local} is given twice")
        seen.add(item.local)
    return parsed


def parse_addresses(values: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    """``(ip, optional)`` per address to listen on, in order, without repeats.

    ``localhost`` (the default) is 127.0.0.1 and ::1, each skipped when this
    machine lacks it (no IPv6 loopback); an address named explicitly is required.
    """
    found: dict[str, bool] = {}
    for raw in values or (DEFAULT_ADDRESS,):
        value = raw.strip()
        if value.lower() == "localhost":
            for host in LOCALHOST:
                found.setdefault(host, True)
            continue
        try:
            host = str(ipaddress.ip_address(value.removeprefix("[").removesuffix("]")))
        except ValueError:
            raise ValueError(f"{raw!r} is not an IP address or localhost") from None
        found[host] = False
    return tuple(found.items())


def _usage(message: str, hint: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=hint)


def port_forward_command(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(metavar="SERVICE", help="The service to reach.",
                                           show_default=False,
                                           autocompletion=complete_services)],
    ports: Annotated[list[str], typer.Argument(
        metavar="[LOCAL:]REMOTE...", show_default=False,
        help="Port mappings: 5432 (same port here), 8080:80, or :5432 (a free local port, "
             "printed).")],
    address: Annotated[list[str] | None, typer.Option(
        "--address", metavar="ADDRESS",
        show_default="localhost: 127.0.0.1, and ::1 when this machine has IPv6",
        help="Local address to listen on; repeat for several. localhost means 127.0.0.1 and "
             "::1, as with kubectl.")] = None,
    instance: Annotated[str | None, typer.Option(
        "--instance", metavar="NAME", autocompletion=complete_instances,
        help="One instance (replica) of the service.")] = None,
) -> None:
    """Forward local ports to a service's ports; one broken connection never ends the forward.

    Each accepted connection gets its own WebSocket; a lost one resumes with the
    local connection kept open. A connection that fails is reported on one line
    and the listeners keep serving; a refused credential or role stops
    everything. Ctrl+C closes the listeners and open connections.
    """
    try:
        specs = parse_port_specs(ports)
    except ValueError as exc:
        raise _usage(str(exc), "'[LOCAL:]REMOTE...'") from None
    try:
        addresses = parse_addresses(address or ())
    except ValueError as exc:
        raise _usage(str(exc), "'--address'") from None

    from tether.cli.output.reporters import ForwardReporter, StatusReporter
    from tether.session.link import open_link
    from tether.session.listeners import BindAddress, Route, bind_listeners

    s = settings(ctx)
    link = open_link(s)
    reporter = ForwardReporter(s)
    routes = [Route(service, spec.remote, instance) for spec in specs]
    listeners = bind_listeners([(spec.local, route) for spec, route in zip(specs, routes,
                                                                          strict=True)],
                               [BindAddress(host, optional) for host, optional in addresses])
    try:
        _probe(link, routes, reporter, StatusReporter(s))
        _serve(link, listeners, reporter)
    finally:
        for listener in listeners:
            listener.close()


def _probe(link: Link, routes: Sequence[Route], reporter: ForwardReporter,
           status: StatusReporter) -> None:
    """Dial each remote port once and close at once; raises TetherError on a refusal."""
    from tether.session.forward import probe_close
    from tether.session.link import supervise

    for route in dict.fromkeys(routes):
        note = supervise(link, "port-forward", _params_of(route), probe_close, status)
        if note:
            reporter.warning(f"{route}: {note}; connections will fail until it listens")


def _params_of(route: Route) -> Callable[[Attempt], Mapping[str, ParamValue]]:
    params = route.params()
    return lambda attempt: params


def _serve(link: Link, listeners: Sequence[Listener], reporter: ForwardReporter) -> None:
    """Announce, serve until interrupted or a permanent failure, say how many were closed."""
    from tether.session.forward import Forwarder

    forwarder = Forwarder(link, listeners, reporter)
    try:
        reporter.forwarding(listeners)  # inside: a signal once this is out is handled below
        forwarder.serve()
    except (KeyboardInterrupt, Interrupted):
        reporter.closed(forwarder.shutdown())
        raise
    except TetherError:
        closed = forwarder.shutdown()
        if closed:
            reporter.closed(closed)
        raise
    finally:
        forwarder.shutdown()
