"""The tether.v1 wire messages (PROTOCOL.md), encoded and decoded. Pure: no I/O.

Shared by the client and the gateway. Decoders raise only
:class:`ProtocolViolation` (a ``ValueError``), except the log decoder, which
never raises: a bad log record is data to show, not a broken protocol.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

SUBPROTOCOL = "tether.v1"
#: Port-forward also offers ``binary`` so that websockify-style bridges accept the handshake.
PORT_FORWARD_SUBPROTOCOLS = (SUBPROTOCOL, "binary")
MAX_CLOSE_REASON_BYTES = 123

#: The WebSocket endpoint of each command, and the least role that may use it.
ENDPOINTS = {"shell": "/v1/shell", "logs": "/v1/logs", "port-forward": "/v1/port-forward"}
ROLES = ("Viewer", "Deployer", "Admin")  # in increasing order of power
MINIMUM_ROLES = {"shell": "Deployer", "logs": "Viewer", "port-forward": "Deployer"}


def role_allows(role: str, command: str) -> bool:
    """Whether ``role`` may use ``command``; unknown roles may use nothing."""
    if role not in ROLES or command not in MINIMUM_ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(MINIMUM_ROLES[command])


class ProtocolViolation(ValueError):
    """Raised when a control message or a shell frame does not follow tether.v1."""


@enum.unique
class CloseCode(enum.IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4) and what they mean here."""

    NORMAL = 1000  # the session ended normally
    GOING_AWAY = 1001  # the gateway is restarting or being deployed
    PROTOCOL_ERROR = 1002  # a peer broke the WebSocket or tether.v1 protocol
    UNSUPPORTED_DATA = 1003  # a message of a type the peer does not accept
    NO_STATUS = 1005  # local only: a close frame without a code
    ABNORMAL = 1006  # local only: the connection dropped without a close frame
    INVALID_DATA = 1007  # tether: permission denied during the session
    POLICY_VIOLATION = 1008  # tether: token expired or revoked during the session
    MESSAGE_TOO_BIG = 1009  # a message exceeded the peer's limit
    MANDATORY_EXTENSION = 1010  # the client needed an extension the server lacks
    INTERNAL_ERROR = 1011  # tether: the backend (cluster, agent, host) is not answering
    SERVICE_RESTART = 1012  # the service is restarting
    TRY_AGAIN_LATER = 1013  # overloaded: back off
    BAD_GATEWAY = 1014  # a gateway got a bad answer upstream
    TLS_HANDSHAKE = 1015  # local only: the TLS handshake failed


#: Codes a peer never sends; seen only as local conclusions.
LOCAL_ONLY_CLOSE_CODES = frozenset({1005, 1006, 1015})


def close_code_name(code: int) -> str:
    """``1011 (INTERNAL_ERROR)`` for a known code, the plain number otherwise."""
    try:
        return f"{code} ({CloseCode(code).name})"
    except ValueError:
        return str(code)


# --- close reasons --------------------------------------------------------------


