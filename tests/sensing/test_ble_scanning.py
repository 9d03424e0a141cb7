"""bleak scanning behind a fake scanner: passive with or_patterns, fallback, watchdog restarts;
and beacon health (missing beacons)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from bleak.exc import BleakError

from edge_agent.sensing.ble.advert import Advert
from edge_agent.sensing.ble.beacon_health import BeaconHealth
from edge_agent.sensing.ble.sources import BleakSource, SourceError


class FakeScanner:
    """Same constructor keywords and start()/stop() as BleakScanner; adverts on demand."""

    made: list[FakeScanner] = []

    def __init__(self, *, refuse_passive: bool = False, fail: Exception | None = None,
                 adverts: int = 0, **kwargs) -> None:  # fmt: skip
        self.kwargs = kwargs
        self.refuse_passive = refuse_passive
        self.fail = fail
        self.adverts = adverts
        self.started = self.stopped = False
        self.made.append(self)

    async def start(self) -> None:
        if self.fail is not None:
            raise self.fail
        if self.refuse_passive and self.kwargs.get("scanning_mode") == "passive":
            raise BleakError("passive scanning needs BlueZ experimental features")
        self.started = True
        cb = self.kwargs["detection_callback"]
        for i in range(self.adverts):
            dev = SimpleNamespace(address=f"AA:BB:CC:00:00:{i:02X}")
            adv = SimpleNamespace(rssi=-60, manufacturer_data={}, service_data={
                "0000FEAA-0000-1000-8000-00805F9B34FB": b"\x30\xeb" + bytes(8)},
                service_uuids=[], tx_power=None, local_name=None)  # fmt: skip
            cb(dev, adv)

    async def stop(self) -> None:
        self.stopped = True


def _run(src: BleakSource, seconds: float) -> list[Advert]:
    got: list[Advert] = []

    async def main() -> None:
        task = asyncio.create_task(src.run(got.append))
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return got


@pytest.mark.timeout(10)
def test_passive_with_or_patterns_on_the_chosen_adapter() -> None:
    FakeScanner.made = []
    src = BleakSource(adapter="hci1", stall_s=5, poll_s=0.01,
                      scanner_factory=lambda **kw: FakeScanner(adverts=3, **kw))  # fmt: skip
    got = _run(src, 0.1)
    sc = FakeScanner.made[0]
    assert sc.kwargs["scanning_mode"] == "passive"
    assert sc.kwargs["bluez"]["adapter"] == "hci1"
    patterns = sc.kwargs["bluez"]["or_patterns"]
    assert b"\xaa\xfe" in [p.content_of_pattern for p in patterns]
    assert src.stats.mode == "passive" and len(got) == 3
    assert got[0].service_data["0000feaa-0000-1000-8000-00805f9b34fb"][0] == 0x30
    assert sc.stopped  # cancelling the source stops the scanner


@pytest.mark.timeout(10)
def test_falls_back_to_active_when_bluez_refuses_passive() -> None:
    FakeScanner.made = []
    src = BleakSource(stall_s=5, poll_s=0.01,
                      scanner_factory=lambda **kw: FakeScanner(refuse_passive=True, **kw))  # fmt: skip
    _run(src, 0.1)
    assert [s.kwargs.get("scanning_mode", "active") for s in FakeScanner.made] == [
        "passive",
        "active",
    ]
    assert src.stats.mode == "active" and "or_patterns" not in FakeScanner.made[1].kwargs.get(
        "bluez", {}
    )


@pytest.mark.timeout(10)
def test_watchdog_restarts_a_stalled_scanner_and_reports_it() -> None:
    FakeScanner.made = []
    src = BleakSource(stall_s=0.05, poll_s=0.01,
                      scanner_factory=lambda **kw: FakeScanner(**kw))  # fmt: skip
    _run(src, 0.4)
    assert src.stats.restarts >= 3
    assert "no adverts" in src.stats.last_error
    assert all(s.stopped for s in FakeScanner.made[:-1])  # every stalled scanner was stopped


@pytest.mark.timeout(10)
@pytest.mark.parametrize("exc", [FileNotFoundError("no system bus"), OSError("dbus gone")])
def test_no_bluez_is_a_one_line_source_error(exc: Exception) -> None:
    src = BleakSource(passive=False, scanner_factory=lambda **kw: FakeScanner(fail=exc, **kw))

    async def main() -> None:
        await src.run(lambda a: None)

    with pytest.raises(SourceError, match="BLE scanning unavailable"):
        asyncio.run(main())


def test_missing_beacons_alert_once_per_outage() -> None:
    h = BeaconHealth(["door", "shelf"], missing_after_s=60)
    assert h.newly_missing(0.0) == []
    h.heard("door", 10.0)
    assert h.newly_missing(59.0) == []
    assert [n for n, _ in h.newly_missing(61.0)] == ["shelf"]  # never heard since start
    assert h.newly_missing(65.0) == []
    assert [n for n, _ in h.newly_missing(71.0)] == ["door"]
    assert h.summary() == "0/2"
    h.heard("door", 80.0)
    assert h.summary() == "1/2" and h.newly_missing(100.0) == []
    assert [n for n, _ in h.newly_missing(141.0)] == ["door"]  # lost anew: alerted anew
