"""`edge-agent run` as the box runs it: its own process, a config file, a broker, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from central.cdp_sink import CdpSink
from contracts.signing import generate_keypair
from demo import scenario
from edge_agent.config import BrokerConfig
from sync import sqlite_guard
from sync.outbox import Outbox
from tests.watching import wait_for

DEMO = Path(scenario.__file__).parent


def write_config(tmp_path: Path, port: int, device: str, speed: float) -> Path:
    text = (DEMO / "store.toml").read_text()
    text = text.replace("port = 1883", f"port = {port}")
    text = text.replace('device_id = "box-entrance-1"', f'device_id = "{device}"')
    text = text.replace(
        'replay_file = "data/trace.jsonl.gz"', f'replay_file = "{DEMO / "data" / "trace.jsonl.gz"}"'
    )
    text = text.replace("replay_speed = 4.0", f"replay_speed = {speed}")
    text = text.replace(
        'ops_public_key = "REPLACED-BY-DEMO"', f'ops_public_key = "{generate_keypair()[1]}"'
    )
    text = text.replace('state_dir = "var"', f'state_dir = "{tmp_path / "var"}"')
    p = tmp_path / "agent.toml"
    p.write_text(text)
    tomllib.loads(text)
    return p


def start_agent(cfg: Path) -> subprocess.Popen[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "edge-agent")
    return subprocess.Popen(
        [exe, "run", "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@contextmanager
def agent_process(cfg: Path) -> Iterator[subprocess.Popen[str]]:
    proc = start_agent(cfg)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextmanager
def cdp_sink(broker, tmp_path: Path) -> Iterator[CdpSink]:
    sink = CdpSink(
        BrokerConfig(host=broker.host, port=broker.port), tmp_path / "cdp.db", group=None
    )
    sink.start()
    try:
        yield sink
    finally:
        sink.stop(end_session=True)


def stored(sink: CdpSink, device: str) -> int:
    """Distinct events of ``device`` stored at the CDP now."""
    rows = sink._db.execute("SELECT count(*) FROM events WHERE device_id = ?", (device,))
    return int(rows.fetchone()[0])


def device_events(sink: CdpSink, device: str, want: int, timeout: float = 15.0) -> int:
    """Distinct events of ``device`` stored at the CDP, waiting up to ``timeout`` for ``want``."""
    wait_for(lambda: stored(sink, device) >= want, timeout, step=0.1)
    return stored(sink, device)


@pytest.mark.timeout(90)
def test_flat_out_replay_delivers_everything_and_exits(tmp_path: Path, broker) -> None:
    device = "box-proc-1"
    cfg = write_config(tmp_path, broker.port, device, speed=0)
    with cdp_sink(broker, tmp_path) as sink, agent_process(cfg) as proc:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        with Outbox(tmp_path / "var" / "outbox.db") as ob:
            accepted = ob.total_accepted()
            assert ob.depth() == 0  # a clean exit flushes the outbox
        # Every visit entered and left, and each store beacon reported its battery once.
        assert accepted >= 2 * len(scenario.VISITS) + len(scenario.BEACONS)
        assert device_events(sink, device, accepted) == accepted


@pytest.mark.timeout(180)
def test_sigterm_stops_cleanly_and_kill9_loses_nothing(tmp_path: Path, broker) -> None:
    device = "box-proc-2"
    cfg = write_config(tmp_path, broker.port, device, speed=4)
    with cdp_sink(broker, tmp_path) as sink:
        with agent_process(cfg) as proc:
            # Mid-run (events flowing, however slow the machine), not after a fixed time.
            assert wait_for(lambda: stored(sink, device) >= 3, timeout=60, step=0.1), "no events"
            assert proc.poll() is None, "the replay ended before the kill"
            proc.kill()  # kill -9 mid-run: whatever was accepted is on disk
            proc.wait(10)
        with Outbox(tmp_path / "var" / "outbox.db") as ob:
            accepted_before = ob.total_accepted()
            assert ob.integrity_check() == "ok"
        assert accepted_before > 0
        # Restart: the new process ships what the dead one left, then SIGTERM stops it cleanly.
        with agent_process(cfg) as proc:
            # The new process runs and ships: more than the dead one ever accepted is stored.
            more = wait_for(lambda: stored(sink, device) > accepted_before, timeout=60, step=0.1)
            assert more, "the restarted agent delivered nothing"
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, out
        with Outbox(tmp_path / "var" / "outbox.db") as ob:
            accepted = ob.total_accepted()
            assert ob.depth() == 0
        assert accepted > accepted_before
        assert device_events(sink, device, accepted) == accepted


def test_missing_trace_is_one_line(tmp_path: Path, broker) -> None:
    cfg = write_config(tmp_path, broker.port, "box-proc-3", speed=0)
    cfg.write_text(cfg.read_text().replace("trace.jsonl.gz", "nope.jsonl.gz"))
    # `config check` says so first (exit 2, as for any config error), and `run` refuses the same.
    check = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "config", "check", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 2, check.stdout + check.stderr
    assert "ble.replay_file: no such file" in check.stderr
    proc = start_agent(cfg)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "ble.replay_file" in out and "Traceback" not in out


@pytest.mark.timeout(180)
def test_a_damaged_outbox_is_repaired_at_start_and_the_agent_delivers(
    tmp_path: Path, broker
) -> None:
    """Issue 14: a broken outbox.db used to make every start exit 1 with a traceback."""
    device = "box-proc-4"
    cfg = write_config(tmp_path, broker.port, device, speed=4)
    db = tmp_path / "var" / "outbox.db"
    with cdp_sink(broker, tmp_path) as sink:
        with agent_process(cfg) as proc:
            assert wait_for(lambda: stored(sink, device) >= 3, timeout=60, step=0.1), "no events"
            proc.kill()  # events still pending, a WAL not checkpointed
            proc.wait(10)
        with Outbox(db) as ob:
            accepted_before = ob.total_accepted()
        # The 100-byte header overwritten: "file is not a database" at the first statement.
        with open(db, "r+b") as fh:
            fh.write(bytes(100))
        with agent_process(cfg) as proc:

            def reported() -> bool:
                rows = sink._db.execute(
                    "SELECT body FROM events WHERE device_id = ? AND type LIKE '%heartbeat%'",
                    (device,),
                ).fetchall()
                return any("outbox_recovered" in r[0] for r in rows)

            # It runs (no exit 1), ships what the dead one left and more, and says so.
            more = wait_for(
                lambda: (
                    proc.poll() is not None
                    or (stored(sink, device) > accepted_before and reported())
                ),
                60,
                step=0.1,
            )
            if proc.poll() is not None:
                out, _ = proc.communicate()
                pytest.fail(f"the agent exited {proc.returncode}:\n{out[-3000:]}")
            assert more, f"delivered {stored(sink, device)}, heartbeat said so: {reported()}"
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, out
        assert "Traceback" not in out
        (line,) = [ln for ln in out.splitlines() if "is damaged" in ln]
        assert "outbox.db.corrupt-" in line and "salvaged" in line
        assert len(sqlite_guard.aside_sets(db)) == 1
        with Outbox(db) as ob:
            accepted = ob.total_accepted()
            assert ob.recovered is None and ob.depth() == 0
        assert accepted > accepted_before
        # Every accepted event reached the CDP once, and no sequence number was used twice.
        assert device_events(sink, device, accepted) == accepted
        n, distinct = sink._db.execute(
            "SELECT count(*), count(DISTINCT sequence) FROM events WHERE device_id = ?",
            (device,),
        ).fetchone()
        assert n == distinct == accepted


@pytest.mark.timeout(240)
def test_caps_touches_and_kpis_survive_a_kill9(tmp_path: Path, broker) -> None:
    """Issue 22.5: a restarted agent showed Alice her once-a-day offer again, left her next
    purchase unattributed and started the day's KPIs from zero."""
    import copy
    import json

    import paho.mqtt.client as mqtt

    from contracts import topics
    from edge_agent.app.agent import Agent
    from edge_agent.config import load_for_agent
    from tests.app.test_agent_closed_loop import receipt

    device = "box-proc-5"
    cfg_path = write_config(tmp_path, broker.port, device, speed=4)
    cfg = load_for_agent(cfg_path)
    assert cfg is not None
    # The box's state as central's pushes leave it: the slice and a bundle whose trail-shoes
    # offer may be shown to a shopper once a day.
    seed = Agent(cfg, ble_source=None)
    seed.profiles.load_snapshot(scenario.profile_slice(), version=1)
    bundle = copy.deepcopy(scenario.CAMPAIGNS_V1)
    trail = next(c for c in bundle["campaigns"] if c["id"] == "trail-shoes")
    trail["caps"] = {"per_shopper_per_day": 1}
    seed.content.replace(bundle)
    seed.close()

    def offers() -> list[dict]:
        rows = sink._db.execute(
            "SELECT body FROM events WHERE device_id = ? AND type LIKE '%offer.shown%'",
            (device,),
        ).fetchall()
        return [json.loads(r[0])["data"] for r in rows]

    def alice_offers() -> int:
        return sum(1 for o in offers() if o.get("content_id") == "trail-shoes:personalised")

    def latest(kind: str) -> list[dict]:
        rows = sink._db.execute(
            "SELECT body FROM events WHERE device_id = ? AND type LIKE ? ORDER BY"
            " CAST(sequence AS INTEGER)",
            (device, f"%{kind}%"),
        ).fetchall()
        return [json.loads(r[0])["data"] for r in rows]

    def alice_exits() -> int:
        return sum(1 for e in latest("zone.left") if e.get("profile_id") == "cdp-p-1001")

    pos = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pos.connect(broker.host, broker.port)
    pos.loop_start()
    store = cfg.store.store_id
    with cdp_sink(broker, tmp_path) as sink:
        try:
            with agent_process(cfg_path) as proc:
                assert wait_for(lambda: alice_offers() == 1, timeout=90, step=0.1), offers()
                proc.kill()  # kill -9 right after her offer reached the CDP
                proc.wait(10)
            shown_before = len(offers())
            exits_before = alice_exits()
            # Her purchase comes while the box is down; the till's bridge keeps it retained.
            pos.publish(
                topics.pos_receipts(store), receipt("R-ALICE", 66, "cdp-p-1001"), qos=1, retain=True
            ).wait_for_publish(5)
            # The same trace again, slower: Alice walks up to the screen again at 18 s.
            write_config(tmp_path, broker.port, device, speed=3)
            with agent_process(cfg_path) as proc:
                # Past Alice's second visit (she leaves at 62 s), then a clean stop.
                def past_alice() -> bool:
                    return alice_exits() > exits_before or proc.poll() is not None

                assert wait_for(past_alice, timeout=120, step=0.2), latest("zone.left")
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=30)
                assert proc.returncode == 0, out
        finally:
            pos.publish(topics.pos_receipts(store), b"", qos=1, retain=True).wait_for_publish(5)
            pos.loop_stop()
            pos.disconnect()
        # The cap held across the kill: she saw her personal offer once, not once per process.
        assert alice_offers() == 1, offers()
        # The purchase made after the restart is attributed to the offer shown before it.
        (conv,) = latest("conversion")
        assert conv["attributed_campaign_id"] == "trail-shoes" and conv["group"] == "exposed"
        # The day's KPIs carried on: the last heartbeat counts the offers of both processes.
        kpis = latest("heartbeat")[-1]["kpis"]
        assert kpis["offers_shown"] == len(offers()) > shown_before
        assert kpis["campaigns"]["trail-shoes"]["exposed_conversions"] == 1
        assert "carried on with" in out  # and it says so at start
