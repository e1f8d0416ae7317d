"""``tether completion bash|zsh|fish``, and the names that completion offers, fast and quiet.

The scripts are static: ``completions/`` of the source tree, generated from
the command tree by ``python -m tools.completions --write`` and shipped in the
wheel as ``tether/completions/``; ``tether completion SHELL`` prints one.
They call three hidden helpers for the words that depend on the gateway or
the config file: ``tether completion services`` (SERVICE arguments),
``tether completion instances SERVICE`` (``--instance`` values) and
``tether completion contexts`` (``--context`` values, ``auth switch``).
Typer's own completion (``tether --install-completion``) calls
:func:`complete_services`, :func:`complete_instances` and
:func:`complete_contexts`, the same names.

Service and instance names come from ``/v1/health``, read at most every 30 s
(one cache file per gateway in the state directory, ``TETHER_STATE_DIR``
honoured) with a hard total budget well under a second; every error is
swallowed: completion prints nothing but names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tether.cli.help import Typer

#: Seconds a list of names is reused; a failed fetch is retried sooner.
CACHE_TTL = 30.0
FAILURE_TTL = 5.0
#: Hard limit on the whole health request made for completion.
FETCH_BUDGET = 0.5
#: The script of each shell, by file name in ``completions/``.
SCRIPTS = {"bash": "tether.bash", "zsh": "_tether", "fish": "tether.fish"}
#: Where each shell looks for a completion script of the user's.
INSTALL = {
    "bash": "tether completion bash > ~/.local/share/bash-completion/completions/tether",
    "zsh": 'tether completion zsh > "${fpath[1]}/_tether"  (a directory on $fpath)',
    "fish": "tether completion fish > ~/.config/fish/completions/tether.fish",
}
#: Names that can be offered to a shell as they are.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+-]{0,127}")
_QUIET = {"ignore_unknown_options": True, "allow_extra_args": True}

app = Typer(
    help="Print the shell completion script for bash, zsh or fish. To install it:\n\n\b\n"
         + "\n".join(f"  {line}" for line in INSTALL.values()),  # \b: kept as written
    no_args_is_help=True,
)


# --- the scripts ---------------------------------------------------------------------------


def script_text(shell: str) -> str:
    """The completion script of ``shell``: the wheel's copy, else the source tree's."""
    from importlib import resources

    name = SCRIPTS[shell]
    shipped = resources.files("tether").joinpath("completions", name)
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    source_tree = Path(__file__).resolve().parents[4] / "completions" / name
    return source_tree.read_text(encoding="utf-8")


def _printer(shell: str) -> Callable[[], None]:
    def print_script() -> None:
        sys.stdout.write(script_text(shell))
        sys.stdout.flush()

    print_script.__doc__ = f"Print the {shell} completion script. Install it with: {INSTALL[shell]}"
    return print_script


for _shell in SCRIPTS:
    app.command(_shell)(_printer(_shell))


# --- names from the gateway, cached ----------------------------------------------------------


def _cache_file(gateway: str) -> Path:
    from tether.auth.contexts import state_dir

    digest = hashlib.sha256(gateway.encode()).hexdigest()[:16]
    return state_dir() / "completion" / f"services-{digest}.json"


def _safe(names: Any) -> list[str]:
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and _SAFE_NAME.fullmatch(n)]


def _read_cache(path: Path, gateway: str, now: float) -> dict[str, list[str]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("gateway") != gateway:
        return None
    at, instances = data.get("at"), data.get("instances")
    if not isinstance(at, int | float) or not isinstance(instances, dict):
        return None
    ttl = CACHE_TTL if data.get("ok") else FAILURE_TTL
    if not 0 <= now - at < ttl:
        return None
    return {name: _safe(instances.get(name)) for name in _safe(data.get("services"))}


def _write_cache(path: Path, gateway: str, catalog: dict[str, list[str]], ok: bool,
                 now: float) -> None:
    record = {"gateway": gateway, "at": now, "ok": ok, "services": list(catalog),
              "instances": catalog}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".services-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def catalog(gateway_flag: str | None = None, *, context: str | None = None,
            ca_cert: str | None = None, insecure: bool = False,
            budget: float = FETCH_BUDGET) -> dict[str, list[str]]:
    """Service name -> instance names of the gateway, cached; empty on any failure."""
    try:
        from tether.auth.contexts import resolve_gateway
        from tether.client.health import fetch_health
        from tether.errors import TetherError

        gateway = resolve_gateway(gateway_flag, context=context).gateway
        path = _cache_file(gateway)
        now = time.time()
        cached = _read_cache(path, gateway, now)
        if cached is not None:
            return cached
        try:
            health = fetch_health(gateway, timeout=budget, ca_cert=ca_cert, insecure=insecure)
        except TetherError:
            _write_cache(path, gateway, {}, False, now)
            return {}
        found = {s.name: _safe(list(s.instances)) for s in health.services
                 if _SAFE_NAME.fullmatch(s.name)}
        _write_cache(path, gateway, found, True, now)
        return found
    except Exception:
        return {}


def context_names() -> list[str]:
    """The config file's contexts that can be offered as they are; empty on any failure."""
    try:
        from tether.auth.contexts import load_config

        return _safe(list(load_config().contexts))
    except Exception:
        return []


