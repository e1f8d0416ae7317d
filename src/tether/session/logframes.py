"""Frames of ``/v1/logs`` to rows: a fast path for well-formed frames, LogDecoder otherwise.

A gateway frame is NDJSON, one or more records, one per line, and the frame's
end ends its last record whether or not a newline follows it: a record never
spans frames, so each frame is decoded on its own and nothing is held back
for the next one. A frame is first walked with the C JSON scanner, each value
required to end exactly at its own line's end; if any line is not exactly one
valid record, the whole frame goes through :class:`tether.protocol.LogDecoder`
instead, line by line, so that a bad line costs speed, never records.
"""

from __future__ import annotations

import json

from tether.protocol import BadRecord, LogDecoder, LogRecord

#: ``(cursor, ts, instance, stream, message)``, all str.
Row = tuple[str, str, str, str, str]
Entry = Row | BadRecord

#: A valid record line longer than this is a BadRecord (cut), so a peer cannot exhaust memory.
MAX_LINE = 4 * 1024 * 1024


def _row(record: LogRecord) -> Row:
    return (record.cursor, record.ts, record.instance, record.stream, record.message)


def decode_frame(data: bytes, max_line: int = MAX_LINE) -> list[Entry]:
    """The entries of one text frame, in order; its last line needs no newline."""
    if len(data) <= max_line:
        rows = _fast(data)
        if rows is not None:
            return rows
    lines = LogDecoder(max_line)
    return [_row(e) if isinstance(e, LogRecord) else e
            for e in (*lines.feed(data), *lines.finish())]


_SCAN = json.JSONDecoder().raw_decode


def _fast(data: bytes) -> list[Entry] | None:
    """Every line of ``data`` as a row, or None when any line is not exactly one valid record."""
    try:
        text = data.decode("utf-8")
    except ValueError:
        return None
    rows: list[Entry] = []
    append = rows.append
    pos, end, find = 0, len(text), text.find
    while pos < end:
        try:
            item, stop = _SCAN(text, pos)
        except (ValueError, RecursionError):
            return None
        # one value per line: it ends at a newline or the frame's end and holds no newline
        # (JSON allows newlines between tokens, so a record split over two lines would pass)
        if (stop < end and text[stop] != "\n") or find("\n", pos, stop) >= 0:
            return None
        pos = stop + 1
        try:
            row = (item["cursor"], item["ts"], item["instance"], item["stream"], item["message"])
        except (KeyError, TypeError):  # not an object, or a field missing
            return None
        if (type(row[0]) is not str or not row[0] or type(row[1]) is not str
                or type(row[2]) is not str or type(row[3]) is not str
                or type(row[4]) is not str):
            return None
        append(row)
    return rows
