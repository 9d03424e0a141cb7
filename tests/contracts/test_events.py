"""One event model: CloudEvents 1.0 envelopes with UUIDv7 ids and typed payloads."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    PAYLOADS,
    TYPE_PREFIX,
    ContentImpression,
    EventError,
    ZoneEntered,
    make_event,
    parse_event,
)


def test_envelope_has_the_cloudevents_required_attributes() -> None:
    ev = make_event(
        ZoneEntered(zone_id="entrance", presence_key="ab12"), store_id="s1", device_id="d1"
    )
    obj = json.loads(ev.to_json())
    assert obj["specversion"] == "1.0"
    assert obj["source"] == "store/s1/device/d1"
    assert obj["type"] == "retail.instore.zone.entered.v1"
    assert obj["datacontenttype"] == "application/json"
    assert uuid.UUID(obj["id"]).version == 7
    assert obj["data"] == {"zone_id": "entrance", "presence_key": "ab12"}


def test_ids_are_time_ordered() -> None:
    ids = [
        make_event(ZoneEntered(zone_id="z", presence_key="k"), store_id="s", device_id="d").id
        for _ in range(200)
    ]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200


def test_roundtrip_keeps_the_typed_payload() -> None:
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    end = datetime(2026, 11, 20, 9, 0, 12, tzinfo=UTC)
    imp = ContentImpression(
        impression_id="i1",
        screen_id="sc",
        content_id="c",
        variant="default",
        start=start,
        end=end,
        duration_s=12.0,
    )
    ev = make_event(imp, store_id="s", device_id="d")
    back = parse_event(ev.to_json())
    assert back.payload() == imp


def test_every_payload_type_is_registered_under_the_prefix() -> None:
    for suffix in PAYLOADS:
        assert suffix.endswith(".v1")
    assert TYPE_PREFIX == "retail.instore."


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "not JSON"),
        ('{"specversion":"1.0"}', "event.id: Field required"),
        (
            '{"specversion":"1.0","id":"x","source":"s","type":"retail.instore.nope.v1","time":"2026-01-01T00:00:00Z","data":{}}',
            "unknown event type",
        ),
        (
            '{"specversion":"1.0","id":"x","source":"s","type":"retail.instore.zone.left.v1","time":"2026-01-01T00:00:00Z","data":{"zone_id":"z","presence_key":"k","dwell_s":-1}}',
            "data.dwell_s",
        ),
    ],
)
def test_bad_events_get_one_clear_line(raw: str, message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@given(st.binary(max_size=300))
def test_parse_event_never_raises_anything_but_event_error(raw: bytes) -> None:
    with contextlib.suppress(EventError):
        parse_event(raw)
