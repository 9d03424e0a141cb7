"""Beacon frames, decoded: real captures from public projects' test suites, the spec layouts,
and a fuzzer that throws random bytes at the decoder.

Sources of the captured frames:
- BlueCharm iBeacon + Eddystone TLM in one advert: Bluetooth-Devices/ibeacon-ble,
  tests/test_init.py (SERVICE_INFO), a BlueCharm_177999 beacon as bleak delivers it.
- Eddystone UID/URL/TLM and a RuuviTag's URL: fluthaus/NHBRuuviKit,
  NHBRuuviKitTests/RKTestData.m ("real world data gathered from ruuvi tag advertisements").
- Eddystone-EID test vectors: RadiusNetworks/ephemeral_calc, spec/encryptor_spec.rb.
- AltBeacon and eTLM: built from the layouts in AltBeacon/spec and google/eddystone
  (eddystone-tlm/tlm-encrypted.md); no public capture was found for them.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.ble.advert import Advert
from edge_agent.ble.decode import EDDYSTONE_UUID, decode_advert, decode_eddystone
from edge_agent.ble.decode_cli import run_decode
from edge_agent.ble.eid import compute_eid

FUZZ_EXAMPLES = 100_000 if os.environ.get("EDGE_FUZZ_FULL") == "1" else 2_000

BLUECHARM = Advert(
    address="00:00:00:00:00:00",
    rssi=-60,
    local_name="BlueCharm_177999",
    manufacturer_data={76: b"\x02\x15BlueCharmBeacons\x0e\xfe\x13U\xc5"},
    service_data={
        "00002080-0000-1000-8000-00805f9b34fb": b"k\x0c\x0e\xfe\x13U",
        EDDYSTONE_UUID: b" \x00\x0b\xfe\x1c\x00\x00\x00\x07\x08\x00\x00>|",
    },
    service_uuids=(EDDYSTONE_UUID,),
)
RUUVI_UID = bytes.fromhex("00120011223344556677 8899aabbccddeeff".replace(" ", ""))
RUUVI_URL_SETUP = bytes.fromhex("10ee03 7275752e76692f7365747570464149 4c".replace(" ", ""))
RUUVI_URL_TAG = bytes.fromhex("10f60372 75752e76692f2342475 15a414c343851".replace(" ", ""))
RUUVI_TLM = bytes.fromhex("2000 0c8a 1980 00000058 000001c7".replace(" ", ""))


def frames(advert: Advert) -> list[tuple[str, dict]]:
    return [(f.format, f.fields) for f in decode_advert(advert).frames]


def test_one_advert_carries_ibeacon_and_tlm() -> None:
    result = decode_advert(BLUECHARM)
    assert result.errors == []
    (f1, ib), (f2, tlm) = [(f.format, f.fields) for f in result.frames]
    assert f1 == "ibeacon"
    assert ib["uuid"] == "426c7565-4368-6172-6d42-6561636f6e73"
    assert (ib["major"], ib["minor"], ib["measured_power"]) == (3838, 4949, -59)
    assert f2 == "eddystone_tlm"
    assert tlm == {"battery_mv": 3070, "temperature_c": 28.0, "adv_count": 1800, "uptime_s": 1599.6}


def test_ibeacon_under_another_company_id_is_not_an_ibeacon() -> None:
    other = Advert(address="x", rssi=-60, manufacturer_data={21: BLUECHARM.manufacturer_data[76]})
    assert frames(other) == []


@pytest.mark.parametrize(
    ("data", "fmt", "fields"),
    [
        (
            RUUVI_UID,
            "eddystone_uid",
            {"namespace": "00112233445566778899", "instance": "aabbccddeeff", "tx_power_0m": 18},
        ),
        (
            RUUVI_UID + b"\x00\x00",
            "eddystone_uid",
            {"namespace": "00112233445566778899", "instance": "aabbccddeeff", "tx_power_0m": 18},
        ),
        (RUUVI_URL_SETUP, "eddystone_url", {"url": "https://ruu.vi/setupFAIL", "tx_power_0m": -18}),
        (RUUVI_URL_TAG, "eddystone_url", {"url": "https://ruu.vi/#BGQZAL48Q", "tx_power_0m": -10}),
        (
            RUUVI_TLM,
            "eddystone_tlm",
            {"battery_mv": 3210, "temperature_c": 25.5, "adv_count": 88, "uptime_s": 45.5},
        ),
        (
            bytes.fromhex("1000 00 676f6f676c65 07".replace(" ", "")),
            "eddystone_url",
            {"url": "http://www.google.com", "tx_power_0m": 0},
        ),
        (
            bytes.fromhex("2000 0000 8000 00000001 00000002".replace(" ", "")),
            "eddystone_tlm",
            {"battery_mv": None, "temperature_c": None, "adv_count": 1, "uptime_s": 0.2},
        ),
        (
            bytes.fromhex("2001" + "ab" * 12 + "1234" + "cdef"),
            "eddystone_etlm",
            {"etlm": "ab" * 12, "salt": "1234", "mic": "cdef"},
        ),
        (
            bytes.fromhex("30f4a9b76a71c5f89290"),
            "eddystone_eid",
            {"eid": "a9b76a71c5f89290", "tx_power_0m": -12},
        ),
    ],
)
def test_eddystone_frames(data: bytes, fmt: str, fields: dict) -> None:
    frame = decode_eddystone(data)
    assert frame.format == fmt
    assert frame.fields == fields


def test_negative_tlm_temperature() -> None:
    data = struct.pack(">BBHhII", 0x20, 0, 2900, int(-3.5 * 256), 5, 10)
    assert decode_eddystone(data).fields["temperature_c"] == -3.5


def test_altbeacon() -> None:
    beacon_id = bytes(range(20))
    ad = Advert(
        address="x", rssi=-70, manufacturer_data={0x0118: b"\xbe\xac" + beacon_id + b"\xc5\x00"}
    )
    [(fmt, f)] = frames(ad)
    assert fmt == "altbeacon"
    assert (
        f["company_id"] == 0x0118
        and f["beacon_id"] == beacon_id.hex()
        and f["measured_power"] == -59
    )


@pytest.mark.parametrize(
    ("ad", "reason"),
    [
        (
            Advert(address="x", rssi=-60, manufacturer_data={76: b"\x02\x15\x01\x02"}),
            "ibeacon: frame is 4 bytes, expected 23",
        ),
        (
            Advert(
                address="x",
                rssi=-60,
                manufacturer_data={76: BLUECHARM.manufacturer_data[76] + b"\x00" * 40},
            ),
            "ibeacon: frame is 63 bytes",
        ),
        (
            Advert(address="x", rssi=-60, service_data={EDDYSTONE_UUID: RUUVI_TLM[:9]}),
            "eddystone: TLM frame is 9 bytes, expected 14",
        ),
        (
            Advert(address="x", rssi=-60, service_data={EDDYSTONE_UUID: b""}),
            "eddystone: empty service data",
        ),
        (
            Advert(address="x", rssi=-60, service_data={EDDYSTONE_UUID: b"\x40\x00"}),
            "eddystone: unknown frame type 0x40",
        ),
        (
            Advert(address="x", rssi=-60, service_data={EDDYSTONE_UUID: b"\x10\x00\x07abc"}),
            "URL scheme code 0x07",
        ),
        (
            Advert(address="x", rssi=-60, service_data={EDDYSTONE_UUID: b"\x10\x00\x00ab\x19"}),
            "URL byte 0x19",
        ),
        (
            Advert(
                address="x", rssi=-60, service_data={EDDYSTONE_UUID: b"\x20\x07" + b"\x00" * 12}
            ),
            "TLM version 0x07",
        ),
        (
            Advert(address="x", rssi=-60, service_data={EDDYSTONE_UUID: b"\x30\x00\x01"}),
            "EID frame is 3 bytes, expected 10",
        ),
    ],
)
def test_malformed_frames_give_a_reason_not_an_exception(ad: Advert, reason: str) -> None:
    result = decode_advert(ad)
    assert result.frames == []
    assert len(result.errors) == 1 and reason in result.errors[0]


def test_a_bad_frame_does_not_hide_a_good_one() -> None:
    ad = Advert(
        address="x",
        rssi=-60,
        manufacturer_data={76: BLUECHARM.manufacturer_data[76]},
        service_data={EDDYSTONE_UUID: b"\x20\x00\x01"},
    )
    result = decode_advert(ad)
    assert [f.format for f in result.frames] == ["ibeacon"]
    assert result.errors == ["eddystone: TLM frame is 3 bytes, expected 14"]


def test_eid_matches_published_vectors() -> None:
    key = bytes.fromhex("0102030405060708090A111213141516")
    assert compute_eid(key, 0, 10).hex().upper() == "A9B76A71C5F89290"
    assert compute_eid(key, 2000, 10).hex().upper() == "4144413E45FEFA58"
    # Constant within a 2**K s period, new in the next one.
    assert compute_eid(key, 1023, 10) == compute_eid(key, 0, 10)
    assert compute_eid(key, 1024, 10) != compute_eid(key, 1023, 10)


# ---- properties ------------------------------------------------------------------------
company = st.sampled_from([76, 0x0118, 0x0059, 0xFFFF]) | st.integers(0, 0xFFFF)
payload = st.binary(max_size=64) | st.sampled_from(
    [b"\x02\x15", b"\xbe\xac", b"\x20\x00", b"\x10"]
).flatmap(lambda head: st.binary(max_size=40).map(lambda tail: head + tail))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    md=st.dictionaries(company, payload, max_size=3),
    sd=st.dictionaries(
        st.sampled_from([EDDYSTONE_UUID, "0000fe9f-0000-1000-8000-00805f9b34fb"]),
        payload,
        max_size=2,
    ),
    rssi=st.integers(-127, 20),
)
def test_decoder_never_raises(md: dict[int, bytes], sd: dict[str, bytes], rssi: int) -> None:
    result = decode_advert(Advert(address="x", rssi=rssi, manufacturer_data=md, service_data=sd))
    assert all("\n" not in e for e in result.errors)
    json.dumps([f.to_json_obj() for f in result.frames])  # always JSON-serialisable


@given(st.uuids(), st.integers(0, 65535), st.integers(0, 65535), st.integers(-128, 127))
def test_ibeacon_roundtrip(uuid, major: int, minor: int, power: int) -> None:
    data = struct.pack(">2s16sHHb", b"\x02\x15", uuid.bytes, major, minor, power)
    [(fmt, f)] = frames(Advert(address="x", rssi=-70, manufacturer_data={76: data}))
    assert (fmt, f["uuid"], f["major"], f["minor"], f["measured_power"]) == (
        "ibeacon",
        str(uuid),
        major,
        minor,
        power,
    )


@given(
    st.integers(0, 65535),
    st.integers(-128 * 256, 127 * 256).filter(lambda t: t != -0x8000),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
def test_tlm_roundtrip(mv: int, temp: int, adv: int, secs: int) -> None:
    f = decode_eddystone(struct.pack(">BBHhII", 0x20, 0, mv, temp, adv, secs)).fields
    assert f["battery_mv"] == (mv or None)
    assert f["temperature_c"] == round(temp / 256, 2)
    assert (f["adv_count"], f["uptime_s"]) == (adv, secs / 10)


# ---- the installer's CLI -----------------------------------------------------------------
def cli(text: str) -> tuple[dict, int]:
    out = io.StringIO()
    code = run_decode(io.StringIO(text), out)
    return json.loads(out.getvalue()), code


def test_cli_reports_every_frame_and_no_address() -> None:
    answer, code = cli(BLUECHARM.to_json())
    assert code == 0
    assert [f["format"] for f in answer["frames"]] == ["ibeacon", "eddystone_tlm"]
    # -60 dBm heard, -59 dBm at 1 m: about a metre away.
    assert 0 < answer["frames"][0]["fields"]["distance_m"] < 3
    assert "00:00:00:00:00:00" not in json.dumps(answer)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no input"),
        ("not json at all", "not JSON"),
        ('{"address":"a","rssi":"x"}', "rssi: must be a number"),
        (
            '{"address":"a","rssi":-50,"manufacturer_data":{"76":"0215"}}',
            "ibeacon: frame is 2 bytes",
        ),
        ('{"address":"a","rssi":-50}', "no known beacon frame"),
        ("[" * 100_000, "over"),
    ],
)
def test_cli_garbage_gets_format_null_and_a_reason(text: str, error: str) -> None:
    answer, code = cli(text)
    assert code == 1
    assert answer["format"] is None and error in answer["error"]


def test_the_installed_command_reads_stdin() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "edge-agent")
    ok = subprocess.run(
        [exe, "ble", "decode"], input=BLUECHARM.to_json().encode(), capture_output=True, timeout=60
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["frames"][0]["format"] == "ibeacon"
    junk = subprocess.run(
        [exe, "ble", "decode"], input=os.urandom(4096), capture_output=True, timeout=60
    )
    assert junk.returncode == 1 and json.loads(junk.stdout)["format"] is None
    assert junk.stderr == b""
