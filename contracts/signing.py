"""Ed25519-signed downlink messages: what central ops pushes, and how a device checks it.

Wire format (UTF-8 JSON, one object, nothing else)::

    {"payload": "<base64 of the payload bytes>",
     "sig":     "<base64 of the 64-byte Ed25519 signature over exactly those payload bytes>",
     "key_id":  "<16 hex chars: sha256 of the 32 raw public key bytes, truncated>"}

The payload bytes are canonical JSON (sorted keys, no spaces, UTF-8)::

    {"kind": "campaigns" | "content" | "profiles" | "config" | "command" | "map" | "planogram"
             | "theme" | "release",
     "store_id": "<store>", "device_id": null | "<device>",   # null = every device of the store
     "version": <int >= 1>,                                   # per kind, must only go up
     "issued_at": "<RFC 3339>", "expires_at": "<RFC 3339>",
     "body": {...}}

The signature covers the payload bytes, not a re-serialisation, so the device never has to
reproduce the signer's JSON. Base64 must be canonical (standard alphabet, padded, re-encodes to the
same text): otherwise a flipped padding bit would give a second valid encoding of one message.
``issued_at`` in the future is *not* refused: a box without an RTC may boot with an old clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from contracts.payload import PayloadError, loads

KINDS = frozenset(
    {
        "campaigns",
        "content",
        "profiles",
        "config",
        "command",
        "map",
        "planogram",
        "theme",
        "release",
    }
)
DEFAULT_MAX_BYTES = 1_048_576
_FIELDS = ("kind", "store_id", "device_id", "version", "issued_at", "expires_at", "body")


class DownlinkRejected(Exception):
    """A downlink message that must not be applied; ``reason`` is one line for the ack."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedMessage:
    kind: str
    store_id: str
    device_id: str | None
    version: int
    issued_at: datetime
    expires_at: datetime
    body: dict[str, Any]
    key_id: str
    digest: str  # sha256 hex of the payload bytes: identifies this exact message in logs/acks


# ---- keys --------------------------------------------------------------------------------
def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


# An encrypted ops key: the passphrase is stretched with scrypt (a memory-hard KDF, OWASP's
# parameters) before it becomes the PKCS#8 password: PKCS#8 encryption as the library writes it
# derives its key with only 2048 rounds of PBKDF2, too few against a guessed passphrase. The
# scrypt salt and parameters go on a line of their own before the PEM block (PEM readers skip
# text there), so the file stays a standard encrypted PEM to anyone who has the derived key.
KDF_PREFIX = b"Edge-Ops-KDF: scrypt"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
MAX_SCRYPT_N = 2**20  # a file asking for more is refused, not a minute of CPU and a GB of RAM


def _stretch(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    derived = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)
    return base64.b64encode(derived)


