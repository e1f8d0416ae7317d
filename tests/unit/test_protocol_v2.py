"""The tether.v2 codec and stream bookkeeping: round trips, hostile input, replay buffers."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import CATALOG, Code
from tether.protocol import (
    ACK_BYTES,
    MAX_CLOSE_REASON_BYTES,
    MAX_OFFSET,
    PORT_FORWARD_SUBPROTOCOLS_V2,
    SESSION_GONE_REASON,
    SHELL_SUBPROTOCOLS_V2,
    SUBPROTOCOL,
    SUBPROTOCOL_V2,
    Ack,
    CloseCode,
    Eof,
    Exit,
    ProtocolViolation,
    Resize,
    Resume,
    Resumed,
    SessionStarted,
    V2Message,
    close_code_name,
    decode_control,
    decode_control_v2,
    encode_control,
    lost_bytes,
    parse_close_reason,
    resume_lost_reason,
)
from tether.replay import AckCounter, ReplayBuffer, Ring

offsets = st.integers(min_value=0, max_value=MAX_OFFSET)
ids = st.text(min_size=1, max_size=256)
messages: st.SearchStrategy[V2Message] = st.one_of(
    st.builds(Ack, offsets),
    st.builds(Resume, ids, offsets),
    st.builds(Resumed, offsets),
    st.builds(Resize, st.integers(1, 65535), st.integers(1, 65535)),
    st.just(Eof()),
    st.builds(SessionStarted, st.text(), st.text()),
    st.builds(Exit, st.integers(-(2**31), 2**31 - 1)),
)


# --- negotiation constants --------------------------------------------------------------------


def test_v2_is_offered_before_v1_and_port_forward_keeps_binary_last() -> None:
    assert SHELL_SUBPROTOCOLS_V2 == (SUBPROTOCOL_V2, SUBPROTOCOL)
    assert PORT_FORWARD_SUBPROTOCOLS_V2 == (SUBPROTOCOL_V2, SUBPROTOCOL, "binary")


def test_v2_close_codes_have_names() -> None:
    assert close_code_name(4410) == "4410 (SESSION_GONE)"
    assert close_code_name(4416) == "4416 (RESUME_LOST)"


# --- control messages -----------------------------------------------------------------------


@given(messages)
def test_every_v2_message_round_trips(message: V2Message) -> None:
    text = encode_control(message)
    assert decode_control_v2(text) == message
    assert decode_control_v2(text.encode("utf-8", errors="surrogatepass")) == message


@pytest.mark.parametrize("text", ['{"type":"ack","received":1}',
                                  '{"type":"resume","id":"x","received":0}',
                                  '{"type":"resumed","received":0}'])
def test_v1_decoding_does_not_know_the_v2_messages(text: str) -> None:
    with pytest.raises(ProtocolViolation, match="unknown control message type"):
        decode_control(text)


def test_the_wire_form_of_each_message() -> None:
    assert encode_control(Ack(5)) == '{"type":"ack","received":5}'
    assert encode_control(Resumed(7)) == '{"type":"resumed","received":7}'
    assert json.loads(encode_control(Resume("abc", 9))) == {"type": "resume", "id": "abc",
                                                            "received": 9}


def test_unknown_fields_are_ignored() -> None:
    assert decode_control_v2('{"type":"ack","received":3,"extra":[1]}') == Ack(3)


def test_reprs_never_show_a_session_id() -> None:
    secret = "s3cr3t-session-id-value"
    for message in (Resume(secret, 1), SessionStarted(secret, "api-1")):
        assert secret not in repr(message) and secret not in str(message)


@pytest.mark.parametrize("body", [
    {"type": "ack"}, {"type": "ack", "received": -1}, {"type": "ack", "received": MAX_OFFSET + 1},
    {"type": "ack", "received": True}, {"type": "ack", "received": 1.0},
    {"type": "ack", "received": "1"}, {"type": "resumed", "received": None},
    {"type": "resume", "received": 0}, {"type": "resume", "id": "", "received": 0},
    {"type": "resume", "id": "x" * 257, "received": 0}, {"type": "resume", "id": 5, "received": 0},
    {"type": "resume", "id": "x"}, {"type": "resume", "id": "x", "received": -5},
    {"type": "nack", "received": 0}, {"type": ["ack"]}, {},
])
def test_bad_fields_are_protocol_violations_that_show_no_id(body: dict[str, object]) -> None:
    with pytest.raises(ProtocolViolation) as info:
        decode_control_v2(json.dumps(body))
    assert "x" * 20 not in str(info.value)


@given(messages)
def test_every_proper_prefix_is_rejected(message: V2Message) -> None:
    raw = encode_control(message).encode("utf-8", errors="surrogatepass")
    for end in range(len(raw)):  # byte by byte: a cut frame is never a message
        with pytest.raises(ProtocolViolation):
            decode_control_v2(raw[:end])


@settings(max_examples=300)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_junk_raises_only_protocol_violation(junk: bytes) -> None:
    with contextlib.suppress(ProtocolViolation):
        decode_control_v2(junk)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8),
       st.sampled_from(["ack", "resume", "resumed"]))
def test_any_json_with_a_v2_type_decodes_or_is_refused(value: object, kind: str) -> None:
    body = value if isinstance(value, dict) else {"received": value, "id": value}
    body = {**body, "type": kind}
    try:
        message = decode_control_v2(json.dumps(body))
    except ProtocolViolation:
        return
    assert isinstance(message, (Ack, Resume, Resumed))


def test_deep_nesting_is_refused_not_crashed() -> None:
    with pytest.raises(ProtocolViolation):
        decode_control_v2("[" * 100_000 + "]" * 100_000)


# --- close reasons ----------------------------------------------------------------------------


@given(offsets)
def test_resume_lost_reason_carries_the_count(lost: int) -> None:
    reason = resume_lost_reason(lost)
    assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
    assert parse_close_reason(reason)[0] == "resume-lost"
    assert lost_bytes(reason) == lost


@pytest.mark.parametrize("reason", ["", "resume-lost", "resume-lost: many bytes",
                                    "session-expired: 12 bytes", "12 bytes were lost",
                                    "resume-lost: 12bytes"])
def test_lost_bytes_of_other_reasons_is_none(reason: str) -> None:
    assert lost_bytes(reason) is None


def test_the_v2_close_reasons_name_catalog_codes() -> None:
    assert parse_close_reason(SESSION_GONE_REASON)[0] == Code.SESSION_EXPIRED
    assert parse_close_reason(resume_lost_reason(1))[0] == Code.RESUME_LOST
    for code in (Code.SESSION_EXPIRED, Code.RESUME_LOST):
        assert CATALOG[code].hint and CATALOG[code].when
    assert CloseCode.SESSION_GONE == 4410 and CloseCode.RESUME_LOST == 4416


# --- replay buffer ----------------------------------------------------------------------------


def joined(buffer: ReplayBuffer, offset: int) -> bytes:
    return b"".join(data for _, data in buffer.since(offset))


def test_append_ack_and_since() -> None:
    buffer = ReplayBuffer(10)
    buffer.append(b"abc", 1)
    buffer.append(b"defg", 2)
    assert (buffer.start, buffer.end, buffer.size, buffer.room) == (0, 7, 7, 3)
    assert buffer.since(2) == [(1, b"c"), (2, b"defg")]
    assert buffer.ack(4) == 4
    assert buffer.since(4) == [(2, b"efg")]
    assert buffer.ack(2) == 0  # stale: nothing changes
    assert buffer.missing(1) == 3 and buffer.missing(4) == 0
    with pytest.raises(ValueError, match="past"):
        buffer.ack(8)
    for bad in (3, 8):
        with pytest.raises(ValueError, match="outside"):
            buffer.since(bad)
    assert buffer.since(7) == []


def test_evicting_drops_the_oldest_and_counts_them() -> None:
    buffer = ReplayBuffer(4)
    assert buffer.append(b"abc", evict=True) == 0
    assert buffer.append(b"defgh", evict=True) == 4
    assert (buffer.start, buffer.end) == (4, 8)
    assert joined(buffer, 4) == b"efgh"
    assert buffer.missing(0) == 4


def test_append_past_the_limit_is_the_callers_choice() -> None:
    buffer = ReplayBuffer(2)
    buffer.append(b"abcd")
    assert buffer.size == 4 and buffer.room == 0


def test_a_buffer_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        ReplayBuffer(0)


operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.binary(max_size=40), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("ack"), st.integers(0, 400)),
), max_size=60)


@given(st.integers(1, 100), operations)
def test_replay_buffer_matches_a_plain_model(limit: int, ops: list[tuple[object, ...]]) -> None:
    buffer = ReplayBuffer(limit)
    stream = bytearray()  # every byte ever appended
    tags: list[int] = []
    start = 0
    for op in ops:
        if op[0] == "append":
            _, data, tag, evict = op
            assert isinstance(data, bytes) and isinstance(tag, int)
            dropped = buffer.append(data, tag, evict=bool(evict))
            stream += data
            tags += [tag] * len(data)
            if evict:
                new_start = max(start, len(stream) - limit)
                assert dropped == new_start - start
                start = new_start
        else:
            assert isinstance(op[1], int)
            offset = min(op[1], len(stream))
            freed = buffer.ack(offset)
            assert freed == max(0, offset - start)
            start = max(start, offset)
        assert (buffer.start, buffer.end) == (start, len(stream))
    for offset in range(start, len(stream) + 1):
        pieces = buffer.since(offset)
        assert b"".join(d for _, d in pieces) == bytes(stream[offset:])
        assert [t for t, d in pieces for _ in d] == tags[offset:]
        assert all(data for _, data in pieces)


ring_operations = st.lists(st.one_of(
    st.tuples(st.just("read"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("ack"), st.integers(0, 60)),
), max_size=80)


@given(st.integers(1, 64), ring_operations)
def test_reads_into_a_ring_never_overwrite_unacknowledged_bytes(
        limit: int, ops: list[tuple[object, ...]]) -> None:
    """Bytes read in place (as ``recv_into`` does) stay what was read until acknowledged,
    through every wrap of the ring's memory."""
    buffer = ReplayBuffer(limit)
    ring = Ring(buffer)
    stream = bytearray()
    for op in ops:
        if op[0] == "read":
            data = op[1]
            assert isinstance(data, bytes)
            space = ring.space(len(data))
            assert len(space) == min(len(data), buffer.room, limit - buffer.end % limit)
            space[:] = data[:len(space)]
            buffer.append(space)
            stream += data[:len(space)]
        else:
            assert isinstance(op[1], int)
            buffer.ack(buffer.start + min(op[1], buffer.size))
        assert b"".join(bytes(d) for _, d in buffer.since(buffer.start)) == \
            bytes(stream[buffer.start:])


