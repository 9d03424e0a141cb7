"""``edge-ops console`` (serve) and ``edge-ops console add-user`` (accounts)."""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from central.console.accounts import AccountError, Accounts
from central.console.config import ConfigError, OpsConfig, load


def _secret(state_dir: Path) -> bytes:
    """The key that signs session cookies and CSRF tokens: 32 random bytes made once, 0600.
    A new one logs everybody out, nothing more."""
    path = state_dir / "session.key"
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise AccountError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def add_user(config: str | None, name: str, role: str) -> int:
    try:
        cfg = load(config)
        password = _read_password()
        accounts = Accounts(cfg.console.state_dir / "accounts.db")
        try:
            accounts.set_user(name, role, password)
            accounts.audit(None, "add-user", target=name, detail=f"role {role} (from the CLI)")
        finally:
            accounts.close()
    except (ConfigError, AccountError) as exc:
        print(f"edge-ops console add-user: {exc}", file=sys.stderr)
        return 2
    print(f"{name}: {role}")
    return 0


def _demo(cfg: OpsConfig) -> tuple[OpsConfig, str, str, Path]:
    """A temp dir with a seeded CDP store, a fresh signing key and an admin with a one-time
    password; the broker stays the configured one (pushes need one running)."""
    from central.console.demo import demo_password, seed
    from contracts.signing import generate_keypair

    work = Path(tempfile.mkdtemp(prefix="edge-ops-console-demo-"))
    fleet = seed(work / "cdp.db")
    pem, _ = generate_keypair()
    key = work / "ops_private.pem"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    cfg = cfg.model_copy(
        update={
            "console": cfg.console.model_copy(
                update={"state_dir": work / "console", "timezone": "Europe/Berlin"}
            ),
            "cdp": cfg.cdp.model_copy(update={"db": fleet.cdp_db}),
            "signing": cfg.signing.model_copy(update={"key": key}),
        }
    )
    password = demo_password()
    accounts = Accounts(cfg.console.state_dir / "accounts.db")
    accounts.set_user("admin", "admin", password)
    accounts.close()
    note = (
        f"Demo fleet: {len(fleet.stores)} stores, {fleet.events:,} events seeded in {work};"
        " a demo signing key the boxes do not trust; all removed when the console stops."
    )
    return cfg, password, note, work


def serve(
    config: str | None,
    *,
    host: str | None,
    port: int | None,
    demo: bool,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> int:
    import uvicorn

    from central.cdp_sink import CdpSink
    from central.cdp_store import PostgresStore
    from central.console.app import Console, create_app
    from central.fleet_status import FleetWatcher
    from contracts.mqtt import BrokerConfig

    try:
        cfg = load(config)
    except ConfigError as exc:
        print(f"edge-ops console: {exc}", file=sys.stderr)
        return 2
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            print("edge-ops console: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        cfg = cfg.model_copy(update={"console": cfg.console.model_copy(
            update={"tls_cert": Path(tls_cert).resolve(), "tls_key": Path(tls_key).resolve()}
        )})  # fmt: skip
    tls = cfg.console.tls_cert is not None and cfg.console.tls_key is not None
    if (cfg.console.tls_cert is None) != (cfg.console.tls_key is None):
        print("edge-ops console: [console] tls_cert and tls_key go together", file=sys.stderr)
        return 2
    for path in (cfg.console.tls_cert, cfg.console.tls_key) if tls else ():
        if path is not None and not path.is_file():
            print(f"edge-ops console: no TLS file at {path}", file=sys.stderr)
            return 2
    if tls:
        # Over HTTPS the session cookie is never sent in clear: Secure, whatever the config says.
        cfg = cfg.model_copy(update={
            "console": cfg.console.model_copy(update={"secure_cookies": True})
        })  # fmt: skip
    note = ""
    demo_dir: Path | None = None
    if demo:
        cfg, password, note, demo_dir = _demo(cfg)
        # Printed once, here: it is nowhere else (only its scrypt hash is stored).
        print(f"demo admin: name admin, password {password}", flush=True)
    host = host or cfg.console.host
    port = cfg.console.port if port is None else port
    if not cfg.signing.key.is_file():
        print(
            f"edge-ops console: no signing key at {cfg.signing.key}: pushes will fail"
            " ([signing] key; edge-ops keygen makes one)",
            file=sys.stderr,
        )
    else:
        from contracts.signing import is_encrypted

        if is_encrypted(cfg.signing.key.read_bytes()):
            print(
                "edge-ops console: the signing key is encrypted: pushes wait until an operator"
                " unlocks it on /signing",
                file=sys.stderr,
            )
    sink = None
    if cfg.cdp.dsn:
        try:  # read only: never started; the schema is the sinks' to create
            store = PostgresStore(cfg.cdp.dsn, create=False)
            store.check()
            sink = CdpSink(BrokerConfig(), store, group=None)
        except Exception as exc:  # a server that is down: the console still shows the fleet
            print(f"edge-ops console: cannot read the CDP store: {exc}: no KPIs", file=sys.stderr)
    elif cfg.cdp.db.is_file():
        sink = CdpSink(BrokerConfig(), cfg.cdp.db, group=None)  # read only: never started
    else:
        print(f"edge-ops console: no CDP database at {cfg.cdp.db}: no KPIs", file=sys.stderr)
    watcher = FleetWatcher(cfg.broker.config())
    if not watcher.start(wait_s=3.0):
        # Not fatal: the CDP's heartbeats still show the fleet; paho keeps trying.
        print(
            f"edge-ops console: broker {cfg.broker.host}:{cfg.broker.port} not reachable yet",
            file=sys.stderr,
        )
    accounts = Accounts(cfg.console.state_dir / "accounts.db")
    console = Console(
        config=cfg,
        accounts=accounts,
        secret=_secret(cfg.console.state_dir),
        sink=sink,
        watcher=watcher,
        demo_note=note,
    )
    if not accounts.users():
        print(
            "edge-ops console: no accounts yet; create one with"
            f" edge-ops console add-user NAME --role admin{' --config ' + config if config else ''}",
            file=sys.stderr,
        )
    print(f"console on {'https' if tls else 'http'}://{host}:{port}", flush=True)
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the handler
    # it found: with the default one the process would die there, before the cleanup below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        uvicorn.run(
            create_app(console), host=host, port=port, log_level="warning",
            ssl_certfile=str(cfg.console.tls_cert) if tls else None,
            ssl_keyfile=str(cfg.console.tls_key) if tls else None,
        )  # fmt: skip
    finally:
        watcher.stop()
        if sink is not None:
            sink.stop()
        accounts.close()
        if demo_dir is not None:
            shutil.rmtree(demo_dir, ignore_errors=True)
    return 0
