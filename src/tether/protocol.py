"""The tether.v1 and tether.v2 wire messages (docs/protocol.md), encoded and decoded. Pure.

Shared by the client and the gateway. Decoders raise only
:class:`ProtocolViolation` (a ``ValueError``), except the log decoder, which
never raises: a bad log record is data to show, not a broken protocol.

tether.v2 keeps v1's binary data frames and control messages and adds the
messages of resumable sessions: :class:`Resume`, :class:`Resumed` and
:class:`Ack`, decoded by :func:`decode_control_v2`. Offsets are absolute byte
counts of one direction's data (the payload of binary frames, without the
shell's stream byte); their bookkeeping is ``tether.replay``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

SUBPROTOCOL = "tether.v1"
#: Port-forward also offers ``binary`` so that websockify-style bridges accept the handshake.
PORT_FORWARD_SUBPROTOCOLS = (SUBPROTOCOL, "binary")
MAX_CLOSE_REASON_BYTES = 123

#: Resumable sessions on /v1/shell and /v1/port-forward; offered before tether.v1.
SUBPROTOCOL_V2 = "tether.v2"
SHELL_SUBPROTOCOLS_V2 = (SUBPROTOCOL_V2, SUBPROTOCOL)
PORT_FORWARD_SUBPROTOCOLS_V2 = (SUBPROTOCOL_V2, *PORT_FORWARD_SUBPROTOCOLS)
#: The query parameter of a resuming dial (``resume=1``); the id travels in a frame.
RESUME_PARAM = "resume"
#: The query parameter naming the gateway that holds the session (from the session message),
#: added to a resuming dial so that a load balancer can route it there; never a secret.
NODE_PARAM = "node"
#: A gateway's node name: what a load balancer names it (HAProxy server names take these).
NODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
ACK_BYTES = 32 * 1024  # acknowledge after this many bytes received ...
ACK_INTERVAL = 0.1  # ... or this many seconds after the first unacknowledged byte
MAX_OFFSET = 2**53 - 1  # offsets stay exact in every JSON implementation
DEFAULT_REPLAY_BUFFER = 8 * 1024 * 1024  # bytes kept for the peer, per direction per session
DEFAULT_GRACE = 120.0  # seconds a gateway keeps a detached session

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
    SESSION_GONE = 4410  # tether.v2: no such session to resume (expired, ended, unknown)
    RESUME_LOST = 4416  # tether.v2: the bytes a resume asks for are no longer held


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


def encode_shell_frame(stream: Stream, data: bytes | memoryview) -> bytes:
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
    """Gateway to client, first on a shell (and on a v2 port-forward): the session's id and
    instance. With tether.v2 the id is a secret: it never appears in a repr. ``node`` (v2,
    optional, empty when absent) names the gateway holding the session: a resume adds it to
    its query as ``node=`` so that a load balancer routes it to that gateway."""

    id: str = field(repr=False)
    instance: str
    node: str = ""


@dataclass(frozen=True)
class Exit:
    """Gateway to client, last on a shell: the remote command's exit status."""

    code: int


ControlMessage = Resize | Eof | SessionStarted | Exit


@dataclass(frozen=True)
class Resume:
    """tether.v2, client to gateway, first on a resuming dial: which session, and how many
    bytes of the gateway's data the client has received."""

    id: str = field(repr=False)
    received: int


@dataclass(frozen=True)
class Resumed:
    """tether.v2, gateway to client, the answer to Resume: how many bytes of the client's
    data the gateway has received. Each side then resends what the other lacks."""

    received: int


@dataclass(frozen=True)
class Ack:
    """tether.v2, either way: this many bytes of the peer's data have arrived (absolute)."""

    received: int


V2Message = ControlMessage | Resume | Resumed | Ack

_MAX_DIMENSION = 65535
_MAX_ID = 256


