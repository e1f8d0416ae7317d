"""The gateway's configuration: a TOML file naming services, read into frozen dataclasses.

Format (every key optional except a service's ``shell``)::

    [gateway]
    listen = "127.0.0.1"          # a non-loopback address needs TLS or --insecure-listen
    port = 7443
    issuer = "https://gw.example" # the deployment's public URL: JWT iss, device login page;
                                  # required with a shared (PostgreSQL) state; default: own URL
    access_ttl = "15m"            # durations: seconds, or 500ms / 30s / 5m / 1h
    refresh_ttl = "720h"
    session_limit = 64            # open sessions; more are refused with 503
    max_message_size = 1048576    # bigger incoming messages close with 1009
    ping_interval = 30            # keepalive ping; a peer silent for ping_timeout is dropped
    ping_timeout = 30
    open_timeout = 10             # a handshake slower than this is dropped
    rate_limit = { rate = 10.0, burst = 40 }  # upgrades per second per credential
    device_interval = 5           # device flow polling interval
    device_expires = "10m"
    credential_check = 5          # the longest a revocation may take to end a session when
                                  # no notification came (SQLite: polled at least every second)
    state_timeout = "5s"          # a state database slower than this: 503 state-unavailable
    state_pool = 10               # connections to a PostgreSQL state
    resume = true                 # offer tether.v2: shells and forwards that survive a cut
    resume_buffer = "8MiB"        # replay buffer per direction per session (B, KiB, MiB, GiB)
    resume_grace = "2m"           # how long a detached session is kept before it ends
    node = "g1"                   # this gateway's name for resume routing: the load balancer's
                                  # name for it; told to clients (default: random, per process;
                                  # `tether gateway serve --node` overrides it)

    [services.api]
    shell = ["/bin/sh", "-l"]     # a list, or a string split like a shell would
    cwd = "/srv/api"              # relative paths are relative to this file
    env = { APP_ENV = "dev" }
    instances = ["api-1", "api-2"]
    host = "127.0.0.1"            # where the service's ports are
    ports = [8080]

    [[services.api.logs]]
    files = "logs/*.log"          # each matching file is one instance, named by its stem
    stream = "stdout"

    [[services.api.logs]]
    command = ["journalctl", "-f"] # its output is the log of one instance
    instance = "api-journal"
"""

from __future__ import annotations

