"""``tether gateway``: run the reference gateway, approve logins, make API tokens.

Every subcommand acts on the gateway's state (``--state``): a directory
(SQLite, the default) or a ``postgresql://`` URL shared by several gateways.
The approve, token and keys commands work while gateways run elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from tether.cli.help import Typer

if TYPE_CHECKING:
    from tether.gateway.oauth import OAuth
    from tether.gateway.tokens import TokenService

P = ParamSpec("P")
R = TypeVar("R")
EXIT_CONFIG = 78
EXIT_UNAVAILABLE = 69

app = Typer(help="Run the reference gateway and manage who may use it.",
            no_args_is_help=True)
token_app = Typer(help="API tokens: long-lived credentials for scripts and CI.",
                  no_args_is_help=True)
keys_app = Typer(help="Signing keys of access tokens: list, rotate.",
                 no_args_is_help=True)
logins_app = Typer(help="Device logins: list, revoke (their sessions end at once).",
                   no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")
app.add_typer(logins_app, name="logins")

StateOption = Annotated[str | None, typer.Option(
    "--state", "--state-dir", envvar="TETHER_GATEWAY_STATE", show_envvar=True,
    metavar="DIR_OR_URL",
    help="The gateway's state: a directory (SQLite; default: the user state directory, "
         "tether/gateway) or postgresql://USER@HOST/DB shared by several gateways.")]
RoleOption = Annotated[str, typer.Option(
    "--role", metavar="ROLE", help="Viewer (logs), Deployer (shell, port-forward) or Admin.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"tether gateway: {message}", err=True)
    return typer.Exit(code)


def _location(state: str | None) -> str | Path:
    from tether.gateway.state import default_state

    return state if state else default_state()


def _shown(location: str | Path) -> str:
    from tether.store import is_url
    from tether.store.postgres import redact

    return redact(str(location)) if is_url(location) else str(location)


def _services(state: str | None) -> tuple[TokenService, OAuth]:
    import logging

    from tether.gateway.oauth import OAuth
    from tether.gateway.tokens import TokenService
    from tether.store import StateUnavailable, open_store

    location = _location(state)
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)  # its failures end in one line here
    try:
        store = open_store(location, pool_size=1)
    except StateUnavailable as exc:
        raise _fail(f"cannot reach the state {_shown(location)}: {exc}", EXIT_UNAVAILABLE) \
            from None
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot open the state {_shown(location)}: {exc}", EXIT_CONFIG) from None
    tokens = TokenService(store)
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
    state: StateOption = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", metavar="FILE",
                                                  help="PEM certificate chain: serve wss.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", metavar="FILE",
                                                 help="PEM private key of --tls-cert.")] = None,
    insecure_listen: Annotated[bool, typer.Option(
        "--insecure-listen", help="Allow a non-loopback address without TLS.")] = False,
    node: Annotated[str | None, typer.Option(
        "--node", envvar="TETHER_GATEWAY_NODE", show_envvar=True, metavar="NAME",
        help="This gateway's name for resume routing, as the load balancer names it "
             "(default: [gateway] node, else random).")] = None,
    test_faults: Annotated[Path | None, typer.Option("--test-faults", hidden=True)] = None,
) -> None:
    """Run the gateway in the foreground until Ctrl+C or SIGTERM."""
    import dataclasses
    import logging

    from tether.gateway.config import ConfigError, check_node, load_config
    from tether.gateway.serve import (
        ListenRefused,
        check_listen,
        load_faults,
        run_forever,
        tls_context,
    )
    from tether.gateway.server import Gateway
    from tether.store import StateUnavailable

    try:
        settings = load_config(config)
        if node is not None:
            settings = dataclasses.replace(settings, node=check_node(node))
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
    location = _location(state)
    try:
        gateway = Gateway(settings, location, faults=faults, ssl_context=context)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    except StateUnavailable as exc:
        raise _fail(f"cannot reach the state {_shown(location)}: {exc}", EXIT_UNAVAILABLE) \
            from None
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot open the state {_shown(location)}: {exc}", EXIT_CONFIG) from None

    def ready(running: Gateway) -> None:
        typer.echo(f"tether gateway: listening on {running.url} (node {settings.node}, "
                   f"state in {_shown(location)})")
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
    state: StateOption = None,
) -> None:
    """Approve a pending device login with a role."""
    _check_role(role)
    _, oauth = _services(state)
    if not _run(oauth.decide, user_code, approve=True, role=role, sub=user):
        raise _fail(f"no pending login with code {user_code!r} (expired, used, or mistyped)")
    typer.echo(f"approved {user_code.upper()} for {user} as {role}")


@app.command("deny")
def deny(
    user_code: Annotated[str, typer.Argument(metavar="USER_CODE")],
    state: StateOption = None,
) -> None:
    """Deny a pending device login."""
    _, oauth = _services(state)
    if not _run(oauth.decide, user_code, approve=False):
        raise _fail(f"no pending login with code {user_code!r}")
    typer.echo(f"denied {user_code.upper()}")


@app.command("pending")
def pending(state: StateOption = None) -> None:
    """List the device logins waiting for approval."""
    _, oauth = _services(state)
    for item in _run(oauth.pending):
        typer.echo(f"{item['user_code']}  expires in {item['expires_in']} s")


@app.command("audit")
def audit(
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                       help="How many sessions, newest first.")] = 50,
    state: StateOption = None,
) -> None:
    """List the sessions gateways opened: when, who, where, from where, how they ended."""
    import time

    tokens, _ = _services(state)

    def rows() -> list[tuple[object, ...]]:
        with tokens.state.read() as db:
            found: list[tuple[object, ...]] = db.execute(
                "SELECT opened, sub, role, endpoint, service, instance, gateway, peer, "
                "forwarded_for, ended, close_code, close_reason FROM audit "
                "ORDER BY opened DESC LIMIT ?", (limit,)).fetchall()
        return found

    for (opened, sub, role, endpoint, service, instance, gateway, peer, forwarded, ended,
         code, reason) in _run(rows):
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(str(opened))))
        where = f"{service}/{instance}" if instance else str(service)
        source = f"{forwarded} via {peer}" if forwarded else str(peer)
        end = "open" if ended is None else f"ended {code or ''} {reason or ''}".rstrip()
        typer.echo(f"{when}  {sub} ({role})  {endpoint} {where}  on {gateway}  from {source}  "
                   f"{end}")


@token_app.command("create")
def token_create(
    role: RoleOption = "Viewer",
    name: Annotated[str, typer.Option("--name", metavar="NAME",
                                      help="What the token is for (ci, bot...).")] = "token",
    state: StateOption = None,
) -> None:
    """Make an API token and print it once; only its hash is kept."""
    _check_role(role)
    tokens, _ = _services(state)
    typer.echo(_run(tokens.create_api_token, role, name))


@token_app.command("list")
def token_list(state: StateOption = None) -> None:
    """List API tokens (never their values)."""
    tokens, _ = _services(state)
    for item in _run(tokens.list_api_tokens):
        status = "revoked" if item["revoked"] else "active"
        typer.echo(f"{item['id']}  {item['name']}  {item['role']}  {status}")


@token_app.command("revoke")
def token_revoke(
    ident: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    state: StateOption = None,
) -> None:
    """Revoke API tokens by id or name; their open sessions close on every gateway."""
    tokens, _ = _services(state)
    count = _run(tokens.revoke_api_token, ident)
    if not count:
        raise _fail(f"no active API token with id or name {ident!r}")
    typer.echo(f"revoked {count} token(s)")


@logins_app.command("list")
def logins_list(state: StateOption = None) -> None:
    """List device logins (refresh-token families), never their tokens."""
    _, oauth = _services(state)
    for item in _run(oauth.logins):
        status = "revoked" if item["revoked"] else "active"
        typer.echo(f"{item['id']}  {item['sub']}  {item['role']}  {status}")


@logins_app.command("revoke")
def logins_revoke(
    ident: Annotated[str, typer.Argument(metavar="USER_OR_ID")],
    state: StateOption = None,
) -> None:
    """Revoke a user's logins: refreshes fail, open sessions close on every gateway."""
    _, oauth = _services(state)
    count = _run(oauth.revoke_logins, ident)
    if not count:
        raise _fail(f"no active login of user or with id {ident!r}")
    typer.echo(f"revoked {count} login(s)")


@keys_app.command("list")
def keys_list(state: StateOption = None) -> None:
    """List the signing keys (ids and ages, never the keys)."""
    import time

    tokens, _ = _services(state)
    now = time.time()
    for key in tokens.keys.listing():
        status = ("signing" if key.retired is None
                  else f"retired {int(now - key.retired)} s ago (verifies its tokens until they "
                       f"expire)")
        typer.echo(f"{key.kid}  made {int(now - key.created)} s ago  {status}")


@keys_app.command("rotate")
def keys_rotate(state: StateOption = None) -> None:
    """Make a new signing key; tokens signed by the old one stay valid until they expire."""
    tokens, _ = _services(state)
    typer.echo(f"new signing key {_run(tokens.rotate_key)}")


def _run(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(...)``, with a lost state database said in one line (exit 69)."""
    from tether.store import StateUnavailable

    try:
        return fn(*args, **kwargs)
    except StateUnavailable as exc:
        raise _fail(f"the state database is unavailable: {exc}", EXIT_UNAVAILABLE) from None
