"""The bookkeeping of a tether.v2 stream, one direction at a time. Pure: no I/O, no clock.

A sender keeps what it sent in a :class:`ReplayBuffer` until the peer
acknowledges it; a receiver counts what arrived in an :class:`AckCounter`,
which says when an acknowledgement is due by size (the caller's clock covers
``ACK_INTERVAL`` and ``ACK_GAP``). Offsets are absolute byte counts of
one direction's data since the session began (docs/protocol.md).
"""

from __future__ import annotations

import mmap
from collections import deque

from tether.protocol import ACK_BYTES, DEFAULT_REPLAY_BUFFER

#: An acknowledgement due by size waits until this many seconds after the previous one
#: (docs/protocol.md 5.4): a bulk stream is acknowledged about 250 times a second,
#: not once a message.
ACK_GAP = 0.004
_KEPT = (bytes, memoryview)  # what a buffer keeps without a copy


class ReplayBuffer:
    """The bytes from ``start`` to ``end`` that the peer may still lack, each with a tag.

    The tag is whatever the sender needs to frame a byte again (the shell's
    stream byte); a chunk keeps one tag. ``limit`` bounds ``size``: the
    sender reads no more than ``room`` (backpressure), or, when it must not
    stop, appends with ``evict=True`` and the oldest bytes go (``start``
    moves past bytes the peer never acknowledged: a later resume from before
    ``start`` learns exactly how many were lost). ``append`` never refuses:
    keeping to ``room`` is the caller's part.
    """

    def __init__(self, limit: int = DEFAULT_REPLAY_BUFFER, start: int = 0) -> None:
        if limit <= 0:
            raise ValueError("a replay buffer needs a positive limit")
        self.limit = limit
        self.start = start  # the offset of the oldest byte held
        self.end = start  # the offset after the newest byte: every byte ever appended
        self._chunks: deque[tuple[int, bytes | memoryview]] = deque()

    @property
    def size(self) -> int:
        """Bytes held."""
        return self.end - self.start

    @property
    def room(self) -> int:
        """Bytes that may be appended before the limit."""
        return max(0, self.limit - self.size)

    def append(self, data: bytes | memoryview, tag: int = 0, *, evict: bool = False) -> int:
        """Add ``data``; with ``evict``, drop the oldest bytes beyond the limit and return how
        many went. A memoryview is kept as it is (a view of a :class:`Ring`), not copied: its
        memory must not change until the bytes are acknowledged."""
        if data:
            self._chunks.append((tag, data if isinstance(data, _KEPT) else bytes(data)))
            self.end += len(data)
        return self._drop(self.size - self.limit) if evict else 0

    def ack(self, offset: int) -> int:
        """Forget the bytes before ``offset``; how many were forgotten. An offset at or before
        ``start`` changes nothing; one past ``end`` raises ValueError (never sent)."""
        if offset > self.end:
            raise ValueError(f"offset {offset} is past the {self.end} bytes sent")
        return self._drop(offset - self.start)

    def since(self, offset: int) -> list[tuple[int, bytes | memoryview]]:
        """``(tag, bytes)`` pieces from ``offset`` to ``end``, in order. Raises ValueError when
        ``offset`` is before ``start`` (see :meth:`missing`) or past ``end``."""
        if offset < self.start or offset > self.end:
            raise ValueError(f"offset {offset} is outside {self.start}..{self.end}")
        want = self.end - offset  # walked from the newest piece: a sender is usually near end
        out: list[tuple[int, bytes | memoryview]] = []
        for tag, data in reversed(self._chunks):
            if want <= 0:
                break
            out.append((tag, data[len(data) - want:] if want < len(data) else data))
            want -= len(data)
        out.reverse()
        return out

    def missing(self, offset: int) -> int:
        """How many bytes from ``offset`` on are no longer held (0 when none are missing)."""
        return max(0, self.start - offset)

    def _drop(self, count: int) -> int:
        dropped = 0
        while count > dropped and self._chunks:
            tag, data = self._chunks[0]
            take = count - dropped
            if take >= len(data):
                self._chunks.popleft()
                dropped += len(data)
            else:
                self._chunks[0] = (tag, data[take:])
                dropped += take
        self.start += dropped
        return dropped


class Ring:
    """Memory for a :class:`ReplayBuffer` whose bytes are read in place (``recv_into``).

    A sender that keeps every byte until it is acknowledged allocates a new
    piece per read and frees it an ack later; the allocator then keeps
    handing back fresh pages (a page fault each 4 KiB). Reading into one
    buffer of the replay limit, laid out by offset (the byte at offset ``n``
    lives at ``n % limit``), allocates nothing per read; the replay buffer
    keeps views of it. The memory is a private anonymous mapping of the limit's
    size: the kernel gives each page when it is first used (``bytearray(n)``
    would zero all of it up front, and Python's default anonymous mapping is
    shared memory, whose pages cost more to fill).
    """

    def __init__(self, buffer: ReplayBuffer) -> None:
        self._buffer = buffer
        self._memory = memoryview(_anonymous(buffer.limit))

    def space(self, want: int) -> memoryview:
        """Where the next ``want`` bytes at most may be read: no unacknowledged byte lives
        there (the buffer's room bounds it, and the end of the memory). Empty without room."""
        buffer = self._buffer  # read once each, not through properties: once per read
        limit, end = buffer.limit, buffer.end
        at = end % limit
        return self._memory[at:at + min(want, limit - (end - buffer.start), limit - at)]


def _anonymous(size: int) -> mmap.mmap:
    """``size`` bytes of private memory, each page given on first use."""
    private = getattr(mmap, "MAP_PRIVATE", None)
    if private is None:  # Windows: an anonymous mapping is backed by the paging file
        return mmap.mmap(-1, size)
    return mmap.mmap(-1, size, flags=private | mmap.MAP_ANONYMOUS)


class AckCounter:
    """Bytes received from the peer, and how many of them this side has acknowledged."""

    def __init__(self, received: int = 0, every: int = ACK_BYTES) -> None:
        self.received = received
        self.acked = received
        self.every = every

    def add(self, count: int) -> bool:
        """Count ``count`` more bytes; True when an acknowledgement is due by size."""
        self.received += count
        return self.received - self.acked >= self.every

    @property
    def pending(self) -> bool:
        """Whether some received bytes are not acknowledged yet."""
        return self.received > self.acked

    def take(self) -> int:
        """The offset to acknowledge now (marking it acknowledged)."""
        self.acked = self.received
        return self.received
