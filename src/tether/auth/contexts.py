"""The client's config file: named contexts, each a gateway URL, and the current one.

The file is ``config.toml`` in ``TETHER_CONFIG_DIR`` or the platform's user
config directory. It never holds a secret: tokens live in the keyring only.

    current-context = "prod"    # `tether auth switch NAME` changes it

    [contexts.prod]
    gateway = "https://gw.example.com"
    # optional: an external OAuth issuer for `tether auth login`
    device-endpoint = "https://id.example.com/oauth/device"
    token-endpoint = "https://id.example.com/oauth/token"
    client-id = "tether"
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tether.errors import Code, Failure, Phase, TetherError
from tether.text import redact_url, strip_control

CONFIG_FILE = "config.toml"
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTEXT_KEYS = {"gateway": "gateway", "device-endpoint": "device_endpoint",
                 "token-endpoint": "token_endpoint", "client-id": "client_id"}


def config_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``TETHER_CONFIG_DIR``, else the platform's user config directory for tether."""
    if env.get("TETHER_CONFIG_DIR"):
        return Path(env["TETHER_CONFIG_DIR"])
    import platformdirs

    return Path(platformdirs.user_config_dir("tether"))


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where lock files go: ``TETHER_STATE_DIR``, else the platform's user state directory."""
    if env.get("TETHER_STATE_DIR"):
        return Path(env["TETHER_STATE_DIR"])
    import platformdirs

    return Path(platformdirs.user_state_dir("tether"))


def _invalid(url: str, why: str) -> TetherError:
    shown = strip_control(redact_url(url), limit=200)
    return TetherError(Failure.of(Code.INVALID_URL, Phase.CONFIG,
                                  f"gateway URL {shown!r} {why}", url=shown))


