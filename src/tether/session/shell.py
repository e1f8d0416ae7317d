"""One ``tether shell`` run: dial under the supervisor, bridge the terminal, decide the exit status.

Rules:

- Raw mode (with a local terminal) lasts exactly as long as one connected
  session: while dialing or waiting to reconnect the terminal is cooked, so
  Ctrl+C is SIGINT (exit 130) and the countdown line renders.
- With a remote tty, a transient failure mid-session is followed by a NEW
  shell (the old one's state is gone, and the user is told so). Without one,
  a command that started is never run again (it may have had effects): the
  classified failure ends tether.
- The exit status is the remote command's; ``~.`` exits 255, as ssh does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from tether.client.dial import Connection
from tether.client.supervisor import Attempt
from tether.errors import Failure, Interrupted, TetherError
from tether.session import terminal
from tether.session.link import Link, LinkReporter, supervise
from tether.session.shell_streams import InputPump, Outcome, ScreenModes, receive, write_all

#: Exit status after ``~.``, as ssh's.
DISCONNECT_STATUS = 255
_STDIN, _STDOUT, _STDERR = 0, 1, 2
#: Sent to the local terminal when a session breaks mid-output: colours and attributes off.
_PLAIN = b"\x1b[0m"

_NO_RERUN_HINT = ("The command was not run again: it may have had effects already. "
                  "Check what it did before running it again.")


@dataclass(frozen=True)
class ShellRequest:
    """What the user asked for."""

    service: str
    instance: str | None
    command: Sequence[str]
    tty: bool  # the remote side gets a pseudo-terminal
    raw: bool  # the local stdin is a terminal, put in raw mode while connected


class NotRetried(Exception):
    """Raised out of the supervisor for a failure that must end the run as it stands."""

    def __init__(self, error: TetherError) -> None:
        super().__init__(str(error))
        self.error = error


class ShellReporter(LinkReporter, Protocol):
    """What a shell user is told besides retries and warnings; the CLI implements it."""

    def shell_lost(self, service: str, failure: Failure) -> None:
        """The session on ``service`` broke with ``failure``; a NEW shell is being opened."""

    def shell_replaced(self, service: str) -> None:
        """The new shell on ``service`` is up (said after ``reconnected``)."""

    def disconnected(self, service: str) -> None:
        """The user typed ``~.``: the session on ``service`` was closed."""


class _ShellStatus:
    """The supervisor's reporter for one run: a lost session is told before the retry it causes."""

    def __init__(self, reporter: ShellReporter, service: str) -> None:
        self._reporter = reporter
        self._service = service
        self.lost: Failure | None = None  # the failure that ended an established session

    def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
        """Say once that the shell is gone and a new one is coming, then the retry."""
        lost, self.lost = self.lost, None
        if lost is not None:
            self._reporter.shell_lost(self._service, lost)
        self._reporter.retrying(failure, attempt, delay)

    def reconnected(self, attempt: int) -> None:
        """The new shell is up."""
        self._reporter.reconnected(attempt)
        self._reporter.shell_replaced(self._service)

    def refreshing(self, failure: Failure) -> None:
        """The token is being renewed."""
        self._reporter.refreshing(failure)

    def warning(self, text: str) -> None:
        """Something to know that does not stop the session."""
        self._reporter.warning(text)

    def clear(self) -> None:
        """Erase the countdown line."""
        self._reporter.clear()


class ShellRun:
    """The supervisor's dial parameters and session handler for one ``tether shell``."""

    def __init__(self, request: ShellRequest, status: _ShellStatus) -> None:
        self.request = request
        self.status = status
        self.dialed_size: tuple[int, int] | None = None

    def size(self) -> tuple[int, int]:
        """The local terminal's ``(cols, rows)``."""
        fd = _STDIN if terminal.is_terminal(_STDIN) else _STDOUT
        return terminal.size(fd)

    def params(self, attempt: Attempt) -> dict[str, str | int | Sequence[str] | None]:
        """The query of each dial: the current size, so a new shell fits the window."""
        request = self.request
        query: dict[str, str | int | Sequence[str] | None] = {
            "service": request.service, "instance": request.instance,
            "tty": "1" if request.tty else "0",
            "command": list(request.command) or None}
        if request.tty:
            self.dialed_size = self.size()
            query["cols"], query["rows"] = self.dialed_size
        return query

    def handle(self, connection: Connection, attempt: Attempt) -> Outcome:
        """Bridge one session; raises TetherError when it broke (NotRetried if it must stop)."""
        request = self.request
        pump = InputPump(connection, _STDIN, terminal=request.tty, escapes=request.raw,
                         size=self.size if request.tty else None, sent_size=self.dialed_size)
        modes = ScreenModes() if request.raw else None
        broke = True
        try:
            with self._local_terminal(pump):
                pump.start()
                try:
                    outcome = receive(connection, pump, stdout=_STDOUT, stderr=_STDERR,
                                      modes=modes)
                finally:
                    connection.close()
                    pump.stop()
            broke = False
            return outcome
        except Interrupted:
            raise
        except TetherError as err:
            if not request.tty:
                failure = err.failure.replace(hint=_NO_RERUN_HINT)
                raise NotRetried(TetherError(failure)) from err
            self.status.lost = err.failure
            raise
        finally:
            undo = (modes.reset() if modes is not None else b"") + (_PLAIN if broke else b"")
            if request.raw and undo and terminal.is_terminal(_STDOUT):
                with contextlib.suppress(OSError):
                    write_all(_STDOUT, undo)

    @contextlib.contextmanager
    def _local_terminal(self, pump: InputPump) -> Iterator[None]:
        if not self.request.raw:
            yield
            return
        resize = terminal.on_resize(pump.resize) if self.request.tty else contextlib.nullcontext()
        with terminal.raw_mode(_STDIN), resize:
            yield


def run_shell(link: Link, request: ShellRequest, reporter: ShellReporter) -> int:
    """Run the session (reconnecting as allowed); the exit status for the process.

    Raises TetherError with the final failure.
    """
    status = _ShellStatus(reporter, request.service)
    run = ShellRun(request, status)
    try:
        outcome = supervise(link, "shell", run.params, run.handle, status)
    except NotRetried as stop:
        raise stop.error from stop.error.__cause__
    if outcome.disconnected:
        reporter.disconnected(request.service)
        return DISCONNECT_STATUS
    code = outcome.exit_code if outcome.exit_code is not None else 0
    return code if 0 <= code <= 255 else 255
