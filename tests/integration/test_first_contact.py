"""First contact fails fast: a name that does not exist, or nothing listening, on real dials.

Until a session has been established, NXDOMAIN and a refused connection end
the run after one dial unless the policy is patient (an explicit
``--retry-for``); "no DNS server answered" keeps retrying; once a session was
established, a refused connection retries as every transient failure does.
The clock and the sleep are the test's, the dials real (loopback, ``.invalid``).
"""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest

from tests.fakeclock import Clock
from tests.hostile import HostileServer, drop, upgrade_then
from tests.servers import free_port
from tether.classify import classify_exception, name_does_not_exist
from tether.client.credential import StaticCredential
from tether.client.dial import Connection, DialOptions, dial
from tether.client.retry import GiveUp, RetryPolicy, RetryState, Wait
from tether.client.supervisor import Attempt, Supervisor
from tether.errors import Code, Failure, TetherError

pytestmark = pytest.mark.timeout(30)

OPTIONS = DialOptions(connect_timeout=5.0, keepalive_interval=0, keepalive_timeout=0)
CREDENTIAL = StaticCredential("tth_first-contact-test-token")



def dial_failure(url: str) -> Failure:
    with pytest.raises(TetherError) as info:
        dial(url, "logs", {"service": "api"}, CREDENTIAL, OPTIONS)
    return info.value.failure


def supervisor(url: str, clock: Clock, *, patient: bool, handler: Any = None,
               dials: list[int] | None = None) -> Supervisor[Connection, Any]:
    def dial_once(attempt: Attempt) -> Connection:
        if dials is not None:
            dials.append(attempt.number)
        return dial(url, "logs", {"service": "api", "follow": "1"}, CREDENTIAL, OPTIONS)

    policy = RetryPolicy(rng=random.Random(3), retry_for=5.0, patient_first_contact=patient)
    return Supervisor(dial_once, handler or (lambda conn, attempt: None), credential=CREDENTIAL,
                      policy=policy, clock=clock, sleep=clock.sleep)


def gives_up(run: Supervisor[Connection, Any]) -> Failure:
    with pytest.raises(TetherError) as info:
        run.run()
    return info.value.failure


@pytest.mark.parametrize("url", ["http://typo-gateway.invalid:7443",
                                 f"http://127.0.0.1:{free_port()}"], ids=["nxdomain", "refused"])
def test_a_wrong_address_on_first_contact_is_one_dial(url: str) -> None:
    clock = Clock()
    failure = gives_up(supervisor(url, clock, patient=False))
    assert failure.code in (Code.DNS_FAILURE, Code.CONNECTION_REFUSED)
    assert failure.attempts == 1 and clock.sleeps == []
    assert failure.hint


@pytest.mark.parametrize("url", ["http://typo-gateway.invalid:7443",
                                 f"http://127.0.0.1:{free_port()}"], ids=["nxdomain", "refused"])
def test_a_patient_policy_retries_a_wrong_address(url: str) -> None:
    clock = Clock()
    failure = gives_up(supervisor(url, clock, patient=True))
    assert failure.attempts is not None and failure.attempts >= 2
    assert len(clock.sleeps) == failure.attempts - 1


def test_nxdomain_is_told_apart_from_no_dns_server() -> None:
    missing = dial_failure("http://typo-gateway.invalid:7443")
    assert missing.code is Code.DNS_FAILURE and name_does_not_exist(missing)
    unreachable = classify_exception(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"),
                                     url="ws://gw.example.com/v1/logs")
    assert unreachable.code is Code.DNS_FAILURE and not name_does_not_exist(unreachable)
    state = RetryState(RetryPolicy(rng=random.Random(1), patient_first_contact=False))
    assert isinstance(state.decide(unreachable, refreshable=False, now=0.0), Wait)


def test_after_a_session_a_refused_connection_retries() -> None:
    clock = Clock()
    server = HostileServer(upgrade_then(drop()), lifetime=10.0)
    server.start()
    dials: list[int] = []

    def handler(conn: Connection, attempt: Attempt) -> None:
        server.stop()  # the gateway goes away: every later dial is refused
        conn.recv()

    try:
        failure = gives_up(supervisor(server.url, clock, patient=False, handler=handler,
                                      dials=dials))
    finally:
        server.stop()
    assert failure.code is Code.CONNECTION_REFUSED
    assert len(dials) >= 3 and failure.attempts == len(dials)
    assert len(clock.sleeps) == len(dials) - 1


def test_a_refused_connection_before_any_session_gives_up_whatever_the_budget() -> None:
    refused = dial_failure(f"http://127.0.0.1:{free_port()}")
    state = RetryState(RetryPolicy(retry_for=3600, patient_first_contact=False))
    decision = state.decide(refused, refreshable=True, now=0.0)
    assert isinstance(decision, GiveUp) and decision.failure.attempts == 1
    state.established(now=1.0)
    assert isinstance(state.decide(refused, refreshable=True, now=2.0), Wait)
