"""A private CA for the fleet: per-device client certificates, the broker's server certificate,
and the CDP sink's and ops' client certificates.

The broker maps a client certificate's Common Name to its MQTT identity
(``use_identity_as_username``), and the ACL (``central.acl``) grants topics per identity. Device
identities are ``<store>:<device>``: ':' cannot appear in an id (``ID_PATTERN``), so no two
devices share an identity and no device can be named like a role (``cdp``, ``ops``).

Layout of a PKI directory::

    ca.pem  ca.key                       the CA (keep ca.key off the brokers)
    server.pem  server.key               the broker's certificate (SANs: names and IPs)
    roles/<name>.pem  roles/<name>.key   cdp, ops, ... client certificates
    devices/<store>/<device>.pem  .key   one per box
    issued.jsonl                         every certificate issued or signed (serial, identity,
                                         not_after): revocation finds a box's rotated ones here
    revoked.jsonl  crl.pem               what was revoked, and the CRL the broker loads

Keys are ECDSA P-256 (fast to make, small, what TLS 1.3 likes) and written 0600 from the start.
Leaf certificates are short-lived by default: rotation is re-issuing, and a stolen box's
certificate dies on its own (the ACL line can also be removed at once).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contracts import certnames
from contracts.files import atomic_write
from contracts.validation import ID_PATTERN

Kind = Literal["device", "server", "role"]

CA_DAYS = 3650
LEAF_DAYS = 90
# The broker (OpenSSL with CRL checking) refuses every client once the CRL is past its next
# update, so it is valid for long and re-signed by every revoke and by `edge-ops pki crl`.
CRL_DAYS = 365
# Boxes with a slightly wrong clock must still accept a certificate issued a moment ago.
BACKDATE = dt.timedelta(minutes=5)
_ID = re.compile(ID_PATTERN)


class PkiError(ValueError):
    """Bad input or a missing/unreadable CA; the message says which."""


@dataclass(frozen=True)
class Issued:
    identity: str  # the certificate's CN = the broker-side username
    cert: Path
    key: Path


def device_identity(store_id: str, device_id: str) -> str:
    try:
        return certnames.device_identity(store_id, device_id)
    except certnames.CertNameError as exc:
        raise PkiError(str(exc)) from None


def _check_role(name: str) -> str:
    if not _ID.match(name):
        raise PkiError(f"role name {name!r} does not match {ID_PATTERN}")
    return name


def write_private(path: Path, data: bytes) -> None:
    """Write with mode 0600 from the first byte: never a moment where the key is readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode=0o600)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init_ca(
    directory: Path, *, name: str = "edge fleet CA", days: int = CA_DAYS, force: bool = False
) -> Issued:
    """Create ``ca.pem``/``ca.key``; refuses to replace an existing CA unless ``force``
    (a new CA invalidates every certificate of the fleet)."""
    directory = Path(directory)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if (cert_path.exists() or key_path.exists()) and not force:
        raise PkiError(f"{directory} already has a CA; use --force to replace it")
    if days < 1:
        raise PkiError(f"days must be at least 1, not {days}")
    key, cert = certnames.self_signed_ca(name, _now(), days, BACKDATE)
    write_private(key_path, certnames.key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    # A new CA starts a new history: the old CA's records and revocations mean nothing to it.
    for old in ("issued.jsonl", "revoked.jsonl"):
        (directory / old).unlink(missing_ok=True)
    write_crl(directory)  # the broker's crlfile exists from the start
    return Issued(name, cert_path, key_path)


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    directory = Path(directory)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if not cert_path.exists() or not key_path.exists():
        raise PkiError(f"no CA in {directory}; run: edge-ops pki init --dir {directory}")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"cannot read the CA in {directory}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path} is not an EC key")
    return cert, key


