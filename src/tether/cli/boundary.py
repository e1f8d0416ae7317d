"""The one error boundary: run a Typer app, render every failure once, return its exit status.

A :class:`~tether.errors.TetherError` is rendered once and the process exits
with its ``exit_code``; anything else is an ``internal-error``. A usage error
(an unknown option, a value that does not parse) is Click's text and exit 2,
or with ``-o json`` one ``usage-error`` record. Ctrl+C, SIGTERM and SIGHUP end
as ``interrupted``; a reader that went away ends quietly with
:data:`EXIT_BROKEN_PIPE`.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from tether.cli import coercion
from tether.cli.options import hoist_global_options, render_settings
from tether.errors import Code, ExitStatus, Failure, Interrupted, Phase, TetherError

__all__ = ["EXIT_BROKEN_PIPE", "install_signal_handlers", "run_app", "run_main"]

#: Exit status of a process whose stdout reader went away (128 + SIGPIPE), like a C program.
EXIT_BROKEN_PIPE = 141


def _render(failure: Failure, output: str, verbose: bool) -> None:
    from tether.cli.output.render import render_failure

    render_failure(failure, output=output, verbose=verbose)


def _internal_failure(exc: BaseException) -> Failure:
    from tether.cli.output.render import clean

    text = clean(str(exc).splitlines()[0] if str(exc).strip() else "", limit=200)
    message = f"unexpected {type(exc).__name__}" + (f": {text}" if text else "")
    return Failure.of(Code.INTERNAL_ERROR, Phase.LOCAL, message, cause=exc)


def usage_failure(exc: UsageError) -> Failure:
    """The ``usage-error`` record of a usage error Click raised."""
    from tether.cli.output.render import clean

    where = exc.ctx.command_path if exc.ctx is not None else "tether"
    return Failure.of(Code.USAGE_ERROR, Phase.CONFIG, clean(exc.format_message(), limit=500),
                      hint=f"`{clean(where, limit=100)} -h` shows what it accepts.")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_app(typer_app: typer.Typer, argv: Sequence[str], *, output: str | None = None,
            verbose: bool | None = None, prog_name: str = "tether") -> int:
    """Run ``typer_app`` on ``argv`` and return the exit status; every failure is rendered once.

    ``output`` and ``verbose`` decide how a failure is shown; by default they are
    read from ``argv`` and the environment, as the global options would be.
    """
    import typer.main

    coercion.install()
    seen_output, seen_verbose = render_settings(argv)
    out = output if output is not None else seen_output
    verb = verbose if verbose is not None else seen_verbose
    command = typer.main.get_command(typer_app)
    try:
        result = command.main(args=list(argv), prog_name=prog_name, standalone_mode=False)
    except TetherError as exc:
        _render(exc.failure, out, verb)
        return exc.failure.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return 1
    except typer.TyperException as exc:  # click's usage errors and friends
        if out == "json" and isinstance(exc, UsageError) and not isinstance(
                exc, NoArgsIsHelpError):
            failure = usage_failure(exc)
            _render(failure, out, verb)
            return failure.exit_code
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"Error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        failure = Interrupted().failure
        _render(failure, out, verb)
        return failure.exit_code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except SystemExit as exc:  # Typer's answer to EPIPE inside a command is sys.exit(1)
        if isinstance(exc.__context__, OSError) and exc.__context__.errno == errno.EPIPE:
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        raise
    except Exception as exc:
        failure = _internal_failure(exc)
        _render(failure, out, verb)
        return failure.exit_code
    # Without standalone mode, an Exit raised inside a command comes back as its code,
    # and so does Typer's answer to a KeyboardInterrupt (130): the SIGINT flag tells them apart.
    status = result if isinstance(result, int) and not isinstance(result, bool) else 0
    if status == ExitStatus.INTERRUPTED and _sigint.is_set():
        failure = Interrupted().failure
        _render(failure, out, verb)
        return failure.exit_code
    return status


#: Set when Ctrl+C arrived, so that the boundary can tell it from a command's own exit 130.
_sigint = threading.Event()


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    _sigint.set()
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """Ctrl+C as KeyboardInterrupt (remembered), SIGTERM and SIGHUP as ``interrupted``."""
    signal.signal(signal.SIGINT, _keyboard_interrupt)
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise_interrupted)


def run_main(typer_app: typer.Typer, argv: Sequence[str]) -> NoReturn:
    """A console script's body: global options hoisted, signals handled, exit with the status."""
    args = hoist_global_options(argv)
    install_signal_handlers()
    raise SystemExit(run_app(typer_app, args))
