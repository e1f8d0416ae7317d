"""Reaching a service, wired once for shell, logs and port-forward.

``open_link(ctx)`` resolves the gateway, the credential and the dial options
from the global options; ``supervise`` runs a session under the reconnecting
supervisor with a :class:`StatusReporter` that tells the user what is going on:
a live countdown line on a terminal, one line per event otherwise, one JSON
event per line with ``--output json``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import typer

from tether.cli.options import Settings, settings
from tether.errors import Code, Failure, TetherError

if TYPE_CHECKING:
    from tether.auth.credentials import Credential
    from tether.client.dial import Connection, DialOptions, ParamValue
    from tether.client.supervisor import Attempt

T = TypeVar("T")
Params = Mapping[str, "ParamValue"]


@dataclass(frozen=True)
class Link:
    """Everything needed to dial the gateway for one command."""

    settings: Settings
    gateway: str
    credential: Credential
    options: DialOptions

    @property
    def role(self) -> str | None:
        """The credential's role when its claims say (for wording failures)."""
        return self.credential.describe().role


def open_link(ctx: typer.Context) -> Link:
    """The gateway, credential and dial options of this invocation.

    Raises TetherError: not-configured, invalid-url, no-credentials, keyring-unavailable.
    """
    from tether.auth.contexts import resolve_gateway
    from tether.auth.credentials import resolve_credential
    from tether.client.dial import DialOptions
    from tether.client.http import HttpOptions

    s = settings(ctx)
    gateway = resolve_gateway(s.gateway).gateway
    http = HttpOptions(timeout=s.connect_timeout, ca_cert=s.ca_cert, insecure=s.insecure)
    credential = resolve_credential(gateway, http=http)
    options = DialOptions(connect_timeout=s.connect_timeout, ca_cert=s.ca_cert,
                          insecure=s.insecure, keepalive_interval=s.keepalive_interval,
                          keepalive_timeout=s.keepalive_timeout, retry_for=s.retry_for)
    return Link(s, gateway, credential, options)


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


def dial_once(link: Link, command: str, params: Params, reporter: StatusReporter) -> Connection:
    """One dial of ``command``; raises TetherError with the classified failure."""
    from tether.client.dial import dial

    with worded_for(link):
        return dial(link.gateway, command, params, link.credential, link.options,
                    role=link.role, warn=reporter.warning)


def supervise(link: Link, command: str, params: Callable[[Attempt], Params],
              handler: Callable[[Connection, Attempt], T],
              reporter: StatusReporter | None = None) -> T:
    """Run ``handler`` on a connection of ``command``, reconnecting as the retry policy allows.

    ``params(attempt)`` builds the query of each dial (logs resume with ``after=``).
    Returns the handler's result; raises TetherError with the final failure.
    """
    from tether.client.retry import RetryPolicy
    from tether.client.supervisor import Supervisor

    report = reporter or StatusReporter(link.settings)
    supervisor = Supervisor(lambda attempt: dial_once(link, command, params(attempt), report),
                            handler, credential=link.credential,
                            policy=RetryPolicy(retry_for=link.settings.retry_for),
                            reporter=report)
    try:
        with worded_for(link):
            return supervisor.run()
    finally:
        report.clear()


class StatusReporter:
    """Tells the user about retries, refreshes and warnings, on stderr.

    On a terminal a retry is one live line counting down to the next dial; when
    stderr is not a terminal each event is one plain line; with ``--output json``
    each is one JSON object. Implements :class:`tether.client.supervisor.Reporter`.
    """

    def __init__(self, settings: Settings, *, live: bool | None = None) -> None:
        self._json = settings.json
        self._live = sys.stderr.isatty() if live is None else live
        self._lock = threading.Lock()
        self._countdown: threading.Event | None = None
        self._shown = False
        self._hinted: set[str] = set()

    def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
        """A retry is coming: a JSON event, a plain line, or a live countdown.

        In text the hint of each kind of failure is shown once, above the countdown.
        """
        from tether.cli.output.render import clean, emit_line, render_retry

        self.clear()
        if self._json:
            emit_line(render_retry(failure, attempt, delay, output="json"))
            return
        if failure.hint and failure.code not in self._hinted:  # once per kind of failure
            self._hinted.add(failure.code)
            emit_line(f"{failure.code}: {clean(failure.hint, limit=500)}")
        if not self._live:
            emit_line(render_retry(failure, attempt, delay, output="text"))
            return
        from tether.cli.terminal import size

        stop = threading.Event()
        self._countdown = stop
        deadline = time.monotonic() + delay
        width = size(sys.stderr.fileno())[0] - 1  # a wrapped line could not be erased

        def tick() -> None:
            while True:
                left = max(deadline - time.monotonic(), 0.0)
                self._show(render_retry(failure, attempt, left, output="text", width=width),
                           stop)
                if left <= 0 or stop.wait(min(0.1, left) if left < 1 else 0.1):
                    return

        threading.Thread(target=tick, name="tether-countdown", daemon=True).start()

    def reconnected(self, attempt: int) -> None:
        """The session is back."""
        from tether.cli.output.render import emit_line, render_event

        self.clear()
        if self._json:
            emit_line(render_event("reconnected", attempt=attempt))
        else:
            emit_line(f"Reconnected (attempt {attempt}).")

    def refreshing(self, failure: Failure) -> None:
        """The token is being renewed because of ``failure``."""
        from tether.cli.output.render import emit_line, render_event

        self.clear()
        if self._json:
            emit_line(render_event("refresh", code=str(failure.code)))
        else:
            emit_line(f"{failure.code}: refreshing the token and trying once more.")

    def warning(self, text: str) -> None:
        """Something the user should know that does not stop the command."""
        from tether.cli.output.render import clean, emit_line, render_event

        self.clear()
        if self._json:
            emit_line(render_event("warning", message=text))
        else:
            emit_line(f"warning: {clean(text, limit=500)}")

    def clear(self) -> None:
        """Stop any countdown and erase its line."""
        if self._countdown is not None:
            self._countdown.set()
            self._countdown = None
        with self._lock:
            if self._shown:
                sys.stderr.write("\r\x1b[2K")
                sys.stderr.flush()
                self._shown = False

    def _show(self, line: str, stop: threading.Event) -> None:
        with self._lock:
            if stop.is_set():  # cleared meanwhile: the line must not come back
                return
            sys.stderr.write("\r\x1b[2K" + line)
            sys.stderr.flush()
            self._shown = True
