"""Shell completion: service names from the gateway, fast, silent and cached.

Two ways in, one source of names:

- the committed scripts in ``completions/`` (bash, zsh, fish), generated from
  the command tree by ``python -m tools.completions --write`` (``--check`` fails
  when they drift), call the hidden ``tether completion services`` for a
  SERVICE argument;
- Typer's own completion (``tether --install-completion``) calls
  :func:`complete_services`, the ``autocompletion=`` of SERVICE arguments.

Both read ``/v1/health`` at most every 30 s (a cache file per gateway in the
state directory, ``TETHER_STATE_DIR`` honoured), give the request a hard
total budget well under a second, and swallow every error: completion
prints nothing but names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

#: Seconds a list of names is reused; a failed fetch is retried sooner.
CACHE_TTL = 30.0
FAILURE_TTL = 5.0
#: Hard limit on the whole health request made for completion.
FETCH_BUDGET = 0.5
#: Names that can be offered to a shell as they are.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+-]{0,127}")

app = typer.Typer(help="Helpers for the shell completion scripts.", hidden=True,
                  no_args_is_help=True, rich_markup_mode=None)


def _cache_file(gateway: str) -> Path:
    from tether.auth.contexts import state_dir

    digest = hashlib.sha256(gateway.encode()).hexdigest()[:16]
    return state_dir() / "completion" / f"services-{digest}.json"


def _read_cache(path: Path, gateway: str, now: float) -> list[str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("gateway") != gateway:
        return None
    names, at = data.get("services"), data.get("at")
    if not isinstance(names, list) or not isinstance(at, int | float):
        return None
    ttl = CACHE_TTL if data.get("ok") else FAILURE_TTL
    if not 0 <= now - at < ttl:
        return None
    return [n for n in names if isinstance(n, str) and _SAFE_NAME.fullmatch(n)]


def _write_cache(path: Path, gateway: str, names: list[str], ok: bool, now: float) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".services-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"gateway": gateway, "at": now, "ok": ok, "services": names}, handle)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def service_names(gateway_flag: str | None = None, *, ca_cert: str | None = None,
                  insecure: bool = False, budget: float = FETCH_BUDGET) -> list[str]:
    """The gateway's service names, cached; an empty list on any failure, never an error."""
    try:
        from tether.auth.contexts import resolve_gateway
        from tether.client.health import fetch_health
        from tether.errors import TetherError

        gateway = resolve_gateway(gateway_flag).gateway
        path = _cache_file(gateway)
        now = time.time()
        cached = _read_cache(path, gateway, now)
        if cached is not None:
            return cached
        try:
            names = fetch_health(gateway, timeout=budget, ca_cert=ca_cert,
                                 insecure=insecure).names
        except TetherError:
            _write_cache(path, gateway, [], False, now)
            return []
        safe = [n for n in names if _SAFE_NAME.fullmatch(n)]
        _write_cache(path, gateway, safe, True, now)
        return safe
    except Exception:
        return []


def complete_services(ctx: typer.Context, incomplete: str) -> list[str]:
    """Typer ``autocompletion=`` for SERVICE arguments: names starting with ``incomplete``."""
    try:
        root = ctx.find_root().params
        gateway = root.get("gateway") if isinstance(root.get("gateway"), str) else None
        ca_cert = root.get("ca_cert") if isinstance(root.get("ca_cert"), str) else None
        names = service_names(gateway, ca_cert=ca_cert, insecure=bool(root.get("insecure")))
        return [n for n in names if n.startswith(incomplete)]
    except Exception:
        return []


@app.command("services", context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})
def services_command(
    ctx: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(
        help="The words typed so far (ignored; global options in them are read).")] = None,
) -> None:
    """Print the gateway's service names, one per line, within a second; never an error."""
    try:
        from tether.cli.options import settings

        s = settings(ctx)
        for name in service_names(s.gateway, ca_cert=s.ca_cert, insecure=s.insecure):
            typer.echo(name)
    except Exception:
        return
