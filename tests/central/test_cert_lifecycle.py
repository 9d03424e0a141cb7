"""Certificates that look after themselves, on a real TLS mosquitto with the fleet ACL:
renewal requests signed in bulk (`edge-ops pki sign-csr --all-pending`), revocation through a
CRL the broker loads (`crlfile`, reloaded on SIGHUP), days left in doctor and in fleet status.

Time is never mocked: certificates are issued backdated (``not_before``) or short-lived, so the
TLS stack and the box see them half-way through their life or expired by the real clock.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from central import ops_cli
from central.acl import FleetDevice, render_acl
from central.fleet_status import last_error, status_row, summary
from central.pki import Issued, PkiError, init_ca, issue, revoke, sign_csr, write_crl
from contracts import topics
from contracts.signing import load_public_key, verify_message
from edge_agent.box.doctor import check_certificate
from edge_agent.config import BrokerConfig
from edge_agent.downlink import credentials
from testbed.broker import Mosquitto, fleet_acl_conf
from tests.app.test_agent_journey import demo_config
from tests.central.test_tls_acl import Client
from tests.downlink.test_commands import PUB

FLEET = [FleetDevice("s1", "d1"), FleetDevice("s1", "d2"), FleetDevice("s2", "d1")]


@dataclass
class Fleet:
    dir: Path
    broker: Mosquitto
    ops: Issued
    boxes: dict[str, Issued]  # "s1/d1" -> its first certificate

    def cfg(self, who: Issued | None) -> BrokerConfig:
        return BrokerConfig(
            host="127.0.0.1",
            port=self.broker.port,
            keepalive=5,
            tls=True,
            ca_file=self.dir / "ca.pem",
            cert_file=who.cert if who else None,
            key_file=who.key if who else None,
        )

    def ops_args(self) -> list[str]:
        return [
            "--host", "127.0.0.1", "--port", str(self.broker.port), "--ca", str(self.dir / "ca.pem"),
            "--cert", str(self.ops.cert), "--tls-key", str(self.ops.key),
        ]  # fmt: skip


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A broker of its own per test (the CRL and retained requests are per-test state)."""
    d = tmp_path / "pki"
    init_ca(d, days=2)
    server = issue(d, "server", days=1)
    ops = issue(d, "role", name="ops", days=1)
    boxes = {
        f"{f.store_id}/{f.device_id}": issue(
            d, "device", store_id=f.store_id, device_id=f.device_id, days=1
        )
        for f in FLEET
    }
    acl = tmp_path / "dynamic-security.json"
    acl.write_text(render_acl(FLEET))
    conf = "\n".join(
        [
            f"cafile {d / 'ca.pem'}",
            f"certfile {server.cert}",
            f"keyfile {server.key}",
            f"crlfile {d / 'crl.pem'}",  # written by `pki init`, re-signed by `pki revoke`
            "require_certificate true",
            "use_identity_as_username true",
            fleet_acl_conf(acl),
        ]
    )
    with Mosquitto(extra_conf=conf) as m:
        yield Fleet(d, m, ops, boxes)


