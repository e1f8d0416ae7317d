"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_shell import Term


@pytest.fixture
def terms() -> Iterator[list[Term]]:
    """Terminals a test opens (append them); each closed at the end."""
    started: list[Term] = []
    yield started
    for term in started:
        term.close()
