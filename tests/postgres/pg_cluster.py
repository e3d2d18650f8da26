"""A throwaway PostgreSQL cluster for the tests: initdb in a temp folder, a unix socket only.

One cluster per pytest-xdist worker (each has its own socket folder, so they never collide),
started on first use and stopped when the session ends. PostgreSQL refuses to run as root,
so under root the server runs as the ``postgres`` system user. Set ``QES_TEST_POSTGRES_DSN``
to use a running server instead. Without binaries the tests skip, except under ``CI``, where
a missing server is a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_DSN = "QES_TEST_POSTGRES_DSN"


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl, newest version first, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(found)
    for initdb in candidates:
        if os.access(initdb, os.X_OK):
            return Path(initdb).parent
    return None


class Cluster:
    """One initdb'd cluster listening on a unix socket in its own folder."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="qes-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}'"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
            # statement counts, read by the many-workers test (each worker's round trips)
            " -c shared_preload_libraries=pg_stat_statements"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
            "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}"


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """The DSN of a PostgreSQL server for this test session (see the module docstring)."""
    given = os.environ.get(ENV_DSN)
    if given:
        yield given
        return
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no PostgreSQL binaries (initdb) were found")
        pytest.skip("no PostgreSQL binaries (initdb) found; install postgresql to run these")
    cluster = Cluster(bindir)
    cluster.start()
    try:
        yield cluster.dsn
    finally:
        cluster.stop()


@pytest.fixture
def pg_prefix() -> str:
    """A fresh table prefix, so every test has its own tables on the shared server."""
    return f"t{uuid.uuid4().hex[:10]}_"