def _hosts_san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        if not h or any(c.isspace() for c in h):
            raise PkiError(f"bad host name {h!r} for the server certificate")
        names.append(certnames.host_name(h))
    return x509.SubjectAlternativeName(names)


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    identity: str,
    public_key: ec.EllipticCurvePublicKey,
    usage: x509.ObjectIdentifier,
    days: float,
    not_before: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """A leaf certificate for ``identity`` (signature keys, ``usage``), never outliving the CA;
    issued and rotated certificates are built alike. ``not_before`` backdates the validity
    window (its length stays ``days``): how tests get a certificate half-way through its life
    without touching any clock."""
    start = not_before if not_before is not None else _now() - BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )


def issue(
    directory: Path,
    kind: Kind,
    *,
    store_id: str | None = None,
    device_id: str | None = None,
    name: str | None = None,
    hosts: list[str] | None = None,
    days: float = LEAF_DAYS,
    not_before: dt.datetime | None = None,
) -> Issued:
    """Issue (or re-issue: rotation) one leaf certificate signed by the CA in ``directory``.

    ``device``: ``store_id`` and ``device_id``; ``role``: ``name`` (e.g. ``cdp``, ``ops``);
    ``server``: ``hosts`` for the SAN (default ``localhost`` and ``127.0.0.1``)."""
    directory = Path(directory)
    if days <= 0:
        raise PkiError(f"days must be positive, not {days}")
    if kind == "device":
        if not store_id or not device_id:
            raise PkiError("a device certificate needs --store and --device")
        identity = device_identity(store_id, device_id)
        base = directory / "devices" / store_id / device_id
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    elif kind == "role":
        if not name:
            raise PkiError("a role certificate needs --name (e.g. cdp, ops)")
        identity = _check_role(name)
        base = directory / "roles" / name
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    elif kind == "server":
        identity = name or "broker"
        base = directory / "server"
        usage = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        raise PkiError(f"unknown certificate kind {kind!r} (device, role or server)")
    ca_cert, ca_key = load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _leaf(ca_cert, ca_key, identity, key.public_key(), usage, days, not_before)
    if kind == "server":
        builder = builder.add_extension(
            _hosts_san(hosts or ["localhost", "127.0.0.1"]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    _record(directory, cert, identity)
    if kind == "device" and identity in revoked_identities(directory):
        _append_jsonl(
            directory / "revoked.jsonl",
            {"serial": "", "identity": identity, "at": _now().isoformat(), "reinstated": True},
        )
    # Not with_suffix: ids may contain dots ("dev.1" must not become "dev.key").
    key_path, cert_path = base.parent / f"{base.name}.key", base.parent / f"{base.name}.pem"
    write_private(key_path, certnames.key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return Issued(identity, cert_path, key_path)


def sign_csr(
    directory: Path, csr_pem: bytes, *, days: float = LEAF_DAYS, expect: str | None = None
) -> bytes:
    """Sign a box's certificate request (credential rotation: the new private key never leaves
    the box). Only a device identity ``<store>:<device>`` is signed, for client auth, and never
    a revoked one; ``expect``: the identity the request must name (the box whose topic it came
    from). Returns the certificate PEM."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate request: {exc}") from None
    if not csr.is_signature_valid:
        raise PkiError("the request's signature does not match its key")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or ":" not in str(cns[0].value):
        raise PkiError("the request's CN must be one device identity <store>:<device>")
    store_id, _, device_id = str(cns[0].value).partition(":")
    identity = device_identity(store_id, device_id)
    if expect is not None and identity != expect:
        raise PkiError(f"the request is for {identity!r} but came from {expect!r}")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PkiError("the request's key must be an EC key")
    if days <= 0:
        raise PkiError(f"days must be positive, not {days}")
    directory = Path(directory)
    if identity in revoked_identities(directory):
        # A stolen box keeps asking; a revoked identity comes back only by `pki issue` on purpose.
        raise PkiError(f"{identity} is revoked: not signing its request")
    ca_cert, ca_key = load_ca(directory)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH
    cert = _leaf(ca_cert, ca_key, identity, key, usage, days).sign(ca_key, hashes.SHA256())
    _record(directory, cert, identity)
    return cert.public_bytes(serialization.Encoding.PEM)


# ---- the issue record, revocation and the CRL ---------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _append_jsonl(path: Path, row: dict[str, object]) -> None:
    """Rewritten whole (atomic: a crash mid-write must not leave half a line that would hide a
    revocation), under a lock: two ops runs signing at once must not drop each other's line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".records.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = path.read_text() if path.exists() else ""
        _write_public(path, (old + json.dumps(row, sort_keys=True) + "\n").encode())


def _record(directory: Path, cert: x509.Certificate, identity: str) -> None:
    """Every certificate issued, by serial: a box that rotated by CSR has certificates ops never
    kept a copy of, and revoking the box must reach all of them."""
    _append_jsonl(
        directory / "issued.jsonl",
        {
            "serial": format(cert.serial_number, "x"),
            "identity": identity,
            "not_after": cert.not_valid_after_utc.isoformat(),
        },
    )


def revoked_identities(directory: Path) -> set[str]:
    """Identities revoked and not re-issued since (``pki issue device`` brings a box back on
    purpose; its old serials stay in the CRL)."""
    out: set[str] = set()
    for row in _read_jsonl(Path(directory) / "revoked.jsonl"):
        (out.discard if row.get("reinstated") else out.add)(str(row["identity"]))
    return out


def revoke(directory: Path, store_id: str, device_id: str, *, crl_days: int = CRL_DAYS) -> int:
    """Revoke every certificate ever issued to the box (those still valid matter; expired ones
    cost a line) and re-sign the CRL; returns how many serials were added. Further requests
    from the box are refused by ``sign_csr``."""
    directory = Path(directory)
    identity = device_identity(store_id, device_id)
    load_ca(directory)  # no CA, no CRL: say so before writing anything
    serials = {str(r["serial"]) for r in _read_jsonl(directory / "issued.jsonl")
               if r.get("identity") == identity}  # fmt: skip
    # A certificate issued before the record existed (older PKI directories).
    current = directory / "devices" / store_id / f"{device_id}.pem"
    if current.exists():
        serials.add(format(x509.load_pem_x509_certificate(current.read_bytes()).serial_number, "x"))
    if not serials:
        raise PkiError(f"no certificate was ever issued to {identity} from {directory}")
    done = {str(r["serial"]) for r in _read_jsonl(directory / "revoked.jsonl")}
    now = _now().isoformat()
    added = sorted(serials - done)
    for serial in added:
        _append_jsonl(
            directory / "revoked.jsonl", {"serial": serial, "identity": identity, "at": now}
        )
    if identity not in revoked_identities(directory):  # all serials were revoked already
        _append_jsonl(directory / "revoked.jsonl", {"serial": "", "identity": identity, "at": now})
    write_crl(directory, days=crl_days)
    return len(added)


def crl_days_left(directory: Path) -> float | None:
    """Days until the broker stops accepting anyone on this CRL (None: no CRL yet)."""
    path = Path(directory) / "crl.pem"
    if not path.exists():
        return None
    nxt = x509.load_pem_x509_crl(path.read_bytes()).next_update_utc
    return None if nxt is None else (nxt - _now()).total_seconds() / 86400


def write_crl(directory: Path, *, days: int = CRL_DAYS) -> Path:
    """(Re-)sign ``crl.pem`` from ``revoked.jsonl``. An empty CRL is still a CRL: a broker with
    ``crlfile`` refuses every client of a CA it has no CRL for."""
    directory = Path(directory)
    if days < 1:
        raise PkiError(f"days must be at least 1, not {days}")
    ca_cert, ca_key = load_ca(directory)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
    )
    for row in _read_jsonl(directory / "revoked.jsonl"):
        if not row.get("serial"):
            continue
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(str(row["serial"]), 16))
            .revocation_date(dt.datetime.fromisoformat(str(row["at"])))
            .build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    path = directory / "crl.pem"
    _write_public(path, crl.public_bytes(serialization.Encoding.PEM))
    return path
