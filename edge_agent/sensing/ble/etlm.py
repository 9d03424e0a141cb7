"""Encrypted Eddystone-TLM (eTLM): the telemetry of a beacon set up for Eddystone-EID.

Per the spec (google/eddystone, eddystone-tlm/tlm-encrypted.md, and the reference beacon in
implementations/mbed, TLMFrame.cpp and aes_eax.cpp): the 12 bytes that follow the version byte
of a plain TLM frame (battery mV, temperature 8.8, advert count, uptime in 0.1 s) are encrypted
with AES-EAX under the beacon's 16-byte identity key (EIK). The nonce is 6 bytes: the beacon's
EID time counter with its lowest K bits cleared (the start of its current EID rotation period,
big-endian), then a 2-byte random salt. There is no header. The tag is cut to its first 2 bytes,
the MIC. The frame carries ``0x20 0x01``, the 12 ciphertext bytes, the salt and the MIC.

AES-EAX is built here from AES-CMAC (EAX's OMAC) and AES-CTR, both from ``cryptography``, which
has no EAX mode: EAX is those two primitives combined in a few lines (Bellare, Rogaway, Wagner,
"The EAX Mode of Operation", 2004), checked in tests against the paper's published vectors.
That is a smaller thing to trust than a second crypto library on the box for one mode.

Pure: the caller passes the beacon's time; nothing here reads a clock or a file.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from edge_agent.sensing.ble.decode import Frame, FrameError, decode_eddystone

TLM_PLAIN_LEN = 12  # battery, temperature, advert count, uptime
SEALED_LEN = 16  # what follows 0x20 0x01: ciphertext, 2 salt, 2 MIC
MIC_LEN = 2
# The beacon's period first, then the neighbours: a clock a little behind or ahead of ours, or
# a frame sealed just before its period ended, as the shoppers' EID resolver allows.
WINDOWS = (0, -1, 1)

_BLOCK = 16


class EaxAuthError(ValueError):
    """The tag does not match: a wrong key or nonce, or altered bytes."""


def _omac(key: bytes, tweak: int, data: bytes) -> bytes:
    # EAX's OMAC^t is CMAC over a block of t (15 zero bytes, then t) followed by the data.
    c = CMAC(algorithms.AES(key))
    c.update(bytes(_BLOCK - 1) + bytes([tweak]) + data)
    return c.finalize()


def _ctr(key: bytes, counter: bytes, data: bytes) -> bytes:
    # cryptography's CTR counts the whole 16-byte block big-endian, as EAX asks.
    enc = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    return enc.update(data) + enc.finalize()


def _xor(a: bytes, b: bytes, c: bytes) -> bytes:
    return bytes(x ^ y ^ z for x, y, z in zip(a, b, c, strict=True))


def eax_seal(
    key: bytes, nonce: bytes, plaintext: bytes, header: bytes = b"", tag_len: int = _BLOCK
) -> tuple[bytes, bytes]:
    """AES-EAX encryption: (ciphertext, tag cut to ``tag_len`` bytes)."""
    n = _omac(key, 0, nonce)
    h = _omac(key, 1, header)
    ciphertext = _ctr(key, n, plaintext)
    return ciphertext, _xor(n, h, _omac(key, 2, ciphertext))[:tag_len]


def eax_open(key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes, header: bytes = b"") -> bytes:
    """AES-EAX decryption; raises EaxAuthError unless ``tag`` (any length 1..16) matches."""
    if not 1 <= len(tag) <= _BLOCK:
        raise EaxAuthError(f"tag is {len(tag)} bytes, expected 1 to 16")
    n = _omac(key, 0, nonce)
    full = _xor(n, _omac(key, 1, header), _omac(key, 2, ciphertext))
    if not hmac.compare_digest(full[: len(tag)], tag):
        raise EaxAuthError("EAX tag mismatch")
    return _ctr(key, n, ciphertext)


def _check(eik: bytes, rotation_exponent: int) -> None:
    # Configuration errors, not frame errors: the config refuses both before a frame arrives.
    if len(eik) != 16:
        raise ValueError("identity key must be 16 bytes")
    if not 0 <= rotation_exponent <= 15:
        raise ValueError("rotation exponent must be 0..15")


def etlm_nonce(beacon_time: int, rotation_exponent: int, salt: bytes) -> bytes:
    """The 6-byte nonce: the beacon's time counter, K-scaled, then the salt."""
    scaled = ((beacon_time & 0xFFFFFFFF) >> rotation_exponent) << rotation_exponent
    return scaled.to_bytes(4, "big") + salt


def seal_etlm(
    plain: bytes, eik: bytes, beacon_time: int, rotation_exponent: int, salt: bytes
) -> bytes:
    """What a beacon sends after ``0x20 0x01``: the spec's encoder (tests and simulators use it)."""
    _check(eik, rotation_exponent)
    if len(plain) != TLM_PLAIN_LEN or len(salt) != 2:
        raise ValueError("eTLM seals 12 bytes of TLM with a 2-byte salt")
    nonce = etlm_nonce(beacon_time, rotation_exponent, salt)
    ciphertext, mic = eax_seal(eik, nonce, plain, tag_len=MIC_LEN)
    return ciphertext + salt + mic


def open_etlm(
    sealed: bytes,
    eik: bytes,
    beacon_time: int,
    rotation_exponent: int,
    windows: Sequence[int] = WINDOWS,
) -> Frame:
    """The plain ``eddystone_tlm`` frame inside an eTLM, or FrameError (the decoder's error).

    ``sealed`` is the 16 bytes after ``0x20 0x01``; ``beacon_time`` is the beacon's EID time
    counter now, as the box reckons it. Each rotation period in ``windows`` (relative to the
    current one) is tried until the MIC matches. A 2-byte MIC matches a random frame once in
    65,536 tries per window: enough against damaged frames, which is all the spec asks of it.
    """
    _check(eik, rotation_exponent)
    if len(sealed) != SEALED_LEN:
        raise FrameError(f"eddystone: encrypted TLM is {len(sealed)} bytes, expected {SEALED_LEN}")
    ciphertext, salt, mic = sealed[:12], sealed[12:14], sealed[14:16]
    period = (beacon_time & 0xFFFFFFFF) >> rotation_exponent
    for delta in windows:
        start = (period + delta) << rotation_exponent
        if not 0 <= start <= 0xFFFFFFFF:
            continue  # before the beacon's clock began, or past its 32-bit end
        try:
            plain = eax_open(eik, etlm_nonce(start, rotation_exponent, salt), ciphertext, mic)
        except EaxAuthError:
            continue
        return decode_eddystone(b"\x20\x00" + plain)
    raise FrameError(
        "eddystone: encrypted TLM fails its integrity check "
        "(another key, a clock off by more than a rotation period, or altered bytes)"
    )
