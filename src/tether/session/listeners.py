"""Where port-forward listens: a socket per mapping and address, and where its connections go.

Every mapping (local port, :class:`Route`) is bound on every address before
anything is dialed, so that a port in use fails at once (local-port-in-use).
A local port of 0 picks one free port, the same on every address.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.errors import Code, Failure, Phase, TetherError

if TYPE_CHECKING:
    from tether.client.dial import ParamValue

_PICK_TRIES = 20  # attempts to find one free port on every address


def host_port(host: str, port: int) -> str:
    """``127.0.0.1:5432`` or ``[::1]:5432``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Route:
    """Where a listener's connections go: a service's port (on one instance, if given)."""

    service: str
    remote: int
    instance: str | None = None

    def params(self) -> dict[str, ParamValue]:
        """The query of ``/v1/port-forward``."""
        return {"service": self.service, "instance": self.instance, "port": self.remote}

    def __str__(self) -> str:
        name = f"{self.service}/{self.instance}" if self.instance else self.service
        return f"{name}:{self.remote}"


@dataclass(frozen=True)
class BindAddress:
    """A local address to listen on; ``optional`` ones (from ``localhost``) may be missing."""

    host: str
    optional: bool = False


class Listener:
    """One listening socket of one mapping on one address."""

    def __init__(self, sock: socket.socket, host: str, route: Route) -> None:
        self.sock = sock
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.route = route

    def __str__(self) -> str:
        return host_port(self.host, self.port)

    def close(self) -> None:
        """Stop listening. Idempotent."""
        self.sock.close()


def _bind_failure(exc: OSError, host: str, port: int) -> TetherError:
    where = host_port(host, port)
    number = exc.errno
    if number == errno.EADDRINUSE:
        message = f"The local port {where} is already in use by another program."
        hint = None
    elif number == errno.EACCES:
        message = f"Not allowed to listen on {where} (ports below 1024 need privileges)."
        hint = None
    elif number in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        message = f"Cannot listen on {where}: {host} is not an address of this machine."
        hint = "Check --address; 127.0.0.1 (the default) or ::1 are always local."
    else:
        from tether.classify import classify_exception

        failure = classify_exception(exc, phase=Phase.LOCAL)
        return TetherError(failure.replace(message=f"Cannot listen on {where}: {failure.message}"))
    failure = Failure.of(Code.LOCAL_PORT_IN_USE, Phase.LOCAL, message, cause=exc)
    return TetherError(failure.replace(hint=hint) if hint else failure)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=socket.SOMAXCONN)


def _bind_all(port: int, addresses: Sequence[BindAddress], route: Route) -> list[Listener]:
    """Listeners on ``port`` (0: the one the first address got) on every address."""
    out: list[Listener] = []
    try:
        for address in addresses:
            want = out[0].port if out else port
            try:
                sock = _listen(address.host, want)
            except OSError as exc:
                if address.optional and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue
                raise _bind_failure(exc, address.host, want) from exc
            out.append(Listener(sock, address.host, route))
    except BaseException:
        for listener in out:
            listener.close()
        raise
    if not out:
        raise _bind_failure(OSError(errno.EADDRNOTAVAIL, "unavailable"), addresses[-1].host, port)
    return out


def bind_listeners(mappings: Sequence[tuple[int, Route]],
                   addresses: Sequence[BindAddress]) -> list[Listener]:
    """Bind every mapping (local port, route) on every address; raises TetherError.

    A local port of 0 picks one free port, the same on every address.
    """
    listeners: list[Listener] = []
    try:
        for local, route in mappings:
            for attempt in range(1 if local else _PICK_TRIES):
                try:
                    listeners.extend(_bind_all(local, addresses, route))
                    break
                except TetherError as err:
                    last_try = local or attempt == _PICK_TRIES - 1
                    if last_try or err.failure.code is not Code.LOCAL_PORT_IN_USE:
                        raise
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners
