"""The log relay on its own (edge_agent/box/log_relay.py): WARN+ only, redacted, coalesced,
bounded by its ring buffer and its token bucket, with a summary of what it held back. The
whole path (a running agent, mosquitto, the CDP, `edge-ops logs`) is in
tests/app/test_fleet_observability.py."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

from contracts.events import TYPE_OF, DeviceLog, make_event, parse_event
from edge_agent.box.log_relay import SUMMARY_LOGGER, LogRelay, install, uninstall

pytestmark = pytest.mark.timeout(30)


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of this test's own, not propagating: the relay sees only what the test logs."""
    lg = logging.getLogger(f"test.relay.{uuid.uuid4().hex[:6]}")
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    yield lg
    lg.handlers.clear()


def relay_on(lg: logging.Logger, **kw: object) -> tuple[LogRelay, FakeMonotonic]:
    mono = FakeMonotonic()
    r = LogRelay(monotonic=mono, **kw)  # type: ignore[arg-type]
    lg.addHandler(r)
    return r, mono


def test_warn_and_above_only_redacted_and_coalesced(logger: logging.Logger) -> None:
    r, _ = relay_on(logger)
    logger.info("not relayed")
    logger.debug("nor this")
    for _ in range(5):
        logger.warning("beacon %s silent", "AA:BB:CC:DD:EE:FF")
    logger.error("token %s refused", "0123456789abcdef0123")
    try:
        raise OSError("disk at 11:22:33:44:55:66 gone")
    except OSError:
        logger.critical("cannot write", exc_info=True)
    out = r.drain()
    recs = [rec for _, rec in out]
    assert [(x.level, x.count) for x in recs] == [("warning", 5), ("error", 1), ("critical", 1)]
    assert recs[0].message == "beacon <addr> silent" and recs[0].last is not None
    assert recs[1].message == "token <hex> refused"
    assert recs[2].message == "cannot write [OSError: disk at <addr> gone]"
    text = " ".join(x.message for x in recs)
    assert "AA:BB" not in text and "0123456789abcdef" not in text and "11:22" not in text
    # Each one is a valid device.log.v1 event, time = the first occurrence.
    when, first = out[0]
    ev = parse_event(make_event(first, store_id="s", device_id="d", time=when).to_json())
    assert ev.type == TYPE_OF[DeviceLog] and ev.payload() == first
    assert r.drain() == []  # drained: nothing twice


def test_a_flood_is_cut_to_the_burst_and_one_summary(logger: logging.Logger) -> None:
    r, mono = relay_on(logger, capacity=100, burst=20, per_minute=60)
    for i in range(10_000):
        logger.warning("bad message %d", i)
    out = [rec for _, rec in r.drain()]
    # The ring buffer kept the last 100, the bucket let 20 of them through; the summary waits
    # for a token (none left now), so it comes with the next drain that has one.
    assert len(out) == 20 and all(x.suppressed == 0 for x in out)
    assert out[0].message == "bad message 9900"
    assert r.counts.suppressed == 10_000 - 20
    assert r.drain() == []  # no token yet
    mono.t += 1.0  # one token (60/min)
    [summary] = [rec for _, rec in r.drain()]
    assert summary.logger == SUMMARY_LOGGER and summary.suppressed == 9_980
    assert summary.message.startswith("9980 more suppressed")
    assert r.drain() == []  # said once
    # Refilled after a minute: the burst goes through again.
    mono.t += 60.0
    for i in range(30):
        logger.warning("again %d", i)
    out = [rec for _, rec in r.drain()]
    assert len(out) == 20 and r.counts.relayed == 41  # the summary counts too


def test_a_steady_flood_cannot_starve_the_summary(logger: logging.Logger) -> None:
    """Each refilled token would go to a new record and the summary never come: once it has
    waited ``summary_s`` it goes first."""
    r, mono = relay_on(logger, burst=1, per_minute=60, summary_s=30)
    summaries = []
    for step in range(40):
        for i in range(3):
            logger.warning("flood %d.%d", step, i)
        recs = [rec for _, rec in r.drain()]
        assert len(recs) <= 1  # the bucket: one a second
        summaries += [x for x in recs if x.suppressed]
        mono.t += 1.0
    assert len(summaries) == 1 and summaries[0].suppressed >= 2 * 30
    assert summaries[0].logger == SUMMARY_LOGGER


def test_the_last_drain_says_what_it_suppressed(logger: logging.Logger) -> None:
    r, _ = relay_on(logger, capacity=10, burst=2, per_minute=1)
    for i in range(5):
        logger.error("e%d", i)
    assert len(r.drain()) == 2
    [(_, summary)] = r.drain(final=True)
    assert summary.suppressed == 3


def test_install_replaces_an_earlier_relay() -> None:
    root = logging.getLogger()
    a, b = install(LogRelay()), install(LogRelay())
    try:
        assert a not in root.handlers and b in root.handlers
    finally:
        uninstall(b)
    assert b not in root.handlers
