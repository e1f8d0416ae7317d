"""What shell, logs and port-forward tell the user while they run, on stderr.

- :class:`StatusReporter`: retries, refreshes and warnings of one supervised
  session (:class:`tether.session.link.LinkReporter`): a live countdown line on
  a terminal, one line per event otherwise, one JSON event per line with
  ``--output json``; and a dial that waits (:class:`tether.client.dial.DialProgress`).
- :class:`ShellReporter`: that, and what a shell user must know when a session
  is lost, detached, resumed or closed (:class:`tether.session.shell.ShellReporter`):
  while a tether.v2 session is detached, one dim line on a terminal, erased on
  resume (the cursor goes back where the remote output left it); ``detached``
  and ``resumed`` JSON events with byte counts.
- :class:`ForwardReporter`: the listeners on stdout and each forwarded
  connection's events (:class:`tether.session.forward.ForwardEvents`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tether.cli.output.render import (
    clean,
    emit_line,
    json_record,
    render_event,
    render_retry,
)

if TYPE_CHECKING:
    from tether.cli.options import Settings
    from tether.client.dial import Stage
    from tether.errors import Failure
    from tether.session.listeners import Listener, Route
    from tether.session.resume import Detachment, Resumption

_REFRESH_NOTE_EVERY = 5.0  # seconds: one refresh note for many connections asking at once
#: seconds a dial may take before the stage it waits for is shown
CONNECTING_AFTER = 0.5
_STAGE_WORDS = {
    "resolving": "resolving {}",
    "tcp": "opening a TCP connection to {}",
    "proxy": "connecting through the proxy {}",
    "tls": "TLS handshake with {}",
    "handshake": "waiting for the gateway's answer from {}",
}


class _Dial:
    """The dial under way: when it began, the stage it is in, whether that was announced."""

    def __init__(self, stage: Stage, where: str) -> None:
        self.started = time.monotonic()
        self.stage = stage
        self.where = where
        self.announced = False  # pending long enough to be shown

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def event(self) -> str:
        return render_event("connecting", stage=str(self.stage), target=self.where,
                            elapsed=round(self.elapsed(), 3))

    def line(self, width: int) -> str:
        words = _STAGE_WORDS.get(str(self.stage), "{}").format(clean(self.where, limit=200))
        line = f"Connecting: {words} ({self.elapsed():.1f} s). Ctrl+C to quit"
        return line if len(line) <= width else line[:max(width - 1, 0)] + "…"


class StatusReporter:
    """Tells the user about retries, refreshes and warnings, on stderr.

    On a terminal a retry is one live line counting down to the next dial; when
    stderr is not a terminal each event is one plain line; with ``--output json``
    each is one JSON object. A dial without an answer after CONNECTING_AFTER
    seconds is one live line naming the stage it waits for on a terminal (erased
    when the dial ends), nothing in a pipe, and with ``--output json`` one
    ``connecting`` event then and at each later stage.
    """

    def __init__(self, settings: Settings, *, live: bool | None = None) -> None:
        self._json = settings.json
        self._live = sys.stderr.isatty() if live is None else live
        self._lock = threading.Lock()
        self._countdown: threading.Event | None = None
        self._shown = False
        self._hinted: set[str] = set()
        self._dial: _Dial | None = None
        self._before = self._after = ""  # around a live line shown below the cursor
        self._style = self._unstyle = ""

    def connecting(self, stage: Stage, where: str) -> None:
        """A stage of a dial began; shown only once the dial has waited a while."""
        dial = self._dial
        if dial is None:
            self.clear()
            self._dial = dial = _Dial(stage, where)
            if self._json or self._live:
                stop = threading.Event()
                self._countdown = stop
                threading.Thread(target=self._watch, args=(dial, stop), name="tether-dial",
                                 daemon=True).start()
            return
        with self._lock:
            dial.stage, dial.where = stage, where
            if self._json and dial.announced:
                emit_line(dial.event())

    def dial_ended(self) -> None:
        """The dial connected or failed: its line goes."""
        self._dial = None
        self.clear()

    def _watch(self, dial: _Dial, stop: threading.Event) -> None:
        """After CONNECTING_AFTER, announce the dial (JSON) or keep its line up (terminal)."""
        if stop.wait(CONNECTING_AFTER):
            return
        if self._json:
            with self._lock:
                if not stop.is_set():
                    dial.announced = True
                    emit_line(dial.event())
            return
        from tether.session.terminal import size

        width = size(sys.stderr.fileno())[0] - 1  # a wrapped line could not be erased
        while True:
            self._show(dial.line(width), stop)
            if stop.wait(0.1):
                return

    def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
        """A retry is coming: a JSON event, a plain line, or a live countdown.

        In text the hint of each kind of failure is shown once, above the countdown.
        """
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
        self._count_down(lambda left, width: render_retry(failure, attempt, left, output="text",
                                                          width=width), delay)

    def _count_down(self, render: Callable[[float, int], str], delay: float) -> None:
        """Keep ``render(seconds left, width)`` up as the live line until the wait is over."""
        from tether.session.terminal import size

        stop = threading.Event()
        self._countdown = stop
        deadline = time.monotonic() + delay
        width = size(sys.stderr.fileno())[0] - 1  # a wrapped line could not be erased

        def tick() -> None:
            while True:
                left = max(deadline - time.monotonic(), 0.0)
                self._show(render(left, width), stop)
                if left <= 0 or stop.wait(min(0.1, left) if left < 1 else 0.1):
                    return

        threading.Thread(target=tick, name="tether-countdown", daemon=True).start()

    def reconnected(self, attempt: int) -> None:
        """The session is back."""
        self.clear()
        if self._json:
            emit_line(render_event("reconnected", attempt=attempt))
        else:
            emit_line(f"Reconnected (attempt {attempt}).")

    def refreshing(self, failure: Failure) -> None:
        """The token is being renewed because of ``failure``."""
        self.clear()
        emit_line(_refresh_line(failure, json=self._json))

    def warning(self, text: str) -> None:
        """Something the user should know that does not stop the command."""
        self.clear()
        emit_line(_warning_line(text, json=self._json))

    def clear(self) -> None:
        """Stop any live line (a countdown, a dial's stage) and erase it."""
        if self._countdown is not None:
            self._countdown.set()
            self._countdown = None
        with self._lock:
            if self._shown:
                sys.stderr.write("\r\x1b[2K" + self._after)
                sys.stderr.flush()
                self._shown = False
            self._before = self._after = self._style = self._unstyle = ""

    def _show(self, line: str, stop: threading.Event) -> None:
        with self._lock:
            if stop.is_set():  # cleared meanwhile: the line must not come back
                return
            opening = "" if self._shown else self._before
            sys.stderr.write(opening + "\r\x1b[2K" + self._style + line + self._unstyle)
            sys.stderr.flush()
            self._shown = True

    def _below(self, style: str) -> None:
        """Show the next live line on a line of its own below the cursor, in ``style``; its
        erasure puts the cursor back (for a line shown over a remote terminal's output)."""
        with self._lock:
            # IND then RI scroll if needed and keep the column; DECSC saves the spot;
            # IND and CR move to the line below, which clear() erases before DECRC.
            self._before = "\x1bD\x1bM\x1b7\x1bD"
            self._after = "\x1b8"
            self._style, self._unstyle = style, "\x1b[0m" if style else ""


def _refresh_line(failure: Failure, *, json: bool) -> str:
    if json:
        return render_event("refresh", code=str(failure.code))
    return f"{failure.code}: refreshing the token and trying once more."


def _warning_line(text: str, *, json: bool) -> str:
    return render_event("warning", message=text) if json else f"warning: {clean(text, limit=500)}"


class ShellReporter(StatusReporter):
    """The status reporter, plus what a shell user must know when a session is lost or closed."""

    def shell_lost(self, service: str, failure: Failure) -> None:
        """Say that the shell is gone and that a NEW one is coming."""
        self.clear()
        text = (f"The shell session on {clean(service, limit=100)} was lost "
                f"({failure.code}: {clean(failure.message, limit=300).rstrip('. ')}). "
                "Opening a NEW shell: the old one's state (working directory, "
                "environment, running programs) is not preserved.")
        if self._json:
            emit_line(render_event("session-lost", code=str(failure.code), message=text))
        else:
            emit_line("\r\n" + text)

    def shell_replaced(self, service: str) -> None:
        """The new shell is up."""
        if not self._json:
            emit_line(f"This is a new shell on {clean(service, limit=100)}.")

    def disconnected(self, service: str) -> None:
        """The user typed ``~.``."""
        if self._json:
            emit_line(render_event("disconnected", service=service))
        else:
            emit_line(f"\r\nDisconnected from {clean(service, limit=100)} (~.).")

    def detached(self, service: str, detachment: Detachment) -> None:
        """The session is detached and being resumed: one dim live line on a terminal; a
        ``detached`` event (then ``retry`` events) in JSON; a plain line otherwise."""
        failure = detachment.failure
        if self._json:
            self.clear()
            if detachment.first:
                emit_line(detached_event(detachment, service=service))
            else:
                emit_line(render_retry(failure, detachment.attempt, detachment.delay,
                                       output="json"))
            return
        if not self._live:
            self.clear()
            emit_line(detached_line(detachment, detachment.delay))
            return
        if self._countdown is not None:
            self._countdown.set()
            self._countdown = None
        if not self._shown:
            self._below(_DIM)
        self._count_down(lambda left, width: detached_line(detachment, left, width),
                         detachment.delay)

    def resumed(self, service: str, resumption: Resumption) -> None:
        """The session is back: the line goes; a ``resumed`` event in JSON."""
        self.clear()
        if self._json:
            emit_line(resumed_event(resumption, service=service))
        elif not self._live:
            emit_line(f"Resumed the session on {clean(service, limit=100)}: nothing was lost "
                      f"({resumption.resent} bytes sent again).")


_DIM = "\x1b[0;2m"


def detached_line(detachment: Detachment, left: float, width: int | None = None) -> str:
    """``code: message. Reconnecting in 2.0 s to resume (attempt 1). Ctrl+C to quit``."""
    failure = detachment.failure
    message = clean(failure.message, limit=300).rstrip(". ")
    head = f"{failure.code}: "
    tail = (f". Reconnecting in {left:.1f} s to resume (attempt {detachment.attempt}). "
            "Ctrl+C to quit")
    if width is not None and len(head) + len(message) + len(tail) > width:
        room = width - len(head) - len(tail) - 1
        if room < 12:  # too little to say anything: the code says what happened
            return f"{failure.code}{tail}"
        message = message[:room].rstrip() + "…"
    return head + message + tail


def detached_event(detachment: Detachment, **where: object) -> str:
    """The JSON ``detached`` event: why, the first redial's wait, and the byte counts."""
    failure = detachment.failure
    return render_event("detached", **where, code=str(failure.code), message=failure.message,
                        attempt=detachment.attempt, delay=round(detachment.delay, 3),
                        sent=detachment.sent, received=detachment.received,
                        unacknowledged=detachment.unacknowledged)


def resumed_event(resumption: Resumption, **where: object) -> str:
    """The JSON ``resumed`` event: the byte counts, what was sent again, how long it took."""
    return render_event("resumed", **where, sent=resumption.sent, received=resumption.received,
                        resent=resumption.resent,
                        detached_for=round(resumption.detached_for, 3))


class ForwardReporter:
    """Writes what the forward does: listeners on stdout; connection events on stderr."""

    def __init__(self, settings: Settings) -> None:
        self._json = settings.json
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._refresh_noted = -_REFRESH_NOTE_EVERY

    def _emit(self, line: str) -> None:
        with self._lock:
            emit_line(line)

    def forwarding(self, listeners: Sequence[Listener]) -> None:
        """One line per listener on stdout: ``Forwarding from 127.0.0.1:5432 -> api:5432``."""
        lines = []
        for listener in listeners:
            route = listener.route
            if self._json:
                lines.append(render_event("forwarding", address=listener.host,
                                          local_port=listener.port, service=route.service,
                                          instance=route.instance, remote_port=route.remote))
            else:
                lines.append(f"Forwarding from {listener} -> {clean(str(route), limit=200)}")
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()

    def connection_failed(self, peer: str, route: Route, failure: Failure) -> None:
        """One classified line (or JSON event) for a connection that failed."""
        if self._json:
            record = json_record(failure)
            del record["event"]
            self._emit(render_event("connection-failed", connection=peer, target=str(route),
                                    **record))
            return
        message = clean(failure.message, limit=400).rstrip(". ")
        said = f" (request id {clean(failure.request_id, limit=80)})" if failure.request_id else ""
        self._emit(f"connection {peer} -> {clean(str(route), limit=200)} failed: "
                   f"{failure.code}: {message}{said}")

    def connection_retrying(self, peer: str, route: Route, failure: Failure, attempt: int,
                            delay: float) -> None:
        """The dial of one connection failed transiently and is tried again after ``delay``."""
        if self._json:
            self._emit(render_event("connection-retry", connection=peer, target=str(route),
                                    code=str(failure.code), attempt=attempt,
                                    delay=round(delay, 3), message=failure.message))
            return
        message = clean(failure.message, limit=300).rstrip(". ")
        self._emit(f"connection {peer} -> {clean(str(route), limit=200)}: {failure.code}: "
                   f"{message}; retrying in {delay:.1f} s (attempt {attempt})")

    def connection_detached(self, peer: str, route: Route, detachment: Detachment) -> None:
        """One connection's v2 session lost its connection; its local side waits."""
        if self._json:
            if detachment.first:
                self._emit(detached_event(detachment, connection=peer, target=str(route)))
            return
        if detachment.first:
            failure = detachment.failure
            message = clean(failure.message, limit=300).rstrip(". ")
            self._emit(f"connection {peer} -> {clean(str(route), limit=200)} detached: "
                       f"{failure.code}: {message}; resuming ({detachment.unacknowledged} "
                       "bytes held)")

    def connection_resumed(self, peer: str, route: Route, resumption: Resumption) -> None:
        """One connection's v2 session resumed; nothing was lost."""
        if self._json:
            self._emit(resumed_event(resumption, connection=peer, target=str(route)))
            return
        self._emit(f"connection {peer} -> {clean(str(route), limit=200)} resumed "
                   f"({resumption.resent} bytes sent again)")

    def refreshing(self, failure: Failure) -> None:
        """The token is being renewed (said once however many connections asked)."""
        now = time.monotonic()
        with self._lock:
            if now - self._refresh_noted < _REFRESH_NOTE_EVERY:
                return
            self._refresh_noted = now
        self._emit(_refresh_line(failure, json=self._json))

    def warning(self, text: str) -> None:
        """Something to know that does not stop the forward; each text once."""
        with self._lock:
            if text in self._warned:
                return
            self._warned.add(text)
        self._emit(_warning_line(text, json=self._json))

    def closed(self, count: int) -> None:
        """How many open connections were closed on the way out."""
        if self._json:
            self._emit(render_event("closed", connections=count))
        else:
            self._emit(f"Closed {count} connection{'' if count == 1 else 's'}.")
