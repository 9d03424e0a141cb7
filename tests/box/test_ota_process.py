"""OTA end to end with real processes (issue 20): a real mosquitto, the real agent run by
``edge-agent release supervise`` (what systemd does on a box: the guard before each start,
``current/bin/edge-agent run``, restarts), releases pushed with ``edge-ops`` and their final
acks awaited: a good release passes probation, one that crashes on start is rolled back and
acked with the reason, a wrong architecture and a bundle signed by another key are refused
with the old release running on. The releases are tiny bundles (tests/box/release_kit.py)
whose entry point runs this checkout's agent, or crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contracts import topics
from contracts.release import push_body
from contracts.signing import load_public_key
from demo import scenario
from edge_agent.box.releases import ReleaseStore
from testbed.procs import terminate
from tests.box import release_kit

DEMO = Path(scenario.__file__).parent
BIN = os.path.dirname(sys.executable)
STORE, DEVICE = "store-0042", "box-ota-1"


def write_config(tmp_path: Path, port: int, public: str, root: Path) -> Path:
    text = (DEMO / "store.toml").read_text()
    for old, new in (
        ("port = 1883", f"port = {port}"),
        ('device_id = "box-entrance-1"', f'device_id = "{DEVICE}"'),
        (
            'replay_file = "data/trace.jsonl.gz"',
            f'replay_file = "{DEMO / "data" / "trace.jsonl.gz"}"',
        ),
        ("replay_speed = 4.0", "replay_speed = 1.0"),  # long enough for every step below
        ('ops_public_key = "REPLACED-BY-DEMO"', f'ops_public_key = "{public}"'),
        ('state_dir = "var"', f'state_dir = "{tmp_path / "var"}"'),
        ('path = "store-map.toml"', f'path = "{DEMO / "store-map.toml"}"'),
        ("heartbeat_s = 30", "heartbeat_s = 0.5"),  # probation is checked on the heartbeat
        ("[camera]\nenabled = true", "[camera]\nenabled = false"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    text += f'\n[release]\nroot = "{root}"\nprobation_s = 1\nmax_starts = 2\ntimeout_s = 60\n'
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


class Health:
    """The box's retained health, as ops would read it."""

    def __init__(self, port: int) -> None:
        self.last: dict[str, Any] = {}
        self.cond = threading.Condition()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topics.health(STORE, DEVICE), qos=1)
        self.client.loop_start()

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        with self.cond:
            self.last = json.loads(msg.payload).get("sensors", {})
            self.cond.notify_all()

    def wait(self, timeout: float, **want: str) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: all(self.last.get(k) == v for k, v in want.items()), timeout
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def supervised(cfg: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [f"{BIN}/edge-agent", "release", "supervise", "-c", str(cfg), "--restart-delay", "0.2"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        # SIGTERM is forwarded to the agent; both are gone when this returns.
        assert terminate(proc, timeout=30) == 0, log.read_text()[-3000:]


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """A plain HTTP file server on loopback (the fleet's download host), stopped after."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(directory))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def push(port: int, key: Path, body: dict[str, Any], version: int, wait: float) -> dict[str, Any]:
    """``edge-ops push release ... --wait-ack``: its last line is the final ack."""
    body_file = key.parent / f"release-push-{version}.json"
    body_file.write_text(json.dumps(body))
    done = subprocess.run(
        [f"{BIN}/edge-ops", "push", "release", str(body_file), "--store", STORE, "--device",
         DEVICE, "--version", str(version), "--key", str(key), "--port", str(port),
         "--wait-ack", str(wait)],
        capture_output=True, text=True, timeout=wait + 30,
    )  # fmt: skip
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert lines, done.stderr
    return dict(lines[-1])


@pytest.mark.timeout(240)
def test_release_pushed_kept_crashing_one_rolled_back_bad_ones_refused(
    tmp_path: Path, broker
) -> None:
    key, public = release_kit.keypair(tmp_path / "ops")
    root = tmp_path / "opt"
    store = ReleaseStore(root, load_public_key(public))
    store.install(release_kit.bundle(tmp_path, key, "1.0"))
    store.switch("1.0")
    store.confirm("1.0", "factory install")
    store.clear_result()
    cfg = write_config(tmp_path, broker.port, public, root)
    health = Health(broker.port)
    log = tmp_path / "supervise.log"
    try:
        with supervised(cfg, log):
            assert health.wait(60, release_running="1.0", downlink_subscribed="yes"), (
                log.read_text()[-3000:]
            )

            # A good release: installed beside 1.0, switched, restarted, READY, central reached,
            # up for its probation time: kept, and acked as installed.
            # It is fetched from a URL, as ops push releases too big to travel inline.
            bundle = release_kit.bundle(tmp_path, key, "2.0")
            with served(bundle.parent) as base:
                good = push_body(bundle, url=f"{base}/{bundle.name}")
                ack = push(broker.port, key, good, 1, wait=90)
            assert "data_b64" not in good["bundle"]
            assert ack["kind"] == "release.installed" and ack["accepted"] is True, ack
            assert "READY, central reached" in ack["reason"]
            assert store.running() == "2.0" and store.on_probation("2.0") is None

            # A release that crashes on start: the guard rolls it back after max_starts starts,
            # and 2.0, running again, acks the failure with the reason.
            assert health.wait(30, release_running="2.0", downlink_subscribed="yes")
            crash = push_body(release_kit.bundle(tmp_path, key, "3.0", crash=3))
            ack = push(broker.port, key, crash, 2, wait=90)
            assert ack["kind"] == "release.installed" and ack["accepted"] is False, ack
            assert "rolled back to 2.0" in ack["reason"]
            assert "last exit status 3" in ack["reason"], ack["reason"]
            assert store.running() == "2.0" and store.complete("2.0")

            # Another architecture: refused in the first ack, nothing fetched or changed.
            assert health.wait(30, release_running="2.0", downlink_subscribed="yes")
            before = sorted(os.listdir(root / "releases"))
            arm = push_body(release_kit.bundle(tmp_path / "arm", key, "4.0", arch="aarch64"))
            ack = push(broker.port, key, arm, 3, wait=30)
            assert ack["kind"] == "release" and ack["accepted"] is False, ack
            assert "built for aarch64" in ack["reason"]

            # A genuine push of a bundle another key signed: refused after the download.
            other, _ = release_kit.keypair(tmp_path / "other")
            forged = push_body(release_kit.bundle(tmp_path / "other", other, "5.0"))
            ack = push(broker.port, key, forged, 4, wait=30)
            assert ack["kind"] == "release.installed" and ack["accepted"] is False, ack
            assert "bad signature" in ack["reason"] and "2.0 runs on" in ack["reason"]
            assert sorted(os.listdir(root / "releases")) == before
            assert store.running() == "2.0"
    finally:
        health.close()
