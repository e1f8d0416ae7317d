"""Settings shared by every command, and parsing shared by their options.

Kept free of heavy imports: every command module may import it.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

import typer


class Output(enum.StrEnum):
    """How results and errors are written."""

    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True)
class Settings:
    """The global options, as the root callback resolved them."""

    output: Output = Output.TEXT
    verbose: bool = False
    gateway: str | None = None
    # how to reach the gateway (shell, logs, port-forward, status, doctor, auth)
    retry_for: float = 300.0
    connect_timeout: float = 15.0
    ca_cert: str | None = None
    insecure: bool = False
    keepalive_interval: float = 30.0
    keepalive_timeout: float = 75.0

    @property
    def json(self) -> bool:
        """Whether output is one JSON object per line."""
        return self.output is Output.JSON

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from TETHER_OUTPUT, TETHER_VERBOSE and TETHER_GATEWAY alone."""
        return cls(output=output_from_env(), verbose=verbose_from_env(),
                   gateway=os.environ.get("TETHER_GATEWAY") or None)


def settings(ctx: typer.Context) -> Settings:
    """The Settings of this invocation (from the environment when no callback set them)."""
    found = ctx.find_object(Settings)
    return found if found is not None else Settings.from_env()


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})


def verbose_from_env() -> bool:
    """TETHER_VERBOSE read as a flag, the way the --verbose option reads it."""
    return os.environ.get("TETHER_VERBOSE", "").strip().lower() in _TRUE


def output_from_env() -> Output:
    """TETHER_OUTPUT, or text when unset or not a known format."""
    value = os.environ.get("TETHER_OUTPUT", "").strip().lower()
    return Output.JSON if value == Output.JSON else Output.TEXT


# --- durations ---------------------------------------------------------------------


def duration_option(value: str | float) -> float:
    """A Typer ``parser=`` for duration options (``30s``, ``5m``); a bad value is a usage error."""
    if isinstance(value, float):
        return value
    from tether.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
