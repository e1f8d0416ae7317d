"""``tether logs SERVICE`` without -f against the real gateway, run in this process (fast).

Each test runs the CLI's own entry point (``run_app``) with the environment a
user would have, and reads what it wrote to the real stdout and stderr (capfd).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import assert_no_secrets, json_events
from tether.cli.app import app
from tether.cli.boundary import run_app
from tether.cli.options import hoist_global_options
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def as_viewer(gateway: RunningGateway, viewer_token: str, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment of a Viewer using ``gateway``; returns the token."""
    for name in ("TETHER_OUTPUT", "TETHER_VERBOSE", "TETHER_RETRY_FOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TETHER_GATEWAY", gateway.url)
    monkeypatch.setenv("TETHER_TOKEN", viewer_token)
    monkeypatch.setenv("TETHER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("TETHER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NO_COLOR", "1")
    return viewer_token


def logs(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capfd.readouterr()
    code = run_app(app, hoist_global_options(["logs", *args]))
    out, err = capfd.readouterr()
    return code, out, err


def test_a_viewer_reads_every_record_once_then_exit_0(as_viewer: str,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = logs(capfd, "api")
    assert code == 0, err
    lines = out.splitlines()
    assert sorted(lines) == sorted(f"[{n}] {n} line {i}" for n in ("api-1", "api-2")
                                   for i in (1, 2, 3))
    assert [ln for ln in lines if ln.startswith("[api-1]")] == [
        f"[api-1] api-1 line {i}" for i in (1, 2, 3)]
    assert err == ""
    assert_no_secrets([as_viewer], out, err)


def test_tail_and_since(as_viewer: str, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, _ = logs(capfd, "api", "--tail", "1")
    assert code == 0 and sorted(out.splitlines()) == ["[api-1] api-1 line 3",
                                                      "[api-2] api-2 line 3"]
    code, out, _ = logs(capfd, "api", "--tail", "0")
    assert code == 0 and out == ""
    code, out, _ = logs(capfd, "api", "--since", "2026-01-02T03:04:03Z")
    assert code == 0 and sorted(out.splitlines()) == ["[api-1] api-1 line 3",
                                                      "[api-2] api-2 line 3"]
    code, out, _ = logs(capfd, "api", "--since", "15m")  # the lines are from 2026-01-02
    assert code == 0 and out == ""


def test_timestamps_no_prefix_and_one_instance(as_viewer: str,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    code, out, _ = logs(capfd, "api", "--instance", "api-2", "--timestamps", "--no-prefix")
    assert code == 0
    assert out.splitlines() == [f"2026-01-02T03:04:0{i}.000000Z api-2 line {i}" for i in (1, 2, 3)]


def test_several_instances_are_filtered_here(as_viewer: str, log_dir: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    (log_dir / "api-3.log").write_text("2026-01-02T03:04:09Z api-3 only\n")
    code, out, _ = logs(capfd, "api", "--instance", "api-3", "--instance", "api-1",
                        "--instance", "api-3")
    assert code == 0
    assert out.splitlines() == [f"[api-1] api-1 line {i}" for i in (1, 2, 3)] + [
        "[api-3] api-3 only"]


def test_json_records_on_stdout(as_viewer: str, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = logs(capfd, "api", "-o", "json", "--tail", "2")
    assert code == 0 and err == ""
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 4
    assert all(set(r) == {"cursor", "ts", "instance", "stream", "message"} for r in records)
    assert [r["message"] for r in records if r["instance"] == "api-1"] == [
        "api-1 line 2", "api-1 line 3"]


def test_unknown_service_is_not_found_as_one_json_error(as_viewer: str,
                                                        capfd: pytest.CaptureFixture[str]
                                                        ) -> None:
    code, out, err = logs(capfd, "nope", "-o", "json")
    assert code == 69 and out == ""
    events = json_events(err)
    assert [e["event"] for e in events] == ["error"] and events[0]["code"] == "not-found"
    assert_no_secrets([as_viewer], out, err)


def test_bad_since_is_a_usage_error(as_viewer: str, capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = logs(capfd, "api", "--since", "last tuesday")
    assert code == 2 and out == "" and "--since" in err


def test_finite_stream_broken_by_1011_resumes_after_the_last_record(
        gateway: RunningGateway, as_viewer: str, log_dir: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    with (log_dir / "api-1.log").open("a") as handle:
        handle.writelines(f"bulk {i}\n" for i in range(5000))
    gateway.faults.close_after_frames = 3
    gateway.faults.close_sessions = 1
    code, out, err = logs(capfd, "api", "-o", "json")
    assert code == 0, err
    messages = [json.loads(line)["message"] for line in out.splitlines()]
    assert len(messages) == 5006 and len(set(messages)) == 5006
    api1 = [m for m in messages if not m.startswith("api-2")]
    assert api1 == [f"api-1 line {i}" for i in (1, 2, 3)] + [f"bulk {i}" for i in range(5000)]
    events = json_events(err)
    assert [e["event"] for e in events] == ["retry", "reconnected"]
    assert events[0]["code"] == "backend-unavailable"
    assert "could not reach the backend of `api`" in events[0]["message"]
    assert gateway.dial_count["/v1/logs"] == 2


def test_finite_stream_broken_by_1011_text_line(gateway: RunningGateway, as_viewer: str,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    gateway.faults.close_after_frames = 0
    gateway.faults.close_sessions = 1
    code, out, err = logs(capfd, "api")
    assert code == 0 and len(out.splitlines()) == 6
    hint, retry = err.splitlines()[:2]
    assert hint == ("backend-unavailable: Verify that the cluster hosting api is running and "
                    "healthy (`tether status api`); tether retries meanwhile.")
    assert retry.startswith("backend-unavailable: The gateway could not reach the backend of "
                            "`api`")
    assert "Reconnected (attempt 2)." in err
