"""Credentials the gateway accepts: JWT access tokens (HS256) and API tokens (``tth_``).

API tokens are shown once when made; only their SHA-256 is kept. A token
never appears in a log line or an answer other than the one that issues it.

JWTs name their signing key in the header (``kid``). The store keeps the
keys: the newest one signs, and a retired key still verifies for one access
lifetime after its retirement, so rotating keys logs nobody out. Keys are
cached; a ``keys`` event or an unknown ``kid`` reloads them. A JWT from a
device login carries its refresh family (``fam``), so that revoking the
family ends its sessions too.

Every method here may block on the store: the gateway calls them in threads.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import jwt

from tether.protocol import ROLES
from tether.store import Store
from tether.store.migrations import rotate_signing_key

API_TOKEN_PREFIX = "tth_"  # noqa: S105 - a prefix, not a secret
AUDIENCE = "tether"
ALGORITHM = "HS256"
RELOAD_AT_MOST_EVERY = 1.0  # seconds between key reloads caused by an unknown kid


class AuthError(Exception):
    """Raised when a credential is missing, malformed, badly signed, expired or revoked."""

    def __init__(self, description: str, *, expired: bool = False) -> None:
        super().__init__(description)
        self.description = description
        self.expired = expired


@dataclass(frozen=True)
class Principal:
    """Who a verified credential speaks for."""

    sub: str
    role: str
    kind: str  # "jwt" or "api"
    key: str  # a stable, non-secret id of the credential (rate limits, logs)
    expires_at: float | None = None  # unix time; None for API tokens
    family: str | None = None  # the refresh family of a device login's JWT

    @property
    def revocable(self) -> str | None:
        """What a revocation of this credential names: ``api:ID`` or ``family:ID``."""
        if self.kind == "api":
            return self.key
        return f"family:{self.family}" if self.family else None


@dataclass(frozen=True)
class SigningKey:
    """One row of ``signing_keys``."""

    kid: str
    secret: bytes
    created: float
    retired: float | None


def token_hash(token: str) -> str:
    """The SHA-256 hex digest under which a secret token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_role(role: str) -> str:
    """``role`` when it is one of the known roles; raises ValueError otherwise."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return role


class KeyRing:
    """The signing keys, cached from the store."""

    def __init__(self, store: Store, grace: float) -> None:
        self.store = store
        self.grace = grace  # how long a retired key still verifies
        self._keys: tuple[SigningKey, ...] = ()
        self._loaded = 0.0
        self._lock = threading.Lock()
        self.load()

    def load(self) -> None:
        """Read the keys from the store."""
        with self.store.read() as tx:
            rows = tx.execute("SELECT kid, secret, created, retired FROM signing_keys "
                              "ORDER BY created").fetchall()
        keys = tuple(SigningKey(str(r[0]), str(r[1]).encode("ascii"), float(r[2]),
                                None if r[3] is None else float(r[3])) for r in rows)
        with self._lock:
            self._keys, self._loaded = keys, time.monotonic()

    def signer(self) -> SigningKey:
        """The key that signs new tokens: the newest one not retired."""
        for key in reversed(self._keys):
            if key.retired is None:
                return key
        self.load()
        for key in reversed(self._keys):
            if key.retired is None:
                return key
        raise AuthError("the gateway has no signing key")

    def verifiers(self, kid: str | None, now: float) -> list[SigningKey]:
        """The keys that may have signed a token with ``kid`` (every usable key when None)."""
        usable = [k for k in self._keys if k.retired is None or now < k.retired + self.grace]
        if kid is None:
            return usable
        found = [k for k in usable if k.kid == kid]
        if not found and time.monotonic() - self._loaded >= RELOAD_AT_MOST_EVERY:
            self.load()
            found = [k for k in self._keys if k.kid == kid
                     and (k.retired is None or now < k.retired + self.grace)]
        return found

    def listing(self) -> list[SigningKey]:
        """Every key, oldest first."""
        return list(self._keys)


class TokenService:
    """Mints and verifies JWTs and API tokens against one state store."""

    def __init__(self, state: Store, issuer: str = "tether-gateway", *,
                 access_ttl: float = 15 * 60.0) -> None:
        self.state = state
        self.issuer = issuer
        self.keys = KeyRing(state, grace=access_ttl + 60.0)

    # --- JWT ---------------------------------------------------------------------

    def mint_jwt(self, sub: str, role: str, ttl: float, *, now: float | None = None,
                 family: str | None = None) -> str:
        """A signed access token for ``sub`` with ``role``, valid for ``ttl`` seconds."""
        issued = time.time() if now is None else now
        claims: dict[str, Any] = {"sub": sub, "role": check_role(role), "iss": self.issuer,
                                  "aud": AUDIENCE, "iat": int(issued), "exp": issued + ttl,
                                  "jti": uuid.uuid4().hex}
        if family is not None:
            claims["fam"] = family
        key = self.keys.signer()
        return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})

    def rotate_key(self) -> str:
        """Make a new signing key; the old ones verify their tokens until those expire."""
        with self.state.transaction() as db:
            kid = rotate_signing_key(db, time.time())
        self.keys.load()
        return kid

    def _verify_jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthError("the access token is malformed or uses an unsupported algorithm") \
                from None
        kid = header.get("kid")
        keys = self.keys.verifiers(kid if isinstance(kid, str) else None, time.time())
        if not keys:
            raise AuthError("the access token's signature does not verify")
        for key in keys:
            try:
                claims = self._decode(token, key.secret)
            except jwt.InvalidSignatureError:
                continue
            return self._principal(claims)
        raise AuthError("the access token's signature does not verify")

    def _decode(self, token: str, secret: bytes) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=self.issuer,
                options={"require": ["sub", "role", "exp", "iat", "aud", "iss", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("the access token expired", expired=True) from None
        except jwt.InvalidAudienceError:
            raise AuthError("the access token is not meant for this gateway") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the access token was issued by another gateway") from None
        except jwt.InvalidSignatureError:
            raise
        except jwt.InvalidTokenError:
            raise AuthError("the access token is malformed or uses an unsupported algorithm") \
                from None
        return claims

    @staticmethod
    def _principal(claims: dict[str, Any]) -> Principal:
        role, sub, family = claims["role"], claims["sub"], claims.get("fam")
        if role not in ROLES or not isinstance(sub, str):
            raise AuthError("the access token names an unknown role")
        return Principal(sub=sub, role=role, kind="jwt", key=f"jwt:{claims['jti']}",
                         expires_at=float(claims["exp"]),
                         family=family if isinstance(family, str) else None)

    # --- API tokens ----------------------------------------------------------------

    def create_api_token(self, role: str, name: str) -> str:
        """A new API token with ``role``; only its hash is stored, so this is its one showing."""
        check_role(role)
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.state.transaction() as db:
            db.execute("INSERT INTO api_tokens (id, name, hash, role, created) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (uuid.uuid4().hex[:12], name, token_hash(token), role, time.time()))
        return token

    def list_api_tokens(self) -> list[dict[str, Any]]:
        """Every API token's id, name, role, creation time and revocation, without secrets."""
        with self.state.read() as db:
            rows = db.execute("SELECT id, name, role, created, revoked FROM api_tokens "
                              "ORDER BY created").fetchall()
        return [{"id": r[0], "name": r[1], "role": r[2], "created": r[3], "revoked": bool(r[4])}
                for r in rows]

    def revoke_api_token(self, ident: str) -> int:
        """Revoke the API tokens with id or name ``ident``; how many were revoked.

        Their live sessions end on every gateway (a ``revoked`` event).
        """
        with self.state.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM api_tokens WHERE (id = ? OR name = ?) "
                                            "AND revoked = 0", (ident, ident)).fetchall()]
            for token_id in ids:
                db.execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?", (token_id,))
                db.event("revoked", f"api:{token_id}")
        return len(ids)

    def set_api_token_role(self, ident: str, role: str) -> int:
        """Change the role of the API tokens with id or name ``ident``; how many changed."""
        check_role(role)
        with self.state.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM api_tokens WHERE id = ? OR name = ?",
                                            (ident, ident)).fetchall()]
            for token_id in ids:
                db.execute("UPDATE api_tokens SET role = ? WHERE id = ?", (role, token_id))
                db.event("changed", f"api:{token_id}")
        return len(ids)

    def _verify_api_token(self, token: str) -> Principal:
        with self.state.read() as db:
            row = db.execute("SELECT id, name, role, revoked FROM api_tokens WHERE hash = ?",
                             (token_hash(token),)).fetchone()
        if row is None:
            raise AuthError("the API token is not known to this gateway")
        if row[3]:
            raise AuthError("the API token was revoked")
        return Principal(sub=f"token:{row[1]}", role=row[2], kind="api", key=f"api:{row[0]}")

    def recheck(self, principal: Principal) -> Principal:
        """The principal as it stands now (role changes, revocation); raises AuthError if gone."""
        if principal.kind == "api":
            ident = principal.key.removeprefix("api:")
            with self.state.read() as db:
                row = db.execute("SELECT role, revoked FROM api_tokens WHERE id = ?",
                                 (ident,)).fetchone()
            if row is None or row[1]:
                raise AuthError("the API token was revoked")
            return replace(principal, role=row[0])
        if principal.family is not None:
            with self.state.read() as db:
                row = db.execute("SELECT revoked FROM refresh_families WHERE id = ?",
                                 (principal.family,)).fetchone()
            if row is not None and row[0]:
                raise AuthError("the login was revoked")
        return principal

    # --- either --------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        """The principal of a bearer token; raises AuthError saying why it is not accepted."""
        if not token or len(token) > 8192:
            raise AuthError("the bearer token is empty or too long")
        if token.startswith(API_TOKEN_PREFIX):
            return self._verify_api_token(token)
        return self._verify_jwt(token)
