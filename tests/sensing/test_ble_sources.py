"""Advert sources: replayed traces and ESP32 scanner lines over a real pseudo-terminal.

Both feed the same callback with the same ``Advert`` objects a live bleak scan produces.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo.scenario import TRACE, generate
from edge_agent.clock import ScaledClock
from edge_agent.sensing.ble.advert import Advert, AdvertError
from edge_agent.sensing.ble.sources import ReplaySource, SerialSource, first_timestamp

IBEACON = Advert(
    address="C0:FF:EE:00:64:01",
    rssi=-61,
    manufacturer_data={76: bytes.fromhex("0215f7826da64fa24e988024bc5b71e0893e00640001c5")},
    timestamp=1000.0,
)


def test_advert_json_roundtrip() -> None:
    assert Advert.from_json(IBEACON.to_json()) == IBEACON


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1,2]", "must be a JSON object"),
        ('{"address": 5}', "address: must be a string"),
        ('{"address":"a","rssi":"loud"}', "rssi: must be a number"),
        ('{"address":"a","rssi":1,"manufacturer_data":{"apple":"00"}}', "not a decimal company id"),
        (
            '{"address":"a","rssi":1,"manufacturer_data":{"76":"zz"}}',
            "manufacturer_data[76]: not valid hex",
        ),
        ('{"address":"a","rssi":1,"manufacturer_data":{"99999":"00"}}', "out of range"),
        ('{"address":"a","rssi":1e400}', "rssi: must be finite"),
        ('{"address":"a","rssi":NaN}', "not JSON"),
        ('{"address":"a","rssi":-500}', "outside -127..127"),
        ('{"address":"a","rssi":-60,"ts":Infinity}', "not JSON"),
        ('{"address":"a","rssi":-60,"ts":1e999}', "ts: must be finite"),
        ('{"address":"a","rssi":-60,"tx_power":4000}', "tx_power: 4000 is outside"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply|must be a JSON object"),
    ],
)
def test_malformed_adverts_say_which_field(line: str, message: str) -> None:
    with pytest.raises(AdvertError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Advert.from_json(line)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_advert_error(raw: bytes) -> None:
    with contextlib.suppress(AdvertError):
        Advert.from_json(raw)


# JSON that parses: the hostile part is in the values, where a bare json.loads fuzz rarely gets.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
advert_keys = st.sampled_from(
    [
        "address",
        "rssi",
        "ts",
        "tx_power",
        "manufacturer_data",
        "service_data",
        "service_uuids",
        "local_name",
        "receiver",
    ]
)


@given(st.dictionaries(advert_keys, json_values, max_size=9))
def test_any_field_values_parse_or_raise_advert_error(obj: dict) -> None:
    with contextlib.suppress(AdvertError):
        advert = Advert.from_json_obj(obj)
        assert -127 <= advert.rssi <= 127


def test_the_shipped_trace_is_what_the_scenario_generates() -> None:
    with gzip.open(TRACE, "rt") as fh:
        shipped = [Advert.from_json(line) for line in fh]
    assert shipped == generate()


def test_replay_flat_out_delivers_every_line_and_counts_garbage(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    lines = [
        IBEACON.to_json(),
        "garbage{",
        "",
        Advert(address="b", rssi=-70, timestamp=1001.0).to_json(),
    ]
    trace.write_text("\n".join(lines) + "\n")
    got: list[Advert] = []
    src = ReplaySource(trace, clock=None)
    asyncio.run(src.run(got.append))
    assert [a.address for a in got] == [IBEACON.address, "b"]
    assert src.stats.bad_lines == 1 and src.stats.adverts == 2


def test_replay_paces_by_the_clock(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        "\n".join(Advert(address=str(i), rssi=-60, timestamp=100.0 + i).to_json() for i in range(5))
    )
    assert first_timestamp(trace) == 100.0
    clock = ScaledClock(100.0, speed=10.0)
    got: list[tuple[float, float]] = []
    src = ReplaySource(trace, clock)
    t0 = time.monotonic()
    asyncio.run(src.run(lambda a: got.append((a.timestamp, clock.now()))))
    elapsed = time.monotonic() - t0
    # 4 trace seconds at 10x take about 0.4 s, and no advert is delivered before its time.
    assert 0.35 < elapsed < 2.0
    assert all(now >= ts for ts, now in got)


def test_serial_scanner_over_a_pty_survives_garbage() -> None:
    master, slave = os.openpty()
    src = SerialSource(os.ttyname(slave))
    got: list[Advert] = []

    async def scenario() -> None:
        task = asyncio.create_task(src.run(got.append))
        await asyncio.sleep(0.3)
        os.write(master, (IBEACON.to_json() + "\n").encode())
        os.write(master, b"\x00\xff\xfe garbage \x01\n")  # line noise
        os.write(master, b'{"address":"a","rssi":"x"}\n')  # wrong type
        os.write(master, b"z" * 5000)  # a runaway line with no newline
        os.write(master, b"\n")
        half = Advert(address="CA:FE:00:00:00:02", rssi=-70).to_json()
        os.write(master, half[:10].encode())  # a line split across reads
        await asyncio.sleep(0.1)
        os.write(master, (half[10:] + "\n").encode())
        for _ in range(50):
            if len(got) >= 2:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        os.close(master)
        os.close(slave)
    assert [a.address for a in got] == [IBEACON.address, "CA:FE:00:00:00:02"]
    assert got[0].manufacturer_data == IBEACON.manufacturer_data
    # Lines without a timestamp are stamped on arrival.
    assert got[1].timestamp > 0
    assert src.stats.bad_lines >= 3
