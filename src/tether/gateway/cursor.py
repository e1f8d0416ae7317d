"""Log cursors: where every instance of a stream stood right after one record.

A cursor is a vector: for each instance of the stream, ``[identity, position]``
(a file's inode and the byte offset after the record, or a command source's
generation and sequence number). The client keeps only the last cursor it
printed, and that one cursor resumes every instance exactly after what was
printed. On the wire it is base64url of compact JSON, opaque to the client.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

Position = tuple[int, int]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_CURSOR = 16 * 1024


class CursorError(ValueError):
    """Raised when a cursor was not made by this gateway, or is damaged."""


def encode_cursor(positions: dict[str, Position]) -> str:
    """The cursor text of a vector of positions."""
    raw = json.dumps({k: [v[0], v[1]] for k, v in positions.items()}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> dict[str, Position]:
    """The vector of positions in a cursor; raises CursorError when it is not one."""
    if not text or len(text) > MAX_CURSOR:
        raise CursorError("after: the cursor is empty or too long")
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
