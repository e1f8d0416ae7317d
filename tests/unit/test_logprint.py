"""Log frames to rows, rows to lines: fast path vs LogDecoder, cleaning, colour, JSON, warnings."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.cli.commands.logs import since_time
from tether.cli.output.logprint import PALETTE, LogPrinter, Style, color_of, use_color, write_all
from tether.client.supervisor import Attempt
from tether.protocol import BadRecord, LogDecoder, LogRecord, encode_log_batch
from tether.session.logframes import decode_frame
from tether.session.logs import LogSession


def record(n: int, instance: str = "api-1", message: str | None = None) -> LogRecord:
    return LogRecord(f"c{n}", f"2026-01-02T03:04:{n % 60:02d}.000000Z", instance, "stdout",
                     message if message is not None else f"line {n}")


class Capture:
    """A printer's output and warnings."""

    def __init__(self, style: Style | None = None) -> None:
        self.writes: list[bytes] = []
        self.warnings: list[str] = []
        self.printer = LogPrinter(self.writes.append, style or Style(), self.warnings.append)

    def feed(self, *frames: bytes) -> str | None:
        cursor = None
        for frame in frames:
            cursor = self.printer.print(decode_frame(frame)) or cursor
        return cursor

    @property
    def text(self) -> str:
        return b"".join(self.writes).decode()


# --- frames -------------------------------------------------------------------------------


def test_fast_path_gives_the_same_rows_as_log_decoder() -> None:
    frame = encode_log_batch([record(i, message=f"m {i} é \"q\"") for i in range(300)]).encode()
    rows = decode_frame(frame)
    expected = [(r.cursor, r.ts, r.instance, r.stream, r.message)
                for r in LogDecoder().feed(frame) if isinstance(r, LogRecord)]
    assert rows == expected and len(rows) == 300


@given(st.lists(st.one_of(
    st.builds(lambda m, i: encode_log_batch([record(0, f"i{i}", m)]).encode(),
              st.text(max_size=30), st.integers(0, 3)),
    st.binary(max_size=30).map(lambda b: b + b"\n"),
    st.just(b'{"cursor":"x"}\n'), st.just(b"[1,2]\n"), st.just(b"\n"),
    st.just(b'{"cursor":"a","ts":"t","instance":"i","stream":"s","message":"m"},{"b":1}\n'),
), max_size=8), st.integers(1, 50))
@settings(max_examples=200, deadline=None)
def test_each_frame_decodes_on_its_own_like_log_decoder(lines: list[bytes], cut: int) -> None:
    data = b"".join(lines)
    frames = [data[i:i + cut] for i in range(0, len(data), cut)]
    got = [e for f in frames for e in decode_frame(f)]
    want: list[object] = []
    for frame in frames:  # a frame's end ends its last line
        reference = LogDecoder()
        want += [(e.cursor, e.ts, e.instance, e.stream, e.message)
                 if isinstance(e, LogRecord) else e
                 for e in (*reference.feed(frame), *reference.finish())]
    assert got == want


def test_a_frame_without_its_trailing_newline_gives_the_same_rows() -> None:
    frame = encode_log_batch([record(1), record(2)]).encode()
    rows = decode_frame(frame.removesuffix(b"\n"))
    assert rows == decode_frame(frame)
    assert [row[4] for row in rows if isinstance(row, tuple)] == ["line 1", "line 2"]


def test_one_bad_line_sends_its_frame_through_the_slow_path_without_losing_records() -> None:
    good = encode_log_batch([record(1), record(2)]).encode()
    frame = good + b"not json\n" + encode_log_batch([record(3)]).encode()
    entries = decode_frame(frame)
    assert [e[4] if isinstance(e, tuple) else e.reason for e in entries] == [
        "line 1", "line 2", "not JSON", "line 3"]


def test_a_line_longer_than_the_limit_is_a_bad_record_and_the_stream_goes_on() -> None:
    entries = decode_frame(b"x" * 5000, max_line=1000) + decode_frame(
        encode_log_batch([record(1)]).encode(), max_line=1000)
    assert isinstance(entries[0], BadRecord) and "longer" in entries[0].reason
    assert isinstance(entries[1], tuple) and entries[1][4] == "line 1"


# --- text ---------------------------------------------------------------------------------


def test_text_lines_prefix_timestamps_and_no_prefix() -> None:
    frame = encode_log_batch([record(1), record(2, "api-2")]).encode()
    plain = Capture()
    assert plain.feed(frame) == "c2"
    assert plain.text == "[api-1] line 1\n[api-2] line 2\n"
    assert len(plain.writes) == 1  # one write per batch
    stamped = Capture(Style(timestamps=True))
    stamped.feed(frame)
    assert stamped.text.splitlines()[0] == "[api-1] 2026-01-02T03:04:01.000000Z line 1"
    bare = Capture(Style(prefix=False))
    bare.feed(frame)
    assert bare.text == "line 1\nline 2\n"


def test_control_characters_and_escapes_are_stripped_and_lines_kept_whole() -> None:
    nasty = "a\x1b[2J\x1b]0;title\x07b\rc\x00d\u202eе\tt\nsecond\u2028third"
    cap = Capture()
    cap.feed(encode_log_batch([record(1, message=nasty), record(2, "x\x1b[31m")]).encode())
    assert cap.text == ("[api-1] abcdе\tt\n[api-1] second\n[api-1] third\n"
                        "[x] line 2\n")
    assert "\x1b" not in cap.text


