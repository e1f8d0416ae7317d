"""Rendering failures and events: no peer control characters, no secrets, NO_COLOR honoured."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from tether.cli.output.render import (
    CAUSE_MESSAGE_LIMIT,
    cause_chain,
    json_record,
    render_event,
    render_failure,
    render_retry,
)
from tether.errors import Code, Failure, Phase
from tether.text import redact_secrets

# C0 (except newline), DEL, C1, bidi overrides and isolates, line/paragraph separators.
UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
COLOUR_SGR = re.compile(r"\x1b\[[0-9;]*(?:3[0-9]|9[0-7]|38;)[0-9;]*m")


def text_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=100, force_terminal=False, color_system=None), buffer


def render_text(failure: Failure, *, verbose: bool = False) -> str:
    console, buffer = text_console()
    render_failure(failure, output="text", verbose=verbose, console=console)
    return buffer.getvalue()


def render_json(failure: Failure, *, verbose: bool = False) -> str:
    console, buffer = text_console()
    render_failure(failure, output="json", verbose=verbose, console=console)
    return buffer.getvalue()


def flatten(panel: str) -> str:
    """The words of a rendered panel, without its border and line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", panel).split())


def all_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *all_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


def failure_with(message: str = "the cluster hosting api is not answering",
                 **fields: object) -> Failure:
    return Failure.of(Code.BACKEND_UNAVAILABLE, Phase.SESSION, message, **fields)


hostile = st.text(alphabet=st.characters(codec="utf-8"),
                  max_size=300) | st.sampled_from([
                      "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "\x9b2J", "a\rb\x08c",
                      "\u202eevil\u202c", "x\u2028y", "\x1b\x1b[[31m", "\x00\x7f\x85"])


@settings(max_examples=150, deadline=None)
@given(message=hostile, reason=hostile, detail=hostile, request_id=hostile)
def test_peer_text_never_reaches_the_terminal_raw(message: str, reason: str, detail: str,
                                                  request_id: str) -> None:
    cause = ConnectionResetError(reason + detail)
    failure = failure_with(message, close_reason=reason, problem_detail=detail,
                           request_id=request_id, close_code=1011, cause=cause)
    for verbose in (False, True):
        text = render_text(failure, verbose=verbose)
        assert not UNSAFE.search(text), text
        line = render_json(failure, verbose=verbose)
        assert line.endswith("\n") and line.count("\n") == 1
        assert not UNSAFE.search(line)
        record = json.loads(line)
        assert record["event"] == "error" and record["code"] == "backend-unavailable"
        for value in all_strings(record):
            assert not UNSAFE.search(value), value
    retry_text = render_retry(failure, 2, 1.0, output="text")
    assert not UNSAFE.search(retry_text) and "\n" not in retry_text
    retry_json = json.loads(render_retry(failure, 2, 1.0, output="json"))
    assert not any(UNSAFE.search(v) for v in all_strings(retry_json))


def test_text_panel_shows_title_message_hint_and_details() -> None:
    failure = failure_with(close_code=1011, request_id="req-42", attempts=3,
                           close_reason="backend-unavailable: agent for cluster eu-1 is down")
    text = render_text(failure)
    assert "Backend unavailable" in text
    assert "The cluster hosting api is not answering" in text
    assert "agent for cluster eu-1 is down" in text
    assert "backend-unavailable: agent" not in text  # the code prefix of the reason is dropped
    assert "tether status SERVICE" in text
    flat = flatten(text)
    assert "request id req-42" in flat
    assert "close 1011 (INTERNAL_ERROR)" in flat
    assert "3 attempts" in flat
    assert "tether errors backend-unavailable" in flat
    assert "caused by" not in text


def test_http_status_is_shown() -> None:
    failure = Failure.of(Code.PERMISSION_DENIED, Phase.HANDSHAKE, "role Viewer cannot open a shell",
                         http_status=403)
    assert "HTTP 403" in render_text(failure)


def test_json_is_one_record_with_every_field() -> None:
    failure = failure_with(close_code=1011, request_id="req-42", attempts=3,
                           cause=RuntimeError("hidden unless verbose"))
    line = render_json(failure)
    record = json.loads(line)
    assert record == {"event": "error", **failure.as_dict()}
    assert "causes" not in record
    verbose = json.loads(render_json(failure, verbose=True))
    assert verbose["causes"] == [{"type": "RuntimeError", "message": "hidden unless verbose"}]


SECRETS = ("tth_live_5ecret0123", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl",
           "s3cr3t-refresh")


