"""Shared fixtures: a real mosquitto, a real PostgreSQL, an Xvfb display, temp SQLite paths.

Every process started here is stopped here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.broker import Mosquitto
from testbed.display import DisplayError, Xvfb
from testbed.display import kivy_env as kivy_env_for
from testbed.postgres import Postgres, PostgresError, missing_binaries


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A mosquitto of this test's own, on a free loopback port (it starts in tens of ms). Not
    shared: the agent keeps a persistent session under a fixed client id and players retain
    their state, so on a shared broker one test's queued QoS-1 messages and retained states
    reached the next test's agent, depending on the order the tests ran in."""
    with Mosquitto() as m:
        yield m


@pytest.fixture
def fresh_broker() -> Iterator[Mosquitto]:
    """A mosquitto of this test's own, for tests that kill and restart it."""
    m = Mosquitto().start()
    try:
        yield m
    finally:
        m.cleanup()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL of this pytest process (each xdist worker gets its own), on a free loopback
    port with its own data directory; tests take a fresh database each (``pg_dsn``). Skipped,
    saying why, only where the binaries are missing (scripts/bootstrap.sh installs them)."""
    reason = missing_binaries()
    if reason:
        pytest.skip(reason)
    pg = Postgres()
    try:
        pg.start()
    except PostgresError as exc:
        pg.cleanup()
        pytest.fail(str(exc))
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture
def pg_dsn(postgres_server: Postgres) -> Iterator[str]:
    """A fresh, empty database of this test's own on the worker's server; dropped after."""
    dsn = postgres_server.create_database()
    try:
        yield dsn
    finally:
        postgres_server.drop_database(dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
def cdp_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a CDP sink stores, once per implementation: a SQLite path, or a PostgreSQL DSN.
    The same test runs against both (``central/cdp_store.py``); the server starts only when a
    PostgreSQL case runs."""
    if request.param == "sqlite":
        return str(tmp_path / "cdp.db")
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """A private Xvfb display for real Kivy windows; yields its DISPLAY value."""
    try:
        with Xvfb() as display:
            yield display
    except DisplayError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def kivy_env(tmp_path: Path, xvfb_display: str) -> dict[str, str]:
    """Environment for a Kivy subprocess: a real window on the private Xvfb display."""
    return kivy_env_for(xvfb_display, tmp_path / "kivy-home")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.db"


# Tests that need real servers, a display or child processes: `-m "not integration"` leaves
# the fast, pure ones (a quick loop while editing); `make test` runs everything.
REAL_PARTS = {
    "broker", "fresh_broker", "xvfb_display", "kivy_env", "postgres_server", "pg_dsn", "cdp_db",
}  # fmt: skip
STARTS_PROCESSES = {
    "tests/app/test_agent_process.py",
    "tests/app/test_fleet_observability.py",
    "tests/box/test_install.py",
    "tests/box/test_node_bus.py",
    "tests/box/test_releases.py",
    "tests/box/test_units.py",
    "tests/central/test_cdp_postgres.py",
    "tests/central/test_fleet_ops.py",
    "tests/central/test_fleet_bench.py",
    "tests/central/test_jetstream_sink.py",
    "tests/central/test_nats_cluster.py",
    "tests/central/test_tls_acl.py",
    "tests/central/test_uplift.py",
    "tests/demo/test_demo.py",
    "tests/journey/test_kiosk_finder.py",
    "tests/signage_ui/test_kiosk.py",
    "tests/sync/test_chaos.py",
    "tests/sync/test_uplink_subscribe_refused.py",
    "tests/wayfinding/test_cli.py",
}


def _expected_s(item: pytest.Item) -> float:
    """A rough guess of a test's seconds, to schedule the long files first: a tenth of its own
    timeout when it sets one (the long end-to-end tests do), else 1.3 s for an integration test
    and 0.4 s for a pure one (their averages in a full run)."""
    mark = item.get_closest_marker("timeout")
    timeout = (mark.args[:1] or [mark.kwargs.get("timeout")])[0] if mark is not None else None
    if timeout:
        return float(timeout) / 10
    return 1.3 if item.get_closest_marker("integration") is not None else 0.4


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parent.parent
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(root).as_posix()
        if REAL_PARTS & set(getattr(item, "fixturenames", ())) or rel in STARTS_PROCESSES:
            item.add_marker(pytest.mark.integration)
    # Longest files first (`make test` hands whole files to the workers in this order, with
    # --no-loadscope-reorder): xdist's own order, most tests first, left the files of one long
    # test (the fleet bench, OTA, the kill-at-random-points run) for last, where one worker
    # ran them while the other sat idle. The tests of a file keep their order.
    per_file: dict[Path, float] = {}
    for item in items:
        per_file[item.path] = per_file.get(item.path, 0.0) + _expected_s(item)
    items.sort(key=lambda item: -per_file[item.path])
