"""Typer's parameter values, converted without pydantic.

Typer 0.29 converts every parameter value (even a default, even for
``--help`` of a subcommand) through a pydantic ``TypeAdapter``, and importing
pydantic costs more than all the rest of a ``--help``. :func:`install` gives
Typer a converter of tether's own for the annotations a CLI uses: str, bool,
int, float, Enum and Literal choices, paths, lists of those, and anything with
a ``parser=``. The rest (tuples, files, datetimes) still goes to Typer's own.
The messages are Click's (``'x' is not a valid integer.``), exit status 2.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import typer
from typer._coercion import RuntimeParam  # loaded by typer.main already

if TYPE_CHECKING:
    from typer._coercion import TypeDescriptor
    from typer.models import ParameterInfo

__all__ = ["install"]

#: What a converter gets: the value, the parameter, the context.
Convert = Callable[[Any, Any, Any], Any]
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off", ""})


def _text(value: Any, param: Any, ctx: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _flag(value: Any, param: Any, ctx: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(f"{value!r} is not a valid boolean (use true or false).")


def _number(kind: type, info: ParameterInfo) -> Convert:
    low, high, clamp = info.min, info.max, bool(info.clamp)
    noun = "integer" if kind is int else "number"

    def convert(value: Any, param: Any, ctx: Any) -> Any:
        try:
            number = kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a valid {noun}.") from None
        if clamp:
            number = max(number, kind(low)) if low is not None else number
            return min(number, kind(high)) if high is not None else number
        if (low is not None and number < low) or (high is not None and number > high):
            span = (f"from {low} to {high}" if low is not None and high is not None
                    else f"at least {low}" if low is not None else f"at most {high}")
            raise ValueError(f"{number} is out of range: it must be {span}.")
        return number

    return convert


def _choice(choices: tuple[Any, ...], case_sensitive: bool) -> Convert:
    from typer._param_types import coerce_cli_choice

    def convert(value: Any, param: Any, ctx: Any) -> Any:
        return coerce_cli_choice(value, choices=choices, case_sensitive=case_sensitive, ctx=ctx)

    return convert


def _path(annotation: Any, info: ParameterInfo) -> Convert:
    from typer._param_types import coerce_cli_path

    path_type: type[Any] | None = info.path_type
    if path_type is None and isinstance(annotation, type) and issubclass(annotation, Path):
        path_type = annotation

    def convert(value: Any, param: Any, ctx: Any) -> Any:
        wanted = path_type
        if (isinstance(wanted, type) and issubclass(wanted, Path)
                and isinstance(value, str | os.PathLike) and not isinstance(value, wanted)):
            value = wanted(value)  # what Typer would ask pydantic to do
        return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)

    return convert


def _converter(annotation: Any, info: ParameterInfo) -> Convert | None:
    """How to convert one value of ``annotation``; None when Typer's own should."""
    from typer._param_types import routes_to_path

    parser = info.parser
    if parser is not None:
        return lambda value, param, ctx: parser(value)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _choice(tuple(annotation), info.case_sensitive)
    if get_origin(annotation) is Literal:
        return _choice(get_args(annotation), info.case_sensitive)
    if annotation is bool:
        return _flag
    if annotation in (int, float):
        return _number(annotation, info)
    if routes_to_path(annotation, info):
        return _path(annotation, info)
    if annotation is str:
        return _text
    return None


@dataclass(frozen=True)
class _Lean(RuntimeParam):
    """Typer's runtime conversion of one parameter, by a :data:`Convert` (each item of a list)."""

    convert: Convert
    many: bool

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            if self.many:
                items = value if isinstance(value, list | tuple) else [value]
                return [self.convert(item, param, ctx) for item in items]
            return self.convert(value, param, ctx)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None


def _lean(descriptor: TypeDescriptor) -> RuntimeParam | None:
    """A conversion for ``descriptor`` that needs no pydantic, or None."""
    if descriptor.file_annotation is not None or descriptor.is_tuple:
        return None
    annotation, info = descriptor.annotation, descriptor.parameter_info
    many = descriptor.is_list
    if many:
        (annotation,) = get_args(annotation)
    convert = _converter(annotation, info)
    if convert is None:
        return None
    return _Lean(parameter_info=info, annotation=descriptor.annotation, convert=convert,
                 many=many)


def install() -> None:
    """Make Typer convert values with :func:`_lean` where it can. Idempotent.

    A Typer without pydantic coercion (no ``typer.core.build_runtime_param``)
    is left as it is.
    """
    import typer.core

    original = getattr(typer.core, "build_runtime_param", None)
    if original is None or getattr(original, "tether_lean", False):
        return

    def build(descriptor: TypeDescriptor) -> RuntimeParam:
        lean = _lean(descriptor)
        return lean if lean is not None else original(descriptor)

    build.tether_lean = True  # type: ignore[attr-defined]
    typer.core.build_runtime_param = build  # type: ignore[attr-defined]
