"""The schema, as numbered migrations applied in order when a store is opened.

Each migration is written once; ``{real}`` and ``{serial}`` become the
column types of the dialect (PostgreSQL's ``real`` is single precision,
too coarse for Unix times). The store runs :func:`migrate` inside one write
transaction that it has serialized first (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: ``pg_advisory_xact_lock``), so gateways starting together apply
each migration once. A migration is never edited once released: add one.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from tether.store.base import Tx

#: The advisory lock every PostgreSQL migration and key rotation takes (any fixed number).
LOCK_KEY = 0x7E7E_0018

_TYPES = {
    "sqlite": {"real": "REAL", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"real": "DOUBLE PRECISION", "serial": "BIGSERIAL PRIMARY KEY"},
}

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "tokens, device codes, refresh families", """
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
    created {real} NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS device_codes (
    hash TEXT PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, expires {real} NOT NULL,
    interval {real} NOT NULL, last_poll {real}, status TEXT NOT NULL DEFAULT 'pending',
    role TEXT, sub TEXT);
CREATE TABLE IF NOT EXISTS refresh_families (
    id TEXT PRIMARY KEY, sub TEXT NOT NULL, role TEXT NOT NULL, created {real} NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash TEXT PRIMARY KEY, family TEXT NOT NULL REFERENCES refresh_families(id),
    expires {real} NOT NULL, used INTEGER NOT NULL DEFAULT 0);
"""),
    (2, "signing keys, events, rate buckets, audit", """
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY, secret TEXT NOT NULL, created {real} NOT NULL, retired {real});
CREATE TABLE IF NOT EXISTS events (
    id {serial}, kind TEXT NOT NULL, ident TEXT NOT NULL, at {real} NOT NULL);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS rate_buckets (
    key TEXT PRIMARY KEY, tokens {real} NOT NULL, updated {real} NOT NULL,
    granted INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY, request_id TEXT NOT NULL, gateway TEXT NOT NULL, sub TEXT NOT NULL,
    credential TEXT NOT NULL, role TEXT NOT NULL, endpoint TEXT NOT NULL, service TEXT NOT NULL,
    instance TEXT, peer TEXT, forwarded_for TEXT, opened {real} NOT NULL, ended {real},
    close_code INTEGER, close_reason TEXT);
CREATE INDEX IF NOT EXISTS audit_opened ON audit (opened);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family);
"""),
)

LATEST = MIGRATIONS[-1][0]


def statements(sql: str, dialect: str) -> list[str]:
    """The statements of one migration, in ``dialect``."""
    text = sql.format(**_TYPES[dialect])
    return [part.strip() for part in text.split(";") if part.strip()]


def migrate(tx: Tx, dialect: str) -> list[int]:
    """Apply the migrations ``tx``'s database lacks (the caller holds the lock); their numbers."""
    tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
               f"name TEXT NOT NULL, applied {_TYPES[dialect]['real']} NOT NULL)")
    done = {int(row[0]) for row in tx.execute("SELECT version FROM schema_migrations").fetchall()}
    if done and max(done) > LATEST:
        raise ValueError(f"the state database has schema version {max(done)}, newer than this "
                         f"tether knows ({LATEST}); upgrade tether")
    applied = []
    for version, name, sql in MIGRATIONS:
        if version in done:
            continue
        for statement in statements(sql, dialect):
            tx.execute(statement)
        tx.execute("INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)",
                   (version, name, time.time()))
        applied.append(version)
    return applied


def new_key_id(secret: str) -> str:
    """A key id: a short digest of the secret (it names the key, and reveals nothing of it)."""
    return hashlib.sha256(b"tether-kid:" + secret.encode("ascii")).hexdigest()[:16]


def ensure_signing_key(tx: Tx, initial: str | None = None) -> None:
    """Make a signing key when there is none that signs (``initial``, else a random one)."""
    row = tx.execute("SELECT kid FROM signing_keys WHERE retired IS NULL LIMIT 1").fetchone()
    if row is not None:
        return
    secret = initial or secrets.token_hex(32)
    tx.execute("INSERT INTO signing_keys (kid, secret, created) VALUES (?, ?, ?) "
               "ON CONFLICT (kid) DO NOTHING", (new_key_id(secret), secret, time.time()))


def rotate_signing_key(tx: Tx, now: float) -> str:
    """Retire the signing key (it still verifies its tokens) and make a new one; its id."""
    secret = secrets.token_hex(32)
    kid = new_key_id(secret)
    tx.execute("UPDATE signing_keys SET retired = ? WHERE retired IS NULL", (now,))
    tx.execute("INSERT INTO signing_keys (kid, secret, created) VALUES (?, ?, ?)",
               (kid, secret, now))
    tx.event("keys", kid)
    return kid
