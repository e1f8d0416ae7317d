"""``tether shell SERVICE [--instance I] [-- COMMAND ARGS...]``: a shell or a command in a service.

Like ``ssh`` and ``kubectl exec -it``: with a terminal on stdin and stdout the
remote side gets a pseudo-terminal sized to the local one; otherwise stdin,
stdout and stderr are piped, byte for byte, and kept apart. The exit status is
the remote command's. The work is in :mod:`tether.session.shell`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tether.cli.commands.completion import complete_instances, complete_services

#: The first paragraph of ``tether exec``'s help: the same command under kubectl's name.
EXEC_HELP = ("Alias of shell: tether exec SERVICE -- COMMAND runs COMMAND in SERVICE, as "
             "kubectl exec does.")


def shell(  # noqa: PLR0917 - one parameter per option, as Typer wants
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(
        help="The service to open a shell in.", metavar="SERVICE", show_default=False,
        autocompletion=complete_services)],
    command: Annotated[list[str] | None, typer.Argument(
        help="Run this instead of the service's shell (after --).", show_default=False,
        metavar="-- COMMAND ARGS")] = None,
    instance: Annotated[str | None, typer.Option(
        "--instance", metavar="INSTANCE", autocompletion=complete_instances,
        help="One instance (replica) of the service; default: any.")] = None,
    tty: Annotated[bool, typer.Option(
        "--tty", "-t", help="Give the remote side a terminal even when stdin or stdout is not "
                            "one (like ssh -t).")] = False,
    no_tty: Annotated[bool, typer.Option(
        "--no-tty", "-T", help="Never give the remote side a terminal: plain pipes, stdout and "
                               "stderr apart (like ssh -T).")] = False,
    stdin: Annotated[bool, typer.Option(
        "--stdin", "-i", hidden=True,
        help="Accepted for kubectl's -it: stdin is always passed.")] = True,
) -> None:
    """Open a shell in SERVICE, or run a command there, like ssh and kubectl exec -it.

    With a terminal, Ctrl+C goes to the remote program; type ~. after a newline to
    disconnect (exit status 255, as ssh) and ~? for the other escapes. A lost
    connection resumes the same session, with no output lost or repeated; only
    when that is impossible is a NEW shell opened (its state is not kept). A piped
    command is never run twice. The exit status is the remote command's.
    """
    from tether.cli.options import settings
    from tether.cli.output.reporters import ShellReporter
    from tether.session import terminal
    from tether.session.link import open_link
    from tether.session.shell import ShellRequest, run_shell

    if tty and no_tty:
        raise typer.BadParameter("give --tty or --no-tty, not both", param_hint="'-t' / '-T'")
    interactive = terminal.is_terminal(0) and terminal.is_terminal(1)
    remote_tty = tty or (interactive and not no_tty)
    request = ShellRequest(service=service, instance=instance, command=tuple(command or ()),
                           tty=remote_tty, raw=remote_tty and terminal.is_terminal(0))
    s = settings(ctx)
    code = run_shell(open_link(s), request, ShellReporter(s))
    if code:
        raise typer.Exit(code)
