"""A thread that hands the gateway each new row of the events table, once.

Woken by the store (NOTIFY, or a write of this process) or after
``interval``, it reads the events after the last one it saw. Ids of
concurrent transactions may commit out of order, so an id skipped over is
looked for again for a minute. While the database is away it says so once,
keeps trying, and reads what it missed when it is back. Every few minutes it
also deletes what has expired (``Store.maintain``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tether.store.base import StateUnavailable, Store

log = logging.getLogger("tether.gateway.state")
Event = tuple[int, str, str]  # id, kind, ident
GAP_LIFETIME = 60.0
MAINTAIN_EVERY = 300.0


class EventWatcher:
    """Delivers new events to ``deliver`` (called in the watcher's thread)."""

    def __init__(self, store: Store, deliver: Callable[[list[Event]], None], *,
                 interval: float) -> None:
        self.store = store
        self.deliver = deliver
        self.interval = interval
        self.available = True
        self._last: int | None = None
        self._gaps: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._maintained = time.monotonic()

    def start(self) -> None:
        """Watch from a daemon thread, from the newest event on."""
        self._last = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tether-state-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (within about a second)."""
        self._stop.set()
        self.store.interrupt()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._last is None:
                    self._last = self.store.last_event()
                self.store.wait_for_change(self.interval)
                if self._stop.is_set():
                    return
                self.poll()
                if time.monotonic() - self._maintained > MAINTAIN_EVERY:
                    self._maintained = time.monotonic()
                    self.store.maintain(time.time())
                if not self.available:
                    log.warning("the state database is back")
                self.available = True
            except StateUnavailable as exc:
                if self.available:
                    log.warning("the state database is unavailable: %s", exc)
                self.available = False
                self._stop.wait(min(self.interval, 1.0))
            except Exception:
                log.exception("reading state events failed")
                self._stop.wait(min(self.interval, 1.0))

    def poll(self) -> None:
        """Read and deliver the events not seen yet."""
        if self._last is None:
            self._last = self.store.last_event()
            return
        now = time.monotonic()
        self._gaps = {i: t for i, t in self._gaps.items() if now - t < GAP_LIFETIME}
        rows = self.store.events_after(self._last, sorted(self._gaps))
        fresh = []
        for row in rows:
            ident = row[0]
            if ident in self._gaps:
                del self._gaps[ident]
            elif ident > self._last:
                if ident - self._last < 1000:
                    self._gaps.update((i, now) for i in range(self._last + 1, ident))
                self._last = ident
            else:
                continue
            fresh.append(row)
        if fresh:
            self.deliver(fresh)
