"""``tether errors [CODE]``: the error catalog, listed or explained.

The catalog's wording here (retry classes, phases, exit statuses) is also what
docs/errors.md is generated from (``python -m tools.errors_doc``).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from tether.cli.options import settings
from tether.errors import CATALOG, Code, Entry, ExitStatus, Failure, Phase, Retry, TetherError

RETRY_WORDS = {
    Retry.NEVER: "Not retried: the same request would fail the same way.",
    Retry.BUDGET: "Retried with backoff, but only within the short connect budget, "
                  "because a typo in the address looks the same. Before any session was "
                  "established, a name that does not exist and a refused connection are not "
                  "retried unless --retry-for is given.",
    Retry.REFRESH_ONCE: "When the credential is a refreshable login (JWT), tether refreshes it "
                        "once and tries again; otherwise, and after that, not retried.",
    Retry.BACKOFF: "Retried with exponential backoff and jitter (0.5 s doubling to 30 s, "
                   "never sooner than Retry-After) until --retry-for runs out.",
    Retry.PER_CONNECTION: "Fails only the one forwarded connection; the command keeps running.",
}


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
    """One catalog entry as a JSON object; ``exit_code`` as in every JSON error record."""
    entry = CATALOG[code]
    return {"code": str(code), "title": entry.title, "phases": [str(p) for p in entry.phases],
            "retry": str(entry.retry), "exit_code": int(entry.exit_status),
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
        raise _unknown(code) from None
    _explain(found, as_json)


def _list(as_json: bool) -> None:
    if as_json:
        for code in Code:
            sys.stdout.write(json.dumps(entry_dict(code), ensure_ascii=False) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    from tether.cli.output.render import columns, get_stdout_console

    console = get_stdout_console()
    if not console.is_terminal:  # a pipe: one line per code, never wrapped (`| grep CODE`)
        rows = [("code", "phase", "retry", "exit", "title")] + [
            (str(code), phases_text(entry), str(entry.retry), exit_text(code), entry.title)
            for code, entry in CATALOG.items()]
        sys.stdout.write("".join(line + "\n" for line in columns(rows)))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("code", no_wrap=True, min_width=max(len(c) for c in Code))
    table.add_column("phase", max_width=12)
    table.add_column("retry", no_wrap=True)
    table.add_column("exit", no_wrap=True)
    table.add_column("title")
    for code, entry in CATALOG.items():
        table.add_row(Text(str(code), style="bold"), phases_text(entry), str(entry.retry),
                      exit_text(code), entry.title)
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
    rows = [("When", entry.when[:1].upper() + entry.when[1:] + "."),
            ("What to do", entry.hint or "Nothing."), ("Retry", RETRY_WORDS[entry.retry]),
            ("Exit status", exit_text(code, long=True)), ("Phase", phases_text(entry))]
    console = get_stdout_console()
    if not console.is_terminal:  # a pipe: one line per fact, never wrapped
        lines = [f"{code}  {entry.title}", ""] + [f"{name}: {text}" for name, text in rows]
        sys.stdout.write("".join(line + "\n" for line in lines))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, text in rows:
        grid.add_row(name, text)
    heading = Text(str(code), style="bold")
    heading.append(f"  {entry.title}")
    console.print(heading)
    console.print()
    console.print(grid)


def _unknown(code: str) -> TetherError:
    """The usage-error of a code the catalog does not have, with the codes it may mean."""
    from tether.cli.output.render import clean

    shown = clean(code, limit=80)
    matches = close_matches(code)
    guess = f"Did you mean {' or '.join(matches)}? " if matches else ""
    return TetherError(Failure.of(
        Code.USAGE_ERROR, Phase.CONFIG, f"unknown error code {shown!r}",
        hint=f"{guess}`tether errors` lists every code."))
