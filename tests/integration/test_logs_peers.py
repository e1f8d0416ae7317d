"""``tether logs`` against peers that are not the reference gateway (a raw test server).

A hostile peer's bad lines (not JSON, missing fields, not UTF-8, 10 MB long)
are printed raw or skipped with one warning per kind; the stream goes on, and
a bad line's cursor still moves the resume point.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import assert_no_secrets, json_events, run_tether, tether_env
from tests.hostile import HostileServer, close, drop, send, upgrade_then
from tether.protocol import LogRecord, encode_log_batch

pytestmark = pytest.mark.timeout(30)

TEXT = 0x1
TOKEN = "tth_hostile-peer-test-token"


def batch(*records: tuple[str, str]) -> bytes:
    return encode_log_batch([LogRecord(cursor, "2026-01-02T03:04:05.000000Z", "web-1", "stdout",
                                       message) for cursor, message in records]).encode()


HOSTILE = [
    batch(("c1", "first")),
    b"plain text \x1b[2Jwith an escape\n",
    b"not json either\n",
    b"\xff\xfe broken utf-8\n",
    b'{"cursor":"c2","message":"no ts, no instance"}\n',
    b'{"cursor":"c3","ts":"t","instance":"web-1","stream":"stdout","message":"no newline"}',
    b"x" * (10 * 1024 * 1024) + b"\n",
    batch(("c4", "last")),
]


def test_bad_lines_are_printed_raw_with_one_warning_each_and_the_stream_goes_on(
        tmp_path: Path) -> None:
    steps = [send(TEXT, frame) for frame in HOSTILE]
    with HostileServer(upgrade_then(*steps, close(1000))) as peer:
        done = run_tether("logs", "web", env=tether_env(peer.url, TOKEN, tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[:6] == ["[web-1] first", "plain text with an escape", "not json either",
                         "\ufffd\ufffd broken utf-8",
                         '{"cursor":"c2","message":"no ts, no instance"}',
                         "[web-1] no newline"]
    assert lines[6].startswith("xxxx") and len(lines[6]) <= 4096
    assert lines[7:] == ["[web-1] last"]
    warnings = [ln for ln in done.stderr.decode().splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 4, warnings  # not JSON, not UTF-8, missing fields, too long
    assert all("printed as it came" in w for w in warnings)
    assert b"\x1b" not in done.stdout
    assert_no_secrets([TOKEN], done.stdout, done.stderr)


def test_json_output_skips_bad_lines_and_warns_in_json(tmp_path: Path) -> None:
    steps = [send(TEXT, frame) for frame in HOSTILE[:5] + HOSTILE[-1:]]
    with HostileServer(upgrade_then(*steps, close(1000))) as peer:
        done = run_tether("logs", "web", "-o", "json",
                          env=tether_env(peer.url, TOKEN, tmp_path))
    assert done.returncode == 0
    assert [json.loads(ln)["message"] for ln in done.stdout.splitlines()] == ["first", "last"]
    events = json_events(done.stderr)
    assert [e["event"] for e in events] == ["warning"] * 3
    assert all("skipped" in str(e["message"]) for e in events)


def test_a_bad_line_cursor_is_where_the_redial_resumes(tmp_path: Path) -> None:
    first = upgrade_then(send(TEXT, batch(("c1", "one"))),
                         send(TEXT, b'{"cursor":"c2","message":"no other fields"}\n'), drop())
    second = upgrade_then(send(TEXT, batch(("c3", "three"))), close(1000))
    with HostileServer(first, second) as peer:
        done = run_tether("logs", "web", "--tail", "5",
                          env=tether_env(peer.url, TOKEN, tmp_path))
        requests = list(peer.requests)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        "[web-1] one", '{"cursor":"c2","message":"no other fields"}', "[web-1] three"]
    assert [r.query.get("after") for r in requests] == [None, ["c2"]]
    assert requests[0].query["tail"] == ["5"] and "tail" not in requests[1].query
    assert "connection-lost" in done.stderr.decode()


def test_raw_prints_each_frame_as_it_came(tmp_path: Path) -> None:
    frames = [b"hello from a plain peer", b"two\nlines\n", b"\x1b]0;pwned\x07clean"]
    with HostileServer(upgrade_then(*(send(TEXT, f) for f in frames), close(1000),
                                    subprotocol=None)) as peer:
        done = run_tether("logs", "web", "--raw", env=tether_env(peer.url, TOKEN, tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello from a plain peer\ntwo\nlines\nclean\n"
