"""The console's signing key: read from its file on this host at each push; an encrypted one
(``edge-ops keygen --encrypt``) is locked until an operator unlocks it with its passphrase in the
browser, then held in this process's memory only (never written decrypted anywhere) until it is
locked again or ``unlock_minutes`` have passed. Unlocking and locking go in the audit log."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.push import PushError
from contracts.signing import is_encrypted, load_private_key

LOCKED = (
    "the signing key is locked: an operator unlocks it with its passphrase on the Signing key"
    " page (/signing)"
)


@dataclass(frozen=True)
class SignerState:
    present: bool
    encrypted: bool
    unlocked: bool
    until: float | None  # when an unlocked key locks itself again
    by: str | None  # who unlocked it


class Signer:
    def __init__(self, path: Path, unlock_s: float) -> None:
        self.path = path
        self.unlock_s = unlock_s
        self._lock = threading.Lock()
        self._key: Ed25519PrivateKey | None = None
        self._until = 0.0
        self._by: str | None = None

    def _pem(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def state(self) -> SignerState:
        pem = self._pem()
        encrypted = pem is not None and is_encrypted(pem)
        with self._lock:
            if self._key is not None and time.time() >= self._until:
                self._key, self._by = None, None  # expired: locked again
            unlocked = self._key is not None
            return SignerState(
                pem is not None, encrypted, unlocked or (pem is not None and not encrypted),
                self._until if unlocked else None, self._by if unlocked else None,
            )  # fmt: skip

    def key(self) -> Path | Ed25519PrivateKey:
        """What ``central.push`` signs with: the file (not encrypted: read at each push) or the
        unlocked key; PushError when it is encrypted and locked."""
        pem = self._pem()
        if pem is None or not is_encrypted(pem):
            return self.path  # push.sign says what is wrong with a missing file
        with self._lock:
            if self._key is None or time.time() >= self._until:
                self._key, self._by = None, None
                raise PushError(LOCKED)
            return self._key

    def unlock(self, passphrase: str, user: str) -> None:
        """ValueError when the passphrase is wrong (or the file not there, or not encrypted)."""
        pem = self._pem()
        if pem is None:
            raise ValueError(f"no signing key at {self.path}")
        if not is_encrypted(pem):
            raise ValueError("the signing key is not encrypted: there is nothing to unlock")
        key = load_private_key(pem, passphrase.encode())  # ValueError: wrong passphrase
        with self._lock:
            self._key, self._until, self._by = key, time.time() + self.unlock_s, user

    def lock(self) -> bool:
        with self._lock:
            was = self._key is not None
            self._key, self._by = None, None
            return was
