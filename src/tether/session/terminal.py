"""The local terminal: raw mode that is always undone, its size, and resize notices.

``raw_mode`` restores the saved settings on every way out of its block: normal
exit, an exception, Ctrl+C, and SIGTERM/SIGHUP (which the CLI's error boundary
turns into exceptions). An ``atexit`` hook is the last resort for anything else
that ends the interpreter.

``termios`` and ``tty`` exist on POSIX only: they are imported by ``raw_mode``
and ``modes`` alone, so that every other command (and this module) loads on Windows too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

_Attrs = list[int | list[bytes | int]]


def is_terminal(fd: int) -> bool:
    """Whether ``fd`` is a terminal."""
    try:
        return os.isatty(fd)
    except OSError:
        return False


def size(fd: int | None = None) -> tuple[int, int]:
    """``(cols, rows)`` of the terminal on ``fd`` (stdout by default), 80x24 when unknown."""
    try:
        cols, rows = os.get_terminal_size(sys.stdout.fileno() if fd is None else fd)
    except (OSError, ValueError):
        cols, rows = shutil.get_terminal_size((80, 24))
    return max(cols, 1), max(rows, 1)


def modes(fd: int) -> str | None:
    """The terminal's modes as the shell's ``modes`` parameter; None when unknown."""
    if sys.platform == "win32":
        return None
    import termios

    from tether import ttymodes

    try:
        return ttymodes.capture(fd)
    except (termios.error, OSError):
        return None


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode for the block; restore it however the block ends."""
    import termios
    import tty

    saved: _Attrs = termios.tcgetattr(fd)

    def restore() -> None:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    atexit.register(restore)
    try:
        tty.setraw(fd, termios.TCSADRAIN)
        yield
    finally:
        restore()
        atexit.unregister(restore)


@contextlib.contextmanager
def on_resize(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` on SIGWINCH during the block.

    A no-op outside the main thread, and where there is no SIGWINCH (Windows).
    """
    sigwinch = getattr(signal, "SIGWINCH", None)
    if sigwinch is None:  # Windows: the console has no such signal
        yield
        return
    try:
        previous = signal.getsignal(sigwinch)

        def handler(signum: int, frame: FrameType | None) -> None:
            callback()

        signal.signal(sigwinch, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(sigwinch, previous)
