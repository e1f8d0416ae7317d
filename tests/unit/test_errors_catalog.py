"""The error catalog: complete, consistent, and the generated docs in step with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.cli.commands.errors import close_matches, normalize_code
from tether.errors import CATALOG, Code, ExitStatus, Failure, Interrupted, Phase, Retry
from tools.errors_doc import (
    ERRORS_END,
    ERRORS_START,
    catalog_markdown,
    catalog_table_markdown,
    marked_section,
    replace_marked_section,
)

ROOT = Path(__file__).resolve().parents[2]


def assert_marked_table_current(path: Path) -> None:
    """Fail unless ``path`` holds the catalog table between the errors markers."""
    text = path.read_text(encoding="utf-8")
    section = marked_section(text)
    assert section is not None, f"{path} lacks {ERRORS_START} ... {ERRORS_END}"
    assert section == catalog_table_markdown(), (
        f"{path} is out of date: run `python -m tools.errors_doc --write`")


def test_every_code_has_an_entry_and_nothing_else_does() -> None:
    assert set(CATALOG) == set(Code)


def test_exit_statuses_are_unique_and_codes_use_known_ones() -> None:
    values = [int(s) for s in ExitStatus]
    assert len(values) == len(set(values))
    for entry in CATALOG.values():
        assert entry.exit_status in ExitStatus


@pytest.mark.parametrize("code", list(Code))
def test_entry_is_complete(code: Code) -> None:
    entry = CATALOG[code]
    assert entry.title and entry.when and entry.phases
    assert entry.hint or code is Code.INTERRUPTED
    assert code == code.lower() and " " not in code


@pytest.mark.parametrize("code", list(Code))
def test_failure_of_takes_catalog_defaults(code: Code) -> None:
    failure = Failure.of(code, CATALOG[code].phases[0], "what happened")
    assert failure.exit_code == int(CATALOG[code].exit_status)
    assert failure.title == CATALOG[code].title
    assert failure.retryable == (CATALOG[code].retry in (Retry.BUDGET, Retry.BACKOFF,
                                                          Retry.PER_CONNECTION))


def test_failure_as_dict_round_trips_through_json() -> None:
    failure = Failure.of(Code.PERMISSION_DENIED, Phase.HANDSHAKE, "role Viewer cannot open a shell",
                         http_status=403, required_role="Deployer", request_id="r-1",
                         retry_after=1.5, attempts=2, url="wss://gw.example/v1/shell",
                         cause=RuntimeError("not serialised"))
    data = json.loads(json.dumps(failure.as_dict()))
    assert "cause" not in data
    assert data["code"] == "permission-denied" and data["phase"] == "handshake"
    rebuilt = Failure(**{**data, "code": Code(data["code"]), "phase": Phase(data["phase"])})
    assert rebuilt == failure


def test_interrupted_exit_statuses() -> None:
    assert Interrupted().failure.exit_code == 130
    assert Interrupted("SIGTERM").failure.exit_code == 143
    assert Interrupted("SIGHUP").failure.exit_code == 129


def test_docs_errors_md_matches_the_catalog() -> None:
    docs = ROOT / "docs" / "errors.md"
    assert docs.read_text(encoding="utf-8") == catalog_markdown(), (
        "docs/errors.md is out of date: run `python -m tools.errors_doc --write`")


def test_catalog_markdown_has_a_section_and_a_row_per_code() -> None:
    text = catalog_markdown()
    table = catalog_table_markdown()
    for code in Code:
        assert f"\n## {code}\n" in text
        assert f"[`{code}`](docs/errors.md#{code})" in table
    assert len(table.strip().splitlines()) == len(Code) + 2


def test_marked_section_round_trip(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ERRORS_START}\nold table\n{ERRORS_END}\noutro\n")
    with pytest.raises(AssertionError):
        assert_marked_table_current(readme)
    updated = replace_marked_section(readme.read_text(), catalog_table_markdown())
    readme.write_text(updated)
    assert_marked_table_current(readme)
    assert updated.startswith("intro\n") and updated.endswith(f"{ERRORS_END}\noutro\n")
    assert marked_section("no markers here") is None
    with pytest.raises(ValueError, match="markers"):
        replace_marked_section("no markers", "x")


def test_close_matches_and_normalization() -> None:
    assert normalize_code("PERMISSION_DENIED") == "permission-denied"
    assert normalize_code(" Permission denied ") == "permission-denied"
    assert close_matches("permision-denied")[0] == "permission-denied"
    assert set(close_matches("timeout")) == {"connect-timeout", "agent-timeout",
                                             "keepalive-timeout"}
    assert close_matches("zzzzzz") == []


def test_readme_error_table_is_current() -> None:
    assert_marked_table_current(Path(__file__).parents[2] / "README.md")
