"""One ``tether shell`` run: dial under the supervisor, bridge the terminal, decide the exit status.

Rules:

- Raw mode (with a local terminal) lasts exactly as long as one connected
  session: while dialing or waiting to reconnect the terminal is cooked, so
  Ctrl+C is SIGINT (exit 130) and the countdown line renders.
- A gateway that speaks tether.v2 keeps the session through a cut: a
  transient failure is followed by a resume of the SAME shell or command,
  with no byte lost or repeated (:mod:`tether.session.resume`), reported as
  ``detached`` and ``resumed``. When resuming is impossible (4410
  session-expired, a v1 gateway, a failure that ended the session), the
  tether.v1 rules hold: with a remote tty a NEW shell follows (the old one's
  state is gone, and the user is told so); without one, a command that started
  is never run again (it may have had effects): the classified failure ends
  tether. 4416 (resume-lost) ends tether, saying how many bytes were lost.
- The exit status is the remote command's; ``~.`` exits 255, as ssh does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from tether.client.dial import Connection
from tether.client.retry import RetryPolicy
from tether.client.supervisor import Attempt
from tether.errors import Code, Failure, Interrupted, TetherError
from tether.protocol import SUBPROTOCOL_V2
from tether.session import terminal
from tether.session.link import Link, LinkReporter, supervise
from tether.session.resume import Cut, Detachment, Resumable, Resumption, resumable
from tether.session.shell_streams import (
    InputPump,
    Outcome,
    ScreenModes,
    receive,
    stdin_frame,
    write_all,
)

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

    def detached(self, service: str, detachment: Detachment) -> None:
        """The session on ``service`` lost its connection and is being resumed; said before
        each redial's wait (``detachment.first`` for the first)."""

    def resumed(self, service: str, resumption: Resumption) -> None:
        """The session on ``service`` resumed: the SAME shell, nothing lost."""


