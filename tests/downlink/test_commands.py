"""Commands and configs pushed by central ops: checked, applied, answered; a bad config never
sticks (atomic apply, probation, rollback to the last good file)."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import tomllib
import uuid
from pathlib import Path

import pytest

from contracts import topics
from contracts.mqtt import connect, make_client
from contracts.screen_protocol import ScreenCommand
from contracts.signing import expires_in, generate_keypair, sign_message
from edge_agent.config import parse_config
from edge_agent.downlink import config_apply
from edge_agent.downlink.commands import RESTART_EXIT_STATUS, parse_command, target_screens
from tests.app.test_agent_process import DEMO, agent_process

PRIV, PUB = generate_keypair()
SCREENS = ["screen-entrance", "screen-shoes"]


# ---- the command itself ------------------------------------------------------------------
def test_commands_make_sense_or_say_why() -> None:
    assert parse_command({"command": "restart", "reason": "ops ticket 12"}, SCREENS).reason
    shot = parse_command({"command": "screenshot", "screen": "*"}, SCREENS)
    assert target_screens(shot, SCREENS) == sorted(SCREENS)
    one = parse_command({"command": "screenshot", "screen": "screen-shoes"}, SCREENS)
    assert target_screens(one, SCREENS) == ["screen-shoes"]
    for body, words in [
        ({"command": "format_disk"}, "command command: Input should be"),
        ({"command": "screenshot"}, "needs a screen id"),
        ({"command": "screenshot", "screen": "screen-x"}, "'screen-x' is not a screen"),
        ({"command": "resync", "screen": "screen-shoes"}, "not used by 'resync'"),
        ({"command": "restart", "rm": "-rf"}, "command rm: Extra inputs"),
        ({}, "command command: Field required"),
        ({"command": "emergency"}, "an emergency needs a title"),
        ({"command": "restart", "title": "x"}, "command title: not used by 'restart'"),
        ({"command": "emergency", "title": "Leave", "background": "red"}, "command background"),
        ({"command": "install_certificate"}, "certificate_pem: given exactly with install"),
        ({"command": "rotate_credentials", "certificate_pem": "x"}, "certificate_pem: given"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_command(body, SCREENS)


# ---- config apply, probation, rollback (files only) --------------------------------------
def demo_toml(tmp_path: Path, port: int = 1883, heartbeat_s: int = 30) -> str:
    text = (DEMO / "store.toml").read_text()
    text = text.replace("port = 1883", f"port = {port}")
    text = text.replace(
        'replay_file = "data/trace.jsonl.gz"', f'replay_file = "{DEMO / "data" / "trace.jsonl.gz"}"'
    )
    text = text.replace("replay_speed = 4.0", "replay_speed = 1.0")
    text = text.replace('ops_public_key = "REPLACED-BY-DEMO"', f'ops_public_key = "{PUB}"')
    text = text.replace('state_dir = "var"', f'state_dir = "{tmp_path / "var"}"')
    return text.replace("heartbeat_s = 30", f"heartbeat_s = {heartbeat_s}")


def test_pushed_config_is_validated_installed_atomically_and_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    old = demo_toml(tmp_path)
    path.write_text(old)
    path.chmod(0o640)
    current = parse_config(tomllib.loads(old), base_dir=tmp_path)
    for body, words in [
        ({"toml": "not = [toml"}, "config is not TOML"),
        ({"toml": old.replace("heartbeat_s = 30", "heartbeat_s = -1")}, "uplink.heartbeat_s"),
        (
            {"toml": old.replace('"box-entrance-1"', '"box-other"')},
            "store.device_id is 'box-other'",
        ),
        ({"yaml": old}, 'needs "toml"'),
    ]:
        with pytest.raises(ValueError, match=words):
            config_apply.stage(body, path, current)
        assert path.read_text() == old  # a refused config changes nothing
        assert config_apply.on_probation(path) is None
    new = old.replace("heartbeat_s = 30", "heartbeat_s = 5")
    config_apply.stage({"toml": new}, path, current)
    assert path.read_text() == new and path.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "agent.toml.last-good").read_text() == old
    assert config_apply.on_probation(path) is not None
    # Only an agent running the new file may vouch for it, not the one that installed it.
    assert config_apply.on_probation(path, config_apply.sha256_text(old)) is None
    assert config_apply.on_probation(path, config_apply.sha256_text(new)) is not None
    # The new config keeps failing to start: after MAX_STARTS tries the last good one is back.
    for _ in range(config_apply.MAX_STARTS):
        assert config_apply.on_start(path) is None
    note = config_apply.on_start(path)
    assert note and "rolled back" in note
    assert path.read_text() == old and config_apply.on_probation(path) is None
    # Confirmed configs leave probation and stay.
    config_apply.stage({"toml": new}, path, current)
    config_apply.confirm(path)
    assert config_apply.on_start(path) is None and path.read_text() == new


# ---- over the broker, against the real agent process --------------------------------------
class Ops:
    """Central ops on the broker: signs and pushes, and records what the box sends back."""

    def __init__(self, broker, store: str, device: str) -> None:
        self.store, self.device, self.version = store, device, {}
        self.got: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.backlog: list[tuple[str, bytes]] = []
        ready = threading.Event()
        self.c = make_client(f"ops-{uuid.uuid4().hex[:6]}", _bcfg(broker))
        self.c.on_connect = lambda c, *a: c.subscribe(
            [(topics.acks(store, device), 1), (f"{topics.device_base(store, device)}/screenshots/+", 1),
             (topics.screen_cmd(store, "+"), 1), (topics.emergency(store), 1),
             (f"{topics.device_base(store, device)}/screen-errors/+", 1)]
        )  # fmt: skip
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = lambda c, u, m: self.got.put((m.topic, m.payload))
        connect(self.c, _bcfg(broker), clean_start=True, session_expiry_s=0)
        self.c.loop_start()
        assert ready.wait(5)

    def push(self, kind: str, body: dict) -> None:
        v = self.version[kind] = self.version.get(kind, 100) + 1
        msg = sign_message(PRIV, kind, body, self.store, self.device, v, expires_in(600))
        self.c.publish(topics.device_cmd(self.store, self.device, kind), msg, qos=1)

    def wait(self, pred, timeout: float = 15.0):
        """The first message so far or within ``timeout`` that ``pred`` likes (and consume it);
        others stay for later waits."""
        deadline = time.monotonic() + timeout
        while True:
            while True:  # move what arrived into the backlog
                try:
                    self.backlog.append(self.got.get_nowait())
                except queue.Empty:
                    break
            for i, (topic, payload) in enumerate(self.backlog):
                if pred(topic, payload):
                    del self.backlog[i]
                    return topic, payload
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the box")
            with contextlib.suppress(queue.Empty):
                self.backlog.append(self.got.get(timeout=0.2))

    def ack(self, kind: str, timeout: float = 15.0) -> dict:
        def is_ack(topic: str, payload: bytes) -> bool:
            return topic.endswith("/acks") and json.loads(payload).get("kind") == kind

        return json.loads(self.wait(is_ack, timeout)[1])

    def first_push(self, kind: str, body: dict) -> dict:
        """Push until the box answers: a box that is still starting has not subscribed yet."""
        for _ in range(15):
            self.push(kind, body)
            try:
                return self.ack(kind, timeout=2.0)
            except AssertionError:
                continue
        raise AssertionError("the box never answered")

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _bcfg(broker):
    from edge_agent.config import BrokerConfig

    return BrokerConfig(host=broker.host, port=broker.port)


@pytest.mark.timeout(120)
def test_ops_drive_the_box_commands_and_a_config_with_probation(tmp_path: Path, broker) -> None:
    path = tmp_path / "agent.toml"
    device = f"box-{uuid.uuid4().hex[:6]}"
    old = demo_toml(tmp_path, broker.port).replace('"box-entrance-1"', f'"{device}"')
    path.write_text(old)
    store = tomllib.loads(old)["store"]["store_id"]
    ops = Ops(broker, store, device)
    try:
        with agent_process(path) as proc:
            # Screenshot: the box asks the screen's player, then relays the player's answer.
            shoot = {"command": "screenshot", "screen": "screen-entrance"}
            assert ops.first_push("command", shoot)["accepted"] is True
            _, cmd = ops.wait(lambda t, p: t.endswith("/cmd") and b'"screenshot"' in p)
            assert ScreenCommand.from_bytes(cmd).kind == "screenshot"
            shot = json.dumps({"screen": "screen-entrance", "jpeg_b64": "AAAA"}).encode()
            ops.c.publish(f"instore/{store}/screens/screen-entrance/screenshot", shot, qos=1)
            topic, payload = ops.wait(lambda t, p: "/screenshots/" in t)
            assert topic.endswith("/screenshots/screen-entrance") and payload == shot
            # Player errors reach ops too.
            error = json.dumps({"kind": "asset_corrupt", "sha256": "ab" * 32}).encode()
            ops.c.publish(f"instore/{store}/screens/screen-entrance/errors", error, qos=1)
            topic, payload = ops.wait(lambda t, p: "/screen-errors/" in t)
            assert topic.endswith("/screen-errors/screen-entrance") and payload == error
            # Emergency: one retained override every screen obeys, until cleared.
            alarm = {"command": "emergency", "title": "Please leave by the nearest exit"}
            ops.push("command", alarm)
            assert ops.ack("command")["accepted"] is True
            _, raw = ops.wait(lambda t, p: t.endswith("/emergency"))
            override = ScreenCommand.from_bytes(raw)
            assert override.kind == "override" and override.content is not None
            assert override.content.title == alarm["title"] and not override.expired()
            ops.push("command", {"command": "clear_emergency"})
            assert ops.ack("command")["accepted"] is True
            _, raw = ops.wait(lambda t, p: t.endswith("/emergency"))
            assert ScreenCommand.from_bytes(raw).kind == "clear_override"
            # Resync: central hears which versions the box runs, to send fresh snapshots.
            ops.push("command", {"command": "resync"})
            assert ops.ack("command")["accepted"] is True
            # (the resync itself is recorded once applied, so the versions show the one before)
            assert ops.ack("resync")["versions"]["command"] == ops.version["command"] - 1
            # Nonsense is refused with the reason, and the box runs on.
            ops.push("command", {"command": "screenshot", "screen": "screen-nowhere"})
            refused = ops.ack("command")
            assert refused["accepted"] is False and "screen-nowhere" in refused["reason"]
            ops.push("config", {"toml": old.replace(f'"{device}"', '"box-someone-else"')})
            refused = ops.ack("config")
            assert refused["accepted"] is False and "store.device_id" in refused["reason"]
            assert path.read_text() == old and proc.poll() is None
            # A good config: installed, then a clean restart (75) so systemd starts it anew.
            new = old.replace("heartbeat_s = 30", "heartbeat_s = 1")
            ops.push("config", {"toml": new})
            assert ops.ack("config")["accepted"] is True
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == RESTART_EXIT_STATUS, out[-2000:]
        assert path.read_text() == new and config_apply.on_probation(path) is not None
        # What systemd does next: start it again. Reaching central confirms the new config;
        # then a restart command stops it with 75 again.
        with agent_process(path) as proc:
            deadline = threading.Event()
            threading.Timer(20, deadline.set).start()
            while config_apply.on_probation(path) is not None and not deadline.is_set():
                deadline.wait(0.2)
            assert config_apply.on_probation(path) is None, "the new config was not confirmed"
            ops.push("command", {"command": "restart", "reason": "test"})
            assert ops.ack("command")["accepted"] is True
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == RESTART_EXIT_STATUS, out[-2000:]
        assert path.read_text() == new
    finally:
        ops.close()
