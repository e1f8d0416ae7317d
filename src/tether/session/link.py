"""Reaching a service, wired once for shell, logs and port-forward.

``open_link(reach)`` resolves the gateway, the credential and the dial options
from plain settings (the CLI passes its global options); ``supervise`` runs a
session under the reconnecting supervisor and tells a :class:`LinkReporter`
what is going on. Every failure that leaves ``supervise`` or ``dial_once`` is
worded for where the credential came from: a rejected ``TETHER_TOKEN`` gets the
hint to make a new one, whichever command dialed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from tether.client.supervisor import Reporter
from tether.errors import Code, TetherError

if TYPE_CHECKING:
    from tether.auth.credentials import Credential
    from tether.client.dial import Connection, DialOptions, ParamValue
    from tether.client.retry import RetryPolicy
    from tether.client.supervisor import Attempt

T = TypeVar("T")
Params = Mapping[str, "ParamValue"]


class Reach(Protocol):
    """How to reach the gateway: the settings ``open_link`` reads."""

    @property
    def gateway(self) -> str | None:
        """The gateway named by the user (--gateway); None: see ``context``."""

    @property
    def context(self) -> str | None:
        """The context named by the user (--context); None: the environment, then the current."""

    @property
    def connect_timeout(self) -> float:
        """Seconds for DNS, TCP, TLS and the handshake of one dial."""

    @property
    def ca_cert(self) -> str | None:
        """A CA bundle to trust instead of the system's."""

    @property
    def insecure(self) -> bool:
        """Skip TLS verification."""

    @property
    def keepalive_interval(self) -> float:
        """Seconds between pings (0: none)."""

    @property
    def keepalive_timeout(self) -> float:
        """Seconds without a pong before the connection is dead."""

    @property
    def retry_for(self) -> float:
        """Seconds of continuous failure after which reconnecting stops."""

    @property
    def retry_for_explicit(self) -> bool:
        """Whether the user gave ``retry_for``: then a first contact that finds no such
        name or nothing listening retries too (someone waiting for a gateway to come up)."""


class LinkReporter(Reporter, Protocol):
    """The supervisor's reporter, able to take down what it shows for the time being."""

    def clear(self) -> None:
        """Erase anything transient (a countdown line) before other output."""


@dataclass(frozen=True)
class Link:
    """Everything needed to dial the gateway for one command."""

    gateway: str
    credential: Credential
    options: DialOptions
    retry_for: float = 300.0
    patient_first_contact: bool = True  # retry a wrong address before any session

    @property
    def role(self) -> str | None:
        """The credential's role when its claims say (for wording failures)."""
        return self.credential.describe().role


def open_link(reach: Reach) -> Link:
    """The gateway, credential and dial options that ``reach`` names.

    Raises TetherError: not-configured, invalid-url, no-credentials, keyring-unavailable.
    """
    from tether.auth.contexts import resolve_gateway
    from tether.auth.credentials import resolve_credential
    from tether.client.dial import DialOptions
    from tether.client.http import HttpOptions

    gateway = resolve_gateway(reach.gateway, context=reach.context).gateway
    http = HttpOptions(timeout=reach.connect_timeout, ca_cert=reach.ca_cert,
                       insecure=reach.insecure)
    credential = resolve_credential(gateway, http=http)
    options = DialOptions(connect_timeout=reach.connect_timeout, ca_cert=reach.ca_cert,
                          insecure=reach.insecure, keepalive_interval=reach.keepalive_interval,
                          keepalive_timeout=reach.keepalive_timeout)
    return Link(gateway, credential, options, retry_for=reach.retry_for,
                patient_first_contact=reach.retry_for_explicit)


REJECTED_ENV_HINT = ("TETHER_TOKEN was rejected and is never refreshed: make a new API token "
                      "(`tether gateway token create` on the gateway), or unset TETHER_TOKEN "
                      "and run `tether auth login`.")


@contextlib.contextmanager
def worded_for(link: Link) -> Iterator[None]:
    """Failures leaving the block get the hint that fits where the credential came from."""
    try:
        yield
    except TetherError as err:
        rejected = err.failure.code in (Code.UNAUTHORIZED, Code.TOKEN_EXPIRED)
        if rejected and link.credential.describe().source == "environment":
            raise TetherError(err.failure.replace(hint=REJECTED_ENV_HINT)) from err
        raise


def dial_once(link: Link, command: str, params: Params, reporter: Reporter, *,
              resumable: bool = False) -> Connection:
    """One dial of ``command``; raises TetherError with the classified failure.

    A reporter that is also a :class:`~tether.client.dial.DialProgress` hears of each stage.
    ``resumable`` offers tether.v2 first (shell and port-forward).
    """
    from tether.client.dial import DialProgress, dial

    progress = reporter if isinstance(reporter, DialProgress) else None
    with worded_for(link):
        return dial(link.gateway, command, params, link.credential, link.options,
                    role=link.role, warn=reporter.warning, progress=progress,
                    resumable=resumable)


def supervise(link: Link, command: str, params: Callable[[Attempt], Params],
              handler: Callable[[Connection, Attempt], T], reporter: LinkReporter, *,
              policy: RetryPolicy | None = None, resumable: bool = False,
              established_policy: RetryPolicy | None = None,
              sleep: Callable[[float], None] | None = None) -> T:
    """Run ``handler`` on a connection of ``command``, reconnecting as the retry policy allows.

    ``params(attempt)`` builds the query of each dial (logs resume with ``after=``; a
    tether.v2 session with ``resume=1``). ``policy`` defaults to one that retries for
    ``link.retry_for``, patient on first contact as ``link`` says; ``established_policy``,
    when given, replaces it once a connection was made (a session resumed within
    ``--retry-for``); ``sleep`` (the wait before a redial) defaults to the supervisor's own.
    ``resumable`` offers tether.v2 on every dial. Returns the handler's result; raises
    TetherError with the final failure.
    """
    from tether.client.retry import RetryPolicy
    from tether.client.supervisor import Supervisor

    policy = policy or RetryPolicy(retry_for=link.retry_for,
                                   patient_first_contact=link.patient_first_contact)

    def run(connection: Connection, attempt: Attempt) -> T:
        if established_policy is not None:
            supervisor.state.policy = established_policy
        return handler(connection, attempt)

    supervisor: Supervisor[Connection, T] = Supervisor(
        lambda attempt: dial_once(link, command, params(attempt), reporter, resumable=resumable),
        run, credential=link.credential, policy=policy, reporter=reporter, sleep=sleep)
    try:
        with worded_for(link):
            return supervisor.run()
    finally:
        reporter.clear()
