"""Rotating the box's TLS client certificate without its private key ever leaving the box.

1. ``rotate_credentials`` (a signed command): the box makes a new EC P-256 key
   (``<key_file>.next``, 0600) and publishes a certificate request for its identity
   ``<store>:<device>`` on ``stores/<store>/devices/<device>/csr`` (retained).
2. Ops signs it with the fleet CA (``edge-ops pki sign-csr``) and sends it back:
   ``install_certificate`` with ``certificate_pem``.
3. The box checks it (issued by the configured CA, for its identity, for the pending key, valid
   now), keeps the running pair as ``*.last-good``, swaps both files atomically and restarts on
   them **on probation**: confirmed once central accepts the new certificate, otherwise the last
   good pair comes back (the same rule as a pushed config, ``edge_agent/downlink/config_apply.py``).

Step 1 also happens without a command: once two thirds of the certificate's life are gone the
box makes the request itself (``renewal_due``; ``Handlers.check_certificate`` at every
heartbeat). The request is kept beside the key (``<key_file>.next.csr``) so a box that was
offline publishes the same one when it is back, and ops signs all pending ones at once
(``edge-ops pki sign-csr --all-pending``).
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.certnames import device_identity, key_pem
from edge_agent.config import BrokerConfig
from edge_agent.downlink.probation import Probation, file_sha256
from edge_agent.journey.content_store import atomic_write


def _files(broker: BrokerConfig) -> tuple[Path, Path]:
    if not broker.tls or broker.cert_file is None or broker.key_file is None:
        raise ValueError("central uses no client certificate (central.tls, cert_file, key_file)")
    return Path(broker.cert_file), Path(broker.key_file)


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


# Renew with a third of the life left: a 90-day certificate asks at day 60, which leaves a month
# for a box that is offline or an ops team that signs weekly.
RENEW_AT = 2 / 3


@dataclass(frozen=True)
class CertLife:
    """The validity window of the box's client certificate."""

    not_before: dt.datetime
    not_after: dt.datetime

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def fraction_left(self, now: dt.datetime) -> float:
        total = (self.not_after - self.not_before).total_seconds()
        return max(0.0, (self.not_after - now).total_seconds() / total) if total > 0 else 0.0

    def renewal_due(self, now: dt.datetime) -> bool:
        return self.fraction_left(now) <= 1 - RENEW_AT

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.not_after


def life(broker: BrokerConfig) -> CertLife | None:
    """None when central uses no client certificate; ValueError when the file is unreadable."""
    if not broker.tls or broker.cert_file is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(Path(broker.cert_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {broker.cert_file}: {exc}") from None
    return CertLife(cert.not_valid_before_utc, cert.not_valid_after_utc)


def pending_request(broker: BrokerConfig) -> bytes | None:
    """The request made for the pending key, if one is waiting for its certificate."""
    _, key_file = _files(broker)
    csr = _side(key_file, ".next.csr")
    if not _side(key_file, ".next").exists() or not csr.exists():
        return None
    return csr.read_bytes()


def request(broker: BrokerConfig, store_id: str, device_id: str) -> bytes:
    """Make the next key (0600, beside the current one) and return the CSR PEM for it (also
    kept as ``<key_file>.next.csr`` until the certificate is installed)."""
    _, key_file = _files(broker)
    key = ec.generate_private_key(ec.SECP256R1())
    atomic_write(_side(key_file, ".next"), key_pem(key), mode=0o600)
    # The identity the broker maps the certificate to (central/pki.py, the fleet ACL).
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, device_identity(store_id, device_id))]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    pem = csr.public_bytes(serialization.Encoding.PEM)
    atomic_write(_side(key_file, ".next.csr"), pem)
    return pem


def check(broker: BrokerConfig, store_id: str, device_id: str, cert_pem: str) -> x509.Certificate:
    """The certificate if it may replace ours, else ValueError with one line saying why."""
    _, key_file = _files(broker)
    pending = _side(key_file, ".next")
    if not pending.exists():
        raise ValueError("no pending key: send rotate_credentials first")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise ValueError("certificate_pem is not a PEM certificate") from None
    key = serialization.load_pem_private_key(pending.read_bytes(), password=None)
    if cert.public_key() != key.public_key():
        raise ValueError("the certificate is not for the pending key")
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    want = device_identity(store_id, device_id)
    if [c.value for c in cns] != [want]:
        raise ValueError(f"the certificate is for {cns[0].value if cns else '?'!r}, not {want!r}")
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ValueError("the certificate is not valid now")
    if broker.ca_file is None:
        raise ValueError("central.ca_file is not set: cannot check who issued it")
    ca = x509.load_pem_x509_certificate(Path(broker.ca_file).read_bytes())
    ca_key = ca.public_key()
    if cert.issuer != ca.subject or not isinstance(ca_key, ec.EllipticCurvePublicKey):
        raise ValueError("the certificate was not issued by the configured CA")
    try:
        assert cert.signature_hash_algorithm is not None
        ca_key.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    except (InvalidSignature, AssertionError):
        raise ValueError("the certificate was not signed by the configured CA") from None
    return cert


def install(broker: BrokerConfig, cert_pem: str) -> None:
    """Swap in the checked certificate and the pending key; keep the old pair; probation."""
    cert_file, key_file = _files(broker)
    pending = _side(key_file, ".next")
    for f in (cert_file, key_file):
        if f.exists():
            shutil.copy2(f, _side(f, ".last-good"))
    atomic_write(key_file, pending.read_bytes(), mode=0o600)
    atomic_write(cert_file, cert_pem.encode())
    pending.unlink()
    _side(key_file, ".next.csr").unlink(missing_ok=True)
    Probation(_side(cert_file, ".probation")).start(cert_pem.encode())


def running_sha256(broker: BrokerConfig) -> str | None:
    """Of the certificate file as this process found it at start."""
    if not broker.tls or broker.cert_file is None:
        return None
    return file_sha256(Path(broker.cert_file))


def on_probation(broker: BrokerConfig, running: str | None) -> float | None:
    """Seconds since new credentials were installed when this process runs on them (the one
    that installed them must not vouch for them), else None."""
    if not broker.tls or broker.cert_file is None:
        return None
    return Probation(_side(Path(broker.cert_file), ".probation")).age(running)


def confirm(broker: BrokerConfig) -> None:
    cert_file, _ = _files(broker)
    Probation(_side(cert_file, ".probation")).clear()


def rollback(broker: BrokerConfig, why: str) -> str:
    cert_file, key_file = _files(broker)
    olds = [_side(f, ".last-good") for f in (cert_file, key_file)]
    if not all(o.exists() for o in olds):
        confirm(broker)
        return f"credential rollback impossible ({why}): no last good pair"
    atomic_write(key_file, olds[1].read_bytes(), mode=0o600)
    atomic_write(cert_file, olds[0].read_bytes())
    confirm(broker)
    return f"credentials rolled back to the last good pair: {why}"
