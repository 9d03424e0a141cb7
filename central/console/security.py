"""Cookie signing, CSRF tokens and the login rate limit (pure apart from the clock).

The session cookie is ``<sid>.<HMAC-SHA256(secret, "session:" + sid)>``: a cookie that was not
issued here fails the signature before the database is asked. The CSRF token of a form is
``HMAC(secret, "csrf:" + sid)``: bound to the session, so a page on another site cannot know it
(it can neither read our pages nor our HttpOnly cookie), and needs no storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import deque


def _mac(secret: bytes, what: str) -> str:
    digest = hmac.new(secret, what.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_sid(secret: bytes, sid: str) -> str:
    return f"{sid}.{_mac(secret, 'session:' + sid)}"


def unsign_sid(secret: bytes, cookie: str | None) -> str | None:
    if not cookie or "." not in cookie or len(cookie) > 200:
        return None
    sid, mac = cookie.rsplit(".", 1)
    return sid if hmac.compare_digest(mac, _mac(secret, "session:" + sid)) else None


def csrf_token(secret: bytes, sid: str) -> str:
    return _mac(secret, "csrf:" + sid)


def csrf_ok(secret: bytes, sid: str | None, token: str | None) -> bool:
    if not sid or not token:
        return False
    return hmac.compare_digest(token, csrf_token(secret, sid))


class LoginLimiter:
    """At most ``limit`` failed logins per client in any ``window_s``; further attempts are
    refused without checking the password (a guess costs the attacker a minute, and the server
    no scrypt), until the oldest failure leaves the window."""

    def __init__(self, limit: int = 5, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._fails.setdefault(client, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        return q

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until this client may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        q = self._recent(client, now)
        if len(q) < self.limit:
            return 0
        return max(1, int(q[0] + self.window_s - now + 0.999))

    def failed(self, client: str, now: float | None = None) -> int:
        """Count a failure; returns the failures in the window so far."""
        now = time.monotonic() if now is None else now
        q = self._recent(client, now)
        q.append(now)
        if len(self._fails) > 10_000:  # a flood of addresses must not grow this forever
            for key in [k for k, v in self._fails.items() if not v][:5000]:
                del self._fails[key]
        return len(q)

    def succeeded(self, client: str) -> None:
        self._fails.pop(client, None)