class _ShellStatus:
    """The supervisor's reporter for one run: a lost session is told before the retry it causes;
    a detached one is told as such, and its redial is not a new shell."""

    def __init__(self, reporter: ShellReporter, service: str) -> None:
        self._reporter = reporter
        self._service = service
        self.lost: Failure | None = None  # the failure that ended an established session
        self.cut = Cut()

    def _tell(self, detachment: Detachment | None) -> bool:
        """Tell the detachment (first, or a further wait); False when not detached."""
        if detachment is None:
            return False
        self._reporter.detached(self._service, detachment)
        return True

    def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
        """Say once that the shell is gone and a new one is coming, then the retry; or, while
        resuming, that the session is detached."""
        if self._tell(self.cut.detachment(failure, attempt, delay)):
            return
        lost, self.lost = self.lost, None
        if lost is not None:
            self._reporter.shell_lost(self._service, lost)
        self._reporter.retrying(failure, attempt, delay)

    def reconnected(self, attempt: int) -> None:
        """The new shell is up (a resume is told once its handshake is done)."""
        if self.cut.stream is not None:
            return
        self._reporter.reconnected(attempt)
        self._reporter.shell_replaced(self._service)

    def resumed(self, resumption: Resumption) -> None:
        """The session is back."""
        self.cut.end()
        self._reporter.resumed(self._service, resumption)

    def refreshing(self, failure: Failure) -> None:
        """The token is being renewed (a session it detached is told first)."""
        self._tell(self.cut.untold(failure))
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
        self.remote_size: tuple[int, int] | None = None  # what the remote terminal was given
        self.stream: Resumable | None = None  # the tether.v2 session, while it may be resumed
        self.modes = ScreenModes() if request.raw else None
        # the remote pty gets the modes the local terminal has now, before it goes raw (as ssh)
        self.terminal_modes = (terminal.modes(_STDIN)
                               if request.tty and terminal.is_terminal(_STDIN) else None)

    def size(self) -> tuple[int, int]:
        """The local terminal's ``(cols, rows)``."""
        fd = _STDIN if terminal.is_terminal(_STDIN) else _STDOUT
        return terminal.size(fd)

    def params(self, attempt: Attempt) -> dict[str, str | int | Sequence[str] | None]:
        """The query of each dial: the current size, so a new shell fits the window; and
        ``resume=1`` (and the gateway's node) while a session waits to be resumed."""
        request = self.request
        query: dict[str, str | int | Sequence[str] | None] = {
            "service": request.service, "instance": request.instance,
            "tty": "1" if request.tty else "0",
            "command": list(request.command) or None}
        if request.tty:
            size = self.size()
            query["cols"], query["rows"] = size
            query["modes"] = self.terminal_modes
            if self.stream is None:
                self.remote_size = size
        if self.stream is not None:
            query.update(self.stream.resume_params())
        return query

    def _attach(self, connection: Connection) -> Resumable | None:
        """The v2 session on ``connection``: resumed, or new; None for a v1 gateway."""
        stream = self.stream
        if stream is not None:
            self.status.resumed(stream.resume(connection))
            return stream
        if connection.subprotocol == SUBPROTOCOL_V2:
            self.stream = Resumable(connection, frame=stdin_frame)
        return self.stream

    def handle(self, connection: Connection, attempt: Attempt) -> Outcome:
        """Bridge one connection; raises TetherError when it broke (NotRetried if it must stop).

        A v2 session that is cut stays in ``self.stream`` and the error goes to the
        supervisor, whose redial resumes it.
        """
        request = self.request
        modes = self.modes
        stream = self.stream  # being resumed, or None
        kept = broke = True
        try:
            stream = self._attach(connection)
            pump = InputPump(connection, _STDIN, terminal=request.tty, escapes=request.raw,
                             size=self.size if request.tty else None,
                             sent_size=self.remote_size, stream=stream)
            with self._local_terminal(pump):
                pump.start()
                try:
                    outcome = receive(connection, pump, stdout=_STDOUT, stderr=_STDERR,
                                      modes=modes, stream=stream)
                finally:
                    connection.close()
                    pump.stop()
                    self.remote_size = pump.sent_size
            broke = kept = False
            return outcome
        except Interrupted:
            kept = False
            raise
        except TetherError as err:
            if stream is not None and stream.can_resume and resumable(err.failure):
                stream.detach(connection)
                self.status.cut.begin(stream, attempt.number)
                raise
            kept = False
            lost = self._lost(err)
            if lost is err:
                raise
            raise lost from err
        finally:
            if not kept:
                self.forget()
            undo = b""
            if not kept and modes is not None:
                undo = modes.reset() + (_PLAIN if broke else b"")
            if request.raw and undo and terminal.is_terminal(_STDOUT):
                with contextlib.suppress(OSError):
                    write_all(_STDOUT, undo)

    def _lost(self, err: TetherError) -> Exception:
        """What ends an established session that cannot be resumed: a new shell with a tty
        (the supervisor's retry), or the failure as it stands."""
        self.status.cut.end()
        if err.failure.code is Code.RESUME_LOST:
            return err
        if not self.request.tty:
            failure = err.failure.replace(hint=_NO_RERUN_HINT)
            return NotRetried(TetherError(failure))
        self.status.lost = err.failure
        return err

    def forget(self) -> None:
        """Let go of the v2 session (it ended, or cannot be resumed)."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None

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
        # once connected the address is proven: redials (resumes above all) may take all
        # of --retry-for, whatever kind of failure they meet
        established = RetryPolicy(retry_for=link.retry_for, connect_budget=link.retry_for)
        outcome = supervise(link, "shell", run.params, run.handle, status, resumable=True,
                            established_policy=established)
    except NotRetried as stop:
        raise stop.error from stop.error.__cause__
    finally:
        run.forget()
    if outcome.disconnected:
        reporter.disconnected(request.service)
        return DISCONNECT_STATUS
    code = outcome.exit_code if outcome.exit_code is not None else 0
    return code if 0 <= code <= 255 else 255
