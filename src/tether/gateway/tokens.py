"""Credentials the gateway accepts: JWT access tokens (HS256) and API tokens (``tth_``).

API tokens are shown once when made; only their SHA-256 is kept. A token
never appears in a log line or an answer other than the one that issues it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from tether.gateway.state import StateStore
from tether.protocol import ROLES

API_TOKEN_PREFIX = "tth_"  # noqa: S105 - a prefix, not a secret
AUDIENCE = "tether"
ALGORITHM = "HS256"


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


def token_hash(token: str) -> str:
    """The SHA-256 hex digest under which a secret token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_role(role: str) -> str:
    """``role`` when it is one of the known roles; raises ValueError otherwise."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return role


class TokenService:
    """Mints and verifies JWTs and API tokens against one state store."""

    def __init__(self, state: StateStore, issuer: str = "tether-gateway") -> None:
        self.state = state
        self.issuer = issuer

    # --- JWT ---------------------------------------------------------------------

    def mint_jwt(self, sub: str, role: str, ttl: float, *, now: float | None = None) -> str:
        """A signed access token for ``sub`` with ``role``, valid for ``ttl`` seconds."""
        issued = time.time() if now is None else now
        claims = {"sub": sub, "role": check_role(role), "iss": self.issuer, "aud": AUDIENCE,
                  "iat": int(issued), "exp": issued + ttl, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.state.secret, algorithm=ALGORITHM)

    def _verify_jwt(self, token: str) -> Principal:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.state.secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                issuer=self.issuer, options={"require": ["sub", "role", "exp", "iat", "aud",
                                                         "iss", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("the access token expired", expired=True) from None
        except jwt.InvalidAudienceError:
            raise AuthError("the access token is not meant for this gateway") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the access token was issued by another gateway") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the access token's signature does not verify") from None
        except jwt.InvalidTokenError:
            raise AuthError("the access token is malformed or uses an unsupported algorithm") \
                from None
        role, sub = claims["role"], claims["sub"]
        if role not in ROLES or not isinstance(sub, str):
            raise AuthError("the access token names an unknown role")
        return Principal(sub=sub, role=role, kind="jwt", key=f"jwt:{claims['jti']}",
                         expires_at=float(claims["exp"]))

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
        with self.state.transaction() as db:
            rows = db.execute("SELECT id, name, role, created, revoked FROM api_tokens "
                              "ORDER BY created").fetchall()
        return [{"id": r[0], "name": r[1], "role": r[2], "created": r[3], "revoked": bool(r[4])}
                for r in rows]

    def revoke_api_token(self, ident: str) -> int:
        """Revoke the API tokens with id or name ``ident``; how many were revoked."""
        with self.state.transaction() as db:
            cursor = db.execute("UPDATE api_tokens SET revoked = 1 WHERE (id = ? OR name = ?) "
                                "AND revoked = 0", (ident, ident))
        return cursor.rowcount

    def set_api_token_role(self, ident: str, role: str) -> int:
        """Change the role of the API tokens with id or name ``ident``; how many changed."""
        check_role(role)
        with self.state.transaction() as db:
            cursor = db.execute("UPDATE api_tokens SET role = ? WHERE id = ? OR name = ?",
                                (role, ident, ident))
        return cursor.rowcount

    def _verify_api_token(self, token: str) -> Principal:
        with self.state.transaction() as db:
            row = db.execute("SELECT id, name, role, revoked FROM api_tokens WHERE hash = ?",
                             (token_hash(token),)).fetchone()
        if row is None:
            raise AuthError("the API token is not known to this gateway")
        if row[3]:
            raise AuthError("the API token was revoked")
        return Principal(sub=f"token:{row[1]}", role=row[2], kind="api", key=f"api:{row[0]}")

    def recheck(self, principal: Principal) -> Principal:
        """The principal as it stands now (role changes, revocation); raises AuthError if gone."""
        if principal.kind != "api":
            return principal
        ident = principal.key.removeprefix("api:")
        with self.state.transaction() as db:
            row = db.execute("SELECT role, revoked FROM api_tokens WHERE id = ?",
                             (ident,)).fetchone()
        if row is None or row[1]:
            raise AuthError("the API token was revoked")
        return Principal(sub=principal.sub, role=row[0], kind="api", key=principal.key)

    # --- either --------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        """The principal of a bearer token; raises AuthError saying why it is not accepted."""
        if not token or len(token) > 8192:
            raise AuthError("the bearer token is empty or too long")
        if token.startswith(API_TOKEN_PREFIX):
            return self._verify_api_token(token)
        return self._verify_jwt(token)
