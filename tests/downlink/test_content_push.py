"""Content manifests pushed by ops, end to end: signed push -> agent -> assets fetched over HTTP
(resumed after a cut) -> playlist swapped for the player; a broken manifest changes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import uuid
from pathlib import Path

import pytest

from contracts.screen_protocol import Playlist
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.downlink.content_manifest import parse_manifest
from edge_agent.sensing.ble.sources import ReplaySource
from tests.app.test_agent_journey import demo_config
from tests.downlink.test_commands import PUB, Ops
from tests.sync.test_assets import AssetServer
from tests.watching import wait_for

STORE = "store-0042"


def item(cid: str, **content) -> dict:
    return {"content": {"content_id": cid, "title": cid, **content}, "duration_s": 5}


def manifest(server: AssetServer, version: int, names: list[str], inline: bytes | None = None):
    items, assets = [], []
    for n in names:
        data = server.files[n]
        sha = hashlib.sha256(data).hexdigest()
        field = "video_sha256" if n.endswith(".mp4") else "image_sha256"
        kind = "video" if n.endswith(".mp4") else "image"
        items.append(item(n, template=kind, **{field: sha}))
        assets.append({"sha256": sha, "size": len(data), "url": server.url(n)})
    if inline is not None:
        sha = hashlib.sha256(inline).hexdigest()
        items.append(item("inline", template="image", image_sha256=sha))
        data_b64 = base64.b64encode(inline).decode()
        assets.append({"sha256": sha, "size": len(inline), "data_b64": data_b64})
    return {"playlist": {"version": version, "items": items}, "assets": assets}


def test_manifest_must_list_what_it_uses() -> None:
    sha = "a" * 64
    body = {"playlist": {"version": 1, "items": [item("x", template="image", image_sha256=sha)]}}
    with pytest.raises(ValueError, match="playlist.items.0.content.image_sha256 is not in assets"):
        parse_manifest(body)
    with pytest.raises(ValueError, match="content playlist.items.0.duration_s"):
        parse_manifest({"playlist": {"version": 1, "items": [{**item("x"), "duration_s": -1}]}})
    with pytest.raises(ValueError, match="content colour: Extra inputs"):
        parse_manifest({"playlist": {"version": 1}, "colour": "red"})


@pytest.mark.timeout(60)
def test_pushed_content_reaches_the_player_cache_whole(tmp_path: Path, broker) -> None:
    server = AssetServer({"spring.mp4": os.urandom(200_000), "sale.png": os.urandom(3000)})
    server.thread.start()
    cfg = demo_config(tmp_path, broker.port, PUB, camera=False)
    device = f"box-{uuid.uuid4().hex[:6]}"
    cfg = cfg.model_copy(
        update={
            "store": cfg.store.model_copy(update={"device_id": device}),
            "downlink": cfg.downlink.model_copy(update={"content_cache_mb": 16}),
        }
    )
    clock = ScaledClock(scenario.T0, 1.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    content = cfg.paths_resolved.content_dir
    ops = Ops(broker, STORE, device)
    try:
        agent.start_sync()
        server.cut_first_after = 64_000  # the shop's link drops during the video
        first = manifest(server, 7, ["spring.mp4", "sale.png"], inline=b"tiny logo")
        assert ops.first_push("content", first)["accepted"] is True
        assert ops.ack("content.installed")["accepted"] is True
        playlist = Playlist.model_validate_json((content / "playlist.json").read_text())
        assert playlist.version == 7 and len(playlist.items) == 3
        cached = {p.name for p in (content / "assets").iterdir() if p.is_file()}
        assert cached == {a["sha256"] for a in first["assets"]}
        assert agent.content_installer.store.stats.resumed == 1
        # A manifest whose asset cannot be fetched: refused later, the loop stays as it was.
        server.files["gone.png"] = os.urandom(100)
        broken = manifest(server, 8, ["sale.png", "gone.png"])
        del server.files["gone.png"]  # listed, but the asset server lost it
        ops.push("content", broken)
        assert ops.ack("content")["accepted"] is True  # well-formed: accepted for download
        failed = ops.ack("content.installed")
        assert failed["accepted"] is False and "HTTP 404" in failed["reason"]
        assert Playlist.model_validate_json((content / "playlist.json").read_text()).version == 7
        # A smaller loop: the video is no longer used and leaves the cache.
        ops.push("content", manifest(server, 9, ["sale.png"]))
        assert ops.ack("content")["accepted"] is True
        assert ops.ack("content.installed")["accepted"] is True
        cached = {p.name for p in (content / "assets").iterdir() if p.is_file()}
        assert cached == {hashlib.sha256(server.files["sale.png"]).hexdigest()}
        # More than the box's cache may hold: refused at once, the budget named.
        huge = manifest(server, 10, ["sale.png"])
        huge["assets"][0] = {**huge["assets"][0], "size": 64 * 1024**2}  # budget here: 16 MB
        ops.push("content", huge)
        over = ops.ack("content")
        assert over["accepted"] is False and "content_cache_mb" in over["reason"], over
        # A malformed manifest is refused at once, with the key in the reason.
        ops.push("content", {"playlist": {"version": 10, "items": [{"duration_s": 3}]}})
        refused = ops.ack("content")
        assert refused["accepted"] is False and "playlist.items.0.content" in refused["reason"]
    finally:
        ops.close()
        agent.close(flush_timeout_s=2)
        server.httpd.shutdown()
        server.httpd.server_close()


def test_a_new_loop_keeps_the_photos_campaigns_show(tmp_path: Path) -> None:
    """The cache is cleaned of what the new loop does not use, except what a campaign shows."""
    import threading

    from edge_agent.downlink.content_manifest import ContentInstaller

    photo, old, loop = b"campaign photo", b"last season", b"loop still"
    shas = {n: hashlib.sha256(d).hexdigest() for n, d in (("p", photo), ("o", old), ("l", loop))}
    done = threading.Event()
    installer = ContentInstaller(tmp_path, lambda *a: done.set(), in_use=lambda: {shas["p"]})

    def push(version: int, files: list[bytes]) -> None:
        assets = [
            {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d),
             "data_b64": base64.b64encode(d).decode()}
            for d in files
        ]  # fmt: skip
        done.clear()
        installer.install(parse_manifest({"playlist": {"version": version}, "assets": assets}))
        assert done.wait(10)

    push(1, [photo, old, loop])
    assert installer.store.cached() == set(shas.values())
    push(2, [loop])
    assert installer.store.cached() == {shas["l"], shas["p"]}


@pytest.mark.timeout(90)
def test_a_push_while_the_asset_server_is_down_finishes_after_a_restart(
    tmp_path: Path, broker
) -> None:
    """The asset server is down when the push lands: the first ack says accepted, the install
    waits and tries again (never a failure for a server that is only down), the box restarts
    mid-wait and resumes from the manifest it kept, and once the server is back the second ack
    says installed."""
    files = {"spring.png": os.urandom(5000)}
    cfg = demo_config(tmp_path, broker.port, PUB, camera=False)
    device = f"box-{uuid.uuid4().hex[:6]}"
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"device_id": device})})
    content = cfg.paths_resolved.content_dir
    # A port nobody listens on yet: the server is down.
    server = AssetServer(files)
    port = server.httpd.server_address[1]
    server.httpd.server_close()
    body = {
        "playlist": {"version": 11, "items": [item("spring.png", template="image",
                                                   image_sha256=hashlib.sha256(files["spring.png"]).hexdigest())]},
        "assets": [{"sha256": hashlib.sha256(files["spring.png"]).hexdigest(), "size": 5000,
                    "url": f"http://127.0.0.1:{port}/spring.png"}],
    }  # fmt: skip

    def start_agent() -> Agent:
        clock = ScaledClock(scenario.T0, 1.0)
        agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
        agent.content_installer.backoff_s = (0.2, 0.5)
        agent.content_installer.store.retries = 0
        return agent

    ops = Ops(broker, STORE, device)
    agent = start_agent()
    try:
        agent.start_sync()
        assert ops.first_push("content", body)["accepted"] is True
        assert wait_for(lambda: agent.content_installer.state.get("state") == "retrying", 10)
        assert "refused" in agent.content_installer.state["reason"]
        assert (content / "manifest-pending.json").exists()
        with pytest.raises(AssertionError):
            ops.ack("content.installed", timeout=1.0)  # no failure for a server that is down
        agent.close(flush_timeout_s=1)
        # The box restarts; the server comes back on the same address meanwhile.
        from http.server import ThreadingHTTPServer

        back = AssetServer(files)
        back.httpd.server_close()
        back.httpd = ThreadingHTTPServer(("127.0.0.1", port), back.httpd.RequestHandlerClass)
        back.thread = threading.Thread(target=back.httpd.serve_forever, daemon=True)
        back.thread.start()
        agent = start_agent()
        try:
            # The resumed install finishes before sync starts (CI caught its ack lost that way).
            assert wait_for(lambda: agent.content_installer.state.get("state") == "installed", 20)
            agent.start_sync()
            playlist = Playlist.model_validate_json((content / "playlist.json").read_text())
            assert playlist.version == 11
            assert not (content / "manifest-pending.json").exists()
            installed = ops.ack("content.installed", timeout=10)
            assert installed["accepted"] is True and installed["version"] == 11
        finally:
            back.httpd.shutdown()
            back.httpd.server_close()
    finally:
        ops.close()
        agent.close(flush_timeout_s=2)


@pytest.mark.timeout(60)
def test_edge_ops_wait_ack_waits_for_the_install(
    tmp_path: Path, broker, capsys: pytest.CaptureFixture
) -> None:
    """`edge-ops push content --wait-ack` returns when the assets are installed (the second
    ack), not when the manifest was read; a failed install exits 1 with its reason."""
    from central.ops_cli import main
    from tests.downlink.test_commands import PRIV

    cfg = demo_config(tmp_path, broker.port, PUB, camera=False)
    device = f"box-{uuid.uuid4().hex[:6]}"
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"device_id": device})})
    clock = ScaledClock(scenario.T0, 1.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    key = tmp_path / "ops.pem"
    key.write_bytes(PRIV)
    logo = b"a small logo"
    sha = hashlib.sha256(logo).hexdigest()
    ok = {
        "playlist": {"version": 21, "items": [item("logo", template="image", image_sha256=sha)]},
        "assets": [{"sha256": sha, "size": len(logo), "data_b64": base64.b64encode(logo).decode()}],
    }
    bad = {**ok, "playlist": {**ok["playlist"], "version": 22}}
    bad["assets"] = [{**ok["assets"][0], "size": len(logo) + 1}]  # the bytes do not match
    ops = Ops(broker, STORE, device)
    try:
        agent.start_sync()
        assert ops.first_push("content", {"playlist": {"version": 20}})["accepted"] is True

        def push(body: dict, version: int) -> int:
            f = tmp_path / f"content-{version}.json"
            f.write_text(json.dumps(body))
            argv = ["push", "content", str(f), "--store", STORE, "--device", device]
            argv += ["--version", str(100 + version), "--key", str(key), "--port", str(broker.port)]
            return main([*argv, "--wait-ack", "20"])

        # The Ops helper pushed versions 101..; the CLI's message versions follow them.
        assert push(ok, 21) == 0
        last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert last["kind"] == "content.installed" and last["accepted"] is True
        assert push(bad, 22) == 1
        last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert last["kind"] == "content.installed" and "expected 13" in last["reason"]
    finally:
        ops.close()
        agent.close(flush_timeout_s=2)


@pytest.mark.timeout(60)
def test_a_theme_needs_its_logo_in_the_cache_first(tmp_path: Path, broker) -> None:
    """The store's brand (downlink kind ``theme``): refused in one line while its logo is not in
    the screens' cache, applied (``theme.json`` for the players) once a content push brought it."""
    from contracts.screen_protocol import Theme

    cfg = demo_config(tmp_path, broker.port, PUB, camera=False)
    device = f"box-{uuid.uuid4().hex[:6]}"
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"device_id": device})})
    clock = ScaledClock(scenario.T0, 1.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    content = cfg.paths_resolved.content_dir
    logo = b"\\x89PNG the store's logo"
    sha = hashlib.sha256(logo).hexdigest()
    theme = {"version": 1, "background": "#0b3d2e", "logo_sha256": sha}
    ops = Ops(broker, STORE, device)
    try:
        agent.start_sync()
        refused = ops.first_push("theme", theme)
        assert (
            refused["accepted"] is False
            and "not in the screens' content cache" in refused["reason"]
        )
        assert not (content / "theme.json").exists()
        # A brand font is a file of the cache like the logo: refused while it is not there.
        font = b"\x00\x01\x00\x00 a brand font"
        font_sha = hashlib.sha256(font).hexdigest()
        ops.push("theme", {"version": 1, "font_sha256": font_sha})
        assert "font_sha256" in ops.ack("theme")["reason"]
        ops.push("theme", {**theme, "logo_corner": "middle"})
        assert "logo_corner" in ops.ack("theme")["reason"]
        ops.push(
            "content",
            {"playlist": {"version": 30},
             "assets": [{"sha256": sha, "size": len(logo), "data_b64": base64.b64encode(logo).decode()},
                        {"sha256": font_sha, "size": len(font), "data_b64": base64.b64encode(font).decode()}]},
        )  # fmt: skip
        assert ops.ack("content.installed")["accepted"] is True
        theme = {**theme, "font_sha256": font_sha}
        ops.push("theme", theme)
        assert ops.ack("theme")["accepted"] is True
        written = Theme.model_validate_json((content / "theme.json").read_bytes())
        assert written.logo_sha256 == sha and written.background == "#0b3d2e"
        # A later loop that does not list the logo does not take it from the screens.
        ops.push("content", {"playlist": {"version": 31}})
        assert ops.ack("content.installed")["accepted"] is True
        assert {sha, font_sha} <= agent.content_installer.store.cached()
    finally:
        ops.close()
        agent.close(flush_timeout_s=2)