def generate_keypair(passphrase: bytes | None = None) -> tuple[bytes, str]:
    """A new ops key: (PKCS#8 PEM of the private key, base64 of the 32 raw public bytes).
    With a passphrase the PEM is encrypted under the passphrase stretched by scrypt, so a copy
    of the file alone signs nothing."""
    private = Ed25519PrivateKey.generate()
    header = b""
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if passphrase:
        salt = os.urandom(16)
        encryption = serialization.BestAvailableEncryption(
            _stretch(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        )
        header = (
            KDF_PREFIX
            + (
                f" n={SCRYPT_N} r={SCRYPT_R} p={SCRYPT_P} salt={base64.b64encode(salt).decode()}\n"
            ).encode()
        )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return header + pem, base64.b64encode(_raw_public(private.public_key())).decode()


def is_encrypted(pem: bytes) -> bool:
    """Whether a private key PEM needs a passphrase (PKCS#8 encrypted, or legacy encrypted)."""
    return b"ENCRYPTED" in pem[:400]


def _password(pem: bytes, passphrase: bytes) -> bytes:
    """The PEM's password: the passphrase stretched as the key's KDF line says, or as is for
    an encrypted PEM made elsewhere (openssl)."""
    if not pem.startswith(KDF_PREFIX):
        return passphrase
    try:
        fields = dict(f.split("=", 1) for f in pem.split(b"\n", 1)[0].decode().split()[2:])
        n, r, p = int(fields["n"]), int(fields["r"]), int(fields["p"])
        salt = base64.b64decode(fields["salt"], validate=True)
    except (ValueError, KeyError, UnicodeDecodeError, binascii.Error):
        raise ValueError("the key's KDF line is unreadable") from None
    if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("the key's KDF parameters are out of range")
    return _stretch(passphrase, salt, n, r, p)


def load_private_key(pem: bytes, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The key, or ValueError saying why not (a passphrase missing or wrong, not Ed25519)."""
    encrypted = is_encrypted(pem)
    if encrypted and not passphrase:
        raise ValueError("the key is encrypted: its passphrase is needed")
    # Outside the try: a KDF line at fault is said as such, not as a wrong passphrase.
    password = _password(pem, passphrase) if encrypted and passphrase else None
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError):
        if encrypted:
            raise ValueError("wrong passphrase for the key") from None
        raise ValueError("not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_public_key(value: str) -> Ed25519PublicKey:
    """Base64 of the 32 raw bytes, or a path to a PEM file (public key, or private key)."""
    value = value.strip()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32:
        return Ed25519PublicKey.from_public_bytes(raw)
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError("public key: neither base64 of 32 bytes nor a readable PEM file")
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        return load_private_key(data).public_key()
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


# ---- signing (central ops) ---------------------------------------------------------------
def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sign_message(
    private_pem: bytes | Ed25519PrivateKey,
    kind: str,
    body: dict[str, Any],
    store_id: str,
    device_id: str | None,
    version: int,
    expires_at: datetime,
    *,
    issued_at: datetime | None = None,
) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(KINDS)}")
    if version < 1:
        raise ValueError("version must be >= 1")
    # A key already unlocked (the ops console keeps it in memory once a passphrase opened it).
    private = (
        private_pem if isinstance(private_pem, Ed25519PrivateKey) else load_private_key(private_pem)
    )
    payload = canonical_json(
        {
            "kind": kind,
            "store_id": store_id,
            "device_id": device_id,
            "version": version,
            "issued_at": _rfc3339(issued_at or datetime.now(UTC)),
            "expires_at": _rfc3339(expires_at),
            "body": body,
        }
    )
    envelope = {
        "payload": base64.b64encode(payload).decode(),
        "sig": base64.b64encode(private.sign(payload)).decode(),
        "key_id": key_id(private.public_key()),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def expires_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# ---- verifying (device) ------------------------------------------------------------------
def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise DownlinkRejected(f"{what}: missing or not a string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DownlinkRejected(f"{what}: bad base64") from None
    if base64.b64encode(raw).decode() != value:
        raise DownlinkRejected(f"{what}: non-canonical base64")
    return raw


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise DownlinkRejected(f"payload.{what}: not a string")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DownlinkRejected(f"payload.{what}: not RFC 3339") from None
    if dt.tzinfo is None:
        raise DownlinkRejected(f"payload.{what}: no time zone")
    return dt


def verify_message(
    public_key: Ed25519PublicKey | str,
    raw: bytes,
    store_id: str,
    device_id: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    now: datetime | None = None,
) -> SignedMessage:
    """Check everything before anything is trusted; raises ``DownlinkRejected`` only."""
    try:
        return _verify(public_key, raw, store_id, device_id, max_bytes, now)
    except DownlinkRejected:
        raise
    except Exception as exc:  # belt and braces: any surprise is a refusal, never a crash
        raise DownlinkRejected(f"malformed: {type(exc).__name__}") from None


def _verify(
    public_key: Ed25519PublicKey | str,
    raw: bytes,
    store_id: str,
    device_id: str,
    max_bytes: int,
    now: datetime | None,
) -> SignedMessage:
    if isinstance(public_key, str):
        public_key = load_public_key(public_key)
    if not isinstance(raw, bytes | bytearray):
        raise DownlinkRejected("not bytes")
    if len(raw) > max_bytes:
        raise DownlinkRejected(f"oversized: {len(raw)} bytes > {max_bytes}")
    try:
        envelope = loads(raw, max_bytes=max_bytes)
    except PayloadError as exc:
        raise DownlinkRejected(str(exc) if "nested" in str(exc) else "not JSON") from None
    if not isinstance(envelope, dict):
        raise DownlinkRejected("not a JSON object")
    if "payload" not in envelope:
        raise DownlinkRejected("missing field: payload")
    if not envelope.get("sig"):
        raise DownlinkRejected("unsigned: no sig")
    if "key_id" not in envelope:
        raise DownlinkRejected("missing field: key_id")
    payload = _b64(envelope["payload"], "payload")
    sig = _b64(envelope["sig"], "sig")
    expected_kid = key_id(public_key)
    if envelope["key_id"] != expected_kid:
        raise DownlinkRejected(f"wrong key: key_id {str(envelope['key_id'])[:32]!r} is not ours")
    try:
        public_key.verify(sig, payload)
    except InvalidSignature:
        raise DownlinkRejected("bad signature") from None
    # Only now is the payload trusted enough to be parsed.
    try:
        doc = loads(payload, max_bytes=max_bytes, what="payload")
    except PayloadError as exc:
        raise DownlinkRejected(str(exc) if "nested" in str(exc) else "payload: not JSON") from None
    if not isinstance(doc, dict):
        raise DownlinkRejected("payload: not a JSON object")
    missing = [f for f in _FIELDS if f not in doc]
    if missing:
        raise DownlinkRejected(f"missing field: payload.{missing[0]}")
    kind, version, body = doc["kind"], doc["version"], doc["body"]
    if kind not in KINDS:
        raise DownlinkRejected(f"payload.kind: unknown {str(kind)[:32]!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DownlinkRejected("payload.version: not an integer >= 1")
    if not isinstance(body, dict):
        raise DownlinkRejected("payload.body: not an object")
    issued, expires = _time(doc["issued_at"], "issued_at"), _time(doc["expires_at"], "expires_at")
    if (now or datetime.now(UTC)) >= expires:
        raise DownlinkRejected(f"expired at {_rfc3339(expires)}")
    if doc["store_id"] != store_id:
        raise DownlinkRejected(f"addressed to another store: {str(doc['store_id'])[:64]!r}")
    if doc["device_id"] is not None and doc["device_id"] != device_id:
        raise DownlinkRejected(f"addressed to another device: {str(doc['device_id'])[:64]!r}")
    return SignedMessage(
        kind=kind,
        store_id=store_id,
        device_id=doc["device_id"],
        version=version,
        issued_at=issued,
        expires_at=expires,
        body=body,
        key_id=expected_kid,
        digest=hashlib.sha256(payload).hexdigest(),
    )
