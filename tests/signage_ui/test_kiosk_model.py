"""The kiosk's rules without a window: alerts (dedup, urgency order, acks from any kiosk),
occupancy (stale counts are not shown, late retained copies do not win), emergency commands,
survey answers on the agent's scales, and bus input that never crashes the kiosk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.events import SurveyAnswer, parse_event
from contracts.screen_protocol import ScreenCommand
from signage_ui import kiosk_model as km

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def alert(aid: str, kind: str, minutes: float) -> km.Alert:
    return km.Alert(alert_id=aid, kind=kind, text=aid, ts=T0 + timedelta(minutes=minutes))


def test_urgent_alerts_first_then_newest_and_resends_do_not_duplicate() -> None:
    board = km.AlertBoard()
    assert board.add(alert("batt", "beacon_battery_low", 5))
    assert board.add(alert("order", "order_ready", 1))
    assert board.add(alert("help", "assistance_wanted", 2))
    assert not board.add(alert("help", "assistance_wanted", 3))
    assert [a.alert_id for a in board.open()] == ["help", "order", "batt"]
    assert board.ack("help", "kiosk-2") and not board.ack("help", "kiosk-1")
    # An acknowledged alert resent by the agent does not come back.
    assert not board.add(alert("help", "assistance_wanted", 4))
    assert [a.alert_id for a in board.open()] == ["order", "batt"]


def test_an_alert_closed_by_the_agent_leaves_and_one_under_another_id_is_refused() -> None:
    board = km.AlertBoard()
    raw = json.dumps({"alert_id": "a1", "kind": "vip", "text": "x", "ts": T0.isoformat()})
    assert board.add(km.parse_alert(raw.encode(), "a1"))
    with pytest.raises(km.KioskInputError, match="not the id in its topic"):
        km.parse_alert(raw.encode(), "a2")
    assert board.close("a1") and not board.close("a1")
    assert board.open() == []


def test_alerts_too_old_to_matter_are_not_shown() -> None:
    board = km.AlertBoard(max_age_s=3600)
    now = T0 + timedelta(minutes=90)
    with pytest.raises(km.KioskInputError, match="older than 1 h"):
        board.add(alert("old", "vip", 0), now=now)
    assert board.add(alert("young", "vip", 60), now=now)
    naive = km.Alert(alert_id="naive", kind="vip", text="", ts=datetime(2026, 11, 20, 10, 20))
    assert board.add(naive, now=now)
    assert board.expire(now + timedelta(minutes=31)) == ["young"]
    assert list(board.alerts) == ["naive"]


def test_remembered_acks_are_bounded() -> None:
    board = km.AlertBoard(max_open=2)
    for i in range(20):
        board.ack(f"a{i}", "kiosk-1")
    assert list(board.acked) == [f"a{i}" for i in range(12, 20)]


def test_the_board_is_bounded() -> None:
    board = km.AlertBoard(max_open=3)
    for i in range(10):
        board.add(alert(f"a{i}", "screen_offline", i))
    assert sorted(board.alerts) == ["a7", "a8", "a9"]


def test_occupancy_goes_blank_when_stale_and_ignores_late_copies() -> None:
    board = km.OccupancyBoard()
    board.update(km.Occupancy(zone_id="z", people=4, ts=T0))
    board.update(km.Occupancy(zone_id="z", people=9, ts=T0 - timedelta(seconds=5)))
    assert board.people("z", T0 + timedelta(seconds=10)) == 4
    assert board.people("z", T0 + timedelta(seconds=km.OCCUPANCY_STALE_S + 1)) is None
    assert board.people("other", T0) is None


def test_emergency_commands_are_screen_commands_that_last() -> None:
    on = ScreenCommand.from_bytes(km.emergency_override("Leave now", now=T0).to_bytes())
    assert on.kind == "override" and on.content is not None and on.content.title == "Leave now"
    assert not on.expired(T0 + timedelta(hours=12))
    off = km.emergency_clear(now=T0)
    assert off.kind == "clear_override" and off.content is None


def test_survey_answers_are_events_the_agent_accepts() -> None:
    e = km.survey_event("nps", 10, kiosk_id="k", store_id="s", device_id="d", zone_id="z")
    payload = parse_event(e.to_json()).payload()
    assert isinstance(payload, SurveyAnswer) and payload.score == 10
    for survey, scale in km.SURVEY_SCALES.items():
        for score in scale:  # every button the kiosk draws is a valid answer
            km.survey_event(survey, score, kiosk_id="k", store_id="s", device_id="d", zone_id=None)
    with pytest.raises(ValidationError):
        km.survey_event("effort", 0, kiosk_id="k", store_id="s", device_id="d", zone_id=None)


def test_labels_for_known_and_unknown_kinds() -> None:
    assert km.label_for("camera_lost") == "Camera down"
    assert km.label_for("fridge_warm") == "Fridge warm"


@given(
    st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["alert_id", "kind", "text", "ts", "zone_id", "people"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats()),
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_any_bus_input_parses_or_fails_in_one_line(raw: bytes) -> None:
    for parse in (km.parse_alert, km.parse_occupancy, km.parse_ack):
        try:
            parse(raw)
        except km.KioskInputError as exc:
            assert "\n" not in str(exc)
