"""Eddystone-EID ephemeral identifiers: what the store app's rotating shopper token is.

Per the Eddystone-EID spec: a temporary key is derived from the 16-byte identity key and the
upper 16 bits of the beacon time counter, then the EID is the first 8 bytes of AES-128 of the
rotation-period-aligned time under that key. Only the box (holding the identity keys from the
profile slice) can map an EID back to a shopper; EIDs never leave the box.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def _aes_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def compute_eid(identity_key: bytes, time_counter: int, rotation_exponent: int) -> bytes:
    """The 8-byte EID for a beacon time counter (seconds) and rotation exponent K (2**K s)."""
    if len(identity_key) != 16:
        raise ValueError("identity key must be 16 bytes")
    if not 0 <= rotation_exponent <= 15:
        raise ValueError("rotation exponent must be 0..15")
    ts = time_counter & 0xFFFFFFFF
    tk_data = b"\x00" * 11 + b"\xff" + b"\x00\x00" + ((ts >> 16) & 0xFFFF).to_bytes(2, "big")
    temporary_key = _aes_block(identity_key, tk_data)
    aligned = (ts >> rotation_exponent) << rotation_exponent
    eid_data = b"\x00" * 11 + bytes([rotation_exponent]) + aligned.to_bytes(4, "big")
    return _aes_block(temporary_key, eid_data)[:8]


def period_index(time_counter: int, rotation_exponent: int) -> int:
    return time_counter >> rotation_exponent
