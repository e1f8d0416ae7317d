"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb and pg_ctl from Debian's package.

``PostgresCluster`` makes a cluster in a new temporary directory (as the
``postgres`` user when running as root: PostgreSQL refuses to run as root),
listening on a free 127.0.0.1 port with its unix socket in that directory,
trusting local connections. ``stop()`` and ``start()`` may be called again
(a database lost mid-run); ``remove()`` stops it and deletes the directory.

``postgres_cluster()`` is the pytest side: the cluster, or a skip naming the
Debian package ``postgresql`` when it is missing (a failure under CI=true).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.servers import free_port

PACKAGE = "postgresql"
USER = "tether"


def find_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """One cluster in a temporary directory; ``url(db)`` for a database in it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._owner: str | None = None
        if os.geteuid() == 0:
            self._owner = "postgres"
            info = pwd.getpwnam(self._owner)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        settings = (f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                    "synchronous_commit = on\nmax_connections = 200\n"
                    "shared_buffers = 32MB\n")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(settings)

    def _run(self, program: str, *args: str, timeout: float = 60.0) -> None:
        argv = [str(self.bindir / program), *args]
        if self._owner is not None:
            argv = ["runuser", "-u", self._owner, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr[-2000:] or done.stdout[-2000:]}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-w", "-t", "30", "-o", "-c logging_collector=off", "start")

    def stop(self) -> None:
        """Stop the server at once (sessions are dropped, as when a database is lost)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    @property
    def running(self) -> bool:
        """Whether the server runs (its pid file is there)."""
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        """A libpq URL of ``database`` over TCP on 127.0.0.1."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url`` (its connections are ended)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(psycopg.Error), \
                psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def remove(self) -> None:
        """Stop the server (if it runs) and delete its directory."""
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def postgres_cluster() -> PostgresCluster:
    """A started cluster; skips (fails under CI=true) naming the Debian package when missing."""
    import pytest

    bindir = find_bin()
    if bindir is None:
        message = f"PostgreSQL is not installed (Debian package {PACKAGE})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": .ci/run must install it")
        pytest.skip(message)
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
    except BaseException:
        cluster.remove()
        raise
    return cluster
