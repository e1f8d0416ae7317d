"""The gateway's state directory: its signing secret (mode 0600) and its SQLite database.

Several processes may use one state directory at once (the server, and
``tether gateway approve`` run by an operator), so the database runs in WAL
mode with a busy timeout.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV_STATE_DIR = "TETHER_GATEWAY_STATE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
    created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS device_codes (
    hash TEXT PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, expires REAL NOT NULL,
    interval REAL NOT NULL, last_poll REAL, status TEXT NOT NULL DEFAULT 'pending',
    role TEXT, sub TEXT);
CREATE TABLE IF NOT EXISTS refresh_families (
    id TEXT PRIMARY KEY, sub TEXT NOT NULL, role TEXT NOT NULL, created REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash TEXT PRIMARY KEY, family TEXT NOT NULL REFERENCES refresh_families(id),
    expires REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0);
"""


def default_state_dir() -> Path:
    """``$TETHER_GATEWAY_STATE``, else the platform's user state directory for tether/gateway."""
    override = os.environ.get(ENV_STATE_DIR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("tether")) / "gateway"


class StateStore:
    """The secret and the database of one state directory. Thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.secret = _load_secret(directory / "secret")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(directory / "gateway.sqlite3", timeout=10.0,
                                   check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection, inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


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
    return data
