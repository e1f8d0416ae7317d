"""The installed ``tether`` on first contact: a typo in the name or nothing listening ends at once.

One dial (no retry event, ``attempts`` 1), exit 69 and the hint, for logs,
shell and port-forward; an explicit ``--retry-for`` or ``TETHER_RETRY_FOR``
keeps retrying (someone waiting for a gateway to come up).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import json_events, run_tether, tether_env
from tests.servers import free_port
from tether.errors import CATALOG, Code

pytestmark = pytest.mark.timeout(60)

TOKEN = "tth_first-contact-cli-token"
TYPO = "http://tether-typo.invalid:7443"
COMMANDS = [("logs", "api"), ("shell", "api", "--", "true"), ("port-forward", "api", ":5432")]


def closed_port() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(("gateway", "code"), [(TYPO, Code.DNS_FAILURE),
                                               (None, Code.CONNECTION_REFUSED)],
                         ids=["nxdomain", "refused"])
def test_first_contact_with_a_wrong_address_is_one_dial(
        command: tuple[str, ...], gateway: str | None, code: Code, tmp_path: Path) -> None:
    env = tether_env(gateway or closed_port(), TOKEN, tmp_path)
    done = run_tether("-o", "json", *command, env=env, timeout=30)
    assert done.returncode == 69, done.stderr
    events = json_events(done.stderr)
    assert [e["event"] for e in events] == ["error"], events
    assert events[0]["code"] == code and events[0]["attempts"] == 1
    assert events[0]["hint"]
    if code is Code.DNS_FAILURE:
        assert "does not exist" in events[0]["message"] and "typo" in events[0]["hint"]


@pytest.mark.parametrize(("gateway", "words"), [(TYPO, "typo"), (None, "running")],
                         ids=["nxdomain", "refused"])
def test_the_text_panel_shows_the_hint_and_one_attempt(gateway: str | None, words: str,
                                                      tmp_path: Path) -> None:
    done = run_tether("logs", "api", env=tether_env(gateway or closed_port(), TOKEN, tmp_path),
                      timeout=30)
    text = done.stderr.decode()
    assert done.returncode == 69, text
    assert words in text and "1 attempt" in text
    assert "retrying" not in text.lower()


@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.parametrize("gateway", [TYPO, None], ids=["nxdomain", "refused"])
def test_an_explicit_retry_for_keeps_retrying(how: str, gateway: str | None,
                                              tmp_path: Path) -> None:
    extra = {"TETHER_RETRY_FOR": "2s"} if how == "environment" else {}
    env = tether_env(gateway or closed_port(), TOKEN, tmp_path, **extra)
    options = ("--retry-for", "2s") if how == "option" else ()
    done = run_tether("-o", "json", *options, "logs", "api", env=env, timeout=30)
    assert done.returncode == 69, done.stderr
    events = json_events(done.stderr)
    retries = [e for e in events if e["event"] == "retry"]
    assert retries and events[-1]["event"] == "error"
    assert events[-1]["attempts"] == len(retries) + 1 >= 2
    assert CATALOG[Code(events[-1]["code"])].exit_status == 69