def _root_catalog(ctx: typer.Context) -> dict[str, list[str]]:
    root = ctx.find_root().params

    def text(name: str) -> str | None:
        value = root.get(name)
        return value if isinstance(value, str) and value else None

    return catalog(text("gateway"), context=text("context"), ca_cert=text("ca_cert"),
                   insecure=bool(root.get("insecure")))


def complete_services(ctx: typer.Context, incomplete: str) -> list[str]:
    """Typer ``autocompletion=`` for SERVICE arguments: names starting with ``incomplete``."""
    try:
        return [n for n in _root_catalog(ctx) if n.startswith(incomplete)]
    except Exception:
        return []


def _service_typed(ctx: typer.Context) -> str | None:
    """The SERVICE on the line being completed.

    Click stops parsing at an option that still awaits its value (``--instance``
    under the cursor), before it assigns the arguments; the words are read
    from what the shell handed Typer instead.
    """
    import shlex

    service = ctx.params.get("service")
    if isinstance(service, str):
        return service
    text = os.environ.get("COMP_WORDS") or os.environ.get("_TYPER_COMPLETE_ARGS") or ""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    if ctx.info_name not in words:
        return None
    valued = {name for command in (ctx.command, ctx.find_root().command)
              for p in command.params
              if p.param_type_name == "option" and not getattr(p, "is_flag", False)
              for name in p.opts}
    pending = False
    for word in words[words.index(ctx.info_name) + 1:]:
        if pending or word.startswith("-"):
            pending = not pending and word in valued
            continue
        return word
    return None


def complete_instances(ctx: typer.Context, incomplete: str) -> list[str]:
    """Typer ``autocompletion=`` for ``--instance``: the instances of the SERVICE typed."""
    try:
        service = _service_typed(ctx)
        names = _root_catalog(ctx).get(service, []) if service else []
        return [n for n in names if n.startswith(incomplete)]
    except Exception:
        return []


def complete_contexts(incomplete: str) -> list[str]:
    """Typer ``autocompletion=`` for context names: the config file's."""
    return [n for n in context_names() if n.startswith(incomplete)]


# --- the hidden helpers of the scripts -----------------------------------------------------------

Words = Annotated[list[str] | None, typer.Argument(
    help="The words typed so far (ignored; global options in them are read).")]


def _print_names(names: Callable[[], list[str]]) -> None:
    try:
        for name in names():
            typer.echo(name)
    except Exception:
        return


def _settings_catalog(ctx: typer.Context) -> dict[str, list[str]]:
    from tether.cli.options import settings

    s = settings(ctx)
    return catalog(s.gateway, context=s.context, ca_cert=s.ca_cert, insecure=s.insecure)


@app.command("services", hidden=True, context_settings=_QUIET)
def services_command(ctx: typer.Context, words: Words = None) -> None:
    """Print the gateway's service names, one per line, within a second; never an error."""
    _print_names(lambda: list(_settings_catalog(ctx)))


@app.command("instances", hidden=True, context_settings=_QUIET)
def instances_command(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service whose instances to print.")] = "",
    words: Words = None,
) -> None:
    """Print the instances of SERVICE, one per line, within a second; never an error."""
    _print_names(lambda: _settings_catalog(ctx).get(service, []))


@app.command("contexts", hidden=True, context_settings=_QUIET)
def contexts_command(words: Words = None) -> None:
    """Print the config file's context names, one per line; never an error."""
    _print_names(context_names)
