"""Failures and events, rendered for people (a Rich panel) or programs (one JSON line).

On a terminal a failure is a panel; anywhere else (a pipe, a file, a CI log)
it is the same words as plain lines, no box drawing and nothing wrapped, so
that ``grep`` and log readers see whole lines. :func:`columns` lays out a
table the same way for commands that print one into a pipe.

Every string that may come from a peer (message, close reason, problem detail,
request id, exception text) goes through :func:`clean` (control characters
and escape sequences out, secrets redacted) and is shown as a ``rich.text.Text``,
never as markup. Errors go to stderr; ``NO_COLOR`` is honoured by Rich.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from tether.errors import Code, Failure
from tether.text import redact_secrets, strip_control

if TYPE_CHECKING:
    from rich.console import Console

#: Exception text is cut here: enough for a reason, too little for a response body.
CAUSE_MESSAGE_LIMIT = 200
_CAUSE_DEPTH = 8
#: websocket-client appends response headers and body after this marker.
_BODY_MARKER = " -+-+- "


_LINE_SEPARATORS = str.maketrans({"\u2028": " ", "\u2029": " "})


def clean(text: str, *, limit: int = 4096, keep_newlines: bool = False) -> str:
    """``text`` safe to show: no control characters, escapes or line separators; no secrets."""
    cleaned = strip_control(text, keep_newlines=keep_newlines, limit=limit)
    return redact_secrets(cleaned.translate(_LINE_SEPARATORS))


@cache
def get_stderr_console() -> Console:
    """The Console for errors and status lines (stderr), made on first use."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=False)


@cache
def get_stdout_console() -> Console:
    """The Console for a command's results (stdout), made on first use."""
    from rich.console import Console

    return Console(highlight=False)


def columns(rows: Sequence[Sequence[str]], gap: int = 2) -> list[str]:
    """``rows`` as lines of left-aligned columns, each as wide as its widest cell; never wrapped."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [(" " * gap).join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def emit_line(line: str) -> None:
    """Write one line (a JSON event, a plain note) to stderr at once."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# --- the cause chain ------------------------------------------------------------------


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _short_message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        return ""
    text = text.split(_BODY_MARKER, 1)[0].strip().splitlines()[0] if text.strip() else ""
    return clean(text, limit=CAUSE_MESSAGE_LIMIT)


def cause_chain(failure: Failure) -> list[tuple[str, str]]:
    """``(type name, sanitized short message)`` for the failure's cause and what caused it."""
    chain: list[tuple[str, str]] = []
    seen: set[int] = set()
    exc = failure.cause
    while exc is not None and id(exc) not in seen and len(chain) < _CAUSE_DEPTH:
        seen.add(id(exc))
        chain.append((_type_name(exc), _short_message(exc)))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain


def failure_traceback(failure: Failure) -> str | None:
    """The sanitized traceback of an internal error's cause (never with local variables)."""
    exc = failure.cause
    if failure.code is not Code.INTERNAL_ERROR or exc is None or exc.__traceback__ is None:
        return None
    text = "".join(traceback.format_exception(exc))
    return clean(text, limit=64 * 1024, keep_newlines=True).rstrip()


# --- failures ---------------------------------------------------------------------------


def _details(failure: Failure) -> list[str]:
    parts: list[str] = []
    if failure.request_id:
        parts.append(f"request id {clean(failure.request_id, limit=100)}")
    if failure.http_status is not None:
        parts.append(f"HTTP {failure.http_status}")
    if failure.close_code is not None:
        from tether.protocol import close_code_name

        parts.append(f"close {close_code_name(failure.close_code)}")
    if failure.attempts is not None:
        parts.append(f"{failure.attempts} attempt{'' if failure.attempts == 1 else 's'}")
    if failure.url:
        parts.append(clean(failure.url, limit=300))
    parts.append(f"`tether errors {failure.code}` explains this")
    return parts


