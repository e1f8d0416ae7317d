"""The ``tether`` command: the root app, its commands, and :func:`main`, the console script.

The root's options come from the one table in :mod:`tether.cli.options` and
are accepted before or after the subcommand; every failure is rendered once by
:mod:`tether.cli.boundary`; help is :mod:`tether.cli.help`'s (``-h`` too).
Nothing imports this module but the entry points.

Command modules keep their top-level imports to typer and tether.errors so that
``tether --help`` stays fast.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import typer

from tether.cli.boundary import run_main
from tether.cli.commands import (
    auth,
    completion,
    demo,
    doctor,
    errors,
    gateway,
    logs,
    port_forward,
    shell,
    status,
    version,
)
from tether.cli.help import Typer
from tether.cli.options import Settings, with_global_options

__all__ = ["app", "main"]

app = Typer(
    name="tether",
    help="Shell, logs and port-forward to remote services over WebSockets, "
         "with errors that say what happened and what to do.",
    no_args_is_help=True,
    add_completion=True,
)


@app.callback()
@with_global_options
def root(ctx: typer.Context, **values: Any) -> None:
    """Shell, logs and port-forward to remote services, with precise errors."""
    ctx.obj = Settings.from_root(ctx, values)


def main(argv: list[str] | None = None) -> None:
    """The console script: run tether on ``argv`` (default ``sys.argv[1:]``) and exit."""
    run_main(app, sys.argv[1:] if argv is None else argv)


# One line per command. Command modules keep their top-level imports light.
app.command("shell")(shell.shell)
app.command("exec", help=f"{shell.EXEC_HELP}\n\n{inspect.cleandoc(shell.shell.__doc__ or '')}")(
    shell.shell)
app.command("logs")(logs.logs_command)
app.command("port-forward")(port_forward.port_forward_command)
app.command("status")(status.status_command)
app.add_typer(auth.app, name="auth")
app.command("doctor")(doctor.doctor_command)
app.command("errors")(errors.errors_command)
app.command("version")(version.version_command)
app.command("demo")(demo.demo_command)
app.add_typer(gateway.app, name="gateway")
app.add_typer(completion.app, name="completion")
