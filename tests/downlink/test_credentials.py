"""Credential rotation: the box makes its new key, ops signs the request, the box checks and
swaps on probation; over a real TLS mosquitto with the fleet ACL, the box reconnects with the
new certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from central.acl import FleetDevice, render_acl
from central.pki import PkiError, init_ca, issue, sign_csr
from contracts import topics
from contracts.signing import expires_in, sign_message
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.config import BrokerConfig
from edge_agent.downlink import credentials
from edge_agent.downlink.commands import RESTART_EXIT_STATUS
from edge_agent.sensing.ble.sources import ReplaySource
from testbed.broker import Mosquitto, fleet_acl_conf
from tests.app.test_agent_journey import demo_config
from tests.central.test_tls_acl import Client
from tests.downlink.test_commands import PRIV, PUB

STORE, DEVICE = "store-0042", "box-entrance-1"


def box_broker(tmp_path: Path, ca: Path, port: int = 8883, age_days: float = 0.0) -> BrokerConfig:
    """The box's copy of its first certificate, as `edge-agent install` lays it out;
    ``age_days``: issued that long ago (a 1-day certificate, backdated: no clock is mocked)."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days, minutes=5)
    first = issue(ca, "device", store_id=STORE, device_id=DEVICE, days=1, not_before=start)
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    shutil.copy2(first.cert, creds / "box.pem")
    shutil.copy2(first.key, creds / "box.key")
    return BrokerConfig(
        host="127.0.0.1",
        port=port,
        keepalive=5,
        tls=True,
        ca_file=ca / "ca.pem",
        cert_file=creds / "box.pem",
        key_file=creds / "box.key",
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rotation_checks_everything_and_rolls_back(tmp_path: Path) -> None:
    ca, rogue = tmp_path / "ca", tmp_path / "rogue"
    init_ca(ca, days=1)
    init_ca(rogue, days=1)
    b = box_broker(tmp_path, ca)
    old_cert, old_key = b.cert_file.read_bytes(), b.key_file.read_bytes()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="no pending key"):
        credentials.check(b, STORE, DEVICE, "x")
    csr = credentials.request(b, STORE, DEVICE)
    pending = b.key_file.with_name("box.key.next")  # type: ignore[union-attr]
    assert pending.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in csr  # only the request leaves the box
    # Ops side: only device identities are signed, and only valid requests.
    with pytest.raises(PkiError, match="not a PEM certificate request"):
        sign_csr(ca, b"garbage")
    key = serialization.load_pem_private_key(pending.read_bytes(), password=None)
    role = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ops")])
    )
    with pytest.raises(PkiError, match="one device identity"):
        sign_csr(ca, role.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    # The box refuses what is not exactly its new certificate.
    for pem, words in [
        ("not pem", "not a PEM certificate"),
        (sign_csr(rogue, csr).decode(), "not signed by the configured CA"),
        (issue(ca, "device", store_id=STORE, device_id=DEVICE).cert.read_text(), "pending key"),
    ]:
        with pytest.raises(ValueError, match=words):
            credentials.check(b, STORE, DEVICE, pem)
    other = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{STORE}:box-other")])
    )
    other_pem = sign_csr(
        ca, other.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(ValueError, match="is for 'store-0042:box-other'"):
        credentials.check(b, STORE, DEVICE, other_pem.decode())
    assert b.cert_file.read_bytes() == old_cert  # type: ignore[union-attr]
    # The real one: swapped, old pair kept, on probation for the process that runs on it only.
    good = sign_csr(ca, csr).decode()
    credentials.check(b, STORE, DEVICE, good)
    running_before = credentials.running_sha256(b)
    credentials.install(b, good)
    assert b.cert_file.read_text() == good  # type: ignore[union-attr]
    assert b.key_file.stat().st_mode & 0o777 == 0o600  # type: ignore[union-attr]
    assert not pending.exists()
    assert credentials.on_probation(b, running_before) is None
    assert credentials.on_probation(b, credentials.running_sha256(b)) is not None
    note = credentials.rollback(b, "central refused it")
    assert "rolled back" in note
    assert b.cert_file.read_bytes() == old_cert and b.key_file.read_bytes() == old_key  # type: ignore[union-attr]
    assert credentials.on_probation(b, credentials.running_sha256(b)) is None


@pytest.mark.timeout(90)
def test_rotation_over_tls_with_the_fleet_acl(tmp_path: Path, broker) -> None:
    ca = tmp_path / "ca"
    init_ca(ca, days=1)
    server = issue(ca, "server", days=1)
    ops_cert = issue(ca, "role", name="ops", days=1)
    cdp_cert = issue(ca, "role", name="cdp", days=1)
    acl = tmp_path / "dynamic-security.json"
    acl.write_text(render_acl([FleetDevice(STORE, DEVICE)]))
    conf = (
        f"cafile {ca / 'ca.pem'}\ncertfile {server.cert}\nkeyfile {server.key}\n"
        f"require_certificate true\nuse_identity_as_username true\n{fleet_acl_conf(acl)}"
    )
    with Mosquitto(extra_conf=conf) as tls:
        central = box_broker(tmp_path, ca, tls.port)
        first_sha = sha(central.cert_file)  # type: ignore[arg-type]
        cfg = demo_config(tmp_path, broker.port, PUB, camera=False)
        cfg = cfg.model_copy(
            update={
                "central": central,
                "uplink": cfg.uplink.model_copy(update={"heartbeat_s": 1.0}),
            }
        )

        def ops_cfg(who) -> BrokerConfig:
            return central.model_copy(update={"cert_file": who.cert, "key_file": who.key})

        ops = Client(ops_cfg(ops_cert), "ops")
        from central.cdp_sink import CdpSink

        sink = CdpSink(ops_cfg(cdp_cert), tmp_path / "cdp.db", group="cdp")
        assert sink.start(wait_s=5)
        assert ops.connected.wait(5)
        base = topics.device_base(STORE, DEVICE)
        ops.subscribe(f"{base}/csr")
        ops.subscribe(f"{base}/acks")
        version = [500]

        def push(body: dict) -> None:
            version[0] += 1
            msg = sign_message(PRIV, "command", body, STORE, DEVICE, version[0], expires_in(600))
            assert ops.publish(topics.device_cmd(STORE, DEVICE, "command"), msg) == 0

        def wait_for(pred, timeout=20.0) -> bytes:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for t, p in list(ops.messages):
                    if pred(t, p):
                        ops.messages.remove((t, p))
                        return p
                time.sleep(0.05)
            raise AssertionError(f"timed out; got {[t for t, _ in ops.messages]}")

        def rotate() -> None:
            while agent.uplink is None or not agent.uplink.stats()["connected"]:
                time.sleep(0.05)
            time.sleep(0.5)  # the downlink's SUBSCRIBE
            push({"command": "rotate_credentials"})
            # (An empty one is the box clearing a stale request when it starts.)
            csr = wait_for(lambda t, p: t.endswith("/csr") and bool(p))
            cert = sign_csr(ca, csr).decode()  # what `edge-ops pki sign-csr` does
            push({"command": "install_certificate", "certificate_pem": cert})

        clock = ScaledClock(scenario.T0, 1.0)
        agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
        t = threading.Thread(target=rotate, daemon=True)
        try:
            agent.start_sync()
            t.start()
            asyncio.run(agent.run(until=scenario.T0 + 40))
        finally:
            t.join(5)
            agent.close(flush_timeout_s=2)
        assert agent.exit_code == RESTART_EXIT_STATUS
        acks = [json.loads(p) for t, p in ops.messages if t.endswith("/acks")]
        assert all(a["accepted"] for a in acks if a.get("kind") == "command"), acks
        assert sha(central.cert_file) != first_sha  # type: ignore[arg-type]
        assert credentials.on_probation(central, credentials.running_sha256(central)) is not None
        # systemd starts it again: it connects with the new certificate and confirms it.
        clock = ScaledClock(scenario.T0, 1.0)
        again = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
        try:
            again.start_sync()
            asyncio.run(again.run(until=scenario.T0 + 4))
            assert again.uplink.stats()["connects"] >= 1
        finally:
            again.close(flush_timeout_s=5)
            ops.close()
            sink.stop(end_session=True)
        assert credentials.on_probation(central, credentials.running_sha256(central)) is None
        assert sink.count() > 0  # events went out under the new identity and were stored


def test_edge_ops_signs_a_box_request(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from central.ops_cli import main

    ca = tmp_path / "ca"
    init_ca(ca, days=1)
    b = box_broker(tmp_path, ca)
    (tmp_path / "box.csr").write_bytes(credentials.request(b, STORE, DEVICE))
    out = tmp_path / "box-new.pem"
    assert (
        main(["pki", "sign-csr", "--dir", str(ca), str(tmp_path / "box.csr"), "--out", str(out)])
        == 0
    )
    credentials.check(b, STORE, DEVICE, out.read_text())
    (tmp_path / "junk.csr").write_text("junk")
    assert main(["pki", "sign-csr", "--dir", str(ca), str(tmp_path / "junk.csr")]) == 1
    assert "not a PEM certificate request" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_the_box_asks_for_renewal_by_itself_and_ops_signs_in_bulk(
    tmp_path: Path, broker, request: pytest.FixtureRequest
) -> None:
    """A box whose certificate is past two thirds of its life publishes its renewal request
    (retained) with no command; its health says so and carries the days left; ops runs
    `edge-ops pki sign-csr --all-pending --key`; the box installs the certificate, restarts on
    it, confirms it on central and clears its request."""
    from central.ops_cli import main as edge_ops
    from edge_agent.box.metrics import _cert_days_left

    ca = tmp_path / "ca"
    init_ca(ca, days=2)
    server = issue(ca, "server", days=1)
    ops_cert = issue(ca, "role", name="ops", days=1)
    acl = tmp_path / "dynamic-security.json"
    acl.write_text(render_acl([FleetDevice(STORE, DEVICE)]))
    priv = tmp_path / "ops_private.pem"
    priv.write_bytes(PRIV)
    conf = (
        f"cafile {ca / 'ca.pem'}\ncertfile {server.cert}\nkeyfile {server.key}\n"
        f"crlfile {ca / 'crl.pem'}\n"
        f"require_certificate true\nuse_identity_as_username true\n{fleet_acl_conf(acl)}"
    )
    with Mosquitto(extra_conf=conf) as tls:
        central = box_broker(tmp_path, ca, tls.port, age_days=0.7)  # 0.3 of its life left
        first_sha = sha(central.cert_file)  # type: ignore[arg-type]
        cfg = demo_config(tmp_path, broker.port, PUB, camera=False)
        cfg = cfg.model_copy(
            update={
                "central": central,
                "uplink": cfg.uplink.model_copy(update={"heartbeat_s": 1.0}),
            }
        )
        ops = Client(central.model_copy(update={"cert_file": ops_cert.cert,
                                                "key_file": ops_cert.key}), "ops")  # fmt: skip
        request.addfinalizer(ops.close)
        assert ops.connected.wait(5)
        base = topics.device_base(STORE, DEVICE)
        ops.subscribe(f"{base}/csr")
        ops.subscribe(f"{base}/health")
        ops_args = [
            "--host", "127.0.0.1", "--port", str(tls.port), "--ca", str(ca / "ca.pem"),
            "--cert", str(ops_cert.cert), "--tls-key", str(ops_cert.key),
        ]  # fmt: skip
        signed: list[int] = []

        def ops_side() -> None:
            # Wait for the request (the box sends it on its own) and for the downlink to listen.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(t.endswith("/csr") and p for t, p in list(ops.messages)) and (
                    agent.downlink is not None and agent.downlink.subscribed
                ):
                    break
                time.sleep(0.05)
            argv = ["pki", "sign-csr", "--dir", str(ca), "--all-pending", "--wait", "0.5",
                    "--key", str(priv), *ops_args]  # fmt: skip
            signed.append(edge_ops(argv))

        clock = ScaledClock(scenario.T0, 1.0)
        agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
        t = threading.Thread(target=ops_side, daemon=True)
        try:
            agent.start_sync()
            days = _cert_days_left(agent)  # the Prometheus gauge's value
            assert days is not None and 0.25 < days < 0.35, days
            t.start()
            asyncio.run(agent.run(until=scenario.T0 + 60))
        finally:
            t.join(10)
            agent.close(flush_timeout_s=2)
        assert signed == [0]
        assert agent.exit_code == RESTART_EXIT_STATUS
        healths = [json.loads(p) for t, p in ops.messages if t.endswith("/health")]
        asked = [h for h in healths if h["sensors"].get("cert") == "renewal requested"]
        assert asked and 0.25 < asked[0]["cert_days_left"] < 0.35, healths[-1:]
        assert sha(central.cert_file) != first_sha  # type: ignore[arg-type]
        assert credentials.pending_request(central) is None
        # systemd starts it again: it connects with the new certificate and confirms it.
        clock = ScaledClock(scenario.T0, 1.0)
        again = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
        try:
            again.start_sync()
            asyncio.run(again.run(until=scenario.T0 + 3))
            assert again.uplink.stats()["connects"] >= 1
        finally:
            again.close(flush_timeout_s=5)
        assert credentials.on_probation(central, credentials.running_sha256(central)) is None
        life = credentials.life(central)
        assert life is not None and not life.renewal_due(dt.datetime.now(dt.UTC))
        # The request was answered: nothing is pending for ops any more (cleared, retained).
        csrs = [p for t, p in ops.messages if t.endswith("/csr")]
        assert csrs[-1] == b"", csrs
        fresh = [json.loads(p) for t, p in ops.messages if t.endswith("/health")][-1]
        assert fresh["cert_days_left"] > 0.9 and fresh["sensors"]["cert"] == "ok"
