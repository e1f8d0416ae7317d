"""Log cursors: where every instance of a stream stood right after one record.

A cursor is a vector: for each instance of the stream, its name and position
(a file's inode and the byte offset after the record, or a command source's
generation and sequence number). The client keeps only the last cursor it
printed, and that one cursor resumes every instance exactly after what was
printed. It is opaque to the client.

A cursor holds nothing of the gateway process that made it (no key, no
session): a file position means the same to every gateway that reads the
same files (one host, or a shared volume), so a follow that resumes on
another gateway behind a load balancer continues with every record once. A
command source's generation is its process's own: another gateway replays
its ring from the start.

On the wire: ``NAME~INODE.OFFSET`` per instance, numbers in hex, instances
joined by ``~`` (``api-1~2a4f.1b3~api-2~2a50.e1``), names percent-encoded.
Every character is URL-safe, so the cursor needs no escaping in JSON or in a
query. The older form, base64url of compact JSON, is still read.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import quote, unquote

Position = tuple[int, int]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VALUE = re.compile(r"([0-9a-f]{1,16})\.([0-9a-f]{1,16})")
MAX_CURSOR = 16 * 1024
MAX_NAME = 255


class CursorError(ValueError):
    """Raised when a cursor was not made by this gateway, or is damaged."""


def _quote_name(name: str) -> str:
    return quote(name, safe="").replace("~", "%7E")


class CursorVector:
    """Where every instance of a stream stands, as cursor text."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # instance name -> its name in a cursor
        self._parts: dict[str, str] = {}  # instance name -> "NAME~INODE.OFFSET"

    def set(self, name: str, position: Position) -> str:
        """Move instance ``name`` to ``position``; the cursor of the positions now."""
        quoted = self._names.get(name)
        if quoted is None:
            quoted = self._names[name] = _quote_name(name)
        part = f"{quoted}~{position[0]:x}.{position[1]:x}"
        parts = self._parts
        parts[name] = part
        return part if len(parts) == 1 else "~".join(parts.values())


def decode_cursor(text: str) -> dict[str, Position]:
    """The vector of positions in a cursor; raises CursorError when it is not one."""
    if not text or len(text) > MAX_CURSOR:
        raise CursorError("after: the cursor is empty or too long")
    if "~" not in text:
        return _decode_json_cursor(text)
    tokens = text.split("~")
    if len(tokens) % 2:
        raise CursorError("after: not a cursor this gateway made")
    out: dict[str, Position] = {}
    for quoted, value in zip(tokens[::2], tokens[1::2], strict=True):
        try:
            name = unquote(quoted, errors="strict")
        except UnicodeDecodeError:
            raise CursorError("after: not a cursor this gateway made") from None
        match = _VALUE.fullmatch(value)
        if match is None or not name or len(name) > MAX_NAME:
            raise CursorError("after: not a cursor this gateway made")
        out[name] = (int(match.group(1), 16), int(match.group(2), 16))
    return out


def _decode_json_cursor(text: str) -> dict[str, Position]:
    """The older form: base64url of ``{"NAME":[INODE,OFFSET],...}``."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise CursorError("after: not a cursor this gateway made") from None
    if not isinstance(body, dict):
        raise CursorError("after: not a cursor this gateway made")
    out: dict[str, Position] = {}
    for name, value in body.items():
        if (not _NAME.fullmatch(name) or not isinstance(value, list) or len(value) != 2
                or not all(type(v) is int and v >= 0 for v in value)):
            raise CursorError("after: not a cursor this gateway made")
        out[name] = (value[0], value[1])
    return out
