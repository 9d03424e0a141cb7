"""Who a device is on the wire: its certificate's CN (``<store>:<device>``, the broker-side
username the fleet ACL grants by), the PEM form of its keys, and the two certificate pieces both
sides make (a CA, a host's name): central's fleet PKI (``central/pki.py``) and the box's own bus
CA for its ESP32 nodes (``edge_agent/box/bus_tls.py``). Central issues, the box requests."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.validation import ID_PATTERN

_ID = re.compile(ID_PATTERN)


class CertNameError(ValueError):
    """A store or device id that cannot name a certificate."""


def device_identity(store_id: str, device_id: str) -> str:
    for what, value in (("store id", store_id), ("device id", device_id)):
        if not _ID.match(value):
            raise CertNameError(f"{what} {value!r} does not match {ID_PATTERN}")
    return f"{store_id}:{device_id}"


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def host_name(host: str) -> x509.GeneralName:
    """A host as a certificate names it: an IP address, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def self_signed_ca(
    name: str, now: datetime, days: int, backdate: timedelta
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A P-256 CA that signs certificates and CRLs and no other CA (path length 0), valid from
    ``now - backdate`` (clocks differ) for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert
