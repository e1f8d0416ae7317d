"""What the dialer needs from a credential. ``tether.auth`` implements it; ws never imports auth."""

from __future__ import annotations

from typing import Protocol


class CredentialSource(Protocol):
    """Where the ``Authorization`` header of each dial comes from."""

    @property
    def refreshable(self) -> bool:
        """True for a JWT that has a refresh token; False for API tokens and env tokens."""
        ...

    def authorization(self) -> str:
        """The header value, ``Bearer <token>``; refreshes first when the token is near expiry.

        Raises TetherError (no-credentials, token-expired, refresh-failed, ...).
        """
        ...

    def refresh(self) -> None:
        """Renew the token now (single-flight). Raises TetherError(refresh-failed) on failure."""
        ...


class StaticCredential:
    """A token used as it is and never refreshed (an API token, or TETHER_TOKEN)."""

    refreshable = False

    def __init__(self, token: str) -> None:
        self._token = token

    def authorization(self) -> str:
        """``Bearer <token>``."""
        return f"Bearer {self._token}"

    def refresh(self) -> None:
        """Static tokens cannot be refreshed; the retry policy never asks."""
        raise NotImplementedError("a static token cannot be refreshed")

    def __repr__(self) -> str:
        return "StaticCredential(<redacted>)"
