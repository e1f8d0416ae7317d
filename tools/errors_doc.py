"""docs/errors.md and the README's error table, generated from the catalog in tether.errors.

    python -m tools.errors_doc --write   # rewrite what is stale
    python -m tools.errors_doc --check   # exit 1 when either drifted

The README's table lies between the ``<!-- errors:start -->`` and
``<!-- errors:end -->`` markers; the rest of the README is left alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tether.cli.commands.errors import RETRY_WORDS, exit_text, phases_text
from tether.errors import CATALOG, Retry

ERRORS_START = "<!-- errors:start -->"
ERRORS_END = "<!-- errors:end -->"
DOCS_PATH = Path("docs") / "errors.md"
README_PATH = Path("README.md")


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
        "`python -m tools.errors_doc --write`. Do not edit. -->",
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


def main(argv: list[str] | None = None) -> int:
    """``--write`` rewrites what is stale; ``--check`` exits 1 when anything is."""
    parser = argparse.ArgumentParser(prog="python -m tools.errors_doc",
                                     description="Regenerate or check docs/errors.md "
                                                 "and the README's error table.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite what is stale")
    action.add_argument("--check", action="store_true", help="exit 1 when anything is stale")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the repository (default: the one this file is in)")
    args = parser.parse_args(argv)
    stale = _generate(args.root, write=args.write)
    for path in stale:
        print(f"{'wrote' if args.write else 'stale'}: {path}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
