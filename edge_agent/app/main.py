"""``edge-agent run``: the agent as a service. Picks the BLE source and the camera from the
config, builds the ``Agent``, runs it until SIGTERM/SIGINT or a restart request, and exits with
the status systemd should see (0, 1 on a source that failed, 2 on a bad config, 75 to restart).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from edge_agent.app.agent import AdvertSource, Agent
from edge_agent.clock import Clock, SystemClock

log = logging.getLogger("edge_agent")


def run_agent_cli(config_path: str) -> int:
    import signal
    import sys

    from edge_agent.clock import ScaledClock, TraceClock
    from edge_agent.config import load_for_agent
    from edge_agent.downlink import config_apply
    from edge_agent.downlink.probation import file_sha256
    from edge_agent.sensing.ble.sources import (
        BleakSource,
        ReplaySource,
        SerialSource,
        SourceError,
        first_timestamp,
    )

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    note = config_apply.on_start(Path(config_path))
    if note:
        log.error("%s", note)
    cfg = load_for_agent(config_path)
    if cfg is None:
        return 2
    clock: Clock = SystemClock()
    b = cfg.ble
    if b.source == "replay":
        assert b.replay_file is not None
        try:
            start = first_timestamp(b.replay_file)
        except (SourceError, OSError) as exc:
            print(f"edge-agent: ble.replay_file: {exc}", file=sys.stderr)
            return 1
        clock = ScaledClock(start, b.replay_speed) if b.replay_speed > 0 else TraceClock(start)
        source: AdvertSource = ReplaySource(b.replay_file, clock)
    elif b.source == "serial":
        source = SerialSource(b.serial_port or "", b.serial_baud)
    else:
        source = BleakSource(adapter=b.adapter, passive=b.passive_scan, stall_s=b.scan_stall_s)
    frames = opener = None
    # Issue 20: by default the camera runs in a worker process the agent supervises, and
    # OpenCV is never imported here; "thread" keeps it in this process as before.
    in_process = cfg.camera is not None and cfg.camera.enabled and cfg.camera.run_in == "thread"
    if cfg.camera and in_process:
        from edge_agent.sensing.camera.sources import CameraError, open_source

        cam = cfg.camera

        def opener() -> Any:
            return open_source(cam.source, clock=clock, width=cam.width, height=cam.height)

        try:
            frames = opener()
        except CameraError as exc:
            # BLE presence goes on; a configured but dead camera rules out personal content
            # until the camera thread manages to open it (it retries with backoff).
            log.error("camera not available yet: %s", exc)
    agent = Agent(
        cfg,
        clock=clock,
        ble_source=source,
        frame_source=frames,
        camera_opener=opener,
        camera_worker=not in_process,
    )
    agent.handlers.config_path = Path(config_path)
    agent.handlers.config_sha256 = file_sha256(Path(config_path))
    agent.start_sync()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        loop.run_until_complete(agent.run())
    except SourceError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    finally:
        agent.close()
        loop.close()
    return agent.exit_code