def encode_control(message: V2Message) -> str:
    """One control message as the JSON text of one frame."""
    body: dict[str, Any]
    match message:
        case Resize(cols=cols, rows=rows):
            body = {"type": "resize", "cols": cols, "rows": rows}
        case Eof():
            body = {"type": "eof"}
        case SessionStarted(id=sid, instance=instance, node=node):
            body = {"type": "session", "id": sid, "instance": instance}
            if node:
                body["node"] = node
        case Exit(code=code):
            body = {"type": "exit", "code": code}
        case Resume(id=sid, received=received):
            body = {"type": "resume", "id": sid, "received": received}
        case Resumed(received=received):
            body = {"type": "resumed", "received": received}
        case Ack(received=received):
            body = {"type": "ack", "received": received}
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


def _node_field(body: dict[str, Any]) -> str:
    value = body.get("node", "")
    if not isinstance(value, str) or (value and not NODE_PATTERN.fullmatch(value)):
        raise ProtocolViolation("session message: node must be a name of 1 to 63 letters, "
                                "digits, '.', '_' or '-'")
    return value


def _id_field(body: dict[str, Any]) -> str:
    value = body.get("id")
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID:
        raise ProtocolViolation(f"{body.get('type')!s:.20} message: id must be a string of 1 to "
                                f"{_MAX_ID} characters")
    return value


def _json_object(text: str | bytes) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolViolation("control message is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProtocolViolation("control message is not a JSON object")
    return body


def _v1_message(body: dict[str, Any]) -> ControlMessage | None:
    kind = body.get("type")
    if kind == "resize":
        return Resize(_int_field(body, "cols", 1, _MAX_DIMENSION),
                      _int_field(body, "rows", 1, _MAX_DIMENSION))
    if kind == "eof":
        return Eof()
    if kind == "session":
        return SessionStarted(_str_field(body, "id"), _str_field(body, "instance"),
                              _node_field(body))
    if kind == "exit":
        return Exit(_int_field(body, "code", -(2**31), 2**31 - 1))
    return None


def _v2_message(body: dict[str, Any]) -> Resume | Resumed | Ack | None:
    kind = body.get("type")
    if kind == "ack":
        return Ack(_int_field(body, "received", 0, MAX_OFFSET))
    if kind == "resume":
        return Resume(_id_field(body), _int_field(body, "received", 0, MAX_OFFSET))
    if kind == "resumed":
        return Resumed(_int_field(body, "received", 0, MAX_OFFSET))
    return None


def _unknown(body: dict[str, Any]) -> ProtocolViolation:
    kind = body.get("type")
    shown = kind if isinstance(kind, str) else type(kind).__name__
    return ProtocolViolation(f"unknown control message type {shown[:40]!r}")


def decode_control(text: str | bytes) -> ControlMessage:
    """Parse one control frame; raises ProtocolViolation when it is not valid tether.v1."""
    body = _json_object(text)
    message = _v1_message(body)
    if message is None:
        raise _unknown(body)
    return message


def decode_control_v2(text: str | bytes) -> V2Message:
    """Parse one tether.v2 control frame (v1's messages and resume, resumed, ack); raises
    ProtocolViolation when it is not one. Unknown fields are ignored."""
    body = _json_object(text)
    message = _v1_message(body) or _v2_message(body)
    if message is None:
        raise _unknown(body)
    return message


# --- tether.v2 close reasons -----------------------------------------------------------

SESSION_GONE_CODE = "session-expired"
RESUME_LOST_CODE = "resume-lost"
#: The one answer to a resume of a session that is not there, whatever the cause.
SESSION_GONE_REASON = format_close_reason(
    SESSION_GONE_CODE, "the session is no longer on the gateway; its state is lost")
_LOST = re.compile(r"(\d{1,16}) bytes\b")


def resume_lost_reason(lost: int) -> str:
    """The close reason of 4416: ``resume-lost: N bytes of output were lost ...``."""
    return format_close_reason(
        RESUME_LOST_CODE, f"{lost} bytes of output were lost beyond the gateway's replay buffer")


def lost_bytes(reason: str) -> int | None:
    """N from a ``resume-lost: N bytes ...`` close reason; None for any other reason."""
    code, text = parse_close_reason(reason)
    match = _LOST.match(text) if code == RESUME_LOST_CODE else None
    return int(match.group(1)) if match else None


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