def reload_broker(m: Mosquitto) -> None:
    """SIGHUP (mosquitto re-reads the CRL then) and wait for its log line saying it did."""
    log = m.workdir / "mosquitto.log"
    before = log.read_text().count("Reloading config")
    assert m.proc is not None
    os.kill(m.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while log.read_text().count("Reloading config") == before:
        assert time.monotonic() < deadline, "mosquitto did not reload"
        time.sleep(0.05)


def connects(f: Fleet, who: Issued, clients: list[Client], wait_s: float = 3.0) -> bool:
    c = Client(f.cfg(who), "probe")
    clients.append(c)
    return c.connected.wait(wait_s)


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def csr_for(identity: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM)


def as_issued(tmp: Path, name: str, key: ec.EllipticCurvePrivateKey, cert_pem: bytes) -> Issued:
    from contracts.certnames import key_pem

    (tmp / f"{name}.key").write_bytes(key_pem(key))
    (tmp / f"{name}.pem").write_bytes(cert_pem)
    return Issued(name, tmp / f"{name}.pem", tmp / f"{name}.key")


# ---- revocation ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_revoked_box_is_refused_on_its_next_connect_while_others_connect(
    fleet: Fleet, tmp_path: Path, clients: list[Client], capsys: pytest.CaptureFixture
) -> None:
    d1, d2 = fleet.boxes["s1/d1"], fleet.boxes["s1/d2"]
    # s1/d1 also rotated once by CSR: ops never kept that certificate, revocation must reach it.
    key, csr = csr_for("s1:d1")
    rotated = as_issued(tmp_path, "d1-rotated", key, sign_csr(fleet.dir, csr, days=1))
    for who in (d1, rotated, d2):
        assert connects(fleet, who, clients), who
    assert ops_cli.main(["pki", "revoke", "--dir", str(fleet.dir), "--store", "s1",
                         "--device", "d1"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["revoked"] == "s1/d1" and out["serials"] == 2
    crl = x509.load_pem_x509_crl((fleet.dir / "crl.pem").read_bytes())
    serials = {r.serial_number for r in crl}
    for who in (d1, rotated):
        assert x509.load_pem_x509_certificate(who.cert.read_bytes()).serial_number in serials
    # Re-signing (the monthly `pki crl`) keeps the revocations; capped at the CA's end.
    assert ops_cli.main(["pki", "crl", "--dir", str(fleet.dir)]) == 0
    assert 1.9 < json.loads(capsys.readouterr().out)["days_left"] <= 2.0
    assert len(list(x509.load_pem_x509_crl((fleet.dir / "crl.pem").read_bytes()))) == 2
    reload_broker(fleet.broker)
    assert not connects(fleet, d1, clients), "revoked certificate got a CONNACK"
    assert not connects(fleet, rotated, clients), "the rotated certificate of a revoked box"
    assert connects(fleet, d2, clients) and connects(fleet, fleet.boxes["s2/d1"], clients)
    # A revoked box's renewal requests are not signed any more; `pki issue` brings it back.
    with pytest.raises(PkiError, match="revoked"):
        sign_csr(fleet.dir, csr_for("s1:d1")[1])
    back = issue(fleet.dir, "device", store_id="s1", device_id="d1", days=1)
    assert connects(fleet, back, clients)
    # Revoking again adds only what was issued since.
    assert revoke(fleet.dir, "s1", "d1") == 1  # `back`
    with pytest.raises(PkiError, match="no certificate was ever issued"):
        revoke(fleet.dir, "s9", "d9")


# ---- renewals signed in bulk --------------------------------------------------------------
@pytest.mark.timeout(60)
def test_sign_all_pending_signs_what_verifies_and_names_the_rest(
    fleet: Fleet, tmp_path: Path, clients: list[Client], capsys: pytest.CaptureFixture
) -> None:
    keys = tmp_path / "keys"
    assert ops_cli.main(["keygen", "--out", str(keys)]) == 0
    capsys.readouterr()
    box = {who: Client(fleet.cfg(c), who) for who, c in fleet.boxes.items()}
    clients.extend(box.values())
    for c in box.values():
        assert c.connected.wait(5)
    # s1/d1: a good request. s1/d2: a request for s1:d1's identity (from its own topic, which the
    # ACL lets only s1:d2 write). s2/d1: not a request at all.
    d1_key, d1_csr = csr_for("s1:d1")
    requests = {"s1/d1": d1_csr, "s1/d2": csr_for("s1:d1")[1], "s2/d1": b"junk"}
    for who, pem in requests.items():
        store, device = who.split("/")
        rc = box[who].c.publish(f"{topics.device_base(store, device)}/csr", pem, qos=1, retain=True)
        rc.wait_for_publish(5)
    assert box["s1/d1"].subscribe(topics.device_cmd("s1", "d1", "#")) == 1
    out_dir = tmp_path / "signed"
    argv = ["pki", "sign-csr", "--dir", str(fleet.dir), "--all-pending", "--wait", "1",
            "--key", str(keys / "ops_private.pem"), "--out", str(out_dir), *fleet.ops_args()]  # fmt: skip
    write_crl(fleet.dir, days=1)  # ops forgot `pki crl`: the weekly run says so
    assert ops_cli.main(argv) == 1  # two were refused
    out, err = capsys.readouterr()
    assert "crl.pem ends in 1 days: run `edge-ops pki crl`" in err
    lines = [json.loads(ln) for ln in out.splitlines()]
    refused = {ln["refused"]: ln["reason"] for ln in lines if "refused" in ln}
    assert set(refused) == {"s1/d2", "s2/d1"}, lines
    assert "came from 's1:d2'" in refused["s1/d2"]
    assert "not a PEM certificate request" in refused["s2/d1"]
    assert lines[-1] == {"pending": 3, "signed": 1, "failed": 2}
    # The good one went back to its box as a signed install_certificate command.
    assert box["s1/d1"].wait_messages(1, timeout=10)
    topic, payload = box["s1/d1"].messages[0]
    assert topic == topics.device_cmd("s1", "d1", "command")
    pub = load_public_key((keys / "ops_public.b64").read_text().strip())
    body = verify_message(pub, payload, "s1", "d1").body
    assert body["command"] == "install_certificate"
    cert = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    assert cert.public_key() == d1_key.public_key()
    assert (out_dir / "s1" / "d1.pem").read_text() == body["certificate_pem"]
    # And it works: the box connects with it.
    assert connects(fleet, as_issued(tmp_path, "d1-new", d1_key, body["certificate_pem"].encode()),
                    clients)  # fmt: skip


@pytest.mark.timeout(30)
def test_sign_all_pending_without_the_broker_exits_1(
    fleet: Fleet, capsys: pytest.CaptureFixture
) -> None:
    args = fleet.ops_args()
    args[args.index("--cert") : args.index("--cert") + 4] = []  # no ops certificate: refused
    argv = ["pki", "sign-csr", "--dir", str(fleet.dir), "--all-pending", "--wait", "0.2", *args]
    assert ops_cli.main(argv) == 1
    assert "could not reach" in capsys.readouterr().err
    assert ops_cli.main(["pki", "sign-csr", "--dir", str(fleet.dir)]) == 2


# ---- days left: doctor and fleet status ---------------------------------------------------
def box_with(tmp_path: Path, ca: Path, *, days: float, age_days: float) -> BrokerConfig:
    now = dt.datetime.now(dt.UTC)
    got = issue(ca, "device", store_id="s1", device_id="d1", days=days,
                not_before=now - dt.timedelta(days=age_days))  # fmt: skip
    return BrokerConfig(tls=True, ca_file=ca / "ca.pem", cert_file=got.cert, key_file=got.key)


def test_doctor_warns_under_a_third_of_the_life_and_fails_when_expired(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    init_ca(ca, days=400)
    base = demo_config(tmp_path, 1883, PUB, camera=False)
    for age, status, words in [
        (10, "OK", "80.0 days left"),
        (70, "WARN", "renewal due"),
        (91, "FAIL", "expired 1.0 days ago"),
    ]:
        central = box_with(tmp_path, ca, days=90, age_days=age)
        got = check_certificate(base.model_copy(update={"central": central}))
        assert got.status == status and words in got.detail, (age, got)
    # With the request made, doctor says it waits for ops.
    central = box_with(tmp_path, ca, days=3, age_days=2.5)
    credentials.request(central, "s1", "d1")
    got = check_certificate(base.model_copy(update={"central": central}))
    assert got.status == "WARN" and "waiting for ops to sign" in got.detail
    plain = base.model_copy(update={"central": BrokerConfig()})
    assert check_certificate(plain).status == "OK"


def test_status_row_has_cert_days_and_names_a_pending_renewal() -> None:
    health = {"ts": 100.0, "cert_days_left": 21.4, "sensors": {"cert": "renewal requested"}}
    row = status_row("s1", "d1", {"status": "online"}, health, 110.0)
    assert row["cert_days_left"] == 21.4
    assert row["last_error"] == "certificate: renewal requested"
    assert last_error({}, {"cert": "ok"}) is None
    unknown = status_row("s1", "d1", {}, {"cert_days_left": "x"}, 0)
    assert unknown["cert_days_left"] is None
    assert summary([row, unknown])["min_cert_days_left"] == 21.4


# ---- the way back for a box whose certificate expired ---------------------------------------
@pytest.mark.timeout(60)
def test_an_expired_box_comes_back_by_the_documented_manual_steps(
    fleet: Fleet, tmp_path: Path, clients: list[Client], capsys: pytest.CaptureFixture
) -> None:
    """README "A box whose certificate expired": the box cannot reach central (the broker
    refuses the expired certificate), so the request travels by hand: `edge-agent cert request`
    on the box, `edge-ops pki sign-csr FILE` at ops, `edge-agent cert install` on the box."""
    from edge_agent.cli import main as edge_agent
    from tests.app.test_agent_process import write_config

    now = dt.datetime.now(dt.UTC)
    old = issue(fleet.dir, "device", store_id="s1", device_id="d1", days=1,
                not_before=now - dt.timedelta(days=2))  # fmt: skip
    assert not connects(fleet, old, clients), "the broker took an expired certificate"
    cfg = write_config(tmp_path, fleet.broker.port, "d1", speed=1.0)
    text = cfg.read_text().replace('store_id = "store-0042"', 'store_id = "s1"', 1)
    tls = (
        f'[central]\ntls = true\nca_file = "{fleet.dir / "ca.pem"}"\n'
        f'cert_file = "{old.cert}"\nkey_file = "{old.key}"\n'
    )
    cfg.write_text(text.replace("[central]\n", tls, 1))
    assert edge_agent(["cert", "status", "-c", str(cfg)]) == 1
    assert json.loads(capsys.readouterr().out)["expired"] is True
    # On the box: the request (the new key stays there, 0600).
    csr = tmp_path / "box.csr"
    assert edge_agent(["cert", "request", "-c", str(cfg), "--out", str(csr)]) == 0
    assert b"PRIVATE" not in csr.read_bytes()
    # At ops: signed like any request (a revoked box would be refused here).
    new = tmp_path / "box.pem"
    argv = ["pki", "sign-csr", "--dir", str(fleet.dir), str(csr), "--out", str(new)]
    assert ops_cli.main(argv) == 0
    # On the box: checked (our CA, its identity, its pending key) and installed.
    junk = tmp_path / "junk.pem"
    junk.write_text(fleet.boxes["s1/d2"].cert.read_text())
    assert edge_agent(["cert", "install", "-c", str(cfg), str(junk)]) == 1
    assert "not for the pending key" in capsys.readouterr().err
    assert edge_agent(["cert", "install", "-c", str(cfg), str(new)]) == 0
    assert "systemctl restart edge-agent" in capsys.readouterr().out
    assert connects(fleet, Issued("s1:d1", old.cert, old.key), clients)  # same paths, new pair
    assert edge_agent(["cert", "status", "-c", str(cfg)]) == 0
    status = json.loads(capsys.readouterr().out)
    # 90 days asked, cut to the fixture CA's two: a leaf never outlives its CA.
    assert status["renewal_due"] is False and status["days_left"] > 1.9
