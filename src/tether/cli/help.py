"""Help as a person writes it, and the Typer that every command of tether is made with.

Typer's plain help names Python types (``SERVICE <str>``, ``<list[str]>``,
``<int range>``), puts required arguments in braces and prints defaults as
Python values (``300.0``). :class:`Command` and :class:`Group` print the usage
line with arguments as written (``tether logs [OPTIONS] SERVICE``), each option
with its metavar (``--since DURATION|TIME``, ``-o, --output text|json``), and
defaults as written (``5m``). :class:`Typer` makes them the default, accepts
``-h`` as well as ``--help`` everywhere, and converts values without pydantic
(:mod:`tether.cli.coercion`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import typer
import typer.core
from typer._click import Context, HelpFormatter

from tether.cli import coercion

__all__ = ["HELP_OPTIONS", "Command", "Group", "Typer", "help_record", "usage_name"]

#: Every command and group of tether answers to both.
HELP_OPTIONS = ["-h", "--help"]


def usage_name(param: Any) -> str:
    """An argument in the usage line: ``SERVICE``, ``[CODE]``, ``[-- COMMAND ARGS]...``."""
    name = str(param.metavar or (param.name or "").upper())
    if not param.required:
        name = f"[{name}]"
    return name if param.nargs == 1 or name.endswith("...") else name + "..."


def _value_name(param: Any) -> str:
    """What an option's value is called: its metavar, its choices, or its name."""
    if param.metavar:
        return str(param.metavar)
    choices = param.type_descriptor.choices if hasattr(param, "type_descriptor") else None
    if choices:
        return "|".join(str(c.value if isinstance(c, enum.Enum) else c) for c in choices)
    return str(param.name or "value").upper()


def _spelled(opts: list[str]) -> str:
    return ", ".join(sorted(opts, key=lambda o: (len(o) - len(o.lstrip("-")), o)))


def _default(param: Any, ctx: Context) -> str:
    """The default as written: ``5m``, ``text``, ``--prefix``; empty when there is none."""
    if isinstance(param.show_default, str):
        return param.show_default
    if not (param.show_default or ctx.show_default):
        return ""
    default = param.default
    if getattr(param, "is_flag", False):
        if param.secondary_opts:  # --prefix/--no-prefix: the spelling that is the default
            return str((param.opts if default else param.secondary_opts)[0])
        return ""
    if default is None or callable(default) or default in ((), []):
        return ""
    values = default if isinstance(default, list | tuple) else [default]
    return ", ".join(str(v.value if isinstance(v, enum.Enum) else v) for v in values)


def help_record(param: Any, ctx: Context) -> tuple[str, str] | None:
    """``(names, help)`` of one parameter for the Arguments or Options list; None if hidden."""
    if getattr(param, "hidden", False):
        return None
    if param.param_type_name == "argument":
        return str(param.metavar or (param.name or "").upper()), param.help or ""
    names = _spelled(param.opts)
    if param.secondary_opts:
        names += " / " + _spelled(param.secondary_opts)
    if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
        names += " " + _value_name(param)
    extra = []
    if getattr(param, "show_envvar", False) and param.envvar:
        envvar = param.envvar if isinstance(param.envvar, str) else ", ".join(param.envvar)
        extra.append(f"env var: {envvar}")
    default = _default(param, ctx)
    if default:
        extra.append(f"default: {default}")
    text = param.help or ""
    if extra:
        text = f"{text}  [{'; '.join(extra)}]" if text else f"[{'; '.join(extra)}]"
    return names, text


def _format_parameters(command: Any, ctx: Context, formatter: HelpFormatter) -> None:
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        record = help_record(param, ctx)
        if record is not None:
            (arguments if param.param_type_name == "argument" else options).append(record)
    for title, rows in (("Arguments", arguments), ("Options", options)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


def _usage_pieces(command: Any, ctx: Context) -> list[str]:
    pieces = [command.options_metavar] if command.options_metavar else []
    return pieces + [usage_name(p) for p in command.get_params(ctx)
                     if p.param_type_name == "argument" and not getattr(p, "hidden", False)]


class Command(typer.core.TyperCommand):
    """A command whose help reads like a person wrote it."""

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        """``[OPTIONS] SERVICE [-- COMMAND ARGS]...``."""
        return _usage_pieces(self, ctx)

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The Arguments and Options lists."""
        _format_parameters(self, ctx, formatter)


class Group(typer.core.TyperGroup):
    """A group whose help reads like a person wrote it."""

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        """``[OPTIONS] COMMAND [ARGS]...``."""
        return [*_usage_pieces(self, ctx), self.subcommand_metavar]

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The Options list, then the Commands list."""
        _format_parameters(self, ctx, formatter)
        self.format_commands(ctx, formatter)


class Typer(typer.Typer):
    """``typer.Typer`` with tether's help (``-h``, plain, humane) and lean value conversion."""

    def __init__(self, **settings: Any) -> None:
        coercion.install()
        settings.setdefault("cls", Group)
        settings.setdefault("rich_markup_mode", None)  # plain help, as kubectl and git print it
        settings.setdefault("pretty_exceptions_enable", False)
        settings.setdefault("context_settings", {"help_option_names": HELP_OPTIONS})
        super().__init__(**settings)

    def command(self, name: str | None = None, *, cls: type[typer.core.TyperCommand] | None = None,
                **settings: Any) -> Callable[[Any], Any]:
        """``typer.Typer.command`` with :class:`Command` as the default class."""
        return super().command(name, cls=cls or Command, **settings)
