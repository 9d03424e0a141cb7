"""What of a player's state the box relays to central (``screens/<screen>``): the fields ops
read, typed and short; anything else a bus client puts in the message stays on the bus."""

from __future__ import annotations

import json

import pytest

from contracts.payload import PayloadError
from contracts.screen_protocol import screen_report


def test_only_the_reported_fields_short_strings_and_ints_pass() -> None:
    state = {
        "status": "online", "mode": "override", "content_id": "emergency",
        "since": "2026-12-03T05:00:00+00:00", "playlist_version": 12, "fps": 59.9,
        "errors": ["x"], "zone": "entrance", "max_people_for_personal": True,
        "content_id_extra": "y" * 10,
    }  # fmt: skip
    assert screen_report(json.dumps(state).encode()) == {
        "status": "online", "mode": "override", "content_id": "emergency",
        "since": "2026-12-03T05:00:00+00:00", "playlist_version": 12, "zone": "entrance",
    }  # fmt: skip
    long = screen_report(json.dumps({"status": "offline", "mode": "m" * 129}).encode())
    assert long == {"status": "offline"}


def test_no_status_is_no_report_and_garbage_is_refused() -> None:
    assert screen_report(b'{"mode": "loop"}') is None
    assert screen_report(b'{"status": "sleeping"}') is None
    assert screen_report(b"[1, 2]") is None
    with pytest.raises(PayloadError):
        screen_report(b"\xff not json")
