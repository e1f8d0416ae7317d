"""Single-flight refresh: one refresh at a time per gateway, across threads and processes.

Threads of one process share a lock per gateway; processes share an
``fcntl.flock`` on a lock file per gateway in the user's state directory.
Whoever holds both re-reads the keyring first: when another process has
already rotated the pair, its result is used and the old refresh token is not
spent again (the gateway would revoke the whole family). The new pair is
saved only after it arrived.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tether.auth.contexts import state_dir
from tether.auth.oauth import Endpoints, refresh_grant
from tether.auth.store import KeyringStore, StoredTokens
from tether.client.http import HttpOptions
from tether.errors import Code, Failure, Phase, TetherError

LOCK_TIMEOUT = 30.0  # longer than one token request's timeout
_POLL = 0.02
_registry_lock = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}


def _thread_lock(gateway: str) -> threading.Lock:
    with _registry_lock:
        return _thread_locks.setdefault(gateway, threading.Lock())


def lock_path(gateway: str, lock_dir: Path | None = None) -> Path:
    """The lock file of ``gateway``: a hash of its URL, so any URL makes a safe file name."""
    digest = hashlib.sha256(gateway.encode()).hexdigest()[:24]
    return (lock_dir or state_dir() / "locks") / f"refresh-{digest}.lock"


def _busy(gateway: str, what: str) -> TetherError:
    return TetherError(Failure.of(
        Code.REFRESH_FAILED, Phase.CREDENTIALS,
        f"another refresh of the token for {gateway} {what} did not finish "
        f"within {LOCK_TIMEOUT:.0f} s",
        hint="Try again; if it persists, look for a stuck tether process."))


@contextlib.contextmanager
def gateway_lock(gateway: str, lock_dir: Path | None = None,
                 timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the refresh lock of ``gateway``: this process's threads first, then other processes.

    The cross-process half is filelock's (flock on POSIX, msvcrt on Windows), so
    that a refresh is single-flight on every platform.
    """
    import filelock  # imported where used: tether --help never pays for it

    thread_lock = _thread_lock(gateway)
    if not thread_lock.acquire(timeout=timeout):
        raise _busy(gateway, "in this process")
    try:
        path = lock_path(gateway, lock_dir)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = filelock.FileLock(path, timeout=timeout, mode=0o600)
        try:
            lock.acquire(poll_interval=_POLL)
        except filelock.Timeout:
            raise _busy(gateway, "in another process") from None
        try:
            yield
        finally:
            lock.release()
    finally:
        thread_lock.release()


def refresh_locked(gateway: str, held: StoredTokens, *, store: KeyringStore,
                   endpoints: Endpoints, http: HttpOptions, fresh: Callable[[str], bool],
                   refused: str | None = None) -> StoredTokens:
    """With :func:`gateway_lock` held: the newest pair, fetching one only if nobody else did.

    ``held`` is the pair the caller used. When the keyring holds another one
    and ``fresh`` says its access token is not near expiry, that one is
    returned. ``refused`` is a refresh token already refused in this process:
    it is not sent again.
    """
    stored = store.load(gateway)
    if stored is None:
        raise TetherError(Failure.of(
            Code.NO_CREDENTIALS, Phase.CREDENTIALS,
            f"the credential for {gateway} was removed from the keyring (logged out)",
            hint=f"Run `tether auth login {gateway}`."))
    if stored.access_token != held.access_token and fresh(stored.access_token):
        return stored
    if stored.refresh_token is None:
        raise TetherError(Failure.of(
            Code.REFRESH_FAILED, Phase.CREDENTIALS,
            f"the stored credential for {gateway} has no refresh token",
            hint=f"Run `tether auth login {gateway}` to sign in again."))
    if stored.refresh_token == refused:
        raise TetherError(Failure.of(
            Code.REFRESH_FAILED, Phase.CREDENTIALS,
            f"the token endpoint already refused the refresh token for {gateway}",
            hint=f"Run `tether auth login {gateway}` to sign in again."))
    response = refresh_grant(endpoints, stored.refresh_token, http)
    new = StoredTokens(response.access_token, response.refresh_token or stored.refresh_token)
    store.save(gateway, new)
    return new
