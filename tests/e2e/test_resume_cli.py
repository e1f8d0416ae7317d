"""tether.v2 as a user meets it: the installed CLI against a real gateway through the suite's
chaos proxy, cut at chosen byte offsets. A shell in a real pty keeps its shell and prints
every line once; a piped command too; a port-forward carries 64 MiB each way through five
resets with its local connection never reset; a detached session that outgrows the
gateway's buffer ends with resume-lost and the count; an expired one gets a new shell; a
gateway without v2 is spoken to in v1.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import DOWN, UP, ChaosProxy, cli_env
from tests.cli import Gathered, assert_no_secrets, json_events, run_tether, tether_env
from tests.e2e.test_shell import Term, tether_term
from tests.integration.test_gateway_resume import snapshot, state_is, wait_for
from tests.integration.test_resume_client import _service, both_ways, sink_and_source
from tests.servers import tcp_server
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20
LINE = re.compile(rb"(?<![$A-Za-z])L(\d+)\r?\n")  # not the command's own "L$i"


class Run(Gathered):
    """A tether command running, with its JSON events."""

    def events(self) -> list[dict[str, Any]]:
        text = bytes(self.err)
        return json_events(text[: text.rfind(b"\n") + 1])

    def count(self, name: str) -> int:
        return sum(e["event"] == name for e in self.events())

    def until(self, what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.proc.poll() is None, (
                f"tether ended ({self.proc.returncode}) waiting for {what}: "
                f"{bytes(self.err[-1500:])!r}")
            assert time.monotonic() < deadline, f"no {what}: {bytes(self.err[-1500:])!r}"
            time.sleep(0.01)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        self.record()
        return code


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.kill()




def lines_once(output: bytes, count: int) -> None:
    numbers = [int(n) for n in LINE.findall(output)]
    assert numbers == list(range(1, count + 1)), sorted(set(range(1, count + 1)) - set(numbers))


# --- shell ---------------------------------------------------------------------------------------


def shell_pid(term: Term, tag: str) -> int:
    term.child.sendline(f"echo {tag}-$$-pid")
    term.child.expect(rf"{tag}-(\d+)-pid")
    return int(term.child.match.group(1))


def test_a_shell_keeps_its_shell_and_prints_every_line_once_through_resets(
        gateway: RunningGateway, deployer_token: str, tmp_path: Path,
        terms: list[Term]) -> None:
    with ChaosProxy(gateway.port) as proxy:
        env = cli_env(proxy, deployer_token, tmp_path)
        term = tether_term(terms, env, tmp_path, "shell", "api")
        term.prompt()
        before = shell_pid(term, "a")
        term.child.sendline("cd /tmp; X=kept; i=0; while [ $i -lt 300 ]; do i=$((i+1)); "
                            "echo L$i; sleep 0.01; done; echo DO''NE")
        for seen, direction, offset in (("L40\r\n", DOWN, 300), ("L120\r\n", UP, 20),
                                        ("L200\r\n", DOWN, 150)):
            term.expect(seen)
            cuts = proxy.cuts
            proxy.arm(direction, offset)  # in output, in an ack, in output
            wait_for(lambda c=cuts: proxy.cuts > c, f"the cut after {seen!r}")
        term.expect("DONE")
        term.prompt()
        assert shell_pid(term, "b") == before
        term.child.sendline("echo $X-$(pwd)")
        term.expect("kept-/tmp")
        term.child.sendline("exit 3")
        assert term.status() == 3
    output = term.output
    lines_once(output, 300)
    assert b"NEW shell" not in output
    # one dim line per detachment, below the output; its erasure puts the cursor back
    assert output.count(b"\x1b7") == output.count(b"\x1b8") == 3
    assert output.count(b"to resume (attempt") >= 3
    assert gateway.dial_count["/v1/shell"] == 4  # one session, resumed three times
    assert_no_secrets([deployer_token], output)


def test_a_piped_command_resumes_and_json_tells_detached_and_resumed(
        gateway: RunningGateway, deployer_token: str, tmp_path: Path, runs: list[Run]) -> None:
    with ChaosProxy(gateway.port) as proxy:
        run = Run("-o", "json", "shell", "api", "--", "sh", "-c",
                  "i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo L$i; sleep 0.005; done",
                  env=cli_env(proxy, deployer_token, tmp_path))
        runs.append(run)
        for number, seen in enumerate((30, 150, 280), start=1):
            run.until(f"{seen} lines", lambda n=seen: len(run.lines) >= n)
            proxy.arm(DOWN, 200)
            run.until("a resume", lambda n=number: run.count("resumed") >= n)
        assert run.wait() == 0
    lines_once(bytes(run.out), 400)
    events = run.events()
    detached = [e for e in events if e["event"] == "detached"]
    resumed = [e for e in events if e["event"] == "resumed"]
    assert len(detached) == len(resumed) == 3
    for one in detached:
        assert one["code"] == "connection-lost" and one["received"] > 0
        assert {"sent", "unacknowledged", "attempt", "delay", "service"} <= one.keys()
    for one in resumed:
        assert one["received"] > 0 and one["resent"] >= 0 and one["service"] == "api"
    assert not [e for e in events if e["event"] in ("error", "session-lost")]


def test_output_beyond_the_gateways_buffer_while_detached_ends_with_resume_lost(
        make_gateway: Callable[..., RunningGateway], tmp_path: Path, runs: list[Run]) -> None:
    limit, total = 64 * 1024, 300_000
    running = make_gateway(resume_buffer=limit)
    token = running.mint_token("Deployer", sub="deployer")
    go = tmp_path / "work" / "go-lost"
    with ChaosProxy(running.port) as proxy:
        run = Run("shell", "api", "--retry-for", "60s", "--", "sh", "-c",
                  f"echo started; while [ ! -e {go} ]; do sleep 0.02; done; "
                  f"head -c {total} /dev/zero",
                  env=cli_env(proxy, token, tmp_path))
        runs.append(run)
        run.until("the command", lambda: b"started" in run.out)
        proxy.refuse = True
        proxy.cut()
        wait_for(state_is(running, "detached"), "the session to detach")
        go.touch()
        wait_for(state_is(running, "done"), "the output to be read while detached")
        proxy.refuse = False
        assert run.wait() == 65
    err = bytes(run.err).decode()
    assert "resume-lost" in err and f"{total - limit:,} bytes" in err
    assert len(run.out) == len(b"started\n")  # nothing of the lost output shown with a gap
    wait_for(lambda: snapshot(running) == [], "the session to end")


def test_an_expired_session_says_so_and_opens_a_new_shell(
        make_gateway: Callable[..., RunningGateway], tmp_path: Path,
        terms: list[Term]) -> None:
    running = make_gateway(resume_grace=0.3)
    token = running.mint_token("Deployer", sub="deployer")
    with ChaosProxy(running.port) as proxy:
        term = tether_term(terms, cli_env(proxy, token, tmp_path), tmp_path, "shell", "api")
        term.prompt()
        before = shell_pid(term, "a")
        proxy.refuse = True
        proxy.cut()
        wait_for(lambda: snapshot(running) == [], "the grace period to end the session")
        proxy.refuse = False
        term.expect("session-expired")
        term.expect("NEW shell")
        term.prompt()
        assert shell_pid(term, "b") != before
        term.child.sendline("exit")
        assert term.status() == 0


# --- port-forward ----------------------------------------------------------------------------


@pytest.mark.timeout(180)  # 128 MiB through a Python proxy, on a machine that may be busy
def test_port_forward_carries_64_mib_each_way_through_five_resets(
        make_gateway: Callable[..., RunningGateway], gateway_config: object, tmp_path: Path,
        runs: list[Run]) -> None:
    total, seen = 64 * MIB, []
    with tcp_server(sink_and_source(total, seen)) as target:
        gw = make_gateway(services={"api": _service(gateway_config, target)})
        token = gw.mint_token("Deployer", sub="deployer")
        with ChaosProxy(gw.port) as proxy:
            run = Run("port-forward", "api", f":{target}", "-o", "json", "--retry-for", "60s",
                      env=cli_env(proxy, token, tmp_path))
            runs.append(run)
            run.until("the listener", lambda: bool(run.lines))
            port = int(json.loads(run.lines[0])["local_port"])
            result: list[tuple[str, str, int, bool]] = []
            client = threading.Thread(target=lambda: result.append(both_ways(port, total)),
                                      daemon=True)
            client.start()
            # each cut is armed after the previous resume, counted from then: the last one
            # must fall well inside what is left of the stream (about 12 MiB by then)
            plan = ((DOWN, 6 * MIB), (UP, 9 * MIB), (DOWN, 12 * MIB), (UP, 7 * MIB),
                    (DOWN, 4 * MIB))
            for number, (direction, offset) in enumerate(plan, start=1):
                proxy.arm(direction, offset)
                run.until(f"resume {number}", lambda n=number: run.count("resumed") >= n,
                          timeout=40)
            client.join(120)
            assert not client.is_alive()
            wait_for(lambda: any(one.get("received") == total for one in seen),
                     "the target to get everything", timeout=30)
            assert run.proc.poll() is None  # the listener still serves
            run.proc.send_signal(2)
            assert run.wait() == 130
    [(sent_hash, received_hash, received, reset)] = result
    [got] = [one for one in seen if one.get("received") == total]
    assert not reset and received == total
    assert received_hash == got["sent_hash"] and got["received_hash"] == sent_hash
    events = run.events()
    assert not [e for e in events if e["event"] == "connection-failed"]
    detached = [e for e in events if e["event"] == "detached"]
    resumed = [e for e in events if e["event"] == "resumed"]
    assert len(detached) == len(resumed) == 5
    assert all(e["connection"] and e["target"] == f"api:{target}" for e in detached + resumed)
    assert all(e["sent"] <= total and e["received"] <= total for e in resumed)
    assert_no_secrets([token], bytes(run.out), bytes(run.err))


# --- v1 fallback -------------------------------------------------------------------------------


def test_a_gateway_without_v2_serves_shell_and_port_forward_as_before(
        make_gateway: Callable[..., RunningGateway], echo_server: int, tmp_path: Path,
        runs: list[Run]) -> None:
    plain = make_gateway(resume=False)
    env = tether_env(plain.url, plain.mint_token("Deployer"), tmp_path)
    done = run_tether("shell", "api", "--", "sh", "-c", "echo v1-$((6*7))", env=env)
    assert (done.returncode, done.stdout) == (0, b"v1-42\n")
    run = Run("port-forward", "api", f":{echo_server}", "-o", "json", env=env)
    runs.append(run)
    run.until("the listener", lambda: bool(run.lines))
    port = int(json.loads(run.lines[0])["local_port"])
    from tests.e2e.test_chaos import echo_round

    assert echo_round(port, b"plain" * 1000) == b"plain" * 1000
    run.proc.send_signal(2)
    assert run.wait() == 130
    assert not [e for e in run.events() if e["event"] in ("detached", "connection-failed")]
