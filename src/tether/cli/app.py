"""The ``tether`` command: root app, global options, and :func:`main`, the one error boundary.

Every failure ends here: a :class:`~tether.errors.TetherError` is rendered once
and the process exits with its ``exit_code``; anything else is an
``internal-error``. Global options (``--output``, ``--verbose``, ``--gateway``)
are accepted before or after the subcommand.

Command modules are registered in the section at the bottom; they keep their
top-level imports to typer and tether.errors so that ``tether --help`` stays fast.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Annotated

import typer

from tether import __version__
from tether.cli.options import (
    Output,
    Settings,
    duration_option,
    output_from_env,
    settings,
    verbose_from_env,
)
from tether.errors import Code, ExitStatus, Failure, Interrupted, Phase, TetherError

__all__ = ["Output", "Settings", "app", "hoist_global_options", "main", "run_app", "settings"]

#: Exit status of a process whose stdout reader went away (128 + SIGPIPE), like a C program.
EXIT_BROKEN_PIPE = 141

app = typer.Typer(
    name="tether",
    help="Shell, logs and port-forward to remote services over WebSockets, "
         "with errors that say what happened and what to do.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,  # plain help, as kubectl and git print it, and 40% faster
)


_CONNECTION = "Connection (global: also accepted after the command)"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tether {__version__}")
        raise typer.Exit()


@app.callback()
def root(  # noqa: PLR0917 - one parameter per global option
    ctx: typer.Context,
    output: Annotated[Output, typer.Option(
        "--output", "-o", envvar="TETHER_OUTPUT", show_envvar=True, case_sensitive=False,
        help="text for people, json for one JSON object per line (errors and events on stderr).",
    )] = Output.TEXT,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", envvar="TETHER_VERBOSE", show_envvar=True,
        help="Show causes of errors, and the traceback of an internal error.",
    )] = False,
    gateway: Annotated[str | None, typer.Option(
        "--gateway", envvar="TETHER_GATEWAY", show_envvar=True, metavar="URL",
        help="The gateway, e.g. https://gateway.example.com.",
    )] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Print the version and exit.",
    )] = False,
    retry_for: Annotated[float, typer.Option(
        "--retry-for", envvar="TETHER_RETRY_FOR", show_envvar=True, parser=duration_option,
        metavar="DURATION", rich_help_panel=_CONNECTION,
        help="Keep retrying transient failures for this long (e.g. 5m, 30s; 0: never retry).",
    )] = 300.0,
    connect_timeout: Annotated[float, typer.Option(
        "--connect-timeout", envvar="TETHER_CONNECT_TIMEOUT", show_envvar=True,
        parser=duration_option, metavar="DURATION", rich_help_panel=_CONNECTION,
        help="One deadline over DNS, TCP, TLS and the WebSocket handshake.",
    )] = 15.0,
    ca_cert: Annotated[str | None, typer.Option(
        "--ca-cert", envvar="TETHER_CA_CERT", show_envvar=True, metavar="FILE",
        rich_help_panel=_CONNECTION,
        help="Trust this PEM bundle instead of the system store (SSL_CERT_FILE also works).",
    )] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", envvar="TETHER_INSECURE", show_envvar=True, rich_help_panel=_CONNECTION,
        help="Do not verify the gateway's TLS certificate. Warned about on every connection.",
    )] = False,
    keepalive_interval: Annotated[float, typer.Option(
        "--keepalive-interval", envvar="TETHER_KEEPALIVE_INTERVAL", show_envvar=True,
        parser=duration_option, metavar="DURATION", rich_help_panel=_CONNECTION,
        help="Send a ping this often (0: never).",
    )] = 30.0,
    keepalive_timeout: Annotated[float, typer.Option(
        "--keepalive-timeout", envvar="TETHER_KEEPALIVE_TIMEOUT", show_envvar=True,
        parser=duration_option, metavar="DURATION", rich_help_panel=_CONNECTION,
        help="Declare the connection dead after this long with nothing received.",
    )] = 75.0,
) -> None:
    """Shell, logs and port-forward to remote services, with precise errors."""
    source = ctx.get_parameter_source("gateway")
    if source is not None and source.name != "COMMANDLINE":
        gateway = None  # TETHER_GATEWAY: resolve_gateway reads it and names it as the origin
    ctx.obj = Settings(output=Output(output), verbose=verbose, gateway=gateway or None,
                       retry_for=retry_for, connect_timeout=connect_timeout,
                       ca_cert=ca_cert or None, insecure=insecure,
                       keepalive_interval=keepalive_interval,
                       keepalive_timeout=keepalive_timeout)


# --- global options anywhere on the command line ---------------------------------------

_FLAGS = frozenset({"-v", "--verbose", "--insecure"})
_VALUED = frozenset({"-o", "--output", "--gateway", "--retry-for", "--connect-timeout",
                     "--ca-cert", "--keepalive-interval", "--keepalive-timeout"})
_VALUED_EQ = tuple(f"{name}=" for name in _VALUED if name.startswith("--"))


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """``argv`` with the global options moved in front, so they may follow the subcommand.

    Scanning stops at a bare ``--``. Handles ``-o json``, ``-ojson``,
    ``--output json``, ``--output=json``, ``-v``, ``--verbose``, ``--gateway X``
    and ``--gateway=X``. These names are therefore reserved in every subcommand.
    """
    front: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in _FLAGS:
            front.append(arg)
        elif arg in _VALUED:
            front.extend(args[i:i + 2])
            i += 1
        elif arg.startswith(_VALUED_EQ) or (arg.startswith("-o") and not arg.startswith("--")):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _render_settings(argv: Sequence[str]) -> tuple[str, bool]:
    """The output format and verbosity named in ``argv`` (else the environment)."""
    output: str = output_from_env()
    verbose = verbose_from_env()
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        value: str | None = None
        if arg in ("-o", "--output") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--output="):
            value = arg.partition("=")[2]
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
        elif arg in ("-v", "--verbose"):
            verbose = True
        if value is not None:
            output = Output.JSON if value.strip().lower() == Output.JSON else Output.TEXT
    return output, verbose


# --- the error boundary -------------------------------------------------------------------


def _render(failure: Failure, output: str, verbose: bool) -> None:
    from tether.cli.output.render import render_failure

    render_failure(failure, output=output, verbose=verbose)


def _internal_failure(exc: BaseException) -> Failure:
    from tether.cli.output.render import clean

    text = clean(str(exc).splitlines()[0] if str(exc).strip() else "", limit=200)
    message = f"unexpected {type(exc).__name__}" + (f": {text}" if text else "")
    return Failure.of(Code.INTERNAL_ERROR, Phase.LOCAL, message, cause=exc)


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

    seen_output, seen_verbose = _render_settings(argv)
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


def _install_signal_handlers() -> None:
    signal.signal(signal.SIGINT, _keyboard_interrupt)
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise_interrupted)


def main(argv: list[str] | None = None) -> None:
    """The console script: run tether on ``argv`` (default ``sys.argv[1:]``) and exit."""
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    _install_signal_handlers()
    raise SystemExit(run_app(app, args))


# --- commands ------------------------------------------------------------------------------
# One line per command module. Keep the modules' top-level imports light.

from tether.cli.commands import errors as errors_cmd  # noqa: E402

app.command("errors")(errors_cmd.errors_command)

from tether.cli.commands import auth as auth_cmd  # noqa: E402

app.add_typer(auth_cmd.app, name="auth")

from tether.cli.commands import demo as demo_cmd  # noqa: E402
from tether.cli.commands import gateway as gateway_cmd  # noqa: E402

app.add_typer(gateway_cmd.app, name="gateway")
app.command("demo")(demo_cmd.demo_command)

from tether.cli.commands import shell as shell_cmd  # noqa: E402

app.command("shell", context_settings=shell_cmd.CONTEXT_SETTINGS)(shell_cmd.shell)

from tether.cli.commands import logs as logs_cmd  # noqa: E402

app.command("logs")(logs_cmd.logs_command)

from tether.cli.commands import port_forward as port_forward_cmd  # noqa: E402

app.command("port-forward")(port_forward_cmd.port_forward_command)

from tether.cli.commands import completion as completion_cmd  # noqa: E402
from tether.cli.commands import doctor as doctor_cmd  # noqa: E402
from tether.cli.commands import status as status_cmd  # noqa: E402

app.command("status")(status_cmd.status_command)
app.command("doctor")(doctor_cmd.doctor_command)
app.add_typer(completion_cmd.app, name="completion", hidden=True)
