"""Log rows to stdout: whole lines, one write per batch, peer text made safe.

Text lines are ``[instance] message`` (kubectl's ``--prefix`` shape), with
``--timestamps`` ``[instance] TS message``, with ``--no-prefix`` the message
alone. On a terminal the prefix has a colour that is stable per instance
(CRC-32 of the name), unless NO_COLOR is set or TERM is dumb; in a pipe, no
colour. A message spanning several lines gets the prefix on each. JSON output
(``-o json``) is one object per record with the five wire fields.

Messages are shown without control characters or escape sequences; the common
case, a message with none (``str.isprintable``), skips the cleaning. A line
that is not a valid record is printed raw (cleaned, cut) in text mode and
skipped in JSON mode, with one warning per kind of fault.
"""

from __future__ import annotations

import json.encoder
import os
import select
import signal
import sys
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tether.protocol import BadRecord
from tether.session.logframes import Entry
from tether.text import strip_control

#: Colours of instance prefixes: the six ANSI colours and their bright forms (no black/white).
PALETTE = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
#: A bad line is shown cut to this many characters.
BAD_LINE_LIMIT = 4096
_PREFIX_CACHE = 4096
_SEPARATORS = str.maketrans({"\u2028": "\n", "\u2029": "\n"})
_encode = json.encoder.encode_basestring
_encode_ascii = json.encoder.encode_basestring_ascii


@dataclass(frozen=True)
class Style:
    """How rows are printed."""

    json: bool = False
    color: bool = False
    prefix: bool = True
    timestamps: bool = False
    instances: frozenset[str] | None = None  # print only these (None: all)


def use_color(fd: int, environ: dict[str, str] | None = None) -> bool:
    """Colour when ``fd`` is a terminal, NO_COLOR is unset or empty, and TERM is not dumb."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(fd)
    except OSError:
        return False


def color_of(instance: str) -> int:
    """The ANSI colour code of ``instance``: the same in every run and on every machine."""
    return PALETTE[zlib.crc32(instance.encode("utf-8", "replace")) % len(PALETTE)]


def clean_lines(message: str) -> list[str]:
    """``message`` without controls or escapes, split at its line breaks (tabs are kept)."""
    text = strip_control(message.translate(_SEPARATORS), keep_newlines=True,
                         limit=len(message) + 1)
    return text.split("\n")


def bad_kind(reason: str) -> str:
    """The kind of a BadRecord's fault, for warning once per kind."""
    if reason.startswith("missing"):
        return "missing fields"
    if reason.startswith("line longer"):
        return "too long"
    return reason


class LogPrinter:
    """Turns batches of entries into bytes and writes each batch with one ``write``."""

    def __init__(self, write: Callable[[bytes], None], style: Style,
                 warn: Callable[[str], None]) -> None:
        self._write = write
        self._style = style
        self._warn = warn
        self._warned: set[str] = set()
        self._prefixes: dict[str, str] = {}

    def print(self, entries: Iterable[Entry]) -> str | None:
        """Write the entries; the cursor of the last one that had a cursor (None if none).

        Entries of instances that are filtered out are not printed, but their
        cursor counts: the stream has moved past them.
        """
        render = self._json_row if self._style.json else self._text_row
        only = self._style.instances
        parts: list[str] = []
        cursor: str | None = None
        for entry in entries:
            if type(entry) is tuple:
                cursor = entry[0]
                if only is None or entry[2] in only:
                    parts.append(render(entry))
            else:
                assert isinstance(entry, BadRecord)
                if entry.cursor is not None:
                    cursor = entry.cursor
                shown = self._bad(entry)
                if shown:
                    parts.append(shown)
        if parts:
            self._write("".join(parts).encode("utf-8", "replace"))
        return cursor

    def print_raw(self, data: bytes) -> None:
        """One frame as it came (decoded, cleaned), ending with a newline."""
        text = data.decode("utf-8", "replace")
        cleaned = "\n".join(clean_lines(text.removesuffix("\n")))
        self._write((cleaned + "\n").encode("utf-8", "replace"))

    # --- rendering -----------------------------------------------------------------

    def _text_row(self, row: tuple[str, str, str, str, str]) -> str:
        _, ts, instance, _, message = row
        prefix = self._prefixes.get(instance)
        if prefix is None:
            prefix = self._prefix(instance)
        if self._style.timestamps:
            prefix += (ts if ts.isprintable() else "".join(clean_lines(ts))) + " "
        if message.isprintable():
            return prefix + message + "\n"
        return "".join(prefix + line + "\n" for line in clean_lines(message))

    def _prefix(self, instance: str) -> str:
        if not self._style.prefix:
            prefix = ""
        else:
            name = "".join(clean_lines(instance))[:200]
            prefix = (f"\x1b[{color_of(instance)}m[{name}]\x1b[0m " if self._style.color
                      else f"[{name}] ")
        if len(self._prefixes) >= _PREFIX_CACHE:
            self._prefixes.clear()
        self._prefixes[instance] = prefix
        return prefix

    @staticmethod
    def _json_row(row: tuple[str, str, str, str, str]) -> str:
        cursor, ts, instance, stream, message = row
        line = (f'{{"cursor":{_encode(cursor)},"ts":{_encode(ts)},'
                f'"instance":{_encode(instance)},"stream":{_encode(stream)},'
                f'"message":{_encode(message)}}}')
        if not line.isprintable():  # raw DEL, C1, bidi controls, surrogates: escape them
            line = (f'{{"cursor":{_encode_ascii(cursor)},"ts":{_encode_ascii(ts)},'
                    f'"instance":{_encode_ascii(instance)},"stream":{_encode_ascii(stream)},'
                    f'"message":{_encode_ascii(message)}}}')
        return line + "\n"

    def _bad(self, bad: BadRecord) -> str | None:
        kind = bad_kind(bad.reason)
        if kind not in self._warned:
            self._warned.add(kind)
            what = "skipped" if self._style.json else "printed as it came, cleaned"
            self._warn(f"the gateway sent a line that is not a valid log record "
                       f"({bad.reason}): {what}; further such lines are not reported")
        if self._style.json:
            return None
        text = bad.raw[: BAD_LINE_LIMIT * 4].decode("utf-8", "replace")
        shown = " ".join(clean_lines(text))
        if len(shown) > BAD_LINE_LIMIT:
            shown = shown[: BAD_LINE_LIMIT - 1] + "…"
        return shown + "\n"


# --- writing ----------------------------------------------------------------------------

_DEFERRED = frozenset(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, name))


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``; Ctrl+C and SIGTERM wait until it is all out.

    So an interrupt never leaves half a line: the signal is held during the
    write (in the main thread) and acted on right after it.
    """
    hold = (hasattr(signal, "pthread_sigmask")
            and threading.current_thread() is threading.main_thread())
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED) if hold else None
    try:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:  # a non-blocking stdout: wait until it takes more
                select.select([], [fd], [])
                continue
            view = view[written:]
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stdout_writer() -> Callable[[bytes], None]:
    """A function writing bytes straight to stdout's file descriptor (or its buffer)."""
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced stdout (tests): write through it
        return _write_stream

    def write(data: bytes) -> None:
        write_all(fd, data)

    return write


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def _write_stream(data: bytes) -> None:
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        buffer.write(data)
    else:
        sys.stdout.write(data.decode("utf-8", "replace"))
    sys.stdout.flush()