def test_a_ring_gives_room_up_to_the_end_of_its_memory() -> None:
    buffer = ReplayBuffer(8)
    ring = Ring(buffer)
    first = ring.space(6)
    first[:] = b"abcdef"
    buffer.append(first)
    assert len(ring.space(6)) == 2  # room 2, at the end of the memory
    buffer.ack(6)
    wrap = ring.space(6)
    assert len(wrap) == 2  # the memory's end comes first; the next read wraps
    wrap[:] = b"gh"
    buffer.append(wrap)
    assert len(ring.space(6)) == 6 and joined(buffer, 6) == b"gh"


def test_one_byte_at_a_time() -> None:
    buffer = ReplayBuffer(1000)
    data = bytes(range(256))
    for i, byte in enumerate(data):
        buffer.append(bytes([byte]))
        if i % 3 == 0:
            buffer.ack(i // 2)
    assert joined(buffer, buffer.start) == data[buffer.start:]


# --- acks -------------------------------------------------------------------------------------


def test_an_ack_is_due_every_32_kib() -> None:
    counter = AckCounter()
    assert not counter.pending
    assert counter.add(ACK_BYTES - 1) is False
    assert counter.pending
    assert counter.add(1) is True
    assert counter.take() == ACK_BYTES
    assert not counter.pending and counter.add(10) is False
    resumed = AckCounter(received=500)
    assert (resumed.received, resumed.acked, resumed.pending) == (500, 500, False)
