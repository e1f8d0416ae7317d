"""Client framing: masked frames out, and the parser over any split of the gateway's stream."""

from __future__ import annotations

import struct
import threading

import pytest
import websocket
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.client.framing import (
    OPCODE_BINARY,
    OPCODE_PING,
    OPCODE_TEXT,
    READ_SIZE,
    FrameTooBig,
    MaskKeys,
    Message,
    Parser,
    encode,
)


def server_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def feed(parser: Parser, stream: bytes, cuts: list[int]) -> list[bytes]:
    """Hand ``stream`` to the parser as reads cut at ``cuts``; the pings it returned."""
    pings: list[bytes] = []
    pos = 0
    for cut in [*sorted(cuts), len(stream)]:
        while pos < cut:
            space = parser.buffer()
            n = min(len(space), cut - pos)
            space[:n] = stream[pos:pos + n]
            del space
            pings += parser.received(n)
            pos += n
    return pings


def unmask(raw: bytes) -> tuple[int, bytes]:
    """A client frame's opcode and payload, as the gateway reads it."""
    first, second = raw[0], raw[1]
    assert first & 0x80 and second & 0x80  # FIN, masked
    n, pos = second & 0x7F, 2
    if n == 126:
        n, pos = struct.unpack_from("!H", raw, 2)[0], 4
    elif n == 127:
        n, pos = struct.unpack_from("!Q", raw, 2)[0], 10
    key, body = raw[pos:pos + 4], raw[pos + 4:]
    assert len(body) == n
    return first & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_encode_masks_with_a_fresh_key_at_every_length(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    header, body = encode(OPCODE_BINARY, payload)
    assert unmask(header + body) == (OPCODE_BINARY, payload)
    keys = {encode(OPCODE_BINARY, payload)[0][-4:] for _ in range(3)} | {header[-4:]}
    assert len(keys) > 1


def test_masking_keys_are_each_handed_out_once_across_draws_and_threads() -> None:
    keys = MaskKeys(per_draw=16)  # a new draw every 16 keys
    taken: list[bytes] = []

    def take() -> None:
        taken.extend(keys() for _ in range(1000))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(taken) == 4000 and all(len(key) == 4 for key in taken)
    # 4,000 random 32-bit keys all differ but for a chance of about 1 in 500
    assert len(set(taken)) >= 3990


messages = st.lists(st.tuples(st.sampled_from([OPCODE_TEXT, OPCODE_BINARY]),
                              st.binary(max_size=300), st.integers(1, 3)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(messages, st.lists(st.integers(0, 4000), max_size=20), st.binary(max_size=20))
def test_any_split_of_the_stream_gives_the_same_messages(
        sent: list[tuple[int, bytes, int]], cuts: list[int], ping: bytes) -> None:
    stream = b""
    for opcode, payload, parts in sent:
        size = -(-len(payload) // parts) or 1
        pieces = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        for i, piece in enumerate(pieces):
            stream += server_frame(opcode if i == 0 else 0, piece, fin=i == len(pieces) - 1)
        stream += server_frame(OPCODE_PING, ping)  # between messages: answered, not delivered
    parser = Parser(1 << 20)
    pings = feed(parser, stream, [c for c in cuts if c < len(stream)])
    assert list(parser.messages) == [Message(op, data) for op, data, _ in sent]
    assert pings == [ping] * len(sent)
    assert not parser.pending


def test_a_frame_larger_than_the_buffer_and_a_masked_one() -> None:
    big = bytes(range(256)) * (3 * READ_SIZE // 256) + b"tail"
    stream = (server_frame(OPCODE_BINARY, big) + server_frame(OPCODE_TEXT, b"hi", mask=b"abcd")
              + server_frame(0x8, struct.pack("!H", 1000)) + server_frame(OPCODE_TEXT, b"after"))
    parser = Parser(4 * READ_SIZE, initial=stream[:100])
    feed(parser, stream[100:], [1000, READ_SIZE, 2 * READ_SIZE + 7])
    assert list(parser.messages) == [Message(OPCODE_BINARY, big), Message(OPCODE_TEXT, b"hi")]
    assert parser.close == struct.pack("!H", 1000)  # and nothing after the close frame


def test_limits_and_protocol_errors() -> None:
    with pytest.raises(FrameTooBig, match="frame of 5000 bytes"):
        feed(Parser(4096), server_frame(OPCODE_BINARY, b"x" * 5000)[:10], [])
    pieces = server_frame(OPCODE_BINARY, b"x" * 3000, fin=False) + server_frame(0, b"y" * 3000)
    with pytest.raises(FrameTooBig, match="message of more than 4096"):
        feed(Parser(4096), pieces, [])
    for bad in (b"\xc2\x00",  # a reserved bit
                b"\x83\x00",  # opcode 3
                server_frame(OPCODE_PING, b"p" * 126),  # a long control frame
                server_frame(OPCODE_PING, b"", fin=False),  # a fragmented one
                server_frame(0, b"x"),  # a continuation of nothing
                server_frame(OPCODE_TEXT, b"a", fin=False) + server_frame(OPCODE_TEXT, b"b")):
        with pytest.raises(websocket.WebSocketProtocolException):
            feed(Parser(4096), bad, [])
