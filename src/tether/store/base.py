"""The store interface: transactions with ``?`` placeholders, admission, events, errors."""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

EVENTS_CHANNEL = "tether_events"


class StateUnavailable(Exception):
    """Raised when the state database cannot be reached, or does not answer in time."""


class Rows(Protocol):
    """What a statement gives back (a DB-API cursor)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(abc.ABC):
    """One transaction (or, for reads, one connection): statements with ``?`` placeholders."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Rows:
        """Run one statement (a mapping of named parameters: PostgreSQL's own statements)."""

    def event(self, kind: str, ident: str) -> None:
        """Record that something other gateways must hear about changed (revocations, keys)."""
        self.execute("INSERT INTO events (kind, ident, at) VALUES (?, ?, ?)",
                     (kind, ident, _now()))


class Store(abc.ABC):
    """The state of one gateway deployment. Thread-safe; every method may block."""

    kind: str  # "sqlite" or "postgresql"
    shared: bool  # whether gateways on other machines can share it
    location: str  # where it is, printable (no password)
    directory: Path | None = None  # the SQLite store's directory

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._trips = 0
        self._trips_lock = threading.Lock()

    # --- statements ------------------------------------------------------------------

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Tx]:
        """A write transaction, committed at the end of the block (rolled back on error)."""

    @abc.abstractmethod
    def read(self) -> AbstractContextManager[Tx]:
        """A connection for reads, outside any write transaction."""

    @abc.abstractmethod
    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement on its own (atomic by itself: no BEGIN, no COMMIT); its row count."""

    @abc.abstractmethod
    def admit(self, key: str, rate: float, burst: int,
              family: str | None) -> tuple[float, bool]:
        """Take one upgrade from ``key``'s budget: (seconds to wait or 0, family revoked)."""

    @abc.abstractmethod
    def wait_for_change(self, timeout: float) -> None:
        """Block until another writer may have recorded events, or ``timeout`` passed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close every connection."""

    def interrupt(self) -> None:  # noqa: B027 - most stores need not be woken
        """Wake a thread blocked in ``wait_for_change`` (before ``close``)."""

    # --- shared helpers --------------------------------------------------------------

    def count_trip(self, count: int = 1) -> None:
        """Count database round trips (for the benchmark)."""
        with self._trips_lock:
            self._trips += count

    @property
    def round_trips(self) -> int:
        """Database round trips made so far."""
        return self._trips

    @property
    def secret(self) -> bytes:
        """The secret of the key that signs new tokens."""
        with self.read() as tx:
            row = tx.execute("SELECT secret FROM signing_keys WHERE retired IS NULL "
                             "ORDER BY created DESC LIMIT 1").fetchone()
        if row is None:
            raise StateUnavailable("no signing key in the state database")
        return str(row[0]).encode("ascii")

    def last_event(self) -> int:
        """The id of the newest event."""
        with self.read() as tx:
            row = tx.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)

    def events_after(self, last: int, gaps: Sequence[int]) -> list[tuple[int, str, str]]:
        """Events newer than ``last``, and any of ``gaps`` that committed late."""
        holes = ",".join("?" * len(gaps))
        where = f"id > ? OR id IN ({holes})" if gaps else "id > ?"
        with self.read() as tx:
            rows = tx.execute(f"SELECT id, kind, ident FROM events WHERE {where} "  # noqa: S608
                              "ORDER BY id LIMIT 1000", (last, *gaps)).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def maintain(self, now: float) -> None:
        """Delete what nobody needs any more: old events, device codes, idle buckets."""
        with self.transaction() as tx:
            tx.execute("DELETE FROM events WHERE at < ?", (now - 24 * 3600,))
            tx.execute("DELETE FROM device_codes WHERE expires < ?", (now - 3600,))
            tx.execute("DELETE FROM rate_buckets WHERE updated < ?", (now - 3600,))


def _now() -> float:
    return time.time()


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a directory."""
    text = str(location)
    return text.startswith(("postgresql://", "postgres://"))
