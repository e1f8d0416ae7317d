"""Fixtures of the integration tests that need a PostgreSQL server.

- ``postgres`` (session) -> PostgresCluster: one throwaway cluster for the run
  (tests/pg.py), removed at the end; skipped naming the Debian package when
  PostgreSQL is missing (failed under CI=true).
- ``pg_url`` -> str: a fresh database in it, dropped after the test. A test
  that stops the cluster starts it again before it ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import PostgresCluster, postgres_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = postgres_cluster()
    yield cluster
    cluster.remove()


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> Iterator[str]:
    if not postgres.running:
        postgres.start()
    url = postgres.create_database()
    yield url
    if not postgres.running:
        postgres.start()
    postgres.drop_database(url)