def test_colour_prefixes_are_stable_per_instance() -> None:
    assert color_of("api-1") == color_of("api-1") in PALETTE
    assert len({color_of(f"api-{i}") for i in range(40)}) > 4  # spread over the palette
    cap = Capture(Style(color=True))
    cap.feed(encode_log_batch([record(1), record(2), record(3, "api-2")]).encode())
    lines = cap.text.splitlines()
    assert lines[0].startswith(f"\x1b[{color_of('api-1')}m[api-1]\x1b[0m ")
    assert lines[0][:12] == lines[1][:12] and lines[2].endswith("line 3")


def test_use_color_follows_the_terminal_and_no_color() -> None:
    read, write = os.pipe()
    try:
        assert use_color(write, {}) is False  # a pipe
    finally:
        os.close(read)
        os.close(write)
    master, slave = os.openpty()
    try:
        assert use_color(slave, {"TERM": "xterm"}) is True
        assert use_color(slave, {"NO_COLOR": "1"}) is False
        assert use_color(slave, {"TERM": "dumb"}) is False
    finally:
        os.close(master)
        os.close(slave)


def test_instances_filter_prints_only_those_but_the_cursor_moves_past_the_others() -> None:
    cap = Capture(Style(instances=frozenset({"api-1", "api-3"})))
    cursor = cap.feed(encode_log_batch([record(1), record(2, "api-2")]).encode())
    assert cap.text == "[api-1] line 1\n"
    assert cursor == "c2"


# --- bad records ----------------------------------------------------------------------------


def test_bad_records_are_printed_raw_with_one_warning_per_kind() -> None:
    cap = Capture()
    bad_cursor = b'{"cursor":"c9","message":"no ts"}\n'
    cursor = cap.feed(b"oops \x1b[31mred\n", b"again\n", b"\xff\xfe\n", bad_cursor,
                      encode_log_batch([record(1)]).encode(), b"x" * 20_000 + b"\n")
    lines = cap.text.splitlines()
    assert lines[:2] == ["oops red", "again"]
    assert lines[2] == "\ufffd\ufffd"
    assert lines[4] == "[api-1] line 1"
    assert len(lines[5]) == 4096 and lines[5].endswith("…")
    assert len(cap.warnings) == 3  # not JSON, not UTF-8, missing fields
    assert all("printed as it came" in w for w in cap.warnings)
    assert cursor == "c1"


def test_a_bad_record_cursor_advances_the_resume_point() -> None:
    cap = Capture()
    assert cap.feed(b'{"cursor":"c9","ts":1}\n') == "c9"


def test_json_mode_skips_bad_records_with_one_warning() -> None:
    cap = Capture(Style(json=True))
    cap.feed(b"garbage\n", b"more garbage\n", encode_log_batch([record(1)]).encode())
    assert [json.loads(line)["message"] for line in cap.text.splitlines()] == ["line 1"]
    assert len(cap.warnings) == 1 and "skipped" in cap.warnings[0]


# --- JSON -----------------------------------------------------------------------------------


@given(st.text())
def test_json_lines_round_trip_and_hold_no_raw_control_characters(message: str) -> None:
    cap = Capture(Style(json=True))
    cap.printer.print([("c", "t", "i\x9b", "stdout", message)])
    line = cap.text
    assert line.endswith("\n") and line.count("\n") == 1
    body = line[:-1]
    assert body.isprintable()
    decoded = json.loads(body)
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in message):
        assert decoded == {"cursor": "c", "ts": "t", "instance": "i\x9b", "stream": "stdout",
                           "message": message}


# --- the session and --since ------------------------------------------------------------------


def test_session_params_resume_after_the_cursor_without_tail() -> None:
    session = LogSession({"service": "api", "follow": "1", "tail": 10,
                          "since": "2026-01-02T00:00:00.000000Z"}, Capture().printer)
    first = Attempt(1, reconnect=False)
    assert session.params(first) == {"service": "api", "follow": "1", "tail": 10,
                                     "since": "2026-01-02T00:00:00.000000Z"}
    session.cursor = "abc"
    assert session.params(Attempt(2, reconnect=True)) == {
        "service": "api", "follow": "1", "since": "2026-01-02T00:00:00.000000Z", "after": "abc"}


def test_since_time_forms() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert since_time("15m", now) == "2026-01-02T02:49:05.000000Z"
    assert since_time("2026-01-02T03:04:05Z") == "2026-01-02T03:04:05.000000Z"
    assert since_time("2026-01-02T04:04:05.5+01:00") == "2026-01-02T03:04:05.500000Z"
    assert since_time("2026-01-02 03:04:05") == "2026-01-02T03:04:05.000000Z"
    with pytest.raises(ValueError, match="duration"):
        since_time("yesterday")


# --- writing --------------------------------------------------------------------------------


def test_write_all_writes_a_large_batch_whole_through_a_pipe() -> None:
    read, write = os.pipe()
    data = b"".join(b"%08d %s\n" % (i, b"x" * 90) for i in range(20_000))  # ~2 MB > pipe size
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(read, 1 << 16):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        write_all(write, data)
    finally:
        os.close(write)
        reader.join(10)
        os.close(read)
    assert bytes(got) == data


def test_write_all_to_a_closed_pipe_raises_broken_pipe() -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        with pytest.raises(BrokenPipeError):
            write_all(write, b"line\n")
    finally:
        os.close(write)
