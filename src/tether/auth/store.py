"""The keyring store: one JSON secret per gateway, service ``tether``, user = the gateway URL.

``keyring`` is imported on first use only. A backend is used when it was
chosen explicitly (``PYTHON_KEYRING_BACKEND`` or keyring's ``keyringrc.cfg``)
or when keyring recommends it (an encrypted store: Secret Service, macOS
Keychain, Windows Credential Locker). Anything else, including an unencrypted
file that happens to be installed, is refused with ``keyring-unavailable``:
tether never falls back to plain text on its own.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from tether.errors import Code, Failure, Phase, TetherError

SERVICE = "tether"
_FORMAT = 1
_INIT_LOCK = threading.Lock()


@dataclass(frozen=True, repr=False)
class StoredTokens:
    """What the keyring holds for one gateway: an access JWT and, usually, a refresh token."""

    access_token: str
    refresh_token: str | None = None

    def to_json(self) -> str:
        """The secret as stored."""
        return json.dumps({"v": _FORMAT, "access_token": self.access_token,
                           "refresh_token": self.refresh_token}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> StoredTokens | None:
        """The tokens in ``text``, or None when it is not a secret this version wrote."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        access, refresh = data.get("access_token"), data.get("refresh_token")
        if not isinstance(access, str) or not access:
            return None
        if refresh is not None and not isinstance(refresh, str):
            return None
        return cls(access, refresh or None)

    def __repr__(self) -> str:
        refresh = "<redacted>" if self.refresh_token is not None else None
        return f"StoredTokens(access_token=<redacted>, refresh_token={refresh})"


def _unavailable(message: str, exc: BaseException | None = None) -> TetherError:
    failure = Failure.of(
        Code.KEYRING_UNAVAILABLE, Phase.CONFIG, message,
        hint="Install and unlock a Secret Service (gnome-keyring, KeePassXC) or use the "
             "macOS Keychain; or choose a backend with PYTHON_KEYRING_BACKEND; "
             "or set TETHER_TOKEN to an API token.",
        cause=exc)
    return TetherError(failure)


class KeyringStore:
    """Reads and writes the tokens of each gateway in the system keyring."""

    def __init__(self, service: str = SERVICE) -> None:
        self.service = service
        self._backend: Any = None

    def __repr__(self) -> str:
        return f"KeyringStore(service={self.service!r})"

    @property
    def backend(self) -> Any:
        """The keyring backend in use; raises TetherError(keyring-unavailable) when none fits."""
        if self._backend is None:
            self._backend = _select_backend()
        return self._backend

    def backend_name(self) -> str:
        """The backend's class, for ``tether auth status``."""
        kind = type(self.backend)
        return f"{kind.__module__}.{kind.__qualname__}"

    def load(self, gateway: str) -> StoredTokens | None:
        """The tokens stored for ``gateway``, or None.

        An entry that is not ours (unreadable) is reported as not logged in.
        """
        text = self._call("read", lambda b: b.get_password(self.service, gateway))
        if text is None:
            return None
        tokens = StoredTokens.from_json(str(text))
        if tokens is None:
            raise TetherError(Failure.of(
                Code.NO_CREDENTIALS, Phase.CONFIG,
                f"the keyring entry for {gateway} is not in a form this tether can read",
                hint="Run `tether auth login` to replace it."))
        return tokens

    def save(self, gateway: str, tokens: StoredTokens) -> None:
        """Store ``tokens`` for ``gateway``, replacing what was there."""
        self._call("write", lambda b: b.set_password(self.service, gateway, tokens.to_json()))

    def delete(self, gateway: str) -> bool:
        """Remove the entry of ``gateway``, readable or not; False when there was none."""
        if self._call("read", lambda b: b.get_password(self.service, gateway)) is None:
            return False
        self._call("delete", lambda b: b.delete_password(self.service, gateway))
        return True

    def _call(self, what: str, action: Any) -> Any:
        backend = self.backend
        try:
            return action(backend)
        except Exception as exc:  # backends raise many kinds (D-Bus, OS, keyring's own)
            name = type(backend).__name__
            raise _unavailable(
                f"the keyring ({name}) failed to {what} the entry: {type(exc).__name__}",
                exc) from exc


def _select_backend() -> Any:
    with _INIT_LOCK:
        try:
            import keyring
            import keyring.backends.fail
            import keyring.backends.null
            import keyring.core
        except ImportError as exc:  # pragma: no cover - keyring is a dependency
            raise _unavailable("the keyring package is not installed", exc) from exc
        try:
            keyring.core.init_backend(limit=keyring.core.recommended)
            backend = keyring.get_keyring()
        except Exception as exc:
            raise _unavailable(f"the keyring backend could not start: {type(exc).__name__}",
                               exc) from exc
    if isinstance(backend, keyring.backends.fail.Keyring | keyring.backends.null.Keyring):
        raise _unavailable("no usable keyring backend: none that keeps secrets encrypted "
                           "(Secret Service, macOS Keychain, Windows Credential Locker) "
                           "was found, and none was chosen with PYTHON_KEYRING_BACKEND")
    return backend
