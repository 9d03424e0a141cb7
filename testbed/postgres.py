"""A private PostgreSQL on a free loopback port, for the test fixtures and benches.

Like ``testbed.broker.Mosquitto``: its own temp directory (``initdb``), its unix socket in that
directory, a free loopback port, started and stopped by its owner. Production sinks use a real
server (README, "The CDP store"); this one dies with its owner.

PostgreSQL refuses to run as root (``initdb`` and ``postgres`` both check the euid). As root we
run both as the Debian package's ``postgres`` user through ``subprocess.Popen(user=, group=)``:
a plain setuid before exec, so the server is our direct child and SIGINT/SIGKILL reach it, unlike
``runuser``/``su``, which fork and stay in between. The temp directory is chowned to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from testbed.broker import free_port

SUPERUSER = "edge"  # initdb's bootstrap role: trust auth on loopback and the socket only


class PostgresError(RuntimeError):
    pass


def find_bin(name: str) -> Path | None:
    """``initdb``/``postgres`` on PATH, else Debian's versioned directory (newest first)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        p = Path(d) / name
        if p.exists():
            return p
    return None


def missing_binaries() -> str | None:
    """Why a server cannot be started here, or None: for a clear pytest skip."""
    lacking = [n for n in ("initdb", "postgres") if find_bin(n) is None]
    if lacking:
        return (
            f"PostgreSQL not installed ({', '.join(lacking)} not found); "
            "run: apt-get install -y --no-install-recommends postgresql"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


@dataclass
class Postgres:
    """``start()`` it, ``dsn(db)`` / ``create_database()``, ``stop()`` it.

    Tuned for tests: ``fsync`` and ``full_page_writes`` off (a crash of the test machine only
    loses test data; the sinks' commit-before-confirm order is what the tests check, and it does
    not depend on the disk flush), and few connections.
    """

    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="postgres-")))
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def _run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def start(self, timeout: float = 30.0) -> Postgres:
        reason = missing_binaries()
        if reason:
            raise PostgresError(reason)
        initdb, postgres = find_bin("initdb"), find_bin("postgres")
        assert initdb is not None and postgres is not None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            done = subprocess.run(
                [str(initdb), "-D", str(self.datadir), "-U", SUPERUSER, "-A", "trust",
                 "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                capture_output=True,
                cwd=self.workdir,  # the server's user must be able to stat its cwd
                user=self._run_as(),
                group=self._run_as(),
            )  # fmt: skip
            if done.returncode != 0:
                raise PostgresError(f"initdb failed: {done.stderr.decode(errors='replace')}")
        log = open(self.workdir / "postgres.log", "ab")  # noqa: SIM115 (the child holds it)
        try:
            self.proc = subprocess.Popen(
                [str(postgres), "-D", str(self.datadir), "-p", str(self.port),
                 "-k", str(self.workdir), "-c", f"listen_addresses={self.host}",
                 "-c", "fsync=off", "-c", "full_page_writes=off",
                 "-c", "synchronous_commit=off", "-c", "max_connections=40",
                 "-c", "shared_buffers=32MB"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                user=self._run_as(),
                group=self._run_as(),
            )  # fmt: skip
        finally:
            log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise PostgresError(
                    f"postgres exited with {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:  # not listening, or "starting up"
                last = str(exc)
            time.sleep(0.05)  # no event to wait on: the server says nothing until it listens
        self.stop()
        raise PostgresError(f"postgres not ready within {timeout}s: {last}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.workdir / "postgres.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        import psycopg

        name = dsn.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            # FORCE: a test that failed may leave a sink's connection behind.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close sessions), then insist."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
