"""Hypothesis on the decoders and parsers that read peer input, beyond test_protocol.py and
test_classify_properties.py: structured near-miss inputs, the log command's frame decoder
against the line decoder, JSON problem bodies, challenge grammar, HTTP-dates, and the
exceptions of websocket-client, ssl and socket.

Only documented exceptions (ProtocolViolation) or records come out; the parsers never raise.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from email.utils import formatdate

import websocket
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tether.classify import (
    Challenge,
    Problem,
    classify_close,
    classify_exception,
    classify_handshake,
    parse_problem,
    parse_retry_after,
    parse_www_authenticate,
)
from tether.errors import CATALOG, Code, Failure, Phase
from tether.protocol import (
    BadRecord,
    LogDecoder,
    LogRecord,
    ProtocolViolation,
    decode_control,
    decode_log_line,
    decode_shell_frame,
    encode_log_record,
    parse_close_reason,
)
from tether.session.logframes import decode_frame

FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=10)
field_names = st.sampled_from(["type", "cursor", "ts", "instance", "stream", "message", "cols",
                               "rows", "code", "id", "data", "TYPE", ""])
near_controls = st.dictionaries(field_names, json_values | st.sampled_from(
    ["resize", "eof", "session", "exit", "Resize", "exit "]), max_size=6)


# --- control messages and shell frames ------------------------------------------------------------


@FAST
@given(near_controls)
def test_decode_control_on_near_miss_objects(body: dict[str, object]) -> None:
    for data in (json.dumps(body), json.dumps(body).encode(), json.dumps([body])):
        try:
            message = decode_control(data)
        except ProtocolViolation:
            continue
        assert type(message).__name__ in {"Resize", "Eof", "SessionStarted", "Exit"}


@FAST
@given(st.binary(max_size=1), st.binary(max_size=64))
def test_decode_shell_frame_any_prefix(prefix: bytes, rest: bytes) -> None:
    try:
        stream, payload = decode_shell_frame(prefix + rest)
    except ProtocolViolation:
        return
    assert payload == (prefix + rest)[1:]
    assert int(stream) in (0, 1, 2)


# --- log lines ------------------------------------------------------------------------------------

texts = st.text(max_size=40)
records = st.builds(LogRecord, texts.filter(bool), texts, texts, texts, texts)
junk_lines = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    near_controls.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    records.map(lambda r: encode_log_record(r).encode()[:-1]),  # cut short
    st.just(b"\xff\xfe"),
    st.just(b"   "),
    st.just(b"\r"),
)
lines = st.one_of(records.map(lambda r: encode_log_record(r).encode()), junk_lines)


def _reference(data: bytes) -> list[object]:
    """What the line decoder makes of ``data``, as the frame decoder's entries."""
    decoder = LogDecoder()
    out: list[object] = []
    for entry in [*decoder.feed(data), *decoder.finish()]:
        if isinstance(entry, LogRecord):
            out.append((entry.cursor, entry.ts, entry.instance, entry.stream, entry.message))
        else:
            out.append(entry)
    return out


