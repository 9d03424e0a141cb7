"""Who a device is on the wire: its certificate's CN (``<store>:<device>``, the broker-side
username the fleet ACL grants by) and the PEM form of its keys. Central issues, the box requests."""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

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
