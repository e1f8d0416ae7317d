"""Where the gateway keeps its state: SQLite in a directory, or PostgreSQL shared by gateways.

``open_store(location)`` takes a directory (the embedded default) or a
``postgresql://`` URL. Both stores speak the same SQL through :class:`Tx`
(``?`` placeholders), run their versioned migrations when opened, and keep
one signing key ready. What differs lives in each store: connections, the
rate-limit bucket (memory for SQLite, a row for PostgreSQL), and how a
change made elsewhere wakes the gateway (a poll of the events table, or
LISTEN/NOTIFY).

Every call blocks: the gateway runs them in threads, never on its event loop.
A store that cannot answer raises :class:`StateUnavailable`.
"""

from __future__ import annotations

from pathlib import Path

from tether.store.base import (
    EVENTS_CHANNEL,
    Rows,
    StateUnavailable,
    Store,
    Tx,
    is_url,
)

__all__ = ["EVENTS_CHANNEL", "Rows", "StateUnavailable", "Store", "Tx", "is_url", "open_store"]


def open_store(location: str | Path, *, timeout: float = 5.0, pool_size: int = 10) -> Store:
    """The store at ``location``: a directory (SQLite) or a ``postgresql://`` URL, migrated.

    Raises StateUnavailable when the database cannot be reached, and ValueError
    when the location is not usable (an unreadable directory, no psycopg).
    """
    if is_url(location):
        from tether.store.postgres import PostgresStore

        return PostgresStore(str(location), timeout=timeout, pool_size=pool_size)
    from tether.store.sqlite import SQLiteStore

    return SQLiteStore(Path(location).expanduser(), timeout=timeout)
