"""A pytest plugin that fails any test whose output shows a secret it made.

Enabled for the whole suite from ``tests/conftest.py`` (``pytest_configure``
registers this module). For each test it knows:

- every secret minted while it ran (setup included): JWTs from
  ``TokenService.mint_jwt``, API tokens from ``TokenService.create_api_token``,
  refresh tokens from ``OAuth._new_refresh``, each gateway's signing secret, the
  session id of every tether.v2 session a gateway in this process opens, and
  every ``TETHER_TOKEN`` passed to ``tests.cli.tether_env``; tests may add more
  with :func:`register_secret`;
- every text it can see: the captured stdout, stderr and log sections of the
  test's reports, every log record emitted (the ``tether`` logger is opened to
  INFO for this), and the stdout and stderr of every subprocess run through
  ``tests.cli`` (recorded with :func:`record_output`).

A hit fails the test (at the phase where it is seen) with a message naming the
kind of secret and where it showed, never the value. A test that prints a token
on purpose is marked ``@pytest.mark.secrets_allowed``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

MARKER = "secrets_allowed"
PLUGIN_NAME = "tether-secrets-guard"
_MIN_PIECE = 16  # shorter fragments would match by chance


@dataclass
class _State:
    active: bool = False
    secrets: dict[str, str] = field(default_factory=dict)  # value -> kind
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (where, text)
    logs: list[str] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def register_secret(value: str | bytes | None, kind: str = "token") -> None:
    """Treat ``value`` as a secret of the current test."""
    if not value:
        return
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    with _state.lock:
        _state.secrets.setdefault(text, kind)


def record_output(where: str, *texts: str | bytes | None) -> None:
    """Keep ``texts`` (a subprocess's stdout, stderr ...) to be scanned for the current test."""
    if not _state.active:
        return
    with _state.lock:
        for text in texts:
            if text:
                blob = text.decode(errors="replace") if isinstance(text, bytes) else text
                _state.outputs.append((where, blob))


def forget_outputs() -> None:
    """Drop the recorded subprocess outputs and log lines (for the guard's own self-test)."""
    with _state.lock:
        _state.outputs.clear()
        _state.logs.clear()


def pieces(secret: str) -> set[str]:
    """What must not appear: the whole value, and a JWT's signature on its own."""
    out = {secret}
    parts = secret.split(".")
    if len(parts) == 3 and len(parts[2]) >= _MIN_PIECE:
        out.add(parts[2])
    return {piece for piece in out if len(piece) >= 8}


def find_leaks(secrets: dict[str, str], texts: list[tuple[str, str]]) -> list[str]:
    """One line per (kind of secret, place) where a secret appears; never the secret itself."""
    found = []
    for where, text in texts:
        for secret, kind in secrets.items():
            if any(piece in text for piece in pieces(secret)):
                found.append(f"a secret ({kind}) appeared in {where}")
    return sorted(set(found))


def leaks() -> list[str]:
    """The leaks seen so far in the current test."""
    with _state.lock:
        texts = [*_state.outputs, *(("a log record", line) for line in _state.logs),
                 *_state.sections]
        return find_leaks(dict(_state.secrets), texts)


# --- registration of minted secrets --------------------------------------------------------------


def _registering(method: Callable[..., Any], kind: str) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value = method(*args, **kwargs)
        register_secret(value, kind)
        return value
    wrapper.__secrets_guard__ = True  # type: ignore[attr-defined]
    return wrapper


def _patch_minting() -> None:
    from tether.gateway.oauth import OAuth
    from tether.gateway.state import StateStore
    from tether.gateway.tokens import TokenService
    from tether.store.postgres import PostgresStore

    for owner, name, kind in ((TokenService, "mint_jwt", "JWT"),
                              (TokenService, "create_api_token", "API token"),
                              (OAuth, "_new_refresh", "refresh token")):
        method = getattr(owner, name)
        if not getattr(method, "__secrets_guard__", False):
            setattr(owner, name, _registering(method, kind))
    for store in (StateStore, PostgresStore):
        _patch_store(store)
    _patch_session_ids()


class _SessionIds:
    """Stands in for the ``secrets`` module of the gateway's resumable sessions: every id it
    makes is registered."""

    __secrets_guard__ = True

    def __init__(self, real: Any) -> None:
        self._real = real

    def token_urlsafe(self, nbytes: int | None = None) -> str:
        value: str = self._real.token_urlsafe(nbytes)
        register_secret(value, "session id")
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _patch_session_ids() -> None:
    from tether.gateway import resumable

    real = getattr(resumable, "secrets")
    if not getattr(real, "__secrets_guard__", False):
        setattr(resumable, "secrets", _SessionIds(real))


def _patch_store(store: Any) -> None:
    init = store.__init__
    if not getattr(init, "__secrets_guard__", False):
        @functools.wraps(init)
        def state_init(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            register_secret(self.secret, "signing secret")
        state_init.__secrets_guard__ = True  # type: ignore[attr-defined]
        store.__init__ = state_init


class _Recorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a record that cannot format is not ours to judge
            return
        with _state.lock:
            _state.logs.append(text)


# --- hooks ----------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: the test shows a token value on purpose")
    _patch_minting()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    with _state.lock:
        _state.secrets.clear()
        _state.outputs.clear()
        _state.logs.clear()
        _state.sections.clear()
        _state.reported.clear()
        _state.active = True


@pytest.fixture(autouse=True)
def _secrets_guard_logs() -> Iterator[None]:
    recorder = _Recorder(logging.DEBUG)
    root = logging.getLogger()
    tether = logging.getLogger("tether")
    level = tether.level
    if level == logging.NOTSET or level > logging.INFO:
        tether.setLevel(logging.INFO)
    root.addHandler(recorder)
    try:
        yield
    finally:
        root.removeHandler(recorder)
        tether.setLevel(level)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not _state.active or item.get_closest_marker(MARKER) is not None:
        return
    with _state.lock:
        _state.sections.extend((f"the {title.lower()}", text) for title, text in report.sections
                               if f"the {title.lower()}" not in {s[0] for s in _state.sections})
    all_found = leaks()
    found = [line for line in all_found if line not in _state.reported]
    if report.when == "teardown":
        _state.active = False
    if all_found:
        report.sections = [(title, redact(text)) for title, text in report.sections]
    if not found or report.skipped:
        return
    _state.reported.update(found)
    report.outcome = "failed"
    report.longrepr = "secrets guard: " + "; ".join(found)


def redact(text: str) -> str:
    """``text`` with every known secret of the current test replaced."""
    with _state.lock:
        secrets = list(_state.secrets)
    for secret in secrets:
        for piece in sorted(pieces(secret), key=len, reverse=True):
            text = text.replace(piece, "<secret>")
    return text
