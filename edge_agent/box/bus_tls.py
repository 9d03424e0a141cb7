"""TLS for the store LAN listener of the in-store bus: a CA of the store's own and the box's
server certificate, for ESP32 nodes that must not send their passwords in the clear over the
store Wi-Fi.

Why a CA per store and not the fleet PKI (central/pki.py): the fleet CA signs the boxes'
*client* certificates for central; a node needs a trust anchor burnt into its firmware at
flashing time, and an installer renders that firmware in the store, offline. So
`edge-agent firmware render` makes one small CA per store (kept beside the node secrets, the key
0600, never copied to the box's broker or into an ESPHome file), embeds its certificate in every
node through ESPHome's ``certificate_authority`` (as the ``!secret bus_ca_certificate`` entry,
so rendered files stay free of store-specific material) and signs the box's server certificate
for the bus host the nodes dial (a DNS name such as ``edge-box-0042.local``, or an address).
The server certificate is re-issued when the host changes or its end is near; nodes keep
working, since they trust the CA, not the certificate.

ECDSA P-256: what the ESP32's mbedTLS verifies fastest and every mosquitto build serves.
Pure: keys and certificates in, PEM text out; the CLI reads and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contracts import certnames

CA_DAYS = 20 * 365  # the nodes' trust anchor: replacing it means reflashing every node
SERVER_DAYS = 2 * 365
RENEW_DAYS = 90  # a render this close to the server certificate's end issues a new one


@dataclass(frozen=True)
class Pem:
    key: str
    cert: str


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return certnames.key_pem(key).decode()


def new_ca(store_id: str, now: datetime | None = None) -> Pem:
    """A CA for one store's bus, valid ``CA_DAYS``; it signs server certificates only."""
    key, cert = certnames.self_signed_ca(
        f"in-store bus CA {store_id}", now or datetime.now(UTC), CA_DAYS, timedelta(minutes=5)
    )
    return Pem(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode())


def server_cert(ca: Pem, host: str, now: datetime | None = None) -> Pem:
    """The box's certificate for ``host`` (the name or address nodes dial), signed by ``ca``."""
    now = now or datetime.now(UTC)
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName([certnames.host_name(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode())


def server_cert_problem(server: Pem, ca: Pem, host: str, now: datetime | None = None) -> str | None:
    """Why ``server`` will not do for ``host`` under ``ca`` (then a render issues a new one),
    or None: not signed by this CA, another host, or under ``RENEW_DAYS`` left."""
    now = now or datetime.now(UTC)
    try:
        cert = x509.load_pem_x509_certificate(server.cert.encode())
        ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
        key = serialization.load_pem_private_key(server.key.encode(), password=None)
    except ValueError as exc:
        return f"unreadable ({exc})"
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        return "its key is not the certificate's"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError) as exc:
        return f"not signed by the store's bus CA ({type(exc).__name__})"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subject alternative name"
    if certnames.host_name(host) not in list(names):
        return f"issued for {', '.join(str(n.value) for n in names)}, not {host}"
    if cert.not_valid_after_utc - now < timedelta(days=RENEW_DAYS):
        return f"ends {cert.not_valid_after_utc:%Y-%m-%d}"
    return None
