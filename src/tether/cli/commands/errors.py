"""``tether errors [CODE]``: the error catalog, listed or explained; and docs/errors.md.

``python -m tether.cli.commands.errors --write`` regenerates docs/errors.md (and the
README's error table between its markers); ``--check`` fails when they drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tether.cli.options import settings
from tether.errors import CATALOG, Code, Entry, ExitStatus, Phase, Retry

RETRY_WORDS = {
    Retry.NEVER: "Not retried: the same request would fail the same way.",
    Retry.BUDGET: "Retried with backoff, but only within the short connect budget, "
                  "because a typo in the address looks the same.",
    Retry.REFRESH_ONCE: "When the credential is a refreshable login (JWT), tether refreshes it "
                        "once and tries again; otherwise, and after that, not retried.",
    Retry.BACKOFF: "Retried with exponential backoff and jitter (0.5 s doubling to 30 s, "
                   "never sooner than Retry-After) until --retry-for runs out.",
    Retry.PER_CONNECTION: "Fails only the one forwarded connection; the command keeps running.",
}

ERRORS_START = "<!-- errors:start -->"
ERRORS_END = "<!-- errors:end -->"
DOCS_PATH = Path("docs") / "errors.md"
README_PATH = Path("README.md")


def normalize_code(name: str) -> str:
    """``PERMISSION_DENIED`` or ``Permission denied`` as ``permission-denied``."""
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def close_matches(name: str, limit: int = 3) -> list[str]:
    """Catalog codes that ``name`` may have meant, best first."""
    import difflib

    wanted = normalize_code(name)
    codes = [str(c) for c in Code]
    found = [c for c in codes if wanted and wanted in c]
    found += [c for c in difflib.get_close_matches(wanted, codes, n=limit, cutoff=0.6)
              if c not in found]
    return found[:limit]


def phases_text(entry: Entry) -> str:
    """``handshake, session``; ``any`` when a code may happen in every phase."""
    if set(entry.phases) == set(Phase):
        return "any"
    return ", ".join(str(p) for p in entry.phases)


def exit_text(code: Code, *, long: bool = False) -> str:
    """The exit status of ``code``: ``77``, or ``77 (NO_PERMISSION)`` when ``long``.

    For ``interrupted`` the short form is 130 (Ctrl+C); the long one names every signal.
    """
    status = CATALOG[code].exit_status
    if code is Code.INTERRUPTED and long:
        return (f"{int(ExitStatus.INTERRUPTED)} (Ctrl+C), {int(ExitStatus.TERMINATED)} "
                f"(SIGTERM), {int(ExitStatus.HANGUP)} (SIGHUP)")
    return f"{int(status)} ({status.name})" if long else str(int(status))


def entry_dict(code: Code) -> dict[str, Any]:
    """One catalog entry as a JSON object."""
    entry = CATALOG[code]
    return {"code": str(code), "title": entry.title, "phases": [str(p) for p in entry.phases],
            "retry": str(entry.retry), "exit_status": int(entry.exit_status),
            "when": entry.when, "hint": entry.hint}


# --- the command -------------------------------------------------------------------------


def _complete_code(incomplete: str) -> list[str]:
    return [str(c) for c in Code if c.startswith(incomplete)]


def errors_command(
    ctx: typer.Context,
    code: Annotated[str | None, typer.Argument(
        metavar="CODE", autocompletion=_complete_code,
        help="A code to explain, e.g. permission-denied. Without it, list every code.",
    )] = None,
) -> None:
    """List the error codes tether can exit with, or explain one."""
    as_json = settings(ctx).json
    if code is None:
        _list(as_json)
        return
    try:
        found = Code(normalize_code(code))
    except ValueError:
        _unknown(code, as_json)
        raise typer.Exit(int(ExitStatus.USAGE)) from None
    _explain(found, as_json)


def _list(as_json: bool) -> None:
    if as_json:
        for code in Code:
            sys.stdout.write(json.dumps(entry_dict(code), ensure_ascii=False) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    from tether.cli.output.render import get_stdout_console

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("code", no_wrap=True, min_width=max(len(c) for c in Code))
    table.add_column("phase", max_width=12)
    table.add_column("retry", no_wrap=True)
    table.add_column("exit", no_wrap=True)
    table.add_column("title")
    for code, entry in CATALOG.items():
        table.add_row(Text(str(code), style="bold"), phases_text(entry), str(entry.retry),
                      exit_text(code), entry.title)
    console = get_stdout_console()
    console.print(table)
    console.print(Text("`tether errors CODE` explains one.", style="dim"))


def _explain(code: Code, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(entry_dict(code), ensure_ascii=False) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    from tether.cli.output.render import get_stdout_console

    entry = CATALOG[code]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("When", entry.when[:1].upper() + entry.when[1:] + ".")
    grid.add_row("What to do", entry.hint or "Nothing.")
    grid.add_row("Retry", RETRY_WORDS[entry.retry])
    grid.add_row("Exit status", exit_text(code, long=True))
    grid.add_row("Phase", phases_text(entry))
    console = get_stdout_console()
    heading = Text(str(code), style="bold")
    heading.append(f"  {entry.title}")
    console.print(heading)
    console.print()
    console.print(grid)


def _unknown(code: str, as_json: bool) -> None:
    from tether.cli.output.render import clean, emit_line, render_event

    shown = clean(code, limit=80)
    matches = close_matches(code)
    if as_json:
        emit_line(render_event("error", message=f"unknown error code {shown!r}",
                               matches=matches, exit_code=int(ExitStatus.USAGE)))
        return
    guess = f" Did you mean {' or '.join(matches)}?" if matches else ""
    emit_line(f"Unknown error code {shown!r}.{guess} `tether errors` lists every code.")


# --- Markdown ----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def catalog_table_markdown(link: str = str(DOCS_PATH)) -> str:
    """The catalog as a Markdown table; each code links to its section in ``link``."""
    lines = ["| code | phase | retry | exit | title |", "|---|---|---|---|---|"]
    for code, entry in CATALOG.items():
        lines.append(f"| [`{code}`]({link}#{code}) | {phases_text(entry)} | {entry.retry} "
                     f"| {exit_text(code)} | {_cell(entry.title)} |")
    return "\n".join(lines) + "\n"


def catalog_markdown() -> str:
    """The whole of docs/errors.md: a table, then one section per code."""
    out = [
        "# Error codes",
        "",
        "<!-- Generated from src/tether/errors.py by "
        "`python -m tether.cli.commands.errors --write`. Do not edit. -->",
        "",
        "Every failure ends as one record with a stable code: shown in the error panel, "
        "in the `code` field of `--output json`, and explained by `tether errors CODE`. "
        "Codes are never renamed.",
        "",
        catalog_table_markdown(link="").rstrip("\n"),
        "",
        "Retry classes:",
        "",
    ]
    out += [f"- `{retry}`: {RETRY_WORDS[retry]}" for retry in Retry]
    for code, entry in CATALOG.items():
        out += [
            "",
            f"## {code}",
            "",
            f"**{entry.title}**",
            "",
            f"- When: {entry.when}.",
            f"- What to do: {entry.hint or 'nothing.'}",
            f"- Retry: {RETRY_WORDS[entry.retry]}",
            f"- Exit status: {exit_text(code, long=True)}",
            f"- Phase: {phases_text(entry)}",
        ]
    return "\n".join(out) + "\n"


def marked_section(text: str, start: str = ERRORS_START, end: str = ERRORS_END) -> str | None:
    """What lies between the ``start`` and ``end`` markers, without the newlines at its edges."""
    _, found, rest = text.partition(start)
    body, found_end, _ = rest.partition(end)
    if not found or not found_end:
        return None
    return body.strip("\n") + "\n"


def replace_marked_section(text: str, content: str, start: str = ERRORS_START,
                           end: str = ERRORS_END) -> str:
    """``text`` with what lies between the markers replaced by ``content``."""
    head, found, rest = text.partition(start)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise ValueError(f"markers {start} and {end} not found")
    return f"{head}{start}\n{content.strip(chr(10))}\n{end}{tail}"


def _generate(root: Path, *, write: bool) -> list[str]:
    """Paths under ``root`` whose generated part is stale; rewritten when ``write``."""
    stale: list[str] = []
    docs = root / DOCS_PATH
    wanted = catalog_markdown()
    if not docs.exists() or docs.read_text(encoding="utf-8") != wanted:
        stale.append(str(DOCS_PATH))
        if write:
            docs.parent.mkdir(parents=True, exist_ok=True)
            docs.write_text(wanted, encoding="utf-8")
    readme = root / README_PATH
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    section = marked_section(text)
    if section is not None and section != catalog_table_markdown():
        stale.append(str(README_PATH))
        if write:
            readme.write_text(replace_marked_section(text, catalog_table_markdown()),
                              encoding="utf-8")
    return stale


def _cli(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tether.cli.commands.errors",
                                     description="Regenerate or check docs/errors.md "
                                                 "and the README's error table.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite what is stale")
    action.add_argument("--check", action="store_true", help="exit 1 when anything is stale")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[4],
                        help="the repository (default: the one this file is in)")
    args = parser.parse_args(argv)
    stale = _generate(args.root, write=args.write)
    for path in stale:
        print(f"{'wrote' if args.write else 'stale'}: {path}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(_cli(sys.argv[1:]))