def test_secrets_never_rendered() -> None:
    api, jwt, refresh = SECRETS
    try:
        try:
            raise OSError(f"Authorization: Bearer {jwt}")
        except OSError as inner:
            raise RuntimeError(f"refresh_token={refresh} rejected, key {api}") from inner
    except RuntimeError as exc:
        cause = exc
    failure = failure_with(f"token {api} was refused", close_reason=f"Bearer {jwt}",
                           problem_detail=f'{{"refresh_token": "{refresh}"}}',
                           request_id=jwt, cause=cause)
    outputs = [render_text(failure, verbose=True), render_json(failure, verbose=True),
               render_retry(failure, 1, 0.5, output="text"),
               render_retry(failure, 1, 0.5, output="json"),
               render_event("reconnected", detail=f"Bearer {api}", nested={"k": [jwt]})]
    for out in outputs:
        for secret in SECRETS:
            assert secret not in out, out
    assert "REDACTED" in outputs[0] and "REDACTED" in outputs[1]


def test_redact_secrets_patterns() -> None:
    assert redact_secrets("Authorization: Bearer abc.def") == "Authorization: Bearer REDACTED"
    assert redact_secrets("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic REDACTED"
    assert redact_secrets("use tth_abc_123 now") == "use REDACTED now"
    assert redact_secrets("/cb?a=1&access_token=xyz&b=2") == "/cb?a=1&access_token=REDACTED&b=2"
    assert redact_secrets('{"password": "hunter2"}') == '{"password": "REDACTED"}'
    # Words that only name a secret stay readable.
    for plain in ('Bearer error="invalid_token"', "token: expired", "the token expired"):
        assert redact_secrets(plain) == plain


def test_cause_is_shown_as_type_and_short_message_only() -> None:
    body = "B" * 5000
    cause = RuntimeError(f"Handshake status 500 Oops -+-+- {{'set-cookie': 'x'}} -+-+- b'{body}'")
    failure = failure_with(cause=cause)
    assert cause_chain(failure) == [("RuntimeError", "Handshake status 500 Oops")]
    long = failure_with(cause=ValueError("x" * 1000 + "\nsecond line"))
    ((_, message),) = cause_chain(long)
    assert len(message) <= CAUSE_MESSAGE_LIMIT and "second line" not in message
    text = render_text(failure, verbose=True)
    assert "BBBB" not in text and "set-cookie" not in text
    assert "caused by RuntimeError: Handshake status 500 Oops" in flatten(text)


def test_internal_error_traceback_only_when_verbose_and_without_locals() -> None:
    def broken() -> None:
        hidden_value = "LOCAL-" + "VALUE"
        raise ValueError("bad state " + str(len(hidden_value)))

    try:
        broken()
    except ValueError as exc:
        failure = Failure.of(Code.INTERNAL_ERROR, Phase.LOCAL, "unexpected ValueError", cause=exc)
    quiet = render_text(failure)
    assert "Traceback" not in quiet
    loud = render_text(failure, verbose=True)
    assert "Traceback (most recent call last)" in loud and "in broken" in loud
    assert "LOCAL-VALUE" not in loud
    record = json_record(failure, verbose=True)
    assert "Traceback" in record["traceback"] and "LOCAL-VALUE" not in record["traceback"]
    # Other codes never print a traceback, even verbose.
    assert "Traceback" not in render_text(failure_with(cause=failure.cause), verbose=True)


def test_interrupted_is_a_short_note() -> None:
    failure = Failure.of(Code.INTERRUPTED, Phase.LOCAL, "interrupted (SIGTERM)", exit_code=143)
    assert render_text(failure).strip() == "Interrupted (SIGTERM)."


def test_retry_line_and_event() -> None:
    failure = failure_with()
    line = render_retry(failure, 3, 2.4, output="text")
    assert line == ("backend-unavailable: the cluster hosting api is not answering. "
                    "Reconnecting in 2.4 s (attempt 3). Ctrl+C to quit")
    event = json.loads(render_retry(failure, 3, 2.4, output="json"))
    assert event["event"] == "retry" and event["code"] == "backend-unavailable"
    assert event["attempt"] == 3 and event["delay"] == 2.4
    assert json.loads(render_event("reconnected", attempts=4)) == {"event": "reconnected",
                                                                   "attempts": 4}


SNIPPET = """
from tether.cli.output.render import render_failure
from tether.errors import Code, Failure, Phase
render_failure(Failure.of(Code.NOT_FOUND, Phase.HANDSHAKE, "no service api"),
               output="text", verbose=False)
"""


def run_snippet(**env: str) -> str:
    base = {k: v for k, v in os.environ.items()
            if k not in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLORTERM")}
    proc = subprocess.run([sys.executable, "-c", SNIPPET], env={**base, **env},
                          capture_output=True, text=True, timeout=30, check=True)
    assert "No service api" in proc.stderr
    assert proc.stdout == ""
    return proc.stderr


def test_colour_follows_the_environment() -> None:
    assert COLOUR_SGR.search(run_snippet(FORCE_COLOR="1", TERM="xterm-256color"))
    no_colour = run_snippet(FORCE_COLOR="1", TERM="xterm-256color", NO_COLOR="1")
    assert not COLOUR_SGR.search(no_colour)
    assert "\x1b" not in run_snippet(TERM="xterm-256color")  # a pipe gets no escapes at all
