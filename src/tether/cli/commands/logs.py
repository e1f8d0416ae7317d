"""``tether logs SERVICE``: print a service's logs, or follow them, with every record once.

The stream and its resume cursor are :mod:`tether.session.logs`. ``--since`` is
turned into one absolute time at start and sent on every dial, so that a
resumed stream keeps the same lower bound.

A finite stream ends with the gateway's close 1000 (exit 0). A follow ends
with Ctrl+C (130) or when the retry budget is spent (the failure's code).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from tether.cli.commands.completion import complete_instances, complete_services
from tether.cli.options import settings

if TYPE_CHECKING:
    from tether.client.dial import ParamValue


def parse_since(text: str, now: float | None = None) -> tuple[str, bool]:
    """``--since`` as an RFC 3339 UTC time, and whether UTC was assumed.

    ``text`` is a duration back from ``now`` (``15m``, ``1h30m``) or a time; a
    time with an offset (``Z``, ``+02:00``) is taken as written, one without is
    read as UTC (the second item is then True). Raises ValueError saying what
    is expected.
    """
    from tether.durations import parse_duration

    value = text.strip()
    assumed = False
    try:
        stamp = (time.time() if now is None else now) - parse_duration(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected a duration (30s, 15m, 1h30m) or a time with its offset "
                             "(2026-01-02T03:04:05Z, 2026-01-02T05:04:05+02:00)") from None
        if moment.tzinfo is None:
            moment, assumed = moment.replace(tzinfo=UTC), True
        stamp = moment.timestamp()
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), assumed


def since_time(text: str, now: float | None = None) -> str:
    """``--since`` as an RFC 3339 UTC time (see :func:`parse_since`)."""
    return parse_since(text, now)[0]


def _since_option(value: str) -> str:
    try:
        parse_since(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value.strip()


def logs_command(  # noqa: PLR0917 - one parameter per option
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(
        metavar="SERVICE", help="The service whose logs to show.",
        autocompletion=complete_services)],
    follow: Annotated[bool, typer.Option(
        "--follow", "-f",
        help="Keep streaming new records; reconnects resume exactly where they stopped.",
    )] = False,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="DURATION|TIME", parser=_since_option,
        help="Only records at or after this time: a duration back from now (15m, 1h30m) or "
             "a time with its offset (2026-01-02T03:04:05Z, 2026-01-02T05:04:05+02:00; "
             "without one, UTC, and a warning says so).",
    )] = None,
    tail: Annotated[int | None, typer.Option(
        "--tail", metavar="N", min=-1,
        help="Start with the last N records of each instance (-1: all).",
    )] = None,
    timestamps: Annotated[bool, typer.Option(
        "--timestamps", help="Put each record's time (RFC 3339, UTC) before its message.",
    )] = False,
    instance: Annotated[list[str] | None, typer.Option(
        "--instance", metavar="NAME", autocompletion=complete_instances,
        help="Only this instance (replica, pod, process); repeat for several.",
    )] = None,
    prefix: Annotated[bool, typer.Option(
        "--prefix/--no-prefix",
        help="Start each line with its instance's name in brackets, as kubectl logs --prefix.",
    )] = True,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Print each frame as it comes (for gateways that do not speak tether.v1).",
    )] = False,
) -> None:
    """Print the logs of SERVICE; with -f, follow them.

    Each line starts with its instance's name in brackets, as kubectl logs
    --prefix does (coloured per instance on a terminal; --no-prefix drops it).
    With --output json each record is one JSON object per line on stdout, and
    errors and reconnects are JSON lines on stderr.
    """
    from tether.cli.output.logprint import LogPrinter, Style, stdout_writer, use_color
    from tether.cli.output.reporters import StatusReporter
    from tether.session.link import open_link, supervise
    from tether.session.logs import LogSession

    s = settings(ctx)
    names = list(dict.fromkeys(instance or []))
    query: dict[str, ParamValue] = {"service": service, "follow": "1" if follow else "0"}
    if len(names) == 1:
        query["instance"] = names[0]
    if tail is not None and tail >= 0:
        query["tail"] = tail
    reporter = StatusReporter(s)
    if since is not None:
        query["since"], assumed_utc = parse_since(since)
        if assumed_utc:
            reporter.warning(f"--since {since} has no UTC offset: read as UTC "
                             f"({query['since']}); add Z or +HH:MM to name the zone.")
    link = open_link(s)
    style = Style(json=s.json, color=not s.json and use_color(_stdout_fd(sys.stdout)),
                  prefix=prefix, timestamps=timestamps,
                  instances=frozenset(names) if len(names) > 1 else None)
    session = LogSession(query, LogPrinter(stdout_writer(), style, reporter.warning), raw=raw)
    try:
        supervise(link, "logs", session.params, session.handle, reporter)
    except BrokenPipeError:  # click would turn it into exit 1: end like `yes | head -1` does
        from tether.cli.boundary import EXIT_BROKEN_PIPE
        from tether.cli.output.logprint import silence_stdout

        silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None


def _stdout_fd(stream: object) -> int:
    try:
        fileno = getattr(stream, "fileno", None)
        return int(fileno()) if callable(fileno) else -1
    except (OSError, ValueError):
        return -1
