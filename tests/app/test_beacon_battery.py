"""Store beacons that send no iBeacon still get their low-battery alert: a TLM-only beacon known
by its address, and an EID beacon whose encrypted TLM the agent opens with its key; an altered
eTLM is refused and counted, and the agent runs on. The adverts are raw advertising bytes in a
recorded trace, replayed by the agent's own ReplaySource, and the alerts are read off the real
in-store broker where the staff kiosks read them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from contracts import topics
from contracts.signing import generate_keypair
from edge_agent.app.agent import Agent
from edge_agent.box.firmware import ibeacon_adv
from edge_agent.clock import ScaledClock
from edge_agent.config import parse_config
from edge_agent.sensing.ble.sources import ReplaySource
from tests.app.test_agent_journey import DEMO, BusRecorder, demo_config
from tests.sensing.beacon_air import eid_adv, etlm_adv, heard, tampered, tlm_adv
from tests.watching import wait_for

T0 = 1_760_000_000.0
UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
K = 10
TILL_EIK = bytes.fromhex("8f1e2d3c4b5a69788796a5b4c3d2e1f0")
RACK_EIK = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1ff")
TILL_OFFSET = 1_759_000_000  # the till beacon's clock started when it was registered
ADDRESSES = {
    "fitting-room": "D0:0D:00:00:00:01",
    "till-eid": "5A:71:11:00:00:01",
    "rack-eid": "5A:7A:CC:00:00:02",
    "entrance-door": "C0:FF:EE:00:64:01",
}
BEACONS = [
    # Sends Eddystone-TLM and nothing else: known by its static address.
    {"name": "fitting-room", "zone": "womens", "address": ADDRESSES["fitting-room"]},
    # Eddystone-EID beacons: EID frames and encrypted TLM, opened with their keys.
    {
        "name": "till-eid",
        "zone": "entrance",
        "eik": TILL_EIK.hex(),
        "eid_rotation_exponent": K,
        "eid_clock_offset_s": TILL_OFFSET,
    },
    {"name": "rack-eid", "zone": "womens", "eik": RACK_EIK.hex()},
    # The iBeacon + TLM beacon of before, healthy.
    {"name": "entrance-door", "zone": "entrance", "uuid": UUID, "major": 100, "minor": 1},
]
TAMPERED = 5


def trace() -> list[str]:
    """20 s of the four beacons, one advert per beacon per second, as JSON lines."""
    lines = []
    for i in range(20):
        ts = T0 + i
        till_t, rack_t = int(ts) - TILL_OFFSET, int(ts)  # rack-eid's clock is Unix time
        # The fitting-room cell hovers at the threshold: still one episode, one alert.
        adverts = [
            (tlm_adv(2100 if i < 10 else 2405 - i % 2 * 10), "fitting-room"),
            (eid_adv(TILL_EIK, till_t, K) if i % 2 else etlm_adv(2050, TILL_EIK, till_t, K),
             "till-eid"),
            (eid_adv(RACK_EIK, rack_t, K) if i % 2 else etlm_adv(3100, RACK_EIK, rack_t, K),
             "rack-eid"),
            (ibeacon_adv(UUID, 100, 1, -59) + tlm_adv(3000)[3:], "entrance-door"),
        ]  # fmt: skip
        if i >= 20 - TAMPERED:
            # A flat battery's frame with its MIC altered: were it read, 1900 mV would alert.
            bad = tampered(etlm_adv(1900, RACK_EIK, rack_t, K, salt=bytes([i, 0x11])))
            adverts.append((bad, "rack-eid"))
        for raw, name in adverts:
            lines.append(heard(raw, ADDRESSES[name], ts + 0.01 * len(lines) % 1).to_json())
    return lines


@pytest.mark.timeout(60)
def test_beacons_without_ibeacon_get_one_battery_alert_each(tmp_path: Path, broker) -> None:
    replay = tmp_path / "beacons.jsonl"
    replay.write_text("\n".join(trace()) + "\n")
    cfg = demo_config(tmp_path, broker.port, generate_keypair()[1], camera=False)
    data = cfg.model_dump(mode="json", exclude_none=True)
    data["ble"]["beacons"] = BEACONS
    data["ble"]["replay_file"] = str(replay)
    cfg = parse_config(data, base_dir=DEMO)
    alerts = BusRecorder(
        broker.host, broker.port, topics.alerts(cfg.store.store_id), live_only=True
    )
    clock = ScaledClock(T0, 10.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(replay, clock))
    try:
        agent.start_sync()
        asyncio.run(agent.run(until=T0 + 21))
        battery = lambda: [m for m in alerts.messages if m["kind"] == "beacon_battery_low"]  # noqa: E731
        assert wait_for(lambda: len(battery()) >= 2, 10)
    finally:
        agent.close(flush_timeout_s=2)
        alerts.close()

    # One alert per flat battery, naming the beacon and where it is; the eTLM one was opened.
    # (An open alert is published again, same id, whenever the agent's bus reconnects: that is
    # the same alert, so the count is of ids.)
    got = sorted(
        {m["alert_id"]: (m["beacon"], m["zone_id"], m["battery_mv"]) for m in battery()}.values()
    )
    assert got == [("fitting-room", "womens", 2100), ("till-eid", "entrance", 2050)]
    texts = {m["beacon"]: m["text"] for m in battery()}
    assert (
        texts["fitting-room"]
        == "Beacon fitting-room (Womenswear) battery low (2100 mV): replace it"
    )
    assert "(Entrance)" in texts["till-eid"]
    # The altered frames were refused and counted, never read as 1900 mV.
    counts = agent.presence.counts
    assert counts.etlm_refused == TAMPERED and agent.stats.decode_errors >= TAMPERED
    # Each EID beacon's first eTLM came before its first EID: nobody to pair it with yet.
    assert counts.untied_tlm == 2
    # Every beacon was heard, through its address, its EID or its iBeacon.
    assert agent.presence.beacon_health.summary() == "4/4"
    # The store beacons' EIDs are not shoppers.
    assert agent.stats.unresolved_tokens == 0 and agent.stats.zone_entries == 0

    # Central gets each beacon's state once, by name; no address or key leaves the box.
    with sqlite3.connect(cfg.paths_resolved.outbox_db) as db:
        bodies = [b for (b,) in db.execute("SELECT body FROM outbox")]
    telemetry = [
        json.loads(b)["data"] for b in bodies if "beacon.telemetry" in json.loads(b)["type"]
    ]
    assert sorted((t["beacon"], t["low_battery"]) for t in telemetry) == [
        ("entrance-door", False),
        ("fitting-room", True),
        ("rack-eid", False),
        ("till-eid", True),
    ]
    wire = " ".join(bodies + [json.dumps(m) for m in alerts.messages]).lower()
    for secret in [*ADDRESSES.values(), TILL_EIK.hex(), RACK_EIK.hex()]:
        assert secret.lower() not in wire
