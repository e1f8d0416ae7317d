"""The root's options in one table, and the Settings they resolve to.

:data:`GLOBAL_OPTIONS` is the one definition of every option of ``tether``
itself. From it come the root callback's parameters (:func:`with_global_options`),
the hoisting of global options written after the command
(:func:`hoist_global_options`), the scan that decides how a failure is shown
before any parsing (:func:`render_settings`), and the defaults of
:class:`Settings`. Kept free of heavy imports: every command module may import it.
"""

from __future__ import annotations

import enum
import inspect
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer


class Output(enum.StrEnum):
    """How results and errors are written."""

    TEXT = "text"
    JSON = "json"


# --- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class GlobalOption:
    """One option of ``tether`` itself.

    ``anywhere`` options are also accepted after the command and become a field
    of :class:`Settings` named after the long name (``--retry-for``: ``retry_for``).
    A ``kind`` of ``bool`` is a flag; any other kind takes a value.
    """

    name: str
    short: str | None = None
    envvar: str | None = None
    kind: type = bool
    parser: Callable[[str], Any] | None = None
    default: Any = None
    help: str = ""
    panel: str | None = None
    metavar: str | None = None
    anywhere: bool = True
    eager: Callable[[bool], None] | None = None  # runs before the other options (--version)

    @property
    def dest(self) -> str:
        """The parameter and Settings field name: ``--retry-for`` is ``retry_for``."""
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def value_default(self) -> Any:
        """The default as a value: ``default`` is written as a person writes it (``5m``)."""
        if self.parser is not None and isinstance(self.default, str):
            return self.parser(self.default)
        return self.default

    @property
    def takes_value(self) -> bool:
        """Whether the option is followed by a value (else it is a flag)."""
        return self.kind is not bool

    @property
    def spellings(self) -> tuple[str, ...]:
        """The long name, then the short one when there is one."""
        return (self.name, self.short) if self.short else (self.name,)

    def parameter(self) -> inspect.Parameter:
        """The keyword parameter Typer reads this option from."""
        info = typer.Option(
            *self.spellings, envvar=self.envvar, show_envvar=self.envvar is not None,
            case_sensitive=False, parser=self.parser, metavar=self.metavar,
            rich_help_panel=self.panel, help=self.help,
            callback=self.eager, is_eager=self.eager is not None,
        )
        kind: Any = self.kind | None if self.default is None else self.kind
        return inspect.Parameter(self.dest, inspect.Parameter.KEYWORD_ONLY,
                                 default=self.default, annotation=Annotated[kind, info])


def duration_option(value: str | float) -> float:
    """A Typer ``parser=`` for duration options (``30s``, ``5m``); a bad value is a usage error."""
    if isinstance(value, float):
        return value
    from tether.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _print_version(value: bool) -> None:
    if value:
        from tether import __version__

        typer.echo(f"tether {__version__}")
        raise typer.Exit()


_CONNECTION = "Connection (global: also accepted after the command)"

#: Every option of ``tether`` itself, in the order ``tether --help`` lists them.
GLOBAL_OPTIONS: tuple[GlobalOption, ...] = (
    GlobalOption("--output", "-o", "TETHER_OUTPUT", Output, default=Output.TEXT,
                 help="text for people, json for one JSON object per line "
                      "(errors and events on stderr)."),
    GlobalOption("--verbose", "-v", "TETHER_VERBOSE", default=False,
                 help="Show causes of errors, and the traceback of an internal error."),
    GlobalOption("--gateway", None, "TETHER_GATEWAY", str, metavar="URL",
                 help="The gateway, e.g. https://gateway.example.com."),
    GlobalOption("--context", None, "TETHER_CONTEXT", str, metavar="NAME",
                 help="Use this context of the config file instead of the current one "
                      "(`tether auth status` lists them)."),
    GlobalOption("--version", default=False, anywhere=False, eager=_print_version,
                 help="Print the version and exit."),
    GlobalOption("--retry-for", None, "TETHER_RETRY_FOR", float, duration_option, "5m",
                 "Keep retrying transient failures for this long "
                 "(e.g. 5m, 30s; 0: never retry). Given, it also waits for a gateway that "
                 "does not resolve or listen yet.", _CONNECTION, "DURATION"),
    GlobalOption("--connect-timeout", None, "TETHER_CONNECT_TIMEOUT", float, duration_option,
                 "15s", "One deadline over DNS, TCP, TLS and the WebSocket handshake.",
                 _CONNECTION, "DURATION"),
    GlobalOption("--ca-cert", None, "TETHER_CA_CERT", str, metavar="FILE", panel=_CONNECTION,
                 help="Trust this PEM bundle instead of the system store "
                      "(SSL_CERT_FILE also works)."),
    GlobalOption("--insecure", None, "TETHER_INSECURE", default=False, panel=_CONNECTION,
                 help="Do not verify the gateway's TLS certificate. "
                      "Warned about on every connection."),
    GlobalOption("--keepalive-interval", None, "TETHER_KEEPALIVE_INTERVAL", float,
                 duration_option, "30s", "Send a ping this often (0: never).",
                 _CONNECTION, "DURATION"),
    GlobalOption("--keepalive-timeout", None, "TETHER_KEEPALIVE_TIMEOUT", float,
                 duration_option, "75s",
                 "Declare the connection dead after this long with nothing received.",
                 _CONNECTION, "DURATION"),
)

_BY_FIELD = {option.dest: option for option in GLOBAL_OPTIONS}
_DEFAULT: dict[str, Any] = {option.dest: option.value_default for option in GLOBAL_OPTIONS}
_ANYWHERE = {name: option for option in GLOBAL_OPTIONS if option.anywhere
             for name in option.spellings}