@FAST
@given(st.lists(lines, max_size=12), st.lists(st.integers(min_value=0), max_size=6))
def test_frame_decoder_agrees_with_the_line_decoder_on_each_frame(
        batch: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\n" for line in batch)
    assert decode_frame(data) == _reference(data)
    points = sorted({min(c, len(data)) for c in cuts})
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        frame = data[start:end]  # its end ends its last line, newline or not
        assert decode_frame(frame) == _reference(frame)


def test_frame_decoder_never_accepts_lines_that_are_not_records_each() -> None:
    one = encode_log_record(LogRecord("c1", "t", "i", "stdout", "one"))
    two = encode_log_record(LogRecord("c2", "t", "i", "stdout", "two"))
    split = encode_log_record(LogRecord("c3", "t", "i", "stdout", "three"))[:-1] + ',"x":[1'
    data = f"{one},{two}\n{split}\n2]}}\n".encode()
    assert decode_frame(data) == _reference(data)
    assert decode_frame(data.removesuffix(b"\n")) == _reference(data)


@FAST
@given(st.binary(max_size=300))
def test_decode_log_line_returns_a_record_or_a_bad_record(line: bytes) -> None:
    entry = decode_log_line(line)
    assert isinstance(entry, LogRecord | BadRecord)
    if isinstance(entry, BadRecord):
        assert entry.raw == line and entry.reason
        assert entry.cursor is None or isinstance(entry.cursor, str)


@FAST
@given(st.lists(lines, max_size=10), st.integers(min_value=8, max_value=64))
def test_log_decoder_bounds_every_line(batch: list[bytes], max_line: int) -> None:
    decoder = LogDecoder(max_line=max_line)
    data = b"".join(line + b"\n" for line in batch)
    for entry in [*decoder.feed(data), *decoder.finish()]:
        if isinstance(entry, BadRecord):
            assert len(entry.raw) <= max(1024, max_line)
        else:
            assert len(encode_log_record(entry).encode()) <= max_line + 1


# --- close reasons --------------------------------------------------------------------------------


@FAST
@given(st.sampled_from([*(c.value for c in Code), "", "X", "not a code", "a" * 50]),
       st.sampled_from([":", ": ", " : ", "::", ""]), st.text(max_size=80))
def test_parse_close_reason_on_code_like_prefixes(code: str, sep: str, text: str) -> None:
    parsed, rest = parse_close_reason(code + sep + text)
    if parsed is not None:
        assert re.fullmatch(r"[a-z-]{1,40}", parsed)
        assert ":" in sep + text and (code + sep + text).startswith(parsed + ":")
    assert isinstance(rest, str) and rest == rest.strip()


@FAST
@given(st.integers(1000, 4999), st.sampled_from([c.value for c in Code]), st.text(max_size=60))
def test_close_with_a_catalog_prefix_is_a_clean_failure(number: int, code: str,
                                                        text: str) -> None:
    failure = classify_close(number, f"{code}: {text}".encode()[:123])
    assert failure.code in CATALOG and failure.code is not Code.INTERNAL_ERROR
    assert not CONTROL.search(failure.message)


# --- problem bodies, challenges, Retry-After ------------------------------------------------------

problem_bodies = st.dictionaries(
    st.sampled_from(["type", "title", "status", "detail", "code", "required_role", "request_id",
                     "retry_after", "services", "instance", "extra"]),
    json_values, max_size=9)


@FAST
@given(problem_bodies, st.sampled_from(["application/problem+json", "application/json",
                                        "text/plain", None, "application/problem+json; x=1"]))
def test_parse_problem_on_json_bodies(body: dict[str, object], ctype: str | None) -> None:
    problem = parse_problem(json.dumps(body).encode(), ctype)
    assert problem is None or isinstance(problem, Problem)
    if problem is None:
        return
    for text in (problem.title, problem.detail, problem.code, problem.required_role,
                 problem.request_id, problem.type, problem.instance):
        assert text is None or (isinstance(text, str) and not CONTROL.search(text))
    assert problem.status is None or isinstance(problem.status, int)
    assert problem.retry_after is None or 0 <= problem.retry_after <= 86400
    assert all(isinstance(s, str) for s in problem.services)


@FAST
@given(st.integers(100, 599), problem_bodies)
def test_handshake_with_a_json_problem_body_is_clean(status: int,
                                                     body: dict[str, object]) -> None:
    failure = classify_handshake(status, [("Content-Type", "application/problem+json")],
                                 json.dumps(body).encode(), service="api", command="logs")
    assert failure.code in CATALOG and failure.http_status == status
    for text in (failure.message, failure.hint, failure.problem_detail or "",
                 failure.problem_title or "", failure.required_role or ""):
        assert not CONTROL.search(text)


tokens = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True)
quoted_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@FAST
@given(tokens, st.lists(st.tuples(tokens, quoted_values), min_size=1, max_size=4,
                        unique_by=lambda p: p[0].lower()))
def test_www_authenticate_reads_back_what_the_grammar_writes(
        scheme: str, params: list[tuple[str, str]]) -> None:
    header = scheme + " " + ", ".join(f"{name}={_quote(value)}" for name, value in params)
    [challenge] = parse_www_authenticate(header)
    assert isinstance(challenge, Challenge)
    assert challenge.scheme.lower() == scheme.lower()
    for name, value in params:
        assert challenge.get(name) == value


@FAST
@given(st.lists(st.sampled_from(['Bearer', 'Basic', ',', ' ', '=', '"', '\\', 'realm', 'error',
                                 '"x,y"', 'a=b', '==', '\t', 'é']), max_size=20))
def test_www_authenticate_on_grammar_fragments_never_raises(parts: list[str]) -> None:
    for challenge in parse_www_authenticate("".join(parts)):
        assert challenge.scheme


@FAST
@given(st.integers(-10**6, 10**6), st.floats(1e9, 2e9))
def test_retry_after_http_dates(offset: int, now: float) -> None:
    got = parse_retry_after(formatdate(now + offset, usegmt=True), now)
    assert got is not None
    assert 0.0 <= got <= 86400.0
    if 1 < offset < 86400:
        assert abs(got - offset) <= 1.0


# --- exceptions of the libraries, classified ------------------------------------------------------

WS_EXCEPTIONS = [cls for cls in vars(websocket).values()
                 if isinstance(cls, type) and issubclass(cls, BaseException)
                 and cls.__module__.startswith("websocket")]


@FAST
@given(st.sampled_from(WS_EXCEPTIONS), st.text(max_size=60), st.sampled_from(list(Phase)))
def test_every_websocket_client_exception_classifies(kind: type[BaseException], text: str,
                                                    phase: Phase) -> None:
    try:
        exc = kind(text)
    except TypeError:
        exc = kind(text, 0, {}, b"")  # WebSocketBadStatusException(message, status, ...)
    failure = classify_exception(exc, phase=phase, url="ws://gw/v1/logs?service=api")
    assert isinstance(failure, Failure) and failure.code in CATALOG
    assert failure.code is not Code.INTERNAL_ERROR
    assert not CONTROL.search(failure.message)


@FAST
@given(st.sampled_from([socket.gaierror, ssl.SSLError, ssl.SSLCertVerificationError,
                        ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionAbortedError,
                        ConnectionResetError, InterruptedError, PermissionError]),
       st.integers(-20, 150), st.text(max_size=60))
def test_socket_and_ssl_exceptions_classify(kind: type[OSError], number: int, text: str) -> None:
    assume(kind is not InterruptedError or number != 4)
    failure = classify_exception(kind(number, text), phase=Phase.CONNECT, url="wss://gw/x")
    assert failure.code in CATALOG and failure.code is not Code.INTERNAL_ERROR
    assert not CONTROL.search(failure.message)
