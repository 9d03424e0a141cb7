"""Fleet observability end to end with real parts: `edge-agent run` on a real mosquitto, a CDP
sink storing what the uplink delivers, and `edge-ops logs` reading it (and following it live).

A flood of 10,000 refused bus events, each naming a MAC address, reaches central as at most the
relay's bound of records plus a suppression summary, every one redacted; the heartbeat at the
CDP carries the metrics summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from central.fleet_status import collect
from contracts import topics
from contracts.events import AudienceSample, make_event
from contracts.mqtt import connect, make_client
from edge_agent.config import BrokerConfig
from tests.app.test_agent_process import cdp_sink, write_config
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]
MAC = "AA:BB:CC:DD:EE:FF"
FLOOD = 10_000
BURST, PER_MINUTE = 40, 30.0


def ops_logs(db: Path, store: str, *extra: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "central.ops_cli", "logs", "--store", store, "--db", str(db),
         "--limit", "10000", *extra],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


class Follower:
    """`edge-ops logs --follow` in its own process; its lines collected by a thread."""

    def __init__(self, db: Path, store: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "central.ops_cli", "logs", "--store", store, "--db", str(db),
             "--follow", "--interval", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self._reader.join(5)
        return code


def flood(broker, store: str, screen: str) -> None:
    """FLOOD refused events on a screen's topic: valid CloudEvents whose source is not this
    box (the agent warns about each, naming the source: a MAC address in it)."""
    bcfg = BrokerConfig(host=broker.host, port=broker.port)
    c = make_client(f"flood-{uuid.uuid4().hex[:6]}", bcfg)
    connect(c, bcfg, clean_start=True, session_expiry_s=0)
    c.loop_start()
    try:
        assert wait_for(c.is_connected, 10)
        topic = topics.screen_events(store, screen)
        last = None
        for i in range(FLOOD):
            ev = make_event(
                AudienceSample(screen_id=screen, people=1, watchers=0),
                store_id="elsewhere",
                device_id=f"n{i}-{MAC}",
            )
            last = c.publish(topic, ev.to_json(), qos=1)
        assert last is not None
        last.wait_for_publish(60)
    finally:
        c.loop_stop()
        c.disconnect()


@pytest.mark.timeout(240)
def test_warnings_reach_central_redacted_and_bounded_with_metrics(tmp_path: Path, broker) -> None:
    device = f"box-obs-{uuid.uuid4().hex[:4]}"
    cfg = write_config(tmp_path, broker.port, device, speed=1)
    text = cfg.read_text().replace("heartbeat_s = 30", "heartbeat_s = 1")
    text += (
        f"\n[metrics]\nport = 0\n\n[log_relay]\nburst = {BURST}\nper_minute = {PER_MINUTE}\n"
        "flush_s = 0.5\n"
    )
    cfg.write_text(text)
    store = "store-0042"
    db = tmp_path / "cdp.db"
    bcfg = BrokerConfig(host=broker.host, port=broker.port)
    log_file = tmp_path / "agent.log"
    exe = os.path.join(os.path.dirname(sys.executable), "edge-agent")
    with cdp_sink(broker, tmp_path) as sink, open(log_file, "w") as out:
        # The agent's own log goes to a file: 10,000 warnings would fill a pipe nobody reads.
        proc = subprocess.Popen([exe, "run", "-c", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
        follower = None
        try:

            def heartbeat() -> dict | None:
                for st, dev, _, data in sink.latest_heartbeats():
                    if (st, dev) == (store, device) and data.get("metrics"):
                        return data
                return None

            # A heartbeat with metrics at the CDP: the agent runs, its uplink delivers.
            assert wait_for(heartbeat, 90, step=0.2), log_file.read_text()[-3000:]
            hb = heartbeat()
            assert hb is not None
            m = hb["metrics"]
            assert m["rss_mb"] > 10 and m["disk_free_mb"] > 0 and m["central_connected"]
            assert m["bus_connected"] and m["cpu_percent"] >= 0
            assert set(m) >= {"adverts_per_s", "decide_p99_ms", "outbox_depth", "log_suppressed"}
            # Small: the whole summary is a few hundred bytes.
            assert len(json.dumps(m)) < 600
            # The same summary in the retained health `edge-ops status` reads.
            [row] = [r for r in collect(bcfg, store=store, wait_s=1.0) if r["device"] == device]
            assert row["metrics"]["rss_mb"] > 10

            follower = Follower(db, store)
            started = time.monotonic()
            flood(broker, store, "screen-entrance")

            def seen() -> int:
                h = heartbeat() or {}
                return int(h.get("dropped", {}).get("bus:source", 0))

            # The agent has taken in the whole flood (its heartbeat counts the refusals)...
            assert wait_for(lambda: seen() >= FLOOD, 120, step=0.5), seen()
            # ... and the relay's summary of it reached the CDP and the follower.
            assert wait_for(lambda: any("more suppressed" in x for x in follower.lines), 60), (
                follower.lines[-5:]
            )
            # The heartbeat counts what the relay held back.
            assert wait_for(
                lambda: (heartbeat() or {}).get("metrics", {}).get("log_suppressed", 0) > 0, 30
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0  # its outbox flushed: the last drain is at the CDP
            elapsed = time.monotonic() - started
            assert follower.stop() == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if follower is not None:
                follower.stop()

    lines = ops_logs(db, store, "--device", device)
    refused = [x for x in lines if "is not this box" in x]
    summaries = [x for x in lines if "more suppressed" in x]
    # Redacted: the MAC never reaches central, its mask does.
    assert refused and all("<addr>" in x for x in refused)
    assert not any(MAC in x for x in lines)
    # Bounded: at most the burst plus what the bucket refilled while the flood lasted (the
    # startup's own warnings took from the same bucket), and the summaries.
    bound = BURST + int(PER_MINUTE * elapsed / 60) + 1
    assert len(refused) + len(summaries) <= bound + len(summaries), (len(refused), bound)
    assert 1 <= len(summaries) <= 1 + int(elapsed / 30) + 1
    # Nothing lost silently: what was not relayed was counted in a summary.
    relayed = sum(1 for x in refused)
    suppressed = sum(int(x.split(": ", 1)[1].split(" ", 1)[0]) for x in summaries)
    assert relayed + suppressed >= FLOOD
    # The follower printed the same records as they arrived (the last drain may come after
    # it stopped).
    assert set(follower.lines) <= set(lines)
    assert any("is not this box" in x for x in follower.lines)
    # The one-line format: time, box, level, logger, message.
    assert f" {store}/{device} WARNING edge_agent: bus: refused event on" in refused[0]
