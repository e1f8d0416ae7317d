"""Credentials: where the bearer token of a gateway comes from, and what it says.

Lookup order: ``TETHER_TOKEN`` in the environment (an API token ``tth_...`` or
a JWT, used as it is, never refreshed, never written anywhere), then the
keyring entry of the gateway (an access JWT and a refresh token). Both
classes implement :class:`tether.client.credential.CredentialSource`.

JWT claims are decoded without verifying the signature, only to read
``sub``, ``role`` and ``exp``: the gateway is the one that verifies.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tether.auth.contexts import config_path, load_config, normalize_gateway_url
from tether.auth.oauth import Endpoints, is_token_text
from tether.auth.refresh import gateway_lock, refresh_locked
from tether.auth.store import KeyringStore, StoredTokens
from tether.client.http import HttpOptions
from tether.errors import Code, Failure, Phase, TetherError
from tether.text import strip_control

API_TOKEN_PREFIX = "tth_"  # noqa: S105 - a prefix, not a secret
REFRESH_MARGIN = 60.0  # refresh before dialing when the JWT expires within this many seconds
ENVIRONMENT = "environment"
KEYRING = "keyring"


@dataclass(frozen=True)
class Claims:
    """The claims tether reads from a JWT (unverified)."""

    subject: str | None
    role: str | None
    issued_at: float | None
    expires_at: float | None  # seconds since the epoch


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return strip_control(value, limit=200) if isinstance(value, str) else None


def read_claims(token: str) -> Claims | None:
    """The claims of ``token`` when it is a JWT, else None. The signature is not checked."""
    if token.count(".") != 2:
        return None
    import jwt

    try:
        data = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    if not isinstance(data, dict):
        return None
    return Claims(subject=_text(data.get("sub")), role=_text(data.get("role")),
                  issued_at=_number(data.get("iat")), expires_at=_number(data.get("exp")))


def refresh_margin(claims: Claims) -> float:
    """How long before ``exp`` to refresh: 60 s, or half the lifetime of a shorter-lived token."""
    if claims.expires_at is not None and claims.issued_at is not None:
        lifetime = claims.expires_at - claims.issued_at
        if 0 < lifetime < 2 * REFRESH_MARGIN:
            return lifetime / 2
    return REFRESH_MARGIN


def needs_refresh(token: str, now: float | None = None) -> bool:
    """Whether the JWT ``token`` expires within its refresh margin (False when it has no exp)."""
    claims = read_claims(token)
    if claims is None or claims.expires_at is None:
        return False
    return claims.expires_at - (time.time() if now is None else now) <= refresh_margin(claims)


def is_expired(token: str, now: float | None = None) -> bool:
    """Whether the JWT ``token`` has an ``exp`` in the past."""
    claims = read_claims(token)
    if claims is None or claims.expires_at is None:
        return False
    return claims.expires_at <= (time.time() if now is None else now)


@dataclass(frozen=True)
class CredentialInfo:
    """What may be shown about a credential: never the token itself."""

    gateway: str
    source: str  # "environment" or "keyring"
    kind: str  # "api-token", "jwt" or "opaque"
    subject: str | None
    role: str | None
    expires_at: datetime | None
    refreshable: bool

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """For ``-o json``: the fields, ``expires_at`` in RFC 3339, and ``expires_in`` seconds."""
        now = time.time() if now is None else now
        return {"gateway": self.gateway, "source": self.source, "kind": self.kind,
                "subject": self.subject, "role": self.role,
                "expires_at": self.expires_at.isoformat().replace("+00:00", "Z")
                if self.expires_at else None,
                "expires_in": round(self.expires_at.timestamp() - now)
                if self.expires_at else None,
                "refreshable": self.refreshable}


def _kind(token: str, claims: Claims | None) -> str:
    if token.startswith(API_TOKEN_PREFIX):
        return "api-token"
    return "jwt" if claims is not None else "opaque"


def _info(gateway: str, source: str, token: str, refreshable: bool) -> CredentialInfo:
    claims = read_claims(token)
    expires = (datetime.fromtimestamp(claims.expires_at, UTC)
               if claims is not None and claims.expires_at is not None else None)
    return CredentialInfo(gateway=gateway, source=source, kind=_kind(token, claims),
                          subject=claims.subject if claims else None,
                          role=claims.role if claims else None,
                          expires_at=expires, refreshable=refreshable)


class EnvCredential:
    """``TETHER_TOKEN``: used as it is, never refreshed, never stored."""

    refreshable = False

    def __init__(self, gateway: str, token: str) -> None:
        self.gateway = gateway
        self._token = token

    def __repr__(self) -> str:
        return f"EnvCredential(gateway={self.gateway!r}, token=<redacted>)"

    def authorization(self) -> str:
        """``Bearer <token>``; TetherError(token-expired) when it is a JWT whose exp is past."""
        if is_expired(self._token):
            raise TetherError(Failure.of(
                Code.TOKEN_EXPIRED, Phase.CREDENTIALS, "the JWT in TETHER_TOKEN has expired",
                hint="Set TETHER_TOKEN to a new token, or unset it and run `tether auth login`."))
        return f"Bearer {self._token}"

    def token(self) -> str:
        """The token itself, for ``tether auth token`` only."""
        return self.authorization().removeprefix("Bearer ")

    def refresh(self) -> None:
        """Never refreshed: raises TetherError(refresh-failed)."""
        raise TetherError(Failure.of(
            Code.REFRESH_FAILED, Phase.CREDENTIALS,
            "the token in TETHER_TOKEN is used as it is and cannot be refreshed",
            hint="Make a new API token and set TETHER_TOKEN to it, "
                 "or unset TETHER_TOKEN and run `tether auth login`."))

    def describe(self) -> CredentialInfo:
        """Source, kind, subject, role and expiry, for status lines and error messages."""
        return _info(self.gateway, ENVIRONMENT, self._token, refreshable=False)


class KeyringCredential:
    """The gateway's keyring entry: an access JWT, renewed with its refresh token.

    Safe to share between threads: a refresh runs once, others wait for it and
    use its result (see :mod:`tether.auth.refresh`).
    """

    def __init__(self, gateway: str, tokens: StoredTokens, *, store: KeyringStore,
                 endpoints: Endpoints, http: HttpOptions, lock_dir: Path | None = None) -> None:
        self.gateway = gateway
        self._tokens = tokens
        self._store = store
        self._endpoints = endpoints
        self._http = http
        self._lock_dir = lock_dir
        self._seen = threading.local()
        self._refused: str | None = None

    def __repr__(self) -> str:
        return f"KeyringCredential(gateway={self.gateway!r}, tokens=<redacted>)"

    @property
    def refreshable(self) -> bool:
        """True when there is a refresh token."""
        return self._tokens.refresh_token is not None

    def authorization(self) -> str:
        """``Bearer <jwt>``, refreshed first when it expires within the refresh margin."""
        tokens = self._tokens
        if needs_refresh(tokens.access_token):
            if self.refreshable:
                self._refresh_before_use(tokens)
            elif is_expired(tokens.access_token):
                raise TetherError(Failure.of(
                    Code.TOKEN_EXPIRED, Phase.CREDENTIALS,
                    f"the token for {self.gateway} has expired and cannot be refreshed",
                    hint=f"Run `tether auth login {self.gateway}`."))
        token = self._tokens.access_token
        self._seen.token = token
        return f"Bearer {token}"

    def token(self) -> str:
        """The access token itself, for ``tether auth token`` only."""
        return self.authorization().removeprefix("Bearer ")

    def refresh(self) -> None:
        """Renew now, unless the token this thread last used was renewed meanwhile."""
        self._refresh(getattr(self._seen, "token", None))

    def describe(self) -> CredentialInfo:
        """Source, kind, subject, role and expiry, for status lines and error messages."""
        return _info(self.gateway, KEYRING, self._tokens.access_token, self.refreshable)

    def _refresh_before_use(self, tokens: StoredTokens) -> None:
        try:
            self._refresh(tokens.access_token)
        except TetherError as exc:
            if not (exc.failure.retryable and not is_expired(tokens.access_token)):
                raise

    def _refresh(self, seen: str | None) -> None:
        with gateway_lock(self.gateway, self._lock_dir):
            held = self._tokens
            if seen is not None and held.access_token != seen:
                return
            try:
                self._tokens = refresh_locked(
                    self.gateway, held, store=self._store, endpoints=self._endpoints,
                    http=self._http, fresh=lambda t: not needs_refresh(t),
                    refused=self._refused)
            except TetherError as exc:
                if exc.failure.code is Code.REFRESH_FAILED:
                    self._refused = held.refresh_token
                    raise TetherError(exc.failure.replace(
                        hint=f"Run `tether auth login {self.gateway}` to sign in again.")) from exc
                raise


Credential = EnvCredential | KeyringCredential


def endpoints_for(gateway: str, env: Mapping[str, str] = os.environ) -> Endpoints:
    """The device and token endpoints of ``gateway``: a context's issuer, else the gateway's."""
    context = load_config(config_path(env)).context_for(gateway)
    if context is None:
        return Endpoints.for_gateway(gateway)
    return Endpoints.for_gateway(gateway, device=context.device_endpoint,
                                 token=context.token_endpoint, client_id=context.client_id)


def resolve_credential(gateway_url: str, *, env: Mapping[str, str] = os.environ,
                       store: KeyringStore | None = None, http: HttpOptions | None = None,
                       endpoints: Endpoints | None = None,
                       lock_dir: Path | None = None) -> Credential:
    """The credential for ``gateway_url``: ``TETHER_TOKEN``, else the keyring entry.

    Raises TetherError: invalid-url, no-credentials, keyring-unavailable.
    """
    gateway = normalize_gateway_url(gateway_url)
    token = env.get("TETHER_TOKEN", "").strip()
    if token:
        if not is_token_text(token):
            raise TetherError(Failure.of(
                Code.NO_CREDENTIALS, Phase.CONFIG,
                "TETHER_TOKEN holds characters a bearer token cannot have",
                hint="Set TETHER_TOKEN to the token alone, without quotes, spaces or a "
                     "'Bearer ' prefix."))
        return EnvCredential(gateway, token)
    store = store or KeyringStore()
    tokens = store.load(gateway)
    if tokens is None:
        raise TetherError(Failure.of(
            Code.NO_CREDENTIALS, Phase.CONFIG, f"not logged in to {gateway}",
            hint=f"Run `tether auth login {gateway}`, or set TETHER_TOKEN to an API token."))
    return KeyringCredential(gateway, tokens, store=store,
                             endpoints=endpoints or endpoints_for(gateway, env),
                             http=http or HttpOptions(), lock_dir=lock_dir)
