"""``tether auth``: log in, switch contexts, show the credential, log out, print the token.

A token is printed in one place only: ``tether auth token``, on stdout. Every
other line shows what a token says (subject, role, expiry), never the token.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli.commands.completion import complete_contexts
from tether.cli.help import Typer
from tether.errors import Interrupted

if TYPE_CHECKING:
    from tether.auth.contexts import Config, Resolved
    from tether.auth.credentials import CredentialInfo
    from tether.auth.oauth import DeviceAuthorization
    from tether.cli.options import Settings
    from tether.client.http import HttpOptions

app = Typer(
    help="Log in to a gateway, switch contexts, show or remove the stored credential, "
         "print the token.",
    no_args_is_help=True,
)


def _settings(ctx: typer.Context) -> Settings:
    from tether.cli.options import settings

    return settings(ctx)


def _note(text: str) -> None:
    typer.echo(text, err=True)


def _http(settings: Settings) -> HttpOptions:
    """The global --connect-timeout, --ca-cert and --insecure, for the token endpoints."""
    from tether.client.http import HttpOptions

    if settings.insecure:
        _note("warning: TLS certificate verification is OFF (--insecure); "
              "anyone on the path can read your login.")
    return HttpOptions(timeout=settings.connect_timeout, ca_cert=settings.ca_cert,
                       insecure=settings.insecure)


def _resolve(ctx: typer.Context) -> tuple[Resolved, Config]:
    from tether.auth.contexts import load_config, resolve_gateway

    config = load_config()
    s = _settings(ctx)
    return resolve_gateway(s.gateway, context=s.context, config=config), config


def relative(seconds: float) -> str:
    """``in 14 min``, ``in 2 h 5 min``, ``3 min ago``, ``in 40 s``."""
    amount = abs(int(seconds))
    if amount < 60:
        text = f"{amount} s"
    elif amount < 3600:
        text = f"{amount // 60} min"
    elif amount < 86400:
        text = f"{amount // 3600} h {amount % 3600 // 60} min"
    else:
        text = f"{amount // 86400} d {amount % 86400 // 3600} h"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _expiry(info: CredentialInfo) -> str:
    import time

    if info.expires_at is None:
        return "never (no expiry in the token)" if info.kind == "jwt" else "not known to tether"
    left = info.expires_at.timestamp() - time.time()
    word = relative(left) if left >= 0 else f"expired {relative(left)}"
    return f"{word} ({info.expires_at.strftime('%Y-%m-%d %H:%M:%S UTC')})"


def _print_info(info: CredentialInfo, settings: Settings, extra: dict[str, Any]) -> None:
    from tether.text import strip_control

    if settings.json:
        import json

        typer.echo(json.dumps({**info.as_dict(), **extra}, separators=(",", ":")))
        return
    rows = [("Gateway", info.gateway), *[(k.capitalize(), str(v)) for k, v in extra.items()
                                        if v is not None],
            ("Source", info.source + (" (TETHER_TOKEN)" if info.source == "environment" else "")),
            ("Kind", info.kind), ("Subject", info.subject or "-"), ("Role", info.role or "-"),
            ("Expires", _expiry(info)),
            ("Refresh", "automatic" if info.refreshable else "never")]
    for name, value in rows:
        typer.echo(f"{name + ':':<9} {strip_control(value, limit=300)}")


# --- login -------------------------------------------------------------------------------


def _show_device(device: DeviceAuthorization, gateway: str, settings: Settings) -> None:
    if settings.json:
        from tether.cli.output.render import emit_line, render_event

        emit_line(render_event(
            "device-code", gateway=gateway, user_code=device.user_code,
            verification_uri=device.verification_uri,
            verification_uri_complete=device.verification_uri_complete,
            expires_in=round(device.expires_in)))
        return
    _note(f"To log in to {gateway}, open\n\n    {device.verification_uri}\n\n"
          f"and enter the code\n\n    {device.user_code}\n")
    if device.verification_uri_complete:
        _note(f"(or open {device.verification_uri_complete})\n")
    _note(f"Waiting for approval; the code expires {relative(device.expires_in)}. "
          "Ctrl+C cancels.")


def _remember(config: Config, gateway: str, *, name: str | None, make_current: bool) -> str:
    from tether.auth.contexts import Context, context_name_for, save_config

    existing = config.context_for(gateway)
    if existing is not None and name in (None, existing.name):
        context = existing
    else:
        base = existing if existing is not None else Context(name="", gateway=gateway)
        context = Context(name or context_name_for(gateway), gateway, base.device_endpoint,
                          base.token_endpoint, base.client_id)
    make_current = make_current or config.current is None
    updated = config.with_context(context, make_current=make_current)
    if updated != config:
        save_config(updated)
    return context.name


@app.command("login")
def login(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Argument(
        metavar="URL",
        help="The gateway; it becomes the current context, named by --context (default: "
             "host:port). Default: --gateway, --context, TETHER_GATEWAY, or the current "
             "context.")] = None,
) -> None:
    """Log in with the device flow: approve the code shown, in a browser or by an Admin.

    With URL, the gateway is saved as a context (--context NAME names it) and
    becomes the current one.
    """
    from tether.auth.contexts import load_config, normalize_gateway_url, resolve_gateway
    from tether.auth.credentials import KeyringCredential, endpoints_for
    from tether.auth.oauth import poll_device_token, start_device_flow
    from tether.auth.refresh import gateway_lock
    from tether.auth.store import KeyringStore, StoredTokens

    settings = _settings(ctx)
    config = load_config()
    gateway = (normalize_gateway_url(url) if url else resolve_gateway(
        settings.gateway, context=settings.context, config=config).gateway)
    store = KeyringStore()
    store.backend  # noqa: B018 - fail before the user approves anything
    http = _http(settings)
    endpoints = endpoints_for(gateway)
    try:
        device = start_device_flow(endpoints, http)
        _show_device(device, gateway, settings)
        response = poll_device_token(endpoints, device, http)
    except KeyboardInterrupt:
        _note("Login cancelled; nothing was saved.")
        raise Interrupted() from None
    tokens = StoredTokens(response.access_token, response.refresh_token)
    with gateway_lock(gateway):
        store.save(gateway, tokens)
    name = _remember(config, gateway, name=settings.context if url else None,
                     make_current=url is not None)
    info = KeyringCredential(gateway, tokens, store=store, endpoints=endpoints,
                             http=http).describe()
    if settings.json:
        _print_info(info, settings, {"context": name})
        return
    who = f" as {info.subject}" if info.subject else ""
    role = f" ({info.role})" if info.role else ""
    _note(f"Logged in to {gateway}{who}{role}; context {name!r}.")
    _note_env_token()


def _note_env_token() -> None:
    import os

    if os.environ.get("TETHER_TOKEN", "").strip():
        _note("Note: TETHER_TOKEN is set and is used instead of the keyring.")


# --- contexts, status, logout, token ----------------------------------------------------------


def _contexts(config: Config) -> list[dict[str, Any]]:
    from tether.text import strip_control

    return [{"name": strip_control(c.name, limit=100), "gateway": strip_control(c.gateway,
                                                                                limit=300),
             "current": c.name == config.current_context} for c in config.contexts.values()]


def _show_contexts(contexts: list[dict[str, Any]]) -> None:
    """The contexts, ``*`` before the current one, as ``kubectl config get-contexts`` marks it."""
    if not contexts:
        typer.echo("Contexts: none (`tether auth login URL` adds one)")
        return
    typer.echo("Contexts:")
    width = max(len(c["name"]) for c in contexts)
    for c in contexts:
        typer.echo(f"{'*' if c['current'] else ' '} {c['name']:<{width}}  {c['gateway']}")
    typer.echo("")


def _note_env_override() -> None:
    import os

    for name in ("TETHER_GATEWAY", "TETHER_CONTEXT"):
        if os.environ.get(name, "").strip():
            _note(f"Note: {name} is set, and is used instead of the current context.")
            return


@app.command("switch")
def switch(
    ctx: typer.Context,
    context: Annotated[str, typer.Argument(
        metavar="NAME", autocompletion=complete_contexts,
        help="The context to make current (`tether auth status` lists them).")],
) -> None:
    """Make context NAME the current one: commands use its gateway from now on."""
    from tether.auth.contexts import switch_context
    from tether.text import strip_control

    chosen = switch_context(context)
    name, gateway = strip_control(chosen.name, limit=100), strip_control(chosen.gateway,
                                                                         limit=300)
    if _settings(ctx).json:
        import json

        typer.echo(json.dumps({"context": name, "gateway": gateway}, separators=(",", ":")))
    else:
        typer.echo(f"Switched to context {name!r} ({gateway}).")
    _note_env_override()


@app.command("status")
def status(ctx: typer.Context) -> None:
    """List the contexts (* marks the current one), then the credential in use.

    For the gateway in use (--gateway, --context, TETHER_GATEWAY, TETHER_CONTEXT
    or the current context): its subject, role, expiry, and where the
    credential comes from.
    """
    from tether.auth.contexts import load_config, resolve_gateway
    from tether.auth.credentials import resolve_credential

    s = _settings(ctx)
    config = load_config()
    contexts = _contexts(config)
    if not s.json:
        _show_contexts(contexts)
    resolved = resolve_gateway(s.gateway, context=s.context, config=config)
    credential = resolve_credential(resolved.gateway)
    context = resolved.context.name if resolved.context else None
    extra: dict[str, Any] = {"context": context}
    if s.json:
        extra["contexts"] = contexts
    _print_info(credential.describe(), s, extra)


@app.command("logout")
def logout(ctx: typer.Context) -> None:
    """Remove this gateway's credential from the keyring."""
    from tether.auth.refresh import gateway_lock
    from tether.auth.store import KeyringStore

    resolved, _ = _resolve(ctx)
    gateway = resolved.gateway
    with gateway_lock(gateway):
        removed = KeyringStore().delete(gateway)
    if _settings(ctx).json:
        import json

        typer.echo(json.dumps({"gateway": gateway, "removed": removed}, separators=(",", ":")))
    else:
        _note(f"Logged out of {gateway}." if removed
              else f"Not logged in to {gateway}; nothing to remove.")
    _note_env_token()


@app.command("token")
def token(ctx: typer.Context) -> None:
    """Print the current access token on stdout, for scripts; refreshed first if near expiry."""
    from tether.auth.credentials import resolve_credential

    resolved, _ = _resolve(ctx)
    credential = resolve_credential(resolved.gateway, http=_http(_settings(ctx)))
    value = credential.token()
    sys.stdout.write(value + "\n")
    sys.stdout.flush()