def _peer_said(failure: Failure) -> str | None:
    """What the gateway said, when the message does not already contain it."""
    from tether.protocol import parse_close_reason

    for raw in (failure.problem_detail, failure.close_reason):
        if not raw or not raw.strip():
            continue
        code, text = parse_close_reason(raw)
        said = (text if code == failure.code else raw).strip()
        if said and said not in failure.message:
            return clean(said, limit=500)
    return None


def sanitize(value: Any) -> Any:
    """``value`` for a JSON event: every string in it cleaned, anything unknown as text."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, dict):
        return {clean(str(k), limit=200): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitize(v) for v in value]
    return clean(str(value))


def json_record(failure: Failure, *, verbose: bool = False) -> dict[str, Any]:
    """The JSON error event: ``{"event": "error", **failure.as_dict()}``, sanitized."""
    record: dict[str, Any] = {"event": "error"}
    record.update(sanitize(failure.as_dict()))
    if verbose:
        chain = cause_chain(failure)
        if chain:
            record["causes"] = [{"type": name, "message": message} for name, message in chain]
        tb = failure_traceback(failure)
        if tb:
            record["traceback"] = tb
    return record


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def render_failure(failure: Failure, *, output: str, verbose: bool,
                   console: Console | None = None) -> None:
    """Show ``failure`` once on stderr: a panel (terminal), plain lines, or one JSON line."""
    if output == "json":
        line = _dumps(json_record(failure, verbose=verbose))
        if console is None:
            emit_line(line)
        else:
            console.out(line, highlight=False)
        return

    from rich.panel import Panel
    from rich.text import Text

    out = console if console is not None else get_stderr_console()
    if failure.code is Code.INTERRUPTED:
        note = clean(failure.message, limit=200)
        out.print(Text(note[:1].upper() + note[1:] + ".", style="dim"))
        return
    tb = failure_traceback(failure) if verbose else None
    if tb:
        out.print(Text(tb, style="dim"))

    message = clean(failure.message)
    body = Text(message[:1].upper() + message[1:])
    said = _peer_said(failure)
    if said:
        body.append("\nThe gateway said: ", style="dim")
        body.append(said)
    if failure.hint:
        body.append("\n\n")
        body.append(clean(failure.hint))
    body.append("\n\n")
    body.append(" · ".join(_details(failure)), style="dim")
    if verbose:
        for name, message in cause_chain(failure):
            body.append(f"\ncaused by {name}", style="dim")
            if message:
                body.append(f": {message}", style="dim")
    title = Text(clean(failure.title or str(failure.code), limit=200), style="bold red")
    if not out.is_terminal:  # a pipe or a file: the same words, no box, nothing wrapped
        heading = Text("error: ", style="bold red")
        heading.append(title)
        out.print(heading, soft_wrap=True)
        out.print(body, soft_wrap=True)
        return
    out.print(Panel(body, title=title, title_align="left", border_style="red", expand=False))


# --- retries and other events ----------------------------------------------------------


def _seconds(delay: float) -> str:
    return f"{delay:.1f} s" if delay < 10 else f"{delay:.0f} s"


def render_retry(failure: Failure, attempt: int, delay: float, *, output: str,
                 width: int | None = None) -> str:
    """The live status line (text) or the JSON ``retry`` event for one decision to retry.

    With ``width``, the message is shortened so that the line fits; the countdown never is.
    """
    if output == "json":
        return render_event("retry", code=str(failure.code), attempt=attempt,
                            delay=round(delay, 3), message=failure.message, hint=failure.hint)
    message = clean(failure.message, limit=300).rstrip(". ")
    head = f"{failure.code}: "
    tail = f". Reconnecting in {_seconds(delay)} (attempt {attempt}). Ctrl+C to quit"
    if width is not None and len(head) + len(message) + len(tail) > width:
        room = max(width - len(head) - len(tail) - 1, 0)
        message = message[:room].rstrip() + "…"
    return head + message + tail


def render_event(name: str, **fields: Any) -> str:
    """One JSON event line, ``{"event": name, **fields}``, string values sanitized."""
    record: dict[str, Any] = {"event": name}
    record.update(sanitize(fields))
    return _dumps(record)
