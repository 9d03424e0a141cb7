"""What the agent's stages may ask of the box's side of the wire: the outbox, the uplink and the
downlink, as protocols (the real ``Outbox``, ``Uplink`` and ``Downlink`` satisfy them; a test may
hand in anything that does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from contracts.events import CloudEvent


class OutboxPort(Protocol):
    def append(self, events: Sequence[CloudEvent]) -> object: ...

    def drops(self) -> dict[str, int]: ...

    def depth(self) -> int: ...

    def oldest_pending_age_s(self) -> float | None: ...

    def health(self) -> dict[str, str]: ...


class UplinkPort(Protocol):
    @property
    def connected(self) -> bool: ...

    def resync(self) -> None: ...

    def publish_status(self, subtopic: str, payload: bytes, *, retain: bool = True) -> bool: ...

    def publish_health(self, doc: dict[str, Any]) -> bool: ...

    def clock_offset(self) -> tuple[float, float] | None: ...

    def stats(self) -> dict[str, Any]: ...


class DownlinkPort(Protocol):
    def publish_ack(self, doc: dict[str, Any], *, defer: bool = False) -> bool: ...

    @property
    def state(self) -> Any: ...
