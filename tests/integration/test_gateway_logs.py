"""``/v1/logs``: tail, since, follow, exact resume with cursors, rotation and truncation."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.gateway_client import collect, dial
from tether.gateway.config import LogSource, ServiceConfig
from tether.gateway.runner import RunningGateway


def _records(messages: list) -> list[dict]:
    out = []
    for frame in messages:
        assert isinstance(frame, str)
        assert frame.endswith("\n")
        out += [json.loads(line) for line in frame.splitlines()]
    return out


def _finite(gw: RunningGateway, token: str, **params) -> list[dict]:
    closed = collect(dial(gw.url, "/v1/logs", token, service="api", **params))
    assert closed.code == 1000
    return _records(closed.messages)


def _follow_until(ws, count: int, timeout: float = 5.0) -> list[dict]:
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(out)} of {count} records: {out}"
        out += _records([ws.recv(timeout=left)])
    return out


def _append(path: Path, *lines: str) -> None:
    with path.open("a") as handle:
        handle.write("".join(line + "\n" for line in lines))


def test_finite_stream_has_every_record_in_order_then_1000(gateway: RunningGateway,
                                                            viewer_token: str) -> None:
    records = _finite(gateway, viewer_token)
    assert len(records) == 6
    assert set(records[0]) == {"cursor", "ts", "instance", "stream", "message"}
    for name in ("api-1", "api-2"):
        mine = [r["message"] for r in records if r["instance"] == name]
        assert mine == [f"{name} line {i}" for i in (1, 2, 3)]
    assert records[0]["ts"] == "2026-01-02T03:04:01.000000Z"
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)


def test_tail_and_instance(gateway: RunningGateway, viewer_token: str) -> None:
    records = _finite(gateway, viewer_token, tail=1)
    assert sorted(r["message"] for r in records) == ["api-1 line 3", "api-2 line 3"]
    records = _finite(gateway, viewer_token, tail=2, instance="api-2")
    assert [r["message"] for r in records] == ["api-2 line 2", "api-2 line 3"]
    assert _finite(gateway, viewer_token, tail=0) == []


def test_since_rfc3339_and_duration(gateway: RunningGateway, viewer_token: str,
                                    log_dir: Path) -> None:
    records = _finite(gateway, viewer_token, since="2026-01-02T03:04:02Z", instance="api-1")
    assert [r["message"] for r in records] == ["api-1 line 2", "api-1 line 3"]
    assert _finite(gateway, viewer_token, since="1s") == []  # the file lines are old
    _append(log_dir / "api-1.log", "no timestamp here")
    records = _finite(gateway, viewer_token, since="15m")  # mtime is now: it counts
    assert [r["message"] for r in records] == ["no timestamp here"]


def test_after_cursor_resumes_exactly_every_instance(gateway: RunningGateway,
                                                     viewer_token: str, log_dir: Path) -> None:
    records = _finite(gateway, viewer_token)
    cut = 3  # the client printed three records, then the connection dropped
    seen = records[:cut]
    rest = _finite(gateway, viewer_token, after=seen[-1]["cursor"])
    assert [r["message"] for r in seen + rest] == [r["message"] for r in records]
    _append(log_dir / "api-2.log", "api-2 line 4")
    more = _finite(gateway, viewer_token, after=records[-1]["cursor"])
    assert [r["message"] for r in more] == ["api-2 line 4"]


def test_follow_gets_new_lines_and_stays_open_when_quiet(make_gateway, log_dir: Path) -> None:
    gw = make_gateway(ping_interval=0.2, ping_timeout=0.5)
    ws = dial(gw.url, "/v1/logs", gw.mint_token("Viewer"), service="api", follow=1, tail=0)
    time.sleep(1.0)  # quiet for several ping intervals: still open
    _append(log_dir / "api-1.log", "fresh 1")
    records = _follow_until(ws, 1)
    assert records[0]["message"] == "fresh 1" and records[0]["instance"] == "api-1"
    ws.close()


def test_follow_survives_rotation_and_truncation(gateway: RunningGateway, viewer_token: str,
                                                 log_dir: Path) -> None:
    log = log_dir / "api-1.log"
    ws = dial(gateway.url, "/v1/logs", viewer_token, service="api", instance="api-1",
              follow=1, tail=0)
    time.sleep(0.3)  # "tail=0" starts where the file ends when the gateway opens it
    _append(log, "before rotation")
    assert _follow_until(ws, 1)[0]["message"] == "before rotation"
    _append(log, "last of old file")
    os.rename(log, log_dir / "api-1.log.1")
    _append(log, "first of new file")
    got = _follow_until(ws, 2)
    assert [r["message"] for r in got] == ["last of old file", "first of new file"]
    time.sleep(0.3)
    log.write_text("")  # truncated in place
    time.sleep(0.3)
    _append(log, "after truncation")
    assert _follow_until(ws, 1)[0]["message"] == "after truncation"
    ws.close()


def test_resume_across_rotation(gateway: RunningGateway, viewer_token: str,
                                log_dir: Path) -> None:
    log = log_dir / "api-1.log"
    records = _finite(gateway, viewer_token, instance="api-1")
    cursor = records[1]["cursor"]  # printed lines 1 and 2
    os.rename(log, log_dir / "api-1.log.1")
    _append(log, "new file line")
    rest = _finite(gateway, viewer_token, instance="api-1", after=cursor)
    assert [r["message"] for r in rest] == ["api-1 line 3", "new file line"]


def test_many_records_are_batched_and_resume_after_a_mid_stream_close(
        gateway: RunningGateway, viewer_token: str, log_dir: Path) -> None:
    _append(log_dir / "api-1.log", *(f"bulk {i}" for i in range(3000)))
    everything = _finite(gateway, viewer_token)
    assert len(everything) == 3006
    gateway.faults.close_after_frames = 2
    gateway.faults.close_sessions = 1
    ws = dial(gateway.url, "/v1/logs", viewer_token, service="api")
    closed = collect(ws)
    assert closed.code == 1011 and len(closed.messages) == 2
    first = _records(closed.messages)
    assert len(first) > 2  # many records per frame
    rest = _finite(gateway, viewer_token, after=first[-1]["cursor"])
    assert [r["message"] for r in first + rest] == [r["message"] for r in everything]


def test_resume_after_restart_on_the_same_port(gateway: RunningGateway,
                                               log_dir: Path) -> None:
    token = gateway.create_api_token("Viewer", "survivor")  # API tokens survive the restart
    ws = dial(gateway.url, "/v1/logs", token, service="api", follow=1)
    got = _follow_until(ws, 6)
    port = gateway.port
    gateway.restart()
    assert collect(ws).code == 1001
    assert gateway.port == port
    _append(log_dir / "api-2.log", "while it was down")
    rest = _finite(gateway, token, after=got[-1]["cursor"])
    assert [r["message"] for r in rest] == ["while it was down"]


def test_new_instance_during_follow(gateway: RunningGateway, viewer_token: str,
                                    log_dir: Path) -> None:
    ws = dial(gateway.url, "/v1/logs", viewer_token, service="api", follow=1, tail=0)
    time.sleep(0.2)
    _append(log_dir / "api-3.log", "hello from 3")
    record = _follow_until(ws, 1)[0]
    assert record["instance"] == "api-3" and record["message"] == "hello from 3"
    ws.close()


def test_json_lines_keep_their_time(gateway: RunningGateway, viewer_token: str,
                                    log_dir: Path) -> None:
    line = '{"ts": "2030-05-06T07:08:09.5Z", "level": "info", "msg": "json"}'
    _append(log_dir / "api-1.log", line)
    record = _finite(gateway, viewer_token, instance="api-1", tail=1)[0]
    assert record["message"] == line and record["ts"] == "2030-05-06T07:08:09.500000Z"


def test_command_log_source(make_gateway: Callable[..., RunningGateway], gateway_config,
                            tmp_path: Path) -> None:
    source = LogSource(command=("sh", "-c", "echo one; echo two; echo oops >&2; sleep 30"),
                       instance="journal")
    service = ServiceConfig(name="api", cwd=tmp_path, logs=(source,))
    gw = make_gateway(services={"api": service})
    token = gw.mint_token("Viewer")
    records: list[dict] = []
    for _ in range(50):
        records = _records(collect(dial(gw.url, "/v1/logs", token, service="api")).messages)
        if len(records) == 3:
            break
        time.sleep(0.1)
    assert sorted((r["stream"], r["message"]) for r in records) == [
        ("stderr", "oops"), ("stdout", "one"), ("stdout", "two")]
    assert {r["instance"] for r in records} == {"journal"}
    after = _records(collect(dial(gw.url, "/v1/logs", token, service="api",
                                  after=records[0]["cursor"])).messages)
    assert after == records[1:]
    tail = _records(collect(dial(gw.url, "/v1/logs", token, service="api", tail=1)).messages)
    assert tail == records[-1:]


@pytest.mark.parametrize("message, code", [(b"\x00binary", 1003), ("{bad", 1002)])
def test_client_garbage_on_a_log_stream(gateway: RunningGateway, viewer_token: str,
                                        message, code: int) -> None:
    ws = dial(gateway.url, "/v1/logs", viewer_token, service="api", follow=1)
    ws.send(message)
    closed = collect(ws)
    assert closed.code == code
