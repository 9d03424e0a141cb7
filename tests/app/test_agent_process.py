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
