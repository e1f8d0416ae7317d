"""``tether gateway``: run the reference gateway, approve logins, make API tokens.

The approve and token commands act on the state directory's database, so
they work while the gateway runs in another process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tether.gateway.oauth import OAuth
    from tether.gateway.tokens import TokenService

EXIT_CONFIG = 78

app = typer.Typer(help="Run the reference gateway and manage who may use it.",
                  no_args_is_help=True, rich_markup_mode=None)
token_app = typer.Typer(help="API tokens: long-lived credentials for scripts and CI.",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(token_app, name="token")

StateDirOption = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="TETHER_GATEWAY_STATE", show_envvar=True, metavar="DIR",
    help="Where the gateway keeps its signing secret and database "
         "(default: the user state directory, tether/gateway).")]
RoleOption = Annotated[str, typer.Option(
    "--role", metavar="ROLE", help="Viewer (logs), Deployer (shell, port-forward) or Admin.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"tether gateway: {message}", err=True)
    return typer.Exit(code)


def _state_dir(state_dir: Path | None) -> Path:
    from tether.gateway.state import default_state_dir

    return state_dir if state_dir is not None else default_state_dir()


def _services(state_dir: Path | None) -> tuple[TokenService, OAuth]:
    from tether.gateway.oauth import OAuth
    from tether.gateway.state import StateStore
    from tether.gateway.tokens import TokenService

    try:
        tokens = TokenService(StateStore(_state_dir(state_dir)))
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot open the state directory: {exc}", EXIT_CONFIG) from None
    return tokens, OAuth(tokens, access_ttl=0, refresh_ttl=0, device_interval=0,
                         device_expires=0)


def _check_role(role: str) -> str:
    from tether.protocol import ROLES

    if role not in ROLES:
        raise _fail(f"unknown role {role!r}: expected one of {', '.join(ROLES)}", 64)
    return role


@app.command("serve")
def serve(  # noqa: PLR0917 - Typer options
    config: Annotated[Path, typer.Option("--config", "-c", metavar="FILE",
                                         help="The gateway's TOML file.")],
    listen: Annotated[str | None, typer.Option(
        "--listen", metavar="HOST", help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=0, max=65535, help="Port (default 7443; 0: any free port).")] = None,
    state_dir: StateDirOption = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", metavar="FILE",
                                                  help="PEM certificate chain: serve wss.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", metavar="FILE",
                                                 help="PEM private key of --tls-cert.")] = None,
    insecure_listen: Annotated[bool, typer.Option(
        "--insecure-listen", help="Allow a non-loopback address without TLS.")] = False,
    test_faults: Annotated[Path | None, typer.Option("--test-faults", hidden=True)] = None,
) -> None:
    """Run the gateway in the foreground until Ctrl+C or SIGTERM."""
    import logging

    from tether.gateway.config import ConfigError, load_config
    from tether.gateway.serve import (
        ListenRefused,
        check_listen,
        load_faults,
        run_forever,
        tls_context,
    )
    from tether.gateway.server import Gateway

    try:
        settings = load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    host = listen or settings.listen
    if (tls_cert is None) != (tls_key is None):
        raise _fail("--tls-cert and --tls-key go together", EXIT_CONFIG)
    try:
        check_listen(host, tls=tls_cert is not None, insecure_listen=insecure_listen)
        context = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
        faults = load_faults(test_faults)
    except (ListenRefused, OSError, ValueError) as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    directory = _state_dir(state_dir)
    gateway = Gateway(settings, directory, faults=faults, ssl_context=context)

    def ready(running: Gateway) -> None:
        typer.echo(f"tether gateway: listening on {running.url} (state in {directory})")
        for name in settings.services:
            typer.echo(f"  service {name}")
        import sys

        sys.stdout.flush()

    try:
        run_forever(gateway, host, settings.port if port is None else port, on_ready=ready)
    except OSError as exc:
        raise _fail(f"cannot listen on {host}: {exc.strerror or exc}", 71) from None


@app.command("approve")
def approve(
    user_code: Annotated[str, typer.Argument(metavar="USER_CODE",
                                             help="The code the user was shown.")],
    role: RoleOption = "Viewer",
    user: Annotated[str, typer.Option("--user", metavar="NAME",
                                      help="Who is logging in (the token's subject).")] = "user",
    state_dir: StateDirOption = None,
) -> None:
    """Approve a pending device login with a role."""
    _check_role(role)
    _, oauth = _services(state_dir)
    if not oauth.decide(user_code, approve=True, role=role, sub=user):
        raise _fail(f"no pending login with code {user_code!r} (expired, used, or mistyped)")
    typer.echo(f"approved {user_code.upper()} for {user} as {role}")


@app.command("deny")
def deny(
    user_code: Annotated[str, typer.Argument(metavar="USER_CODE")],
    state_dir: StateDirOption = None,
) -> None:
    """Deny a pending device login."""
    _, oauth = _services(state_dir)
    if not oauth.decide(user_code, approve=False):
        raise _fail(f"no pending login with code {user_code!r}")
    typer.echo(f"denied {user_code.upper()}")


@app.command("pending")
def pending(state_dir: StateDirOption = None) -> None:
    """List the device logins waiting for approval."""
    _, oauth = _services(state_dir)
    for item in oauth.pending():
        typer.echo(f"{item['user_code']}  expires in {item['expires_in']} s")


@token_app.command("create")
def token_create(
    role: RoleOption = "Viewer",
    name: Annotated[str, typer.Option("--name", metavar="NAME",
                                      help="What the token is for (ci, bot...).")] = "token",
    state_dir: StateDirOption = None,
) -> None:
    """Make an API token and print it once; only its hash is kept."""
    _check_role(role)
    tokens, _ = _services(state_dir)
    typer.echo(tokens.create_api_token(role, name))


@token_app.command("list")
def token_list(state_dir: StateDirOption = None) -> None:
    """List API tokens (never their values)."""
    tokens, _ = _services(state_dir)
    for item in tokens.list_api_tokens():
        state = "revoked" if item["revoked"] else "active"
        typer.echo(f"{item['id']}  {item['name']}  {item['role']}  {state}")


@token_app.command("revoke")
def token_revoke(
    ident: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    state_dir: StateDirOption = None,
) -> None:
    """Revoke API tokens by id or name; open sessions using them are closed."""
    tokens, _ = _services(state_dir)
    count = tokens.revoke_api_token(ident)
    if not count:
        raise _fail(f"no active API token with id or name {ident!r}")
    typer.echo(f"revoked {count} token(s)")