def normalize_gateway_url(url: str) -> str:
    """The canonical form of a gateway URL, used as its keyring key and in the config file.

    ``ws``/``wss`` become ``http``/``https``; scheme and host are lower-cased; a
    default port and a trailing slash are dropped. Raises TetherError(invalid-url).
    """
    text = url.strip()
    if not text or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise _invalid(url, "is empty or contains spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise _invalid(url, "does not parse") from exc
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise _invalid(url, "does not start with https://, http://, wss:// or ws://")
    if "@" in parts.netloc:
        raise _invalid(url, "contains user information; sign in with `tether auth login`")
    host = (parts.hostname or "").lower()
    if not host:
        raise _invalid(url, "has no host")
    if parts.query or parts.fragment:
        raise _invalid(url, "has a query or fragment; give the gateway's base URL")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = re.sub(r"/{2,}", "/", parts.path).rstrip("/")
    return f"{scheme}://{netloc}{path}"


def websocket_url(gateway: str, path: str) -> str:
    """The ``ws``/``wss`` URL of ``path`` on a normalized gateway URL."""
    scheme, _, rest = gateway.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


@dataclass(frozen=True)
class Context:
    """One named gateway, with the optional OAuth issuer used to log in to it."""

    name: str
    gateway: str
    device_endpoint: str | None = None
    token_endpoint: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole config file."""

    current_context: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    @property
    def current(self) -> Context | None:
        """The current context, if it names one that exists."""
        return self.contexts.get(self.current_context or "")

    def context_for(self, gateway: str) -> Context | None:
        """The first context whose gateway is ``gateway`` (normalized)."""
        for context in self.contexts.values():
            try:
                if normalize_gateway_url(context.gateway) == gateway:
                    return context
            except TetherError:
                continue
        return None

    def with_context(self, context: Context, *, make_current: bool) -> Config:
        """A copy with ``context`` added or replaced, and made current if asked."""
        contexts = {**self.contexts, context.name: context}
        current = context.name if make_current else self.current_context
        return replace(self, contexts=contexts, current_context=current)


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    """The config file's path."""
    return config_dir(env) / CONFIG_FILE


def _broken(path: Path, why: str) -> TetherError:
    return TetherError(Failure.of(
        Code.NOT_CONFIGURED, Phase.CONFIG, f"the config file {path} {why}",
        hint=f"Fix or remove {path}, then run `tether auth login URL`."))


def _parse_context(path: Path, name: str, raw: Any) -> Context:
    if not isinstance(raw, dict):
        raise _broken(path, f"has a context {name!r} that is not a table")
    values: dict[str, str] = {}
    for key, attr in _CONTEXT_KEYS.items():
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise _broken(path, f"has a non-string {key!r} in context {name!r}")
        if value is not None:
            values[attr] = value
    if "gateway" not in values:
        raise _broken(path, f"has a context {name!r} without a gateway")
    return Context(name=name, **values)


def load_config(path: Path | None = None) -> Config:
    """The config at ``path`` (default: :func:`config_path`); empty when there is none."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise _broken(path, f"cannot be read ({type(exc).__name__})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _broken(path, f"is not valid TOML ({exc})") from exc
    current = data.get("current-context")
    if current is not None and not isinstance(current, str):
        raise _broken(path, "has a current-context that is not a string")
    raw_contexts = data.get("contexts", {})
    if not isinstance(raw_contexts, dict):
        raise _broken(path, "has a 'contexts' that is not a table")
    contexts = {name: _parse_context(path, name, raw) for name, raw in raw_contexts.items()}
    return Config(current_context=current, contexts=contexts)


def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def dump_config(config: Config) -> str:
    """``config`` as TOML text."""
    lines = []
    if config.current_context is not None:
        lines.append(f"current-context = {_toml_string(config.current_context)}")
    for context in config.contexts.values():
        lines += ["", f"[contexts.{_toml_string(context.name)}]"]
        for key, attr in _CONTEXT_KEYS.items():
            value = getattr(context, attr)
            if value is not None:
                lines.append(f"{key} = {_toml_string(value)}")
    return "\n".join(lines) + "\n"


def save_config(config: Config, path: Path | None = None) -> None:
    """Write ``config`` to ``path`` atomically (a temporary file, then a rename)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(dump_config(config))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def context_name_for(gateway: str) -> str:
    """A default context name for a normalized gateway URL: its host and port."""
    return urlsplit(gateway).netloc


@dataclass(frozen=True)
class Resolved:
    """The gateway a command talks to, and the context it came from, if any."""

    gateway: str
    context: Context | None
    origin: str  # --gateway, --context NAME, TETHER_GATEWAY, TETHER_CONTEXT or context NAME


def unknown_context(name: str, config: Config, *, origin: str = "--context") -> TetherError:
    """The unknown-context failure for ``name``, listing the contexts the config file has."""
    shown = strip_control(name, limit=100)
    known = ", ".join(strip_control(n, limit=100) for n in sorted(config.contexts))
    listed = f"the contexts are: {known}" if known else "there are none yet"
    return TetherError(Failure.of(
        Code.UNKNOWN_CONTEXT, Phase.CONFIG,
        f"{origin} names the context {shown!r}, which the config file does not have; {listed}",
        hint=(f"Use one of {known} (`tether auth status` lists them), or add {shown!r} with "
              f"`tether auth login URL --context {shown}`." if known else
              f"Add it with `tether auth login URL --context {shown}`.")))


def context_named(name: str, config: Config, *, origin: str = "--context") -> Context:
    """The context called ``name``; TetherError(unknown-context) listing the others."""
    found = config.contexts.get(name)
    if found is None:
        raise unknown_context(name, config, origin=origin)
    return found


def switch_context(name: str, config: Config | None = None) -> Context:
    """Make ``name`` the current context in the config file and return it.

    Raises TetherError(unknown-context) when the file has no such context.
    """
    config = load_config() if config is None else config
    context = context_named(name, config, origin="`tether auth switch`")
    if config.current_context != name:
        save_config(replace(config, current_context=name))
    return context


def _resolved(context: Context, origin: str) -> Resolved:
    return Resolved(normalize_gateway_url(context.gateway), context, origin)


def resolve_gateway(flag: str | None = None, *, context: str | None = None,
                    env: Mapping[str, str] = os.environ,
                    config: Config | None = None) -> Resolved:
    """The gateway, from the first of these that is set.

    ``--gateway``; ``--context`` (``context``); ``TETHER_GATEWAY``;
    ``TETHER_CONTEXT``; the config file's current context. Raises
    TetherError(not-configured) when none is set, (unknown-context) when a
    context named is not in the config file, (invalid-url) when the URL is malformed.
    """
    if config is None:
        config = load_config(config_path(env))
    if flag:
        gateway, origin = normalize_gateway_url(flag), "--gateway"
    elif context:
        return _resolved(context_named(context, config), f"--context {context}")
    elif env.get("TETHER_GATEWAY"):
        gateway, origin = normalize_gateway_url(env["TETHER_GATEWAY"]), "TETHER_GATEWAY"
    elif env.get("TETHER_CONTEXT"):
        name = env["TETHER_CONTEXT"]
        return _resolved(context_named(name, config, origin="TETHER_CONTEXT"), "TETHER_CONTEXT")
    elif config.current is not None:
        current = config.current
        return _resolved(current, f"context {current.name}")
    elif config.current_context:
        raise unknown_context(config.current_context, config,
                              origin=f"the current-context of {config_path(env)}")
    else:
        raise TetherError(Failure.of(Code.NOT_CONFIGURED, Phase.CONFIG,
                                     "no gateway is set: no --gateway or --context, no "
                                     "TETHER_GATEWAY or TETHER_CONTEXT, and no current "
                                     "context in the config file"))
    return Resolved(gateway, config.context_for(gateway), origin)
