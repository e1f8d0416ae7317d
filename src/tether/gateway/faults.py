"""Faults the gateway can be told to inject, for tests only; all off unless set.

Tests set attributes of ``RunningGateway.faults`` directly; ``tether gateway
serve --test-faults FILE`` reads the same fields from a JSON object.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

AGENT_TIMEOUT_REASON = "agent-timeout: timeout while connecting to pod"


@dataclass
class Faults:
    """What goes wrong on purpose. Every field's default means "nothing"."""

    #: service -> how its backend fails: "refuse" (502 before the upgrade),
    #: "timeout" (504 before the upgrade) or "close" (1011 right after it).
    backend_down: dict[str, str] = field(default_factory=dict)
    #: service -> close reason of a 1011 sent right after the upgrade (an agent timeout).
    agent_timeout: dict[str, str] = field(default_factory=dict)
    #: refuse every upgrade with this HTTP status (500, 503, ...).
    refuse_status: int | None = None
    #: seconds to wait before answering the upgrade request, and after the 101.
    delay_before_upgrade: float = 0.0
    delay_after_upgrade: float = 0.0
    #: close a log stream with ``close_code``/``close_reason`` after this many data frames,
    #: for the next ``close_sessions`` log sessions.
    close_after_frames: int | None = None
    close_sessions: int = 1
    close_code: int = 1011
    close_reason: str = "backend-unavailable: the log backend went away"
    #: close every session with 1008 token-expired this many seconds after the upgrade.
    expire_after: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take_close_after(self) -> int | None:
        """The frame budget for a new log session, consuming one of ``close_sessions``."""
        with self._lock:
            if self.close_after_frames is None or self.close_sessions <= 0:
                return None
            self.close_sessions -= 1
            return self.close_after_frames

    @classmethod
    def from_json(cls, path: Path) -> Faults:
        """Faults from a JSON object whose keys are field names; raises ValueError if wrong."""
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of faults")
        known = {f.name for f in fields(cls) if not f.name.startswith("_")}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown faults {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)
