"""Fixtures of the integration tests that need a PostgreSQL server.

- ``postgres`` (session) -> PostgresCluster: one throwaway cluster for the run
  (tests/pg.py), removed at the end; skipped naming the Debian package when
  PostgreSQL is missing (failed under CI=true).
- ``pg_url`` -> str: a fresh database in it, dropped after the test. A test
  that stops the cluster starts it again before it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.hostile import HostileServer
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


@pytest.fixture
def server_of() -> Iterator[Any]:
    """Start hostile servers (tests/hostile.py) for one test; all stopped at its end."""
    servers: list[HostileServer] = []

    def make(*behaviours: Any, **kwargs: Any) -> HostileServer:
        server = HostileServer(*behaviours, lifetime=kwargs.pop("lifetime", 15.0), **kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
