"""The embedded store: SQLite in WAL mode in one directory, with the first signing secret.

Several processes may use one directory at once (the gateway, and ``tether
gateway approve`` run by an operator). Writes take ``BEGIN IMMEDIATE`` on
the one writing connection; reads use a connection per thread and never wait
for a writer (WAL). Rate-limit budgets stay in this process's memory. Changes
made by another process reach the gateway through the events table, which
the gateway polls about once a second (``wait_for_change``).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tether.store.base import Rows, StateUnavailable, Store, Tx
from tether.store.migrations import ensure_signing_key, migrate
from tether.store.ratelimit import RateLimiter

DATABASE = "gateway.sqlite3"
SECRET_FILE = "secret"  # noqa: S105 - a file name


class _SQLiteTx(Tx):
    def __init__(self, db: sqlite3.Connection, store: SQLiteStore) -> None:
        self._db = db
        self._store = store

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Rows:
        self._store.count_trip()
        try:
            return self._db.execute(sql, params if isinstance(params, Mapping) else tuple(params))
        except sqlite3.OperationalError as exc:
            raise StateUnavailable(f"the state database did not answer: {exc}") from None

    def event(self, kind: str, ident: str) -> None:
        super().event(kind, ident)
        self._store.changed = True


class SQLiteStore(Store):
    """The secret file and the SQLite database of one state directory."""

    kind = "sqlite"
    shared = False

    def __init__(self, directory: Path, *, timeout: float = 10.0) -> None:
        super().__init__(timeout)
        self.directory = directory
        self.location = str(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = _load_secret(directory / SECRET_FILE)
        path = directory / DATABASE
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._path = path
        self._lock = threading.Lock()  # the writing connection
        self._all_lock = threading.Lock()  # the list of every connection
        self._readers = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._wake = threading.Event()
        self.changed = False
        self.limiter = RateLimiter(1.0, 1)
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        with self.transaction() as tx:
            migrate(tx, "sqlite")
            ensure_signing_key(tx, secret.decode("ascii"))

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self._path, timeout=self.timeout, check_same_thread=False,
                                 isolation_level=None)
            db.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StateUnavailable(f"cannot open {self._path}: {exc}") from None
        with self._all_lock:
            self._all.append(db)
        return db

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """The writing connection inside ``BEGIN IMMEDIATE`` ... ``COMMIT``."""
        with self._lock:
            self.changed = False
            tx = _SQLiteTx(self._db, self)
            tx.execute("BEGIN IMMEDIATE")
            try:
                yield tx
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            tx.execute("COMMIT")
            if self.changed:
                self._wake.set()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """This thread's reading connection (autocommit: each statement sees the last commit)."""
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            db = self._readers.db = self._connect()
        yield _SQLiteTx(db, self)

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement on the writing connection, in autocommit."""
        with self._lock:
            return _SQLiteTx(self._db, self).execute(sql, params).rowcount

    def admit(self, key: str, rate: float, burst: int,
              family: str | None) -> tuple[float, bool]:
        """The budget from this process's memory; the family's revocation from the database."""
        limiter = self.limiter
        if (limiter.rate, limiter.burst) != (rate, burst):
            limiter = self.limiter = RateLimiter(rate, burst)
        wait = limiter.take(key)
        if family is None or wait > 0:
            return wait, False
        with self.read() as tx:
            row = tx.execute("SELECT revoked FROM refresh_families WHERE id = ?",
                             (family,)).fetchone()
        return wait, bool(row and row[0])

    def wait_for_change(self, timeout: float) -> None:
        """Wait for a write of this process, or ``timeout`` (other processes are polled)."""
        self._wake.wait(min(timeout, 1.0))
        self._wake.clear()

    def interrupt(self) -> None:
        """Wake the waiting thread."""
        self._wake.set()

    def close(self) -> None:
        """Close every connection."""
        with self._lock, self._all_lock:
            for db in self._all:
                db.close()
            self._all.clear()


def _load_secret(path: Path) -> bytes:
    """The signing secret at ``path``, made (mode 0600, 32 random bytes) when missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes().strip()
    else:
        value = secrets.token_hex(32).encode("ascii")
        with os.fdopen(fd, "wb") as handle:
            handle.write(value)
        return value
    if len(data) < 32:
        raise ValueError(f"signing secret {path} is too short; delete it to make a new one")
    try:
        data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"signing secret {path} is not text; delete it to make a new one") \
            from None
    return data
