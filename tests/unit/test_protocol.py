"""The tether.v1 codec: round trips, incremental log decoding, and hostile input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import Code
from tether.protocol import (
    MAX_CLOSE_REASON_BYTES,
    BadRecord,
    ControlMessage,
    Eof,
    Exit,
    LogDecoder,
    LogRecord,
    ProtocolViolation,
    Resize,
    SessionStarted,
    Stream,
    close_code_name,
    decode_control,
    decode_log_line,
    decode_shell_frame,
    encode_control,
    encode_log_batch,
    encode_log_record,
    encode_shell_frame,
    format_close_reason,
    parse_close_reason,
    role_allows,
)

dimension = st.integers(min_value=1, max_value=65535)
controls: st.SearchStrategy[ControlMessage] = st.one_of(
    st.builds(Resize, dimension, dimension),
    st.just(Eof()),
    st.builds(SessionStarted, st.text(), st.text()),
    st.builds(Exit, st.integers(min_value=-(2**31), max_value=2**31 - 1)),
)
records = st.builds(LogRecord, cursor=st.text(min_size=1), ts=st.text(), instance=st.text(),
                    stream=st.sampled_from(["stdout", "stderr"]) | st.text(), message=st.text())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10)


def decode_all(decoder: LogDecoder, chunks: list[bytes]) -> list[LogRecord | BadRecord]:
    out: list[LogRecord | BadRecord] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.finish())
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# --- control messages and shell frames -------------------------------------------------------

@given(controls)
def test_control_round_trip(message: ControlMessage) -> None:
    text = encode_control(message)
    assert decode_control(text) == message
    assert decode_control(text.encode("utf-8")) == message
    assert "\n" not in text


@given(st.sampled_from(list(Stream)), st.binary())
def test_shell_frame_round_trip(stream: Stream, data: bytes) -> None:
    assert decode_shell_frame(encode_shell_frame(stream, data)) == (stream, data)


@given(st.binary())
def test_decode_shell_frame_raises_only_protocol_violation(frame: bytes) -> None:
    try:
        stream, payload = decode_shell_frame(frame)
    except ProtocolViolation:
        assert frame == b"" or frame[0] > 2
    else:
        assert bytes((stream,)) + payload == frame


@settings(max_examples=300)
@given(st.text() | st.binary()
       | json_values.map(json.dumps)
       | st.fixed_dictionaries({"type": st.sampled_from(["resize", "eof", "session", "exit"])},
                               optional={"cols": json_values, "rows": json_values,
                                         "id": json_values, "instance": json_values,
                                         "code": json_values}).map(json.dumps))
def test_decode_control_raises_only_protocol_violation(data: str | bytes) -> None:
    try:
        message = decode_control(data)
    except ProtocolViolation as exc:
        assert str(exc)
    else:
        assert decode_control(encode_control(message)) == message


@pytest.mark.parametrize("text", [
    "", "null", "[]", '"resize"', "{}", '{"type": 1}', '{"type": "explode"}',
    '{"type": "resize", "cols": 0, "rows": 24}', '{"type": "resize", "cols": 80.0, "rows": 24}',
    '{"type": "resize", "cols": true, "rows": 24}', '{"type": "resize", "cols": 80}',
    '{"type": "exit", "code": "0"}', '{"type": "exit", "code": 4294967296}',
    '{"type": "session", "id": 5}', "[" * 100_000, '{"type": "exit", "code": 1' + "0" * 5000 + "}",
])
def test_bad_control_messages(text: str) -> None:
    with pytest.raises(ProtocolViolation):
        decode_control(text)


def test_bad_control_bytes() -> None:
    with pytest.raises(ProtocolViolation):
        decode_control(b'{"type": "eof\xff"}')


# --- log records -----------------------------------------------------------------------------

@given(records)
def test_log_record_round_trip(record: LogRecord) -> None:
    line = encode_log_record(record)
    assert "\n" not in line
    assert decode_log_line(line.encode("utf-8")) == record


@settings(max_examples=150)
@given(st.lists(records, max_size=8), st.lists(st.integers(min_value=0), max_size=12))
def test_log_decoder_is_independent_of_framing(batch: list[LogRecord], cuts: list[int]) -> None:
    data = encode_log_batch(batch).encode("utf-8")
    whole = decode_all(LogDecoder(), [data])
    assert whole == batch
    assert decode_all(LogDecoder(), [data[i:i + 1] for i in range(len(data))]) == batch
    assert decode_all(LogDecoder(), split(data, cuts)) == batch
    as_text = LogDecoder()
    assert [*as_text.feed(encode_log_batch(batch)), *as_text.finish()] == batch


@settings(max_examples=200)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=8))
def test_log_decoder_never_raises_and_ignores_framing(data: bytes, cuts: list[int]) -> None:
    whole = decode_all(LogDecoder(), [data])
    assert all(isinstance(r, LogRecord | BadRecord) for r in whole)
    assert decode_all(LogDecoder(), split(data, cuts)) == whole
    assert decode_all(LogDecoder(), [data[i:i + 1] for i in range(len(data))]) == whole


def test_partial_last_line_is_returned_by_finish() -> None:
    first, last = (LogRecord(str(i), "2026-01-01T00:00:00Z", "api-1", "stdout", f"line {i}")
                   for i in range(2))
    decoder = LogDecoder()
    data = (encode_log_batch([first]) + encode_log_record(last)).encode()
    assert list(decoder.feed(data)) == [first]
    assert list(decoder.finish()) == [last]
    assert list(decoder.finish()) == []


def test_trailing_junk_becomes_a_bad_record() -> None:
    good = LogRecord("c1", "t", "api-1", "stdout", "hello")
    out = decode_all(LogDecoder(), [(encode_log_batch([good]) + '{"cursor": "c2", "ts').encode()])
    assert out[0] == good
    assert isinstance(out[1], BadRecord) and out[1].reason == "not JSON"


def test_crlf_and_blank_lines() -> None:
    good = LogRecord("c1", "t", "api-1", "stdout", "hello")
    data = ("\n\r\n  \n" + encode_log_record(good) + "\r\n").encode()
    assert decode_all(LogDecoder(), [data]) == [good]


@pytest.mark.parametrize(("line", "reason", "cursor"), [
    (b"plain text from a peer", "not JSON", None),
    (b"\xff\xfe not utf-8", "not UTF-8", None),
    (b"[1, 2]", "not a JSON object", None),
    (b'{"cursor": "c9", "ts": "t", "instance": "i", "stream": "stdout"}', "message", "c9"),
    (b'{"ts": "t", "instance": "i", "stream": "stdout", "message": "m"}', "cursor", None),
    (b'{"cursor": "", "ts": "t", "instance": "i", "stream": "stdout", "message": "m"}',
     "cursor", None),
    (b'{"cursor": "c1", "ts": 5, "instance": "i", "stream": "stdout", "message": "m"}',
     "ts", "c1"),
])
def test_bad_lines(line: bytes, reason: str, cursor: str | None) -> None:
    (out,) = decode_all(LogDecoder(), [line + b"\n"])
    assert isinstance(out, BadRecord)
    assert reason in out.reason
    assert out.cursor == cursor
    assert out.raw == line


def test_line_over_max_line_is_cut_and_the_stream_goes_on() -> None:
    good = LogRecord("c1", "t", "api-1", "stdout", "after")
    long_line = b"x" * 5000
    data = long_line + b"\n" + encode_log_batch([good]).encode()
    for chunks in ([data], [data[i:i + 7] for i in range(0, len(data), 7)]):
        decoder = LogDecoder(max_line=1000)
        out = decode_all(decoder, chunks)
        assert isinstance(out[0], BadRecord) and "longer than 1000" in out[0].reason
        assert len(out[0].raw) <= 1024
        assert out[1:] == [good]
        assert len(decoder._pending) == 0


# --- close reasons ---------------------------------------------------------------------------

@settings(max_examples=300)
@given(st.sampled_from([""] + [str(c) for c in Code]) | st.text(max_size=50), st.text())
def test_format_close_reason_fits_a_close_frame(code: str, text: str) -> None:
    reason = format_close_reason(code, text)
    raw = reason.encode("utf-8")
    assert len(raw) <= MAX_CLOSE_REASON_BYTES
    assert raw.decode("utf-8") == reason
    full = f"{code}: {text}" if code else text
    assert full.startswith(reason)
    if len(full.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES:
        assert reason == full


@given(st.sampled_from([str(c) for c in Code]),
       st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs")), max_size=60))
def test_parse_reads_what_format_writes(code: str, text: str) -> None:
    assert parse_close_reason(format_close_reason(code, text)) == (code, text.strip())


@given(st.text())
def test_parse_close_reason_never_raises(reason: str) -> None:
    code, _ = parse_close_reason(reason)
    if code is not None:
        assert code and " " not in code and ":" not in code


@pytest.mark.parametrize(("reason", "expected"), [
    ("permission-denied: role Viewer cannot open a shell (requires Deployer)",
     ("permission-denied", "role Viewer cannot open a shell (requires Deployer)")),
    ("target-unreachable: connect to 127.0.0.1:5432 refused",
     ("target-unreachable", "connect to 127.0.0.1:5432 refused")),
    ("Retry budget exhausted: agent", (None, "Retry budget exhausted: agent")),
    ("timeout while connecting to pod", (None, "timeout while connecting to pod")),
    ("", (None, "")),
    (": nothing before", (None, ": nothing before")),
])
def test_parse_close_reason(reason: str, expected: tuple[str | None, str]) -> None:
    assert parse_close_reason(reason) == expected


def test_log_decoder_survives_lone_surrogates() -> None:
    (out,) = LogDecoder().feed("\ud800\n")
    assert isinstance(out, BadRecord)


def test_parse_close_reason_takes_only_ascii_codes() -> None:
    assert parse_close_reason("ß-x: text") == (None, "ß-x: text")


def test_format_close_reason_survives_lone_surrogates() -> None:
    assert len(format_close_reason("protocol-error", "\ud800").encode()) <= 123


def test_close_code_names_and_roles() -> None:
    assert close_code_name(1011) == "1011 (INTERNAL_ERROR)"
    assert close_code_name(4404) == "4404"
    assert role_allows("Viewer", "logs") and not role_allows("Viewer", "shell")
    assert role_allows("Deployer", "port-forward") and role_allows("Admin", "shell")
    assert not role_allows("Root", "logs") and not role_allows("Admin", "rm")
