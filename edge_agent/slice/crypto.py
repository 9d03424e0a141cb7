"""Identity keys at rest: AES-256-GCM under a device key that lives apart from the database.

A copied ``profiles.db`` alone does not give anyone the shoppers' token keys: each sealed key is
``nonce (12) || ciphertext (16) || tag (16)``, bound to its profile id and slot as associated
data, so a sealed key moved to another profile's row does not decrypt. The device key is a
32-byte file created once with mode 0600 (configurable, e.g. a mount that backups skip).
Nothing here logs or formats a key.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
SEALED_BYTES = NONCE_BYTES + 16 + 16  # one 16-byte EID identity key, sealed


class KeyFileError(RuntimeError):
    """The device key file is missing, unreadable or malformed (the message names the file)."""


class SealError(ValueError):
    """A sealed identity key does not open with this device key (wrong key or tampered row)."""


def _aad(profile_id: str, slot: int) -> bytes:
    return f"{profile_id}\x00{slot}".encode()


class DeviceKey:
    """Seals and opens identity keys. ``repr`` never shows key material."""

    __slots__ = ("_aead", "path")

    def __init__(self, raw: bytes, path: Path | None = None) -> None:
        if len(raw) != KEY_BYTES:
            raise KeyFileError(f"{path or 'device key'}: expected {KEY_BYTES} bytes")
        self._aead = AESGCM(raw)
        self.path = path

    def __repr__(self) -> str:
        return f"DeviceKey(path={str(self.path)!r})"

    @classmethod
    def load_or_create(cls, path: Path | str, create: bool = True) -> DeviceKey:
        p = Path(path)
        if not create and not p.exists():
            raise KeyFileError(f"{p}: no device key file (identity keys cannot be opened)")
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes starting at once cannot both write a key.
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            log.info("profiles: created device key file %s", p)
        try:
            mode = stat.S_IMODE(os.stat(p).st_mode)
            if mode & 0o077:
                # Someone loosened it (a restore, a copy): tighten rather than refuse to start.
                log.warning("profiles: %s had mode %o; set to 0600", p, mode)
                os.chmod(p, 0o600)
            raw = p.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{p}: cannot read the device key: {exc.strerror}") from None
        return cls(raw, p)

    def seal(self, profile_id: str, slot: int, key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, _aad(profile_id, slot))

    def open(self, profile_id: str, slot: int, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(profile_id, slot)
            )
        except (InvalidTag, ValueError):
            raise SealError(f"identity key {slot} of {profile_id} does not open") from None
