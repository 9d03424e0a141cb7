"""The console serving HTTPS itself (``[console] tls_cert``/``tls_key``, a certificate made here
by a test CA) and signing with an encrypted key (``edge-ops keygen --encrypt``): a real HTTPS
client that checks the certificate, pushes refused while the key is locked, a wrong passphrase
said and counted, the right one unlocking it (in memory only) and a signed push a subscriber
verifies, then locked again. A real mosquitto; the console in its own process."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.signing import load_private_key, verify_message
from testbed.broker import Mosquitto, free_port
from testbed.procs import terminate
from tests.central.test_console import EXE, STORE, Watch, _token
from tests.watching import wait_for

pytestmark = pytest.mark.timeout(120)
PASSPHRASE = "a long ops passphrase, not guessed"
USERS = {"ada": "admin", "otto": "operator", "vic": "viewer"}


def _password(name: str) -> str:
    return f"tls console password {name}"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_tls(d: Path) -> tuple[Path, Path, Path]:
    """A test CA and the console's certificate for 127.0.0.1 and localhost, signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("test ops CA")).issuer_name(_name("test ops CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder().subject_name(_name("console")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "console.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "console.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )  # fmt: skip
    return d / "ca.crt", d / "console.crt", d / "console.key"


@dataclass
class TlsServer:
    base: str
    port: int
    ca: Path
    work: Path
    public_key: str
    broker: Mosquitto

    def client(self, address: str = "127.0.0.1") -> httpx.Client:
        return httpx.Client(
            base_url=self.base, timeout=15, follow_redirects=False,
            verify=ssl.create_default_context(cafile=str(self.ca)),
            transport=httpx.HTTPTransport(
                local_address=address, verify=ssl.create_default_context(cafile=str(self.ca))
            ),
        )  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    work = tmp_path_factory.mktemp("console-tls")
    ca, _, _ = make_tls(work / "tls")
    keys = work / "keys"
    out = subprocess.run(
        [EXE, "keygen", "--encrypt", "--out", str(keys)],
        input=(PASSPHRASE + "\n").encode(), capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    public_key = out.stdout.decode().strip()
    pem = (keys / "ops_private.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem and (keys / "ops_private.pem").stat().st_mode & 0o77 == 0
    with pytest.raises(ValueError, match="passphrase is needed"):
        load_private_key(pem)
    with Mosquitto() as m:
        (work / "ops.toml").write_text(
            f'[console]\nstate_dir = "state"\ntls_cert = "tls/console.crt"\n'
            f'tls_key = "tls/console.key"\n'
            f'[cdp]\ndb = "cdp.db"\n'
            f'[broker]\nhost = "{m.host}"\nport = {m.port}\n'
            f'[signing]\nkey = "keys/ops_private.pem"\nunlock_minutes = 30\n'
        )
        for name, role in USERS.items():
            r = subprocess.run(
                [EXE, "console", "add-user", name, "--role", role, "--config",
                 str(work / "ops.toml")],
                input=_password(name).encode() + b"\n", capture_output=True, timeout=60,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
        port = free_port()
        proc = subprocess.Popen(
            [EXE, "console", "--config", str(work / "ops.toml"), "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        server = TlsServer(f"https://127.0.0.1:{port}", port, ca, work, public_key, m)

        def up() -> bool:
            try:
                with server.client() as c:
                    return c.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        try:
            assert wait_for(up, 30, step=0.1) and proc.poll() is None, (
                proc.stderr and proc.stderr.read()
            )
            yield server
        finally:
            terminate(proc)


def _login(c: httpx.Client, name: str) -> None:
    token = _token(c.get("/login").text)
    r = c.post("/login", data={"csrf": token, "name": name, "password": _password(name),
                               "next": "/fleet"})  # fmt: skip
    assert r.status_code == 303, r.text[:300]


def test_https_with_a_checked_certificate_and_secure_cookies(tls_server: TlsServer) -> None:
    with tls_server.client() as c:
        r = c.get("/healthz")
        assert r.status_code == 200 and r.text == "ok" and r.http_version == "HTTP/1.1"
        cookie = c.get("/login").headers["set-cookie"].lower()
        assert "; secure" in cookie
        assert c.get("/fleet").status_code == 303  # still a session for every other page
    # A client that does not trust the test CA refuses the console's certificate.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.base}/healthz", timeout=10)
    # Plain HTTP on the same port gets no page.
    try:
        plain = httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=10)
        answered = plain.status_code == 200
    except httpx.HTTPError:
        answered = False
    assert not answered


def test_pushes_wait_for_the_passphrase_and_stop_when_locked(tls_server: TlsServer) -> None:
    from contracts.mqtt import BrokerConfig, connect, make_client

    watch = Watch(BrokerConfig(host=tls_server.broker.host, port=tls_server.broker.port))
    path = f"/stores/{STORE}/emergency"
    drill = {"step": "send", "action": "emergency", "title": "Drill", "body": ""}
    try:
        with tls_server.client("127.0.0.2") as op, tls_server.client("127.0.0.3") as viewer:
            _login(op, "otto")
            _login(viewer, "vic")
            page = op.get("/signing").text
            assert 'data-state="locked"' in page
            # A box's retained state makes the store known to the console (its page, its push).
            bcfg = BrokerConfig(host=tls_server.broker.host, port=tls_server.broker.port)
            box = make_client("t-box-state", bcfg)
            connect(box, bcfg, clean_start=True, session_expiry_s=0)
            box.loop_start()
            assert wait_for(box.is_connected, 10)
            info = box.publish(f"stores/{STORE}/devices/box-1/state", b'{"status": "online"}',
                               qos=1, retain=True)  # fmt: skip
            info.wait_for_publish(10)
            box.disconnect()
            box.loop_stop()
            assert wait_for(lambda: op.get(f"/stores/{STORE}").status_code == 200, 15, step=0.2)

            # Locked: the push is refused with the reason, nothing published.
            token = _token(op.get(f"/stores/{STORE}").text)
            r = op.post(path, data={**drill, "csrf": token})
            assert r.status_code == 502 and "the signing key is locked" in r.text
            assert watch.got.empty()
            # A viewer cannot unlock it; a wrong passphrase is said, and it stays locked.
            vtoken = _token(viewer.get("/signing").text)
            r = viewer.post("/signing", data={"csrf": vtoken, "action": "unlock",
                                              "passphrase": PASSPHRASE})  # fmt: skip
            assert r.status_code == 403 and "needs the operator role" in r.text
            r = op.post("/signing", data={"csrf": token, "action": "unlock",
                                          "passphrase": "not it"})  # fmt: skip
            assert r.status_code == 400 and "Not unlocked: wrong passphrase for the key" in r.text
            assert 'data-state="locked"' in op.get("/signing").text
            # No CSRF token: refused before the passphrase is even tried.
            r = op.post("/signing", data={"action": "unlock", "passphrase": PASSPHRASE})
            assert r.status_code == 403 and 'data-state="locked"' in op.get("/signing").text
            # The right one: unlocked (by whom, until when), and the push goes out signed.
            r = op.post("/signing", data={"csrf": token, "action": "unlock",
                                          "passphrase": PASSPHRASE})  # fmt: skip
            assert r.status_code == 303
            page = op.get("/signing").text
            assert 'data-state="unlocked"' in page and "by <b>otto</b>" in page
            r = op.post(path, data={**drill, "csrf": token})
            assert r.status_code == 303, r.text[:400]
            _, raw = watch.next()
            msg = verify_message(tls_server.public_key, raw, STORE, "box-1")
            assert msg.body["title"] == "Drill" and msg.body["reason"] == "console: otto"
            # Locked again: the next push is refused.
            r = op.post("/signing", data={"csrf": token, "action": "lock"})
            assert r.status_code == 303 and 'data-state="locked"' in op.get("/signing").text
            r = op.post(path, data={**drill, "csrf": token})
            assert r.status_code == 502 and "the signing key is locked" in r.text
            assert watch.got.empty()
        with tls_server.client("127.0.0.4") as admin:
            _login(admin, "ada")
            audit = admin.get("/admin/audit").text
        assert re.search(r"<td>otto</td>.*?unlock signing key.*?wrong passphrase", audit, re.S)
        assert re.search(r"<td>otto</td>.*?unlock signing key.*?for 30 min", audit, re.S)
        assert re.search(r"<td>otto</td>.*?lock signing key", audit, re.S)
    finally:
        watch.close()


def test_the_cli_will_not_use_an_encrypted_key_without_a_terminal(tls_server: TlsServer) -> None:
    b = tls_server.broker
    r = subprocess.run(
        [EXE, "emergency", "--store", STORE, "--title", "x", "--key",
         str(tls_server.work / "keys" / "ops_private.pem"), "--host", b.host, "--port",
         str(b.port)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 1 and "is encrypted: run from a terminal" in r.stderr
