"""``tether logs`` against a peer that frames records its own way: a frame's end ends a record.

The peer is the suite's own (:mod:`tests.hostile`). It sends one record per
frame with and without the trailing newline, several per frame, and, in a
follow, one record at a time, each only once the test has seen the one before
it printed, so a record held back until the next frame would stall the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli import Follower, assert_no_secrets, run_tether, tether_env
from tests.hostile import HostileServer, Peer, Step, close, drop, send, stay_silent, upgrade_then
from tether.protocol import LogRecord, encode_log_record

pytestmark = pytest.mark.timeout(30)

TEXT = 0x1
TOKEN = "tth_framing-peer-test-token"
MODES = pytest.mark.parametrize("mode", ["text", "json"])


def line(n: int, *, newline: bool = True) -> bytes:
    """Record ``n`` as the wire has it, with or without its newline."""
    encoded = encode_log_record(LogRecord(f"c{n}", f"2026-01-02T03:04:{n:02d}.000000Z",
                                          "web-1", "stdout", f"record {n}")).encode()
    return encoded + b"\n" if newline else encoded


def printed(mode: str, numbers: range | list[int]) -> list[str]:
    """What ``tether logs`` prints for records ``numbers`` in ``mode``."""
    if mode == "json":
        return [line(n, newline=False).decode() for n in numbers]
    return [f"[web-1] record {n}" for n in numbers]


def args(mode: str, *rest: str) -> list[str]:
    return ["logs", "web", *rest, *(["-o", "json"] if mode == "json" else [])]


def run_against(mode: str, frames: list[bytes], tmp_path: Path) -> list[str]:
    """The lines of stdout once the peer has sent ``frames`` and closed with 1000."""
    with HostileServer(upgrade_then(*(send(TEXT, f) for f in frames), close(1000))) as peer:
        done = run_tether(*args(mode), env=tether_env(peer.url, TOKEN, tmp_path))
    assert done.returncode == 0, done.stderr
    assert b"warning" not in done.stderr, done.stderr
    assert_no_secrets([TOKEN], done.stdout, done.stderr)
    if mode == "json":
        assert all(json.loads(ln) for ln in done.stdout.splitlines())
    return done.stdout.decode().splitlines()


@MODES
@pytest.mark.parametrize("newline", [True, False], ids=["newline", "no-newline"])
def test_one_record_per_frame(mode: str, newline: bool, tmp_path: Path) -> None:
    frames = [line(n, newline=newline) for n in range(1, 6)]
    assert run_against(mode, frames, tmp_path) == printed(mode, range(1, 6))


@MODES
@pytest.mark.parametrize("newline", [True, False], ids=["newline", "no-newline"])
def test_several_records_per_frame(mode: str, newline: bool, tmp_path: Path) -> None:
    frames = [line(1) + line(2) + line(3, newline=newline),
              line(4) + line(5, newline=newline), line(6, newline=newline)]
    assert run_against(mode, frames, tmp_path) == printed(mode, range(1, 7))


class Gate:
    """Lets the peer send record ``n`` only once the test has seen record ``n - 1`` printed."""

    def __init__(self, count: int) -> None:
        self.seen = [threading.Event() for _ in range(count)]

    def spaced(self, newline: bool) -> Step:
        def run(peer: Peer) -> None:
            for n, seen in enumerate(self.seen, 1):
                peer.send_frame(TEXT, line(n, newline=newline))
                if not seen.wait(10):  # the record was never printed: stop sending
                    return
        return run


@MODES
@pytest.mark.parametrize("newline", [True, False], ids=["newline", "no-newline"])
def test_a_follow_prints_each_record_before_the_next_is_sent(
        mode: str, newline: bool, tmp_path: Path,
        follower: Callable[..., Follower]) -> None:
    count = 4
    gate = Gate(count)
    with HostileServer(upgrade_then(gate.spaced(newline), stay_silent())) as peer:
        run = follower(*args(mode, "-f")[1:], env=tether_env(peer.url, TOKEN, tmp_path))
        for n in range(1, count + 1):
            got = run.wait_for(n)  # printed while the peer holds the next record back
            assert [ln.decode().rstrip("\n") for ln in got] == printed(mode, range(1, n + 1))
            gate.seen[n - 1].set()
        run.kill()
    assert_no_secrets([TOKEN], bytes(run.out), bytes(run.err))


@MODES
def test_after_a_reconnect_the_last_printed_record_is_not_asked_for_again(
        mode: str, tmp_path: Path) -> None:
    first = upgrade_then(send(TEXT, line(1, newline=False)), send(TEXT, line(2, newline=False)),
                         drop())
    second = upgrade_then(send(TEXT, line(3, newline=False)), close(1000))
    with HostileServer(first, second) as peer:
        done = run_tether(*args(mode), env=tether_env(peer.url, TOKEN, tmp_path))
        requests = list(peer.requests)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == printed(mode, [1, 2, 3])
    assert [r.query.get("after") for r in requests] == [None, ["c2"]]
