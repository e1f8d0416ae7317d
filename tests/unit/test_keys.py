"""ssh-style escapes and whole bracketed pastes, fed whole, byte by byte and split anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tether.session.keys import PASTE_END, PASTE_START, Action, EscapeScanner, PasteJoiner


def scan_all(chunks: list[bytes]) -> tuple[bytes, list[Action]]:
    scanner = EscapeScanner()
    data, actions = b"", []
    for chunk in chunks:
        result = scanner.feed(chunk)
        data += result.data
        actions += result.actions
        if Action.DISCONNECT in result.actions:
            break
    return data, actions


def test_tilde_dot_at_line_start_disconnects_and_sends_nothing_after() -> None:
    assert scan_all([b"ls\r~.rm -rf /\r"]) == (b"ls\r", [Action.DISCONNECT])


def test_tilde_dot_at_the_very_start_disconnects() -> None:
    assert scan_all([b"~."]) == (b"", [Action.DISCONNECT])


def test_tilde_dot_mid_line_is_plain_text() -> None:
    assert scan_all([b"echo a~.b\r"]) == (b"echo a~.b\r", [])


def test_tilde_question_lists_escapes_and_is_not_sent() -> None:
    assert scan_all([b"\r~?x"]) == (b"\rx", [Action.HELP])


def test_double_tilde_sends_one_tilde() -> None:
    assert scan_all([b"~~/x"]) == (b"~/x", [])


def test_tilde_then_other_key_sends_both() -> None:
    assert scan_all([b"~x"]) == (b"~x", [])


def test_tilde_held_across_chunks() -> None:
    scanner = EscapeScanner()
    assert scanner.feed(b"\r~").data == b"\r"
    assert scanner.feed(b".").actions == [Action.DISCONNECT]


@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=8))
def test_any_split_gives_the_same_result(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert scan_all(chunks) == scan_all([data])
    assert scan_all([data[i : i + 1] for i in range(len(data))]) == scan_all([data])


def test_text_without_escapes_passes_unchanged() -> None:
    assert scan_all([b"hello\rworld\n"]) == (b"hello\rworld\n", [])


def test_paste_is_held_until_complete() -> None:
    joiner = PasteJoiner()
    assert joiner.feed(b"ab" + PASTE_START + b"line1\r") == b"ab"
    released = joiner.feed(b"line2" + PASTE_END + b"c")
    assert released == PASTE_START + b"line1\rline2" + PASTE_END + b"c"


def test_partial_start_marker_is_held() -> None:
    joiner = PasteJoiner()
    assert joiner.feed(b"x\x1b[20") == b"x"
    assert joiner.feed(b"1~") == b"\x1b[201~"  # not a paste start after all: released


def test_oversized_paste_is_released_not_buffered_forever() -> None:
    joiner = PasteJoiner(limit=100)
    out = joiner.feed(PASTE_START + b"y" * 200)
    assert out == PASTE_START + b"y" * 200
    assert joiner.flush() == b""


@given(st.binary(max_size=100), st.binary(max_size=100), st.lists(st.integers(0, 300), max_size=6))
def test_pastes_never_split_and_nothing_lost(before: bytes, body: bytes, cuts: list[int]) -> None:
    body = body.replace(b"\x1b", b"")
    before = before.replace(b"\x1b", b"")
    stream = before + PASTE_START + body + PASTE_END + b"tail"
    points = sorted({min(c, len(stream)) for c in cuts})
    joiner = PasteJoiner()
    pieces = [joiner.feed(stream[a:b])
              for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    pieces.append(joiner.flush())
    assert b"".join(pieces) == stream
    paste = PASTE_START + body + PASTE_END
    assert any(paste in piece for piece in pieces)
