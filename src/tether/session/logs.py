"""One ``tether logs`` stream: the query of each dial and the handler of each connection.

Each frame is decoded and printed as soon as it arrives (a frame's end ends
its last record). Resume: the session remembers the cursor of the last record
it handled (printed, filtered out, or a bad line that carried one). When a
connection breaks with a transient failure, the supervisor redials with
``after=<cursor>``; the gateway resumes every instance right after it, so
nothing is lost or repeated. ``tail`` goes only on a dial without a cursor
(``after`` supersedes it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from tether.session.logframes import Entry, decode_frame

if TYPE_CHECKING:
    from tether.client.dial import Connection, ParamValue
    from tether.client.supervisor import Attempt


class LogPrinter(Protocol):
    """Where records go; the CLI implements it (text lines or JSON objects on stdout)."""

    def print(self, entries: Iterable[Entry]) -> str | None:
        """Write the entries; the cursor of the last one that had a cursor (None if none)."""

    def print_raw(self, data: bytes) -> None:
        """Write one frame as it came (for gateways that do not speak tether.v1)."""


class LogSession:
    """The query of each dial and the handler of each connection, sharing the resume cursor."""

    def __init__(self, query: dict[str, ParamValue], printer: LogPrinter, *,
                 raw: bool = False) -> None:
        self.query = query
        self.printer = printer
        self.raw = raw
        self.cursor: str | None = None  # the last record handled; resumes the next dial

    def params(self, attempt: Attempt) -> dict[str, ParamValue]:
        """The first query, or after a cursor: ``after=`` instead of ``tail``."""
        if self.cursor is None or self.raw:
            return self.query
        query = {name: value for name, value in self.query.items() if name != "tail"}
        query["after"] = self.cursor
        return query

    def handle(self, connection: Connection, attempt: Attempt) -> int:
        """Print each frame as it arrives until the stream ends normally.

        Raises TetherError if it breaks.
        """
        printer = self.printer
        while (message := connection.recv()) is not None:
            if self.raw:
                printer.print_raw(message.data)
                continue
            cursor = printer.print(decode_frame(message.data))
            if cursor is not None:
                self.cursor = cursor
        return 0
