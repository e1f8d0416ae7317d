"""The reconnect loop that shell, logs and port-forward share.

dial -> run the session handler -> on failure: classify (already done by the
dialer and the connection) -> policy -> refresh / wait / stop::

    supervisor = Supervisor(lambda attempt: dial(...), handler, credential=credential,
                            policy=RetryPolicy(retry_for=300.0), reporter=reporter)
    result = supervisor.run()   # the handler's result, or TetherError with the final failure

The handler returns when the session is done and raises TetherError when it
broke; the supervisor decides whether to dial again. ``Attempt.reconnect``
tells the dial and the handler that an earlier session was established (logs
resume with ``after=<cursor>``). Ctrl+C while dialing, waiting or in a session
raises :class:`~tether.errors.Interrupted` at once.

A target-unreachable failure (``Retry.PER_CONNECTION``) ends the run like a
permanent failure: for port-forward it concerns one forwarded connection, and
the port-forward command decides to keep listening.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from tether.client.credential import CredentialSource
from tether.client.retry import GiveUp, Refresh, RetryPolicy, RetryState, Wait
from tether.errors import Failure, Interrupted, TetherError

T = TypeVar("T")


class Reporter(Protocol):
    """What the supervisor tells the user. The CLI implements it (Rich line, JSON events)."""

    def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
        """Attempt ``attempt`` failed with ``failure``; the next dial is in ``delay`` seconds."""

    def reconnected(self, attempt: int) -> None:
        """Attempt ``attempt`` connected after earlier ones failed."""

    def refreshing(self, failure: Failure) -> None:
        """The credential is being refreshed because of ``failure``."""

    def warning(self, text: str) -> None:
        """Something the user should know that does not stop the command."""


class NullReporter:
    """A Reporter that says nothing."""

    def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
        """Say nothing."""

    def reconnected(self, attempt: int) -> None:
        """Say nothing."""

    def refreshing(self, failure: Failure) -> None:
        """Say nothing."""

    def warning(self, text: str) -> None:
        """Say nothing."""


@dataclass(frozen=True)
class Attempt:
    """One dial: ``number`` counts from 1 over the whole run; ``reconnect`` once a session
    was established before."""

    number: int
    reconnect: bool


class _Connection(Protocol):
    def close(self, code: int = 1000, reason: str = "") -> None: ...


C = TypeVar("C", bound=_Connection)


class Supervisor(Generic[C, T]):
    """Dial, run the handler, and apply the retry policy to what breaks.

    ``dial(attempt)`` returns a connection (normally :func:`tether.client.dial.dial`
    with parameters rebuilt for the attempt). ``handler(connection, attempt)``
    returns the command's result, or raises TetherError when the session broke.
    ``sleep`` and ``clock`` are injectable; the default sleep waits on an event
    that :meth:`cancel` sets.
    """

    def __init__(self, dial: Callable[[Attempt], C], handler: Callable[[C, Attempt], T], *,
                 credential: CredentialSource | None = None, policy: RetryPolicy | None = None,
                 reporter: Reporter | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None) -> None:
        self._dial = dial
        self._handler = handler
        self._credential = credential
        self.state = RetryState(policy)
        self._reporter: Reporter = reporter or NullReporter()
        self._clock = clock
        self._cancelled = threading.Event()
        self._sleep = sleep or self._wait
        self.dials = 0

    def cancel(self) -> None:
        """Stop waiting: a run that is waiting to retry raises Interrupted."""
        self._cancelled.set()

    def _wait(self, delay: float) -> None:
        if self._cancelled.wait(delay):
            raise Interrupted()

    def run(self) -> T:
        """The handler's result when a session ends normally; raises TetherError when giving up."""
        try:
            return self._run()
        except KeyboardInterrupt:
            raise Interrupted() from None

    def _run(self) -> T:
        refreshable = bool(self._credential is not None and self._credential.refreshable)
        reconnect = False
        failed_before = False
        while True:
            if self._cancelled.is_set():
                raise Interrupted()
            self.dials += 1
            attempt = Attempt(self.dials, reconnect)
            try:
                connection = self._dial(attempt)
            except Interrupted:
                raise
            except TetherError as err:
                self._after(err, refreshable)
                failed_before = True
                continue
            self.state.established(self._clock())
            if failed_before:
                self._reporter.reconnected(attempt.number)
            reconnect = True
            try:
                return self._handler(connection, attempt)
            except Interrupted:
                raise
            except TetherError as err:
                self._after(err, refreshable)
                failed_before = True
            finally:
                connection.close()

    def _after(self, err: TetherError, refreshable: bool) -> None:
        """Refresh, wait, or raise the final failure."""
        decision = self.state.decide(err.failure, refreshable=refreshable, now=self._clock())
        match decision:
            case Refresh():
                assert self._credential is not None
                self._reporter.refreshing(err.failure)
                try:
                    self._credential.refresh()
                except TetherError as failed:
                    if not failed.failure.retryable:
                        raise
                    # The token endpoint was unreachable: wait as the policy says and
                    # let the next refusal try the refresh again.
                    self.state.refresh_not_done()
                    self._after(failed, refreshable)
            case Wait(delay=delay, attempt=attempt):
                self._reporter.retrying(err.failure, attempt, delay)
                self._sleep(delay)
            case GiveUp(failure=final):
                raise TetherError(final) from err
