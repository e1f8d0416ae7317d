"""A fake monotonic clock for retry tests: only the recorded sleeps move it."""

from __future__ import annotations


class Clock:
    """Callable as ``time.monotonic``; ``sleep`` records the delay and moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