import math
import re
import secrets
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.durations import parse_duration
from tether.protocol import DEFAULT_GRACE, DEFAULT_REPLAY_BUFFER, NODE_PATTERN

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SIZE = re.compile(r"(?P<number>\d{1,12})\s*(?P<unit>B|KiB|MiB|GiB)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


class ConfigError(ValueError):
    """Raised when the gateway's configuration is missing, unreadable or wrong."""

    def __init__(self, file: str, key: str, expected: str, got: object = None) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        self.got = got
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        shown = "" if self.got is None else f", got {_short(self.got)}"
        return f"{where}: expected {self.expected}{shown}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


@dataclass(frozen=True)
class LogSource:
    """Where one part of a service's log comes from: file globs, or a command's output."""

    files: str | None = None  # an absolute glob
    command: tuple[str, ...] | None = None
    instance: str | None = None  # the instance name of a command source
    stream: str = "stdout"
    ring_size: int = 10_000  # records a command source keeps in memory


@dataclass(frozen=True)
class ServiceConfig:
    """One service the gateway serves."""

    name: str
    shell: tuple[str, ...] = ("/bin/sh",)
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    instances: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    ports: tuple[int, ...] = ()
    logs: tuple[LogSource, ...] = ()


@dataclass(frozen=True)
class RateLimit:
    """A token bucket per credential: ``rate`` upgrades per second, up to ``burst`` at once."""

    rate: float = 10.0
    burst: int = 40


def random_node() -> str:
    """A node name of its own for a gateway that was given none: ``n`` and 8 hex digits."""
    return "n" + secrets.token_hex(4)


def check_node(value: object, *, file: str = "--node", key: str = "") -> str:
    """``value`` when it is a node name (1 to 63 letters, digits, '.', '_', '-', starting with
    a letter or digit); else a ConfigError."""
    if isinstance(value, str) and NODE_PATTERN.fullmatch(value):
        return value
    raise ConfigError(file, key, "a node name: 1 to 63 letters, digits, '.', '_' or '-', "
                      "like g1 (the load balancer's name for this gateway)", value)


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs to run, from the TOML file or built by tests."""

    services: Mapping[str, ServiceConfig] = field(default_factory=dict)
    listen: str = "127.0.0.1"
    port: int = 7443
    issuer: str | None = None
    access_ttl: float = 15 * 60.0
    refresh_ttl: float = 30 * 24 * 3600.0
    session_limit: int = 64
    max_message_size: int = 1024 * 1024
    ping_interval: float | None = 30.0
    ping_timeout: float | None = 30.0
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    rate_limit: RateLimit = RateLimit()
    device_interval: float = 5.0
    device_expires: float = 600.0
    credential_check: float = 5.0
    state_timeout: float = 5.0
    state_pool: int = 10
    resume: bool = True
    resume_buffer: int = DEFAULT_REPLAY_BUFFER
    resume_grace: float = DEFAULT_GRACE
    node: str = field(default_factory=random_node)  # told to clients for resume routing
    source: str = "<built in>"  # the file it came from, for messages


_GATEWAY_KEYS = {"listen", "port", "issuer", "access_ttl", "refresh_ttl", "session_limit",
                 "max_message_size", "ping_interval", "ping_timeout", "open_timeout",
                 "close_timeout", "rate_limit", "device_interval", "device_expires",
                 "credential_check", "state_timeout", "state_pool",
                 "resume", "resume_buffer", "resume_grace", "node"}
_SERVICE_KEYS = {"shell", "cwd", "env", "instances", "host", "ports", "logs"}
_LOG_KEYS = {"files", "command", "instance", "stream", "ring_size"}


class _Reader:
    """Typed access to one table of the file, with errors naming file and key."""

    def __init__(self, file: str, prefix: str, table: Mapping[str, Any], known: set[str]) -> None:
        self.file, self.prefix, self.table = file, prefix, table
        for key in table:
            if key not in known:
                raise ConfigError(file, self.key(key), "one of " + ", ".join(sorted(known)),
                                  "an unknown key")

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, expected: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), expected, self.table.get(name))

    def has(self, name: str) -> bool:
        return name in self.table

    def string(self, name: str, default: str) -> str:
        value = self.table.get(name, default)
        if not isinstance(value, str) or not value:
            raise self.fail(name, "a non-empty string")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.table.get(name, default)
        if type(value) is not int or not low <= value <= high:
            raise self.fail(name, f"an integer from {low} to {high}")
        return value

    def number(self, name: str, default: float, low: float) -> float:
        value = self.table.get(name, default)
        if type(value) not in (int, float) or not math.isfinite(value) or value < low:
            raise self.fail(name, f"a number at least {low}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.table.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "true or false")
        return value

    def size(self, name: str, default: int, low: int, high: int) -> int:
        value = self.table.get(name, default)
        expected = (f"a size from {low} to {high} bytes: a number of bytes, or a string like "
                    "512KiB, 8MiB, 1GiB")
        match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
        if type(value) is int:
            count = value
        elif match is not None:
            count = int(match["number"]) * _SIZE_UNITS[(match["unit"] or "b").lower()]
        else:
            raise self.fail(name, expected)
        if not low <= count <= high:
            raise self.fail(name, expected)
        return count

    def duration(self, name: str, default: float) -> float:
        value = self.table.get(name, default)
        expected = "a duration: seconds, or a string like 500ms, 30s, 5m, 1h"
        if type(value) in (int, float):
            seconds = float(value)
        elif isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError:
                raise self.fail(name, expected) from None
        else:
            raise self.fail(name, expected)
        if not math.isfinite(seconds) or seconds < 0:
            raise self.fail(name, expected)
        return seconds

    def argv(self, name: str) -> tuple[str, ...]:
        value = self.table.get(name)
        expected = "a command: a list of strings, or a string"
        if isinstance(value, str):
            try:
                parts = shlex.split(value)
            except ValueError:
                raise self.fail(name, expected) from None
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            parts = list(value)
        else:
            raise self.fail(name, expected)
        if not parts or not parts[0]:
            raise self.fail(name, expected)
        return tuple(parts)

    def path(self, name: str, base: Path) -> Path:
        raw = self.string(name, "")
        return (base / Path(raw).expanduser()).resolve()


def load_config(path: Path) -> GatewayConfig:
    """Read and check the TOML file at ``path``; a ConfigError names file, key, expectation."""
    file = str(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(file, "", "a readable TOML file", "no such file") from None
    except OSError as exc:
        raise ConfigError(file, "", "a readable TOML file", exc.strerror) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", "valid TOML", str(exc)) from None
    return parse_config(data, file=file, base=path.resolve().parent)


def parse_config(data: Mapping[str, Any], *, file: str = "<config>",
                 base: Path | None = None) -> GatewayConfig:
    """Build a GatewayConfig from parsed TOML ``data``; relative paths are taken from ``base``."""
    base = base or Path.cwd()
    top = _Reader(file, "", data, {"gateway", "services"})
    gateway = data.get("gateway", {})
    if not isinstance(gateway, dict):
        raise top.fail("gateway", "a table")
    g = _Reader(file, "gateway", gateway, _GATEWAY_KEYS)
    rate = gateway.get("rate_limit", {})
    if not isinstance(rate, dict):
        raise g.fail("rate_limit", "a table like { rate = 10.0, burst = 40 }")
    r = _Reader(file, "gateway.rate_limit", rate, {"rate", "burst"})
    services_table = data.get("services", {})
    if not isinstance(services_table, dict) or not services_table:
        raise top.fail("services", "a table of services, like [services.api]")
    services = {name: _service(file, name, body, base) for name, body in services_table.items()}
    issuer = g.string("issuer", "-") if g.has("issuer") else None
    return GatewayConfig(
        services=services,
        listen=g.string("listen", "127.0.0.1"),
        port=g.integer("port", 7443, 0, 65535),
        issuer=issuer,
        access_ttl=g.duration("access_ttl", 15 * 60.0),
        refresh_ttl=g.duration("refresh_ttl", 30 * 24 * 3600.0),
        session_limit=g.integer("session_limit", 64, 1, 100_000),
        max_message_size=g.integer("max_message_size", 1024 * 1024, 1024, 1 << 30),
        ping_interval=g.duration("ping_interval", 30.0) or None,
        ping_timeout=g.duration("ping_timeout", 30.0) or None,
        open_timeout=g.duration("open_timeout", 10.0),
        close_timeout=g.duration("close_timeout", 5.0),
        rate_limit=RateLimit(r.number("rate", 10.0, 0.001), r.integer("burst", 40, 1, 1_000_000)),
        device_interval=g.duration("device_interval", 5.0),
        device_expires=g.duration("device_expires", 600.0),
        credential_check=g.duration("credential_check", 5.0),
        state_timeout=g.duration("state_timeout", 5.0) or 5.0,
        state_pool=g.integer("state_pool", 10, 1, 1000),
        resume=g.boolean("resume", True),
        resume_buffer=g.size("resume_buffer", DEFAULT_REPLAY_BUFFER, 64 * 1024, 1 << 30),
        resume_grace=g.duration("resume_grace", DEFAULT_GRACE),
        node=(check_node(gateway["node"], file=file, key="gateway.node") if g.has("node")
              else random_node()),
        source=file,
    )


def require_issuer(config: GatewayConfig, *, shared: bool) -> None:
    """Raise ConfigError when the state is shared but ``issuer`` (the public URL) is not set.

    Gateways behind one load balancer must all issue and accept the same ``iss``,
    and send users to the same login page: their own URLs would differ.
    """
    if shared and not config.issuer:
        raise ConfigError(config.source, "gateway.issuer",
                          "the deployment's public URL, like issuer = \"https://gw.example.com\" "
                          "(required when the state is shared: PostgreSQL)")


def _service(file: str, name: str, body: Any, base: Path) -> ServiceConfig:
    prefix = f"services.{name}"
    if not _NAME.fullmatch(name):
        raise ConfigError(file, prefix, "a service name of letters, digits, '.', '_' or '-'")
    if not isinstance(body, dict):
        raise ConfigError(file, prefix, "a table", body)
    s = _Reader(file, prefix, body, _SERVICE_KEYS)
    env = body.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise s.fail("env", "a table of strings, like { APP_ENV = \"dev\" }")
    instances = body.get("instances", [])
    if not isinstance(instances, list) or not all(
            isinstance(i, str) and _NAME.fullmatch(i) for i in instances):
        raise s.fail("instances", "a list of instance names (letters, digits, '.', '_', '-')")
    ports = body.get("ports", [])
    if not isinstance(ports, list) or not all(type(p) is int and 0 < p < 65536 for p in ports):
        raise s.fail("ports", "a list of port numbers from 1 to 65535")
    logs = body.get("logs", [])
    if isinstance(logs, dict):
        logs = [logs]
    if not isinstance(logs, list):
        raise s.fail("logs", "a list of tables, like [[services.NAME.logs]]")
    return ServiceConfig(
        name=name,
        shell=s.argv("shell") if s.has("shell") else ("/bin/sh",),
        cwd=s.path("cwd", base) if s.has("cwd") else None,
        env=dict(env),
        instances=tuple(instances),
        host=s.string("host", "127.0.0.1"),
        ports=tuple(ports),
        logs=tuple(_log_source(file, f"{prefix}.logs[{i}]", item, base, name)
                   for i, item in enumerate(logs)),
    )


def _log_source(file: str, prefix: str, body: Any, base: Path, service: str) -> LogSource:
    if not isinstance(body, dict):
        raise ConfigError(file, prefix, "a table with files or command", body)
    s = _Reader(file, prefix, body, _LOG_KEYS)
    if s.has("files") == s.has("command"):
        raise ConfigError(file, prefix, "exactly one of files (a glob) or command")
    stream = s.string("stream", "stdout")
    ring = s.integer("ring_size", 10_000, 1, 10_000_000)
    if s.has("files"):
        pattern = s.string("files", "")
        glob = str(base / Path(pattern).expanduser())
        return LogSource(files=glob, stream=stream, ring_size=ring)
    instance = s.string("instance", service)
    if not _NAME.fullmatch(instance):
        raise s.fail("instance", "an instance name (letters, digits, '.', '_', '-')")
    return LogSource(command=s.argv("command"), instance=instance, stream=stream, ring_size=ring)
