"""The device authorization grant (RFC 8628) and the refresh grant (RFC 6749 section 6).

Refresh tokens are opaque, kept hashed, and rotated on every use; each login
starts a family, and presenting a refresh token that was already used revokes
the whole family (a stolen token is then useless to thief and owner alike),
and ends the sessions of the family's access tokens on every gateway.

Every method may block on the store: the gateway calls them in threads.
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from typing import Any

from tether.gateway.tokens import TokenService, check_role, token_hash
from tether.store import Tx

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT = "refresh_token"
REFRESH_PREFIX = "tthr_"
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words by accident
SLOW_DOWN_STEP = 5.0


class GrantError(Exception):
    """Raised when a token request fails; ``error`` is the RFC 6749/8628 error code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def normalize_user_code(code: str) -> str:
    """``bcdf-ghjk`` and ``BCDFGHJK`` alike become ``BCDFGHJK``."""
    return "".join(c for c in code.upper() if c in string.ascii_uppercase)


class OAuth:
    """Device codes, approvals and refresh-token families over the gateway's state."""

    def __init__(self, tokens: TokenService, *, access_ttl: float, refresh_ttl: float,
                 device_interval: float, device_expires: float) -> None:
        self.tokens = tokens
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.device_interval = device_interval
        self.device_expires = device_expires

    # --- device authorization ----------------------------------------------------------

    def start_device(self, verification_uri: str) -> dict[str, Any]:
        """A new pending device code: the body of the device authorization response."""
        device_code = secrets.token_urlsafe(32)
        raw = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
        user_code = f"{raw[:4]}-{raw[4:]}"
        with self.tokens.state.transaction() as db:
            db.execute("DELETE FROM device_codes WHERE expires < ?", (time.time() - 3600,))
            db.execute("INSERT INTO device_codes (hash, user_code, expires, interval) "
                       "VALUES (?, ?, ?, ?)",
                       (token_hash(device_code), raw, time.time() + self.device_expires,
                        self.device_interval))
        interval = self.device_interval
        return {"device_code": device_code, "user_code": user_code,
                "verification_uri": verification_uri,
                "verification_uri_complete": f"{verification_uri}?user_code={user_code}",
                "expires_in": int(self.device_expires),
                "interval": int(interval) if interval == int(interval) else interval}

    def decide(self, user_code: str, *, approve: bool, role: str = "Viewer",
               sub: str = "user") -> bool:
        """Approve (with ``role`` for ``sub``) or deny a pending login; False if none matches."""
        if approve:
            check_role(role)
        with self.tokens.state.transaction() as db:
            cursor = db.execute(
                "UPDATE device_codes SET status = ?, role = ?, sub = ? "
                "WHERE user_code = ? AND status = 'pending' AND expires >= ?",
                ("approved" if approve else "denied", role, sub,
                 normalize_user_code(user_code), time.time()))
        return cursor.rowcount == 1

    def pending(self) -> list[dict[str, Any]]:
        """The logins waiting for approval: user code and seconds left."""
        now = time.time()
        with self.tokens.state.read() as db:
            rows = db.execute("SELECT user_code, expires FROM device_codes WHERE status = "
                              "'pending' AND expires >= ? ORDER BY expires", (now,)).fetchall()
        return [{"user_code": f"{r[0][:4]}-{r[0][4:]}", "expires_in": int(r[1] - now)}
                for r in rows]

    def poll_device(self, device_code: str) -> dict[str, Any]:
        """The token response for an approved device code; raises GrantError otherwise."""
        answer, error = self._poll_device(device_code)
        if error is not None:
            raise error
        assert answer is not None
        return answer

    def _poll_device(self, device_code: str) -> tuple[dict[str, Any] | None, GrantError | None]:
        now = time.time()
        key = token_hash(device_code)
        with self.tokens.state.transaction() as db:
            row = db.execute("SELECT expires, interval, last_poll, status, role, sub FROM "
                             "device_codes WHERE hash = ?", (key,)).fetchone()
            if row is None:
                raise GrantError("invalid_grant", "unknown device code")
            expires, interval, last_poll, status, role, sub = row
            if status == "used":
                raise GrantError("invalid_grant", "the device code was already used")
            if now > expires:
                raise GrantError("expired_token", "the device code expired; start again")
            if status == "denied":
                raise GrantError("access_denied", "the login was denied")
            if status == "pending":
                too_soon = last_poll is not None and now - last_poll < interval
                new_interval = interval + SLOW_DOWN_STEP if too_soon else interval
                db.execute("UPDATE device_codes SET last_poll = ?, interval = ? WHERE hash = ?",
                           (now, new_interval, key))
                pending = (GrantError("slow_down", f"poll at most every {new_interval:g} seconds")
                           if too_soon else
                           GrantError("authorization_pending", "the login is not approved yet"))
                return None, pending  # committed: the poll's time counts
            # one poll wins, even when two gateways answer polls of the same code at once
            if db.execute("UPDATE device_codes SET status = 'used' WHERE hash = ? AND "
                          "status = 'approved'", (key,)).rowcount != 1:
                raise GrantError("invalid_grant", "the device code was already used")
            family = uuid.uuid4().hex
            db.execute("INSERT INTO refresh_families (id, sub, role, created) VALUES (?, ?, ?, ?)",
                       (family, sub, role, now))
            refresh = self._new_refresh(db, family, now)
        return self._token_response(sub, role, refresh, family), None

    # --- refresh ---------------------------------------------------------------------

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Rotate ``refresh_token``: a new access and refresh token; reuse revokes the family.

        The token is claimed by one conditional update, so of two uses at once (on
        any two gateways) one wins and the other is a reuse.
        """
        now = time.time()
        key = token_hash(refresh_token)
        reused = False
        with self.tokens.state.transaction() as db:
            claimed = db.execute("UPDATE refresh_tokens SET used = 1 WHERE hash = ? AND used = 0 "
                                 "AND expires >= ?", (key, now)).rowcount == 1
            row = db.execute(
                "SELECT t.family, t.used, f.revoked, f.sub, f.role FROM refresh_tokens t "
                "JOIN refresh_families f ON f.id = t.family WHERE t.hash = ?", (key,)).fetchone()
            if row is None:
                raise GrantError("invalid_grant", "unknown refresh token")
            family, used, revoked, sub, role = row
            if revoked:
                raise GrantError("invalid_grant", "the refresh token was revoked")
            if claimed:
                refresh = self._new_refresh(db, family, now)
            elif used:
                self.revoke_family(db, family)
                reused = True
            else:
                raise GrantError("invalid_grant", "the refresh token expired")
        if reused:  # raised after the commit, so that the family stays revoked
            raise GrantError("invalid_grant",
                             "the refresh token was already used; its whole family is revoked")
        return self._token_response(sub, role, refresh, family)

    def logins(self) -> list[dict[str, Any]]:
        """Every login (refresh family): id, user, role, start, revocation."""
        with self.tokens.state.read() as db:
            rows = db.execute("SELECT id, sub, role, created, revoked FROM refresh_families "
                              "ORDER BY created").fetchall()
        return [{"id": r[0], "sub": r[1], "role": r[2], "created": r[3], "revoked": bool(r[4])}
                for r in rows]

    def revoke_logins(self, ident: str) -> int:
        """Revoke the logins of user ``ident`` (or the one with that id); how many."""
        with self.tokens.state.transaction() as db:
            families = [r[0] for r in db.execute(
                "SELECT id FROM refresh_families WHERE (id = ? OR sub = ?) AND revoked = 0",
                (ident, ident)).fetchall()]
            for family in families:
                self.revoke_family(db, family)
        return len(families)

    @staticmethod
    def revoke_family(db: Tx, family: str) -> None:
        """Revoke a login's refresh family; its live sessions end on every gateway."""
        db.execute("UPDATE refresh_families SET revoked = 1 WHERE id = ?", (family,))
        db.event("revoked", f"family:{family}")

    def _new_refresh(self, db: Tx, family: str, now: float) -> str:
        token = REFRESH_PREFIX + secrets.token_urlsafe(32)
        db.execute("INSERT INTO refresh_tokens (hash, family, expires) VALUES (?, ?, ?)",
                   (token_hash(token), family, now + self.refresh_ttl))
        return token

    def _token_response(self, sub: str, role: str, refresh: str, family: str) -> dict[str, Any]:
        access = self.tokens.mint_jwt(sub, role, self.access_ttl, family=family)
        return {"access_token": access, "token_type": "Bearer",
                "expires_in": int(self.access_ttl), "refresh_token": refresh}
