""" "Find us" loops scheduled by ops: a default-loop item names a place (``way_to``) and the box
draws the way from each of its screens into the installed loop, on its own map; a map or
planogram push redraws it, a place that is gone takes the map off, and ways ops send are not
trusted."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.map_bundle import bundle
from contracts.screen_protocol import MAX_WAY_SCREENS, Content, Playlist, PlaylistItem
from demo import scenario
from edge_agent.app.agent import Agent
from edge_agent.clock import ScaledClock
from edge_agent.journey.wayfinding_stage import ScreenWayfinder, load_venue
from edge_agent.sensing.ble.sources import ReplaySource
from edge_agent.wayfinding.plan import author, load_plan
from signage_ui.loop import Loop
from tests.app.test_agent_journey import demo_config
from tests.downlink.test_commands import PUB, Ops
from tests.signage_ui.test_signage_player import load
from tests.signage_ui.test_signage_screen import config, logs, player, pngs, write_playlist
from tests.signage_ui.test_wayfinding_screen import ACCENT, BACKGROUND, Shot, check_card
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]
DEMO_MAP = REPO / "demo" / "store-map.toml"
STORE = "store-0042"
SCREEN = "screen-entrance"


def find_us(cid: str = "find-pickup", to: str | None = "Pickup", **extra: object) -> dict:
    item: dict = {
        "content": {"content_id": cid, "title": "Click & collect", "body": "Counter 2"},
        "duration_s": 8,
        "dayparts": ["08:00-20:00"],
        **extra,
    }
    if to is not None:
        item["way_to"] = to
    return item


def test_the_way_is_drawn_per_screen_and_only_the_box_draws_it() -> None:
    venue, version = load_venue(DEMO_MAP)
    wf = ScreenWayfinder(venue, version)
    some_way = wf.way(SCREEN, "Aisle 4", "en")
    assert some_way is not None
    playlist = Playlist.model_validate(
        {
            "version": 3,
            "items": [
                find_us(),
                find_us("to-nowhere", "Aisle 99"),
                # Ops cannot slip a way in: an item without way_to loses what it came with.
                find_us("plain", None, ways={SCREEN: some_way.model_dump()}),
            ],
        }
    )
    filled = wf.fill(playlist, [SCREEN, "screen-not-on-the-map"])
    pickup, nowhere, plain = filled.items
    assert set(pickup.ways) == {SCREEN}
    assert pickup.ways[SCREEN].destination_label.startswith("Counter 2")
    assert nowhere.ways == {} and plain.ways == {}
    # Everything else of the loop is as ops sent it.
    assert [i.content for i in filled.items] == [i.content for i in playlist.items]
    assert filled.version == 3 and pickup.dayparts == ("08:00-20:00",)
    # The player's loop shows its own screen's way, and another screen the card alone.
    mine, _ = Loop(items=filled.items, screen_id=SCREEN).next(_morning())
    assert mine.wayfinding == pickup.ways[SCREEN]
    other, _ = Loop(items=filled.items, screen_id="screen-2").next(_morning())
    assert other.wayfinding is None and other.content_id == "find-pickup"


def test_hostile_find_us_items_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="way_to"):
        PlaylistItem.model_validate(find_us(to=""))
    with pytest.raises(ValidationError, match="way_to"):
        PlaylistItem.model_validate(find_us(to="x" * 201))
    venue, version = load_venue(DEMO_MAP)
    way = ScreenWayfinder(venue, version).way(SCREEN, "Pickup", "en")
    assert way is not None
    too_many = {f"s{i}": way.model_dump() for i in range(MAX_WAY_SCREENS + 1)}
    with pytest.raises(ValidationError, match="ways"):
        PlaylistItem.model_validate(find_us(ways=too_many))
    assert PlaylistItem.model_validate(find_us()).content_for(SCREEN) == Content.model_validate(
        find_us()["content"]
    )


def _morning():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


def _moved_pickup(tmp_path: Path) -> dict[str, bytes]:
    """The demo map with counter 2 (the pickup) at the back of the store."""
    text = DEMO_MAP.read_text().replace("rect = [14.5, 1, 17, 2]", "rect = [14.5, 13, 17, 14]")
    path = tmp_path / "moved-store-map.toml"
    path.write_text(text.replace('layout = "../', f'layout = "{REPO}/'))
    plan, layout = load_plan(path)
    files, _, errors, _ = author(plan, layout)
    assert not errors
    return files


@pytest.mark.timeout(90)
def test_a_pushed_find_us_loop_follows_the_pushed_map(tmp_path: Path, broker) -> None:
    cfg = demo_config(tmp_path, broker.port, PUB, camera=False)
    device = f"box-{uuid.uuid4().hex[:6]}"
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"device_id": device})})
    clock = ScaledClock(scenario.T0, 1.0)
    agent = Agent(cfg, clock=clock, ble_source=ReplaySource(cfg.ble.replay_file, clock))
    playlist_json = cfg.paths_resolved.content_dir / "playlist.json"
    ops = Ops(broker, STORE, device)

    def installed() -> Playlist:
        return Playlist.model_validate_json(playlist_json.read_bytes())

    try:
        agent.start_sync()
        body = {"playlist": {"version": 5, "items": [find_us(), find_us("welcome", None)]}}
        assert ops.first_push("content", body)["accepted"] is True
        assert ops.ack("content.installed")["accepted"] is True
        pickup, welcome = installed().items
        first = pickup.ways[SCREEN]
        assert first.destination_label.startswith("Counter 2") and first.destination[1] < 3
        assert welcome.ways == {}
        # Central moves the pickup counter to the back: the loop's way follows, nothing else.
        moved = _moved_pickup(tmp_path)
        ops.push("map", bundle(moved, 201, STORE))
        assert ops.ack("map")["accepted"] is True
        assert wait_for(lambda: installed().items[0].ways[SCREEN].destination[1] > 10, 10)
        assert installed().version == 5 and installed().items[1] == welcome
        # A map without that counter: the loop item plays as a card alone, never a stale way.
        doc = json.loads(moved["fixture.geojson"])
        without = {
            **moved,
            "fixture.geojson": json.dumps(
                {
                    **doc,
                    "features": [
                        f
                        for f in doc["features"]
                        if f["properties"]["edge_agent"]["plan_id"] != "counter-2"
                    ],
                }
            ).encode(),
        }
        ops.push("map", bundle(without, 202, STORE))
        ack = ops.ack("map")
        assert ack["accepted"] is True, ack
        assert wait_for(lambda: installed().items[0].ways == {}, 10)
    finally:
        ops.close()
        agent.close(flush_timeout_s=2)


@pytest.mark.ui
@pytest.mark.timeout(90)
def test_the_player_plays_the_find_us_item_with_its_own_way(
    tmp_path: Path, kivy_env: dict[str, str], broker
) -> None:
    venue, version = load_venue(DEMO_MAP)
    content = {
        "content_id": "find-pickup",
        "title": "Click & collect",
        "body": "Your order waits at counter 2",
        "background": BACKGROUND,
        "accent": ACCENT,
    }
    loop = Playlist.model_validate(
        {"version": 1, "items": [{"content": content, "duration_s": 30, "way_to": "Pickup"}]}
    )
    filled = ScreenWayfinder(venue, version).fill(loop, [SCREEN])
    way = filled.items[0].ways[SCREEN]
    write_playlist(tmp_path / "content", list(filled.items))
    screens = [{"id": SCREEN, "zone": "entrance", "width": 960, "height": 540}]
    cfg = config(tmp_path, broker.port, screens)
    with player(tmp_path, kivy_env, cfg, SCREEN) as shots:
        assert wait_for(lambda: any("find-pickup" in p.name for p in pngs(shots)), 30), logs(
            tmp_path
        )
        shot = next(p for p in pngs(shots) if "find-pickup" in p.name)
        # The loop item carries the way from this screen: route drawn, marker at the counter.
        check_card(Shot(load(shot), way), way)
