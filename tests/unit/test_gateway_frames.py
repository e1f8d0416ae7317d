"""The gateway writes binary frames itself: the same bytes websockets would have written."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from tether.gateway.connection import _binary_header


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_binary_header_is_websockets_own(size: int) -> None:
    payload = bytes(size)
    expected = Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert _binary_header(size) + payload == expected
