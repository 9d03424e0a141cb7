"""``edge-ops rollout`` (central/rollout.py, issue 20) against a real mosquitto and several fake
boxes: each box is the real downlink (sync/downlink.py: signature, version, ack) with a release
applier that answers as a box would after its probation, installed or rolled back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from contracts.mqtt import BrokerConfig
from contracts.signing import load_public_key
from sync.downlink import Downlink
from tests.box import release_kit

EDGE_OPS = os.path.join(os.path.dirname(sys.executable), "edge-ops")


class FakeBox:
    """The real downlink; the release itself is not installed: the box answers ``outcome``
    ("ok", "rollback" or "silent") in a ``release.installed`` ack, from another thread, like
    an agent that has restarted on the release and passed (or failed) its probation."""

    def __init__(self, port: int, public: str, state: Path, device: str, outcome: str) -> None:
        self.device, self.outcome = device, outcome
        self.pushes: list[dict[str, Any]] = []
        self.downlink = Downlink(
            BrokerConfig(host="127.0.0.1", port=port),
            "store-1",
            device,
            load_public_key(public),
            state / f"{device}.json",
            appliers={"release": self.apply},
        )

    def apply(self, body: dict[str, Any]) -> None:
        msg = self.downlink.applying
        assert msg is not None
        self.pushes.append(body)
        if self.outcome == "silent":
            return
        ok = self.outcome == "ok"
        ack = {
            "kind": "release.installed",
            "version": msg.version,
            "release": body["release"],
            "accepted": ok,
            "reason": "READY, central reached" if ok else "rolled back to 1.0: crash loop",
        }
        threading.Thread(target=self.downlink.publish_ack, args=(ack,)).start()


@contextmanager
def fleet(broker, tmp_path: Path, public: str, outcomes: list[str]) -> Iterator[list[FakeBox]]:
    boxes = [
        FakeBox(broker.port, public, tmp_path, f"box-{i}", outcome)
        for i, outcome in enumerate(outcomes)
    ]
    try:
        for box in boxes:
            assert box.downlink.start(wait_s=10), "a fake box did not subscribe"
        (tmp_path / "fleet.txt").write_text("".join(f"store-1 {b.device}\n" for b in boxes))
        yield boxes
    finally:
        for box in boxes:
            box.downlink.stop()


def rollout(
    broker, tmp_path: Path, key: Path, bundle: Path, *extra: str
) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run(
        [EDGE_OPS, "rollout", str(bundle), "--fleet", str(tmp_path / "fleet.txt"),
         "--key", str(key), "--version", "5", "--port", str(broker.port), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode, [json.loads(x) for x in done.stdout.splitlines()], done.stderr


@pytest.mark.timeout(90)
def test_canary_first_then_the_rest(tmp_path: Path, broker) -> None:
    key, public = release_kit.keypair(tmp_path)
    bundle = release_kit.bundle(tmp_path, key, "2.0")
    with fleet(broker, tmp_path, public, ["ok"] * 5) as boxes:
        code, lines, err = rollout(broker, tmp_path, key, bundle, "--canary", "0.2")
    assert code == 0, err
    assert lines[0] == {"wave": "canary", "boxes": ["store-1/box-0"]}
    assert lines[2]["wave"] == "wave 2" and len(lines[2]["boxes"]) == 4
    assert lines[-1]["summary"] == {
        "release": "2.0", "version": 5, "waves": [1, 4], "installed": 5, "failed": 0, "stopped": "",
    }  # fmt: skip
    assert all(len(b.pushes) == 1 and b.pushes[0]["release"] == "2.0" for b in boxes)


@pytest.mark.timeout(90)
def test_a_failed_canary_stops_the_rollout(tmp_path: Path, broker) -> None:
    key, public = release_kit.keypair(tmp_path)
    bundle = release_kit.bundle(tmp_path, key, "2.0")
    outcomes = ["ok", "rollback", "silent", "ok", "ok", "ok"]
    with fleet(broker, tmp_path, public, outcomes) as boxes:
        code, lines, err = rollout(broker, tmp_path, key, bundle, "--canary", "0.5", "--wait", "3")
    assert code == 1
    by_device = {x["device"]: x for x in lines if "device" in x}
    assert by_device["box-0"]["accepted"] is True
    assert by_device["box-1"] == {
        "store": "store-1", "device": "box-1", "accepted": False,
        "reason": "rolled back to 1.0: crash loop",
    }  # fmt: skip
    assert by_device["box-2"]["reason"] == "no final ack within 3 s"
    assert "2 of 3 boxes of the canary failed" in err and "3 boxes not pushed" in err
    # The rest never got the release.
    assert [len(b.pushes) for b in boxes] == [1, 1, 1, 0, 0, 0]
