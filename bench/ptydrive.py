"""Drive a command in a real pseudo-terminal: keystroke echo round trips and output throughput."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
import tty
from collections.abc import Iterator


class PtyProcess:
    """A child whose stdin, stdout and stderr are the slave side of a fresh pty (set raw)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)  # no local echo or line discipline: the child decides
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)

    def read_until(self, needle: bytes, timeout: float) -> bytes:
        """Everything read until ``needle`` appears; TimeoutError if it does not in time."""
        seen = bytearray()
        deadline = time.monotonic() + timeout
        while needle not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                tail = bytes(seen[-200:])
                raise TimeoutError(f"{needle!r} not seen within {timeout} s; got {tail!r}")
            try:
                seen += os.read(self.master, 65536)
            except OSError as exc:
                raise EOFError(f"pty closed before {needle!r}") from exc
        return bytes(seen)

    def drain(self, timeout: float) -> int:
        """Read until the child closes the pty; the number of bytes read."""
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([self.master], [], [], 1.0)[0]:
                if self.proc.poll() is not None:
                    return total
                continue
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:  # EIO: every slave descriptor is closed
                return total
            if not chunk:
                return total
            total += len(chunk)
        raise TimeoutError(f"output did not end within {timeout} s")

    def close(self) -> None:
        """End the child (by PID) and close the pty."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self.master)


@contextlib.contextmanager
def spawned(argv: list[str], env: dict[str, str] | None = None) -> Iterator[PtyProcess]:
    """A PtyProcess, closed on the way out."""
    child = PtyProcess(argv, env)
    try:
        yield child
    finally:
        child.close()


def keystroke_echo(argv: list[str], count: int, env: dict[str, str] | None = None,
                   timeout: float = 30.0) -> float:
    """Microseconds from writing one key to seeing its echo, median of ``count``.

    ``argv`` must run ``cat`` on a remote terminal that echoes what it is sent.
    """
    with spawned(argv, env) as child:
        os.write(child.master, b"ready\r")  # cooked remote: echoed back once the shell is up
        child.read_until(b"ready", timeout)
        time.sleep(0.2)
        with contextlib.suppress(TimeoutError):
            child.read_until(b"\x00never", 0.2)  # discard the line cat writes back
        samples = []
        for i in range(count):
            key = b"abcdefghijklmnopqrstuvwxyz"[i % 26 : i % 26 + 1]
            start = time.perf_counter()
            os.write(child.master, key)
            child.read_until(key, timeout)
            samples.append((time.perf_counter() - start) * 1e6)
        samples.sort()
        return samples[len(samples) // 2]


def output_rate(argv: list[str], env: dict[str, str] | None = None,
                timeout: float = 300.0) -> float:
    """MiB/s of everything ``argv`` writes to its terminal, until it exits."""
    with spawned(argv, env) as child:
        start = time.perf_counter()
        total = child.drain(timeout)
        elapsed = time.perf_counter() - start
        child.proc.wait(timeout=10)
    return total / elapsed / 2**20