def format_close_reason(code: str, text: str) -> str:
    """``code: text``, cut on a character boundary to the 123-byte limit of a close frame."""
    reason = f"{code}: {text}" if code else text
    raw = reason.encode("utf-8", errors="replace")  # lone surrogates become "?"
    if len(raw) <= MAX_CLOSE_REASON_BYTES:
        return raw.decode("utf-8")
    return raw[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz-")


def parse_close_reason(reason: str) -> tuple[str | None, str]:
    """Split a ``code: text`` reason; ``(None, reason)`` when it has no such prefix.

    A prefix counts when it looks like a catalog code: ASCII lowercase letters
    and hyphens, no spaces.
    """
    head, sep, tail = reason.partition(":")
    if sep and head and len(head) <= 40 and all(c in _CODE_CHARS for c in head):
        return head, tail.strip()
    return None, reason.strip()


# --- shell frames ----------------------------------------------------------------


@enum.unique
class Stream(enum.IntEnum):
    """The stream byte in front of every shell binary frame."""

    STDIN = 0
    STDOUT = 1
    STDERR = 2


def encode_shell_frame(stream: Stream, data: bytes) -> bytes:
    """``[stream byte][payload]``."""
    return bytes((stream,)) + data


def decode_shell_frame(frame: bytes) -> tuple[Stream, bytes]:
    """The stream and the payload of a shell binary frame."""
    if not frame:
        raise ProtocolViolation("empty shell frame: the stream byte is missing")
    try:
        stream = Stream(frame[0])
    except ValueError:
        raise ProtocolViolation(f"unknown shell stream byte {frame[0]}") from None
    return stream, frame[1:]


# --- control messages ------------------------------------------------------------


@dataclass(frozen=True)
class Resize:
    """Client to gateway: the terminal's new size."""

    cols: int
    rows: int


@dataclass(frozen=True)
class Eof:
    """Either way: this side has finished writing (stdin, or one half of a TCP stream)."""


@dataclass(frozen=True)
class SessionStarted:
    """Gateway to client, first on a shell: the session's id and instance."""

    id: str
    instance: str


@dataclass(frozen=True)
class Exit:
    """Gateway to client, last on a shell: the remote command's exit status."""

    code: int


ControlMessage = Resize | Eof | SessionStarted | Exit

_MAX_DIMENSION = 65535


def encode_control(message: ControlMessage) -> str:
    """One control message as the JSON text of one frame."""
    body: dict[str, Any]
    match message:
        case Resize(cols=cols, rows=rows):
            body = {"type": "resize", "cols": cols, "rows": rows}
        case Eof():
            body = {"type": "eof"}
        case SessionStarted(id=sid, instance=instance):
            body = {"type": "session", "id": sid, "instance": instance}
        case Exit(code=code):
            body = {"type": "exit", "code": code}
    return json.dumps(body, separators=(",", ":"))


def _int_field(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name)
    if type(value) is not int or not low <= value <= high:
        raise ProtocolViolation(f"{body.get('type')!s:.20} message: {name} must be an integer "
                                f"from {low} to {high}")
    return value


def _str_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise ProtocolViolation(f"{body.get('type')!s:.20} message: {name} must be a string")
    return value


def decode_control(text: str | bytes) -> ControlMessage:
    """Parse one control frame; raises ProtocolViolation when it is not valid tether.v1."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolViolation("control message is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProtocolViolation("control message is not a JSON object")
    kind = body.get("type")
    if kind == "resize":
        return Resize(_int_field(body, "cols", 1, _MAX_DIMENSION),
                      _int_field(body, "rows", 1, _MAX_DIMENSION))
    if kind == "eof":
        return Eof()
    if kind == "session":
        return SessionStarted(_str_field(body, "id"), _str_field(body, "instance"))
    if kind == "exit":
        return Exit(_int_field(body, "code", -(2**31), 2**31 - 1))
    shown = kind if isinstance(kind, str) else type(kind).__name__
    raise ProtocolViolation(f"unknown control message type {shown[:40]!r}")


# --- log records -----------------------------------------------------------------

LOG_FIELDS = ("cursor", "ts", "instance", "stream", "message")


@dataclass(frozen=True)
class LogRecord:
    """One log line of one instance, as the gateway sends it."""

    cursor: str
    ts: str
    instance: str
    stream: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The record's fields in wire order."""
        return {"cursor": self.cursor, "ts": self.ts, "instance": self.instance,
                "stream": self.stream, "message": self.message}


@dataclass(frozen=True)
class BadRecord:
    """A line that is not a valid log record; kept raw so that it can be shown or skipped."""

    raw: bytes
    reason: str
    cursor: str | None = None  # still advances the resume point when present


def encode_log_record(record: LogRecord) -> str:
    """One record as one NDJSON line, without the newline."""
    return json.dumps(record.as_dict(), separators=(",", ":"), ensure_ascii=False)


def encode_log_batch(records: Iterable[LogRecord]) -> str:
    """Records as the NDJSON text of one frame, each line ending in a newline."""
    return "".join(encode_log_record(r) + "\n" for r in records)


def decode_log_line(line: bytes) -> LogRecord | BadRecord:
    """One NDJSON line (without its newline) to a record, or a BadRecord saying why."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return BadRecord(line, "not UTF-8")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return BadRecord(line, "not JSON")
    if not isinstance(body, dict):
        return BadRecord(line, "not a JSON object")
    cursor = body.get("cursor")
    cursor = cursor if isinstance(cursor, str) and cursor else None
    missing = [name for name in LOG_FIELDS if not isinstance(body.get(name), str)]
    if missing or cursor is None:
        return BadRecord(line, "missing or invalid " + ", ".join(missing or ["cursor"]), cursor)
    return LogRecord(cursor, body["ts"], body["instance"], body["stream"], body["message"])


class LogDecoder:
    """Incremental NDJSON decoder: feed it frames (whole lines or pieces), get records back.

    Lines longer than ``max_line`` are cut and returned as a BadRecord, so a
    peer cannot make the client buffer without bound.
    """

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._pending = bytearray()
        self._max_line = max_line
        self._discarding = False

    def feed(self, data: bytes | str) -> Iterator[LogRecord | BadRecord]:
        """Records for every complete line in what has come so far."""
        chunk = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece, start = chunk[start:end], end + 1
            if self._discarding:
                self._discarding = False
                continue
            line = (bytes(self._pending) + piece) if self._pending else piece
            self._pending.clear()
            if len(line) > self._max_line:
                yield self._too_long(line)
            elif line.strip():
                yield decode_log_line(line.rstrip(b"\r"))
        if not self._discarding:
            self._pending += chunk[start:]
            if len(self._pending) > self._max_line:
                yield self._too_long(bytes(self._pending))
                self._pending.clear()
                self._discarding = True

    def _too_long(self, line: bytes) -> BadRecord:
        return BadRecord(line[:1024], f"line longer than {self._max_line} bytes")

    def finish(self) -> Iterator[LogRecord | BadRecord]:
        """A last line that came without its newline."""
        if self._pending.strip():
            line = bytes(self._pending).rstrip(b"\r")
            self._pending.clear()
            yield decode_log_line(line)
        self._pending.clear()
