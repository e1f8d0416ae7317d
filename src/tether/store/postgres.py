"""The shared store: PostgreSQL through psycopg 3 and a connection pool.

Several gateways use one database. Statements are the same as SQLite's
(``?`` becomes ``%s``); the rate-limit bucket of a credential is one row,
updated by one atomic statement, so the budget holds across gateways.
Writers that change what live sessions depend on add a row to ``events`` and
``NOTIFY tether_events`` in the same transaction; each gateway LISTENs on a
connection of its own and reads the new events when woken.

Every statement has a time limit (``statement_timeout`` and ``lock_timeout``
of the store's timeout); a lost or slow database raises StateUnavailable.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tether.store.base import EVENTS_CHANNEL, Rows, StateUnavailable, Store, Tx
from tether.store.migrations import LOCK_KEY, ensure_signing_key, migrate

try:
    import psycopg
    import psycopg_pool
except ImportError:  # pragma: no cover - the postgres extra is not installed
    psycopg = None  # type: ignore[assignment]
    psycopg_pool = None  # type: ignore[assignment]

log = logging.getLogger("tether.gateway.state")
_PLACEHOLDER = re.compile(r"\?")

#: One upgrade from a credential's token bucket, by the database's clock:
#: (tokens left, granted, the login family revoked).
_ADMIT = """
WITH now AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS t),
bucket AS (
  INSERT INTO rate_buckets AS b (key, tokens, updated, granted)
  SELECT %(key)s, %(burst)s::float8 - 1, now.t, 1 FROM now
  ON CONFLICT (key) DO UPDATE SET
    tokens = LEAST(%(burst)s::float8,
                   b.tokens + GREATEST(0, EXCLUDED.updated - b.updated) * %(rate)s::float8)
             - CASE WHEN LEAST(%(burst)s::float8, b.tokens + GREATEST(0, EXCLUDED.updated
                    - b.updated) * %(rate)s::float8) >= 1 THEN 1 ELSE 0 END,
    granted = CASE WHEN LEAST(%(burst)s::float8, b.tokens + GREATEST(0, EXCLUDED.updated
                   - b.updated) * %(rate)s::float8) >= 1 THEN 1 ELSE 0 END,
    updated = EXCLUDED.updated
  RETURNING tokens, granted)
SELECT bucket.tokens, bucket.granted,
       COALESCE((SELECT revoked FROM refresh_families WHERE id = %(family)s), 0)
FROM bucket
"""


def redact(url: str) -> str:
    """``url`` without its password (and without its query, which may hold one)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _PostgresTx(Tx):
    def __init__(self, conn: Any, store: PostgresStore) -> None:
        self._conn = conn
        self._store = store
        self.notify = False

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Rows:
        self._store.count_trip()
        if not isinstance(params, Mapping):
            sql = _PLACEHOLDER.sub("%s", sql)
            params = tuple(params)
        cursor: Rows = self._conn.execute(sql, params or None)
        return cursor

    def event(self, kind: str, ident: str) -> None:
        super().event(kind, ident)
        if not self.notify:
            self.notify = True
            self.execute(f"NOTIFY {EVENTS_CHANNEL}")


class PostgresStore(Store):
    """A pool of connections to one PostgreSQL database, and one connection that LISTENs."""

    kind = "postgresql"
    shared = True

    def __init__(self, url: str, *, timeout: float = 5.0, pool_size: int = 10) -> None:
        super().__init__(timeout)
        if psycopg is None or psycopg_pool is None:
            raise ValueError("a postgresql:// state needs psycopg: pip install 'tether[postgres]'")
        self.location = redact(url)
        self._url = url
        millis = max(1, int(timeout * 1000))
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, math.ceil(timeout)),
            "application_name": "tether-gateway",
            "options": f"-c statement_timeout={millis} -c lock_timeout={millis} "
                       f"-c idle_in_transaction_session_timeout={millis * 4}",
        }
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), kwargs=self._kwargs, open=False,
            timeout=timeout, name="tether-state", reconnect_timeout=max(1.0, timeout),
            num_workers=2)
        self._listener: Any = None
        self._listen_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        try:  # one connection first: its error says why (refused, no such database...)
            with psycopg.connect(url, **self._kwargs) as conn, conn.transaction():
                tx = _PostgresTx(conn, self)
                tx.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))
                migrate(tx, "postgresql")
                ensure_signing_key(tx)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StateUnavailable(reason) from None
        self._pool.open(wait=False)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        assert psycopg is not None and psycopg_pool is not None
        try:
            with self._pool.connection(timeout=self.timeout) as conn:
                try:
                    yield conn
                except psycopg.OperationalError:
                    if conn.broken:  # the database went away: drop the other idle ones too
                        threading.Thread(target=self._pool.check, daemon=True).start()
                    raise
        except psycopg_pool.PoolTimeout:
            raise StateUnavailable(f"no connection to the state database within "
                                   f"{self.timeout:g} s") from None
        except psycopg.OperationalError as exc:
            raise StateUnavailable(f"the state database did not answer: "
                                   f"{type(exc).__name__}") from None

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A pooled connection inside BEGIN ... COMMIT."""
        with self._connection() as conn:
            self.count_trip(2)  # BEGIN, COMMIT
            with conn.transaction():
                yield _PostgresTx(conn, self)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A pooled connection in autocommit: each statement is one round trip."""
        with self._connection() as conn:
            yield _PostgresTx(conn, self)

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in autocommit: one round trip."""
        with self._connection() as conn:
            return _PostgresTx(conn, self).execute(sql, params).rowcount

    def admit(self, key: str, rate: float, burst: int,
              family: str | None) -> tuple[float, bool]:
        """One statement: take from the credential's shared bucket, and read its family."""
        with self.read() as tx:
            row = tx.execute(_ADMIT, {"key": key, "rate": rate, "burst": burst,
                                      "family": family}).fetchone()
        tokens, granted, revoked = float(row[0]), bool(row[1]), bool(row[2])
        return (0.0 if granted else (1.0 - tokens) / rate), revoked

    def wait_for_change(self, timeout: float) -> None:
        """Wait for a NOTIFY on the events channel, ``timeout``, or ``interrupt``.

        A new listening connection returns at once: what was missed is read next.
        """
        assert psycopg is not None
        with self._listen_lock:
            if self._closed:
                return
            try:
                if self._listener is None:
                    self._listener = psycopg.connect(self._url, **self._kwargs)
                    self._listener.execute(f"LISTEN {EVENTS_CHANNEL}")
                    return
                listener = self._listener
            except psycopg.OperationalError as exc:
                self._drop_listener()
                raise StateUnavailable(f"cannot listen for events: {type(exc).__name__}") \
                    from None
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                if self._wake.is_set():
                    self._wake.clear()
                    return
                for _ in listener.notifies(timeout=min(left, 0.5), stop_after=1):
                    return
        except psycopg.OperationalError:
            with self._listen_lock:
                self._drop_listener()
            raise StateUnavailable("the event connection to the state database was lost") \
                from None

    def interrupt(self) -> None:
        """Make ``wait_for_change`` return (within half a second)."""
        self._wake.set()

    def _drop_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None

    def close(self) -> None:
        """Close the pool and the listening connection."""
        with self._listen_lock:
            self._closed = True
            self._drop_listener()
        self._pool.close()