_F = TypeVar("_F", bound=Callable[..., Any])


def with_global_options(callback: _F) -> _F:
    """``callback`` with one keyword parameter per global option, for Typer to read.

    The callback takes them as ``**values``; its own parameters (the context) stay first.
    """
    own = [p for p in inspect.signature(callback, eval_str=True).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    options = [option.parameter() for option in GLOBAL_OPTIONS]
    callback.__signature__ = inspect.Signature([*own, *options])  # type: ignore[attr-defined]
    return callback


# --- the settings ----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The global options, as the root callback resolved them."""

    output: Output = _DEFAULT["output"]
    verbose: bool = _DEFAULT["verbose"]
    gateway: str | None = _DEFAULT["gateway"]
    context: str | None = _DEFAULT["context"]
    # how to reach the gateway (shell, logs, port-forward, status, doctor, auth)
    retry_for: float = _DEFAULT["retry_for"]
    connect_timeout: float = _DEFAULT["connect_timeout"]
    ca_cert: str | None = _DEFAULT["ca_cert"]
    insecure: bool = _DEFAULT["insecure"]
    keepalive_interval: float = _DEFAULT["keepalive_interval"]
    keepalive_timeout: float = _DEFAULT["keepalive_timeout"]
    # --retry-for or TETHER_RETRY_FOR was given: retry a wrong address on first contact too
    retry_for_explicit: bool = False

    @property
    def json(self) -> bool:
        """Whether output is one JSON object per line."""
        return self.output is Output.JSON

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from TETHER_OUTPUT, TETHER_VERBOSE and TETHER_GATEWAY alone."""
        return cls(output=output_from_env(), verbose=verbose_from_env(),
                   gateway=os.environ.get(_envvar("gateway")) or None)

    @classmethod
    def from_root(cls, ctx: typer.Context, values: Mapping[str, Any]) -> Settings:
        """The Settings of the root callback's ``values``; empty strings read as unset.

        A gateway from TETHER_GATEWAY and a context from TETHER_CONTEXT are left
        out: ``resolve_gateway`` reads them itself, after --gateway and
        --context, and names them as the origin.
        """
        chosen = {name: values[name] for name in _BY_FIELD if _BY_FIELD[name].anywhere}
        for name in ("gateway", "context"):
            source = ctx.get_parameter_source(name)
            if source is not None and source.name != "COMMANDLINE":
                chosen[name] = None
        for name in ("gateway", "context", "ca_cert"):
            chosen[name] = chosen[name] or None
        chosen["output"] = Output(chosen["output"])
        given = ctx.get_parameter_source("retry_for")
        chosen["retry_for_explicit"] = given is not None and given.name in (
            "COMMANDLINE", "ENVIRONMENT")
        return cls(**chosen)


def settings(ctx: typer.Context) -> Settings:
    """The Settings of this invocation (from the environment when no callback set them)."""
    found = ctx.find_object(Settings)
    return found if found is not None else Settings.from_env()


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})


def _envvar(name: str) -> str:
    envvar = _BY_FIELD[name].envvar
    assert envvar is not None
    return envvar


def verbose_from_env() -> bool:
    """TETHER_VERBOSE read as a flag, the way the --verbose option reads it."""
    return os.environ.get(_envvar("verbose"), "").strip().lower() in _TRUE


def _output_named(value: str) -> Output:
    return Output.JSON if value.strip().lower() == Output.JSON else Output.TEXT


def output_from_env() -> Output:
    """TETHER_OUTPUT, or text when unset or not a known format."""
    return _output_named(os.environ.get(_envvar("output"), ""))


# --- global options anywhere on the command line -----------------------------------------


def is_global(name: str) -> bool:
    """Whether ``tether`` accepts option ``name`` after a subcommand too."""
    return name in _ANYWHERE


def _match(arg: str) -> tuple[GlobalOption | None, str | None]:
    """The global option ``arg`` spells and the value written into it (``--output=json``)."""
    option = _ANYWHERE.get(arg)
    if option is not None:
        return option, None
    name, eq, value = arg.partition("=")
    if eq and name.startswith("--"):
        option = _ANYWHERE.get(name)
    elif len(arg) > 2 and not arg.startswith("--"):
        option, value = _ANYWHERE.get(arg[:2]), arg[2:]  # -ojson
    return (option, value) if option is not None and option.takes_value else (None, None)


def _scan(argv: Sequence[str]) -> Iterator[tuple[list[str], GlobalOption | None, str | None]]:
    """``argv`` in pieces: (words, the global option they spell or None, its value).

    Stops at a bare ``--``, whose rest is one piece. Reads ``-o json``,
    ``-ojson``, ``--output json``, ``--output=json`` and flags such as ``-v``.
    """
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] == "--":
            yield args[i:], None, None
            return
        option, value = _match(args[i])
        size = 2 if option is not None and option.takes_value and value is None else 1
        words = args[i:i + size]
        if size == 2 and len(words) == 2:
            value = words[1]
        yield words, option, value
        i += size


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """``argv`` with the global options moved in front, so they may follow the subcommand.

    Scanning stops at a bare ``--``. These names are therefore reserved in every subcommand.
    """
    front: list[str] = []
    rest: list[str] = []
    for words, option, _ in _scan(argv):
        (front if option is not None else rest).extend(words)
    return front + rest


def render_settings(argv: Sequence[str]) -> tuple[Output, bool]:
    """The output format and verbosity named in ``argv`` (else the environment)."""
    output = output_from_env()
    verbose = verbose_from_env()
    for _, option, value in _scan(argv):
        if option is _BY_FIELD["output"] and value is not None:
            output = _output_named(value)
        elif option is _BY_FIELD["verbose"]:
            verbose = True
    return output, verbose
