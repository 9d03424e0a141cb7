"""Beacon frames, decoded: real captures from public projects' test suites, the spec layouts,
and fuzzers that throw random bytes and random JSON at the decoder and the installer's CLI.

Sources of the captured frames (each test names the one it uses):
- [ibeacon-ble] Bluetooth-Devices/ibeacon-ble, tests/test_init.py, SERVICE_INFO: a
  BlueCharm_177999 beacon sending iBeacon and Eddystone TLM, as bleak delivers it.
- [ruuvikit] fluthaus/NHBRuuviKit, NHBRuuviKitTests/RKTestData.m ("real world data gathered
  from ruuvi tag advertisements") and NSData+RKEddystone_Tests.m (edge cases).
- [kontakt] sz33psz/kontakt-beacon-parser, parser_test.go: raw advertising data (AD
  structures) of a Kontakt.io iBeacon and of every Eddystone frame type, eTLM included.
- [altbeacon-lib] AltBeacon/android-beacon-library,
  lib/src/test/java/org/altbeacon/beacon/AltBeaconParserTest.java: raw advertising data of
  AltBeacons, one of them a RadBeacon USB ("testDetectsDaveMHardwareBeacon").
- [ephemeral_calc] RadiusNetworks/ephemeral_calc, spec/encryptor_spec.rb: Eddystone-EID vectors.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
import subprocess
import sys
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sensing.ble.advert import Advert
from edge_agent.sensing.ble.decode import (
    EDDYSTONE_UUID,
    FORMATS,
    FrameError,
    advert_from_gap,
    decode_advert,
    decode_eddystone,
    decode_manufacturer,
)
from edge_agent.sensing.ble.decode_cli import run_decode
from edge_agent.sensing.ble.eid import compute_eid

FUZZ_FULL = os.environ.get("EDGE_FUZZ_FULL") == "1"
FUZZ_EXAMPLES = 100_000 if FUZZ_FULL else 2_000
# The full fuzz run takes minutes; the suite's default per-test timeout is 120 s.
fuzz_timeout = pytest.mark.timeout(3600 if FUZZ_FULL else 120)

# [ibeacon-ble] SERVICE_INFO, field for field.
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
# [ruuvikit] RKTestData.m
RUUVI_UID = bytes.fromhex("0012 00112233445566778899 aabbccddeeff")
RUUVI_URL_SETUP = bytes.fromhex("10ee03 7275752e76692f7365747570464149 4c")
RUUVI_URL_TAG = bytes.fromhex("10f603 7275752e76692f234247515a414c343851")
RUUVI_TLM = bytes.fromhex("2000 0c8a 1980 00000058 000001c7")


def decoded(advert: Advert) -> list[tuple[str, dict]]:
    return [(f.format, f.fields) for f in decode_advert(advert).frames]


def ad(md: dict[int, bytes] | None = None, sd: bytes | None = None) -> Advert:
    return Advert(
        address="x",
        rssi=-60,
        manufacturer_data=md or {},
        service_data={} if sd is None else {EDDYSTONE_UUID: sd},
    )


# ---- encoders: the spec layouts written the other way round, for round trips ----------------
def encode_ibeacon(u: uuid.UUID, major: int, minor: int, power: int) -> bytes:
    return struct.pack(">2s16sHHb", b"\x02\x15", u.bytes, major, minor, power)


def encode_uid(tx: int, namespace: bytes, instance: bytes, rfu: bool) -> bytes:
    return struct.pack(">Bb10s6s", 0x00, tx, namespace, instance) + (b"\x00\x00" if rfu else b"")


def encode_tlm(mv: int, temp_8_8: int, adv: int, tenths: int) -> bytes:
    return struct.pack(">BBHhII", 0x20, 0x00, mv, temp_8_8, adv, tenths)


# ---- one advert, two frames ----------------------------------------------------------------
def test_one_advert_carries_ibeacon_and_tlm() -> None:
    # [ibeacon-ble]: the expected values are the ones that suite asserts (uuid, 3838, 4949, -59).
    result = decode_advert(BLUECHARM)
    assert result.errors == []
    (f1, ib), (f2, tlm) = [(f.format, f.fields) for f in result.frames]
    assert f1 == "ibeacon"
    assert ib == {
        "uuid": "426c7565-4368-6172-6d42-6561636f6e73",
        "major": 3838,
        "minor": 4949,
        "measured_power": -59,
    }
    assert f2 == "eddystone_tlm"
    assert tlm == {"battery_mv": 3070, "temperature_c": 28.0, "adv_count": 1800, "uptime_s": 1599.6}


def test_ibeacon_bytes_under_another_company_id_are_not_an_ibeacon() -> None:
    # [ibeacon-ble] NOT_IBEACON_SERVIE_INFO: same bytes under company 21.
    assert decoded(ad({21: BLUECHARM.manufacturer_data[76]})) == []


def test_apple_data_that_is_not_an_ibeacon_is_ignored_not_an_error() -> None:
    # What every iPhone sends (Continuity "nearby", type 0x10): not ours, not malformed.
    result = decode_advert(ad({76: bytes.fromhex("1005031c1a2b3c")}))
    assert result.frames == [] and result.errors == []


# ---- raw advertising data, through bluetooth-data-tools' GAP parser -------------------------
def test_kontakt_ibeacon_from_raw_advertising_data() -> None:
    # [kontakt] TestParseIBeacon. Major and minor are the bytes 01 02 and 03 04; the Go suite
    # expects 513 and 1027 (read little-endian), but iBeacon fields are big-endian, as the
    # BlueCharm capture above confirms (0e fe is major 3838). So: 258 and 772.
    advert = advert_from_gap(
        bytes.fromhex("1AFF4C000215F7826DA64FA24E988024BC5B71E0893E01020304B3"), -70
    )
    assert decoded(advert) == [
        (
            "ibeacon",
            {
                "uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e",
                "major": 258,
                "minor": 772,
                "measured_power": -77,
            },
        )
    ]


def test_a_cut_capture_loses_the_structure_not_the_decoder() -> None:
    # [kontakt] TestParseTooShortIBeacon: the AD length says 26, one byte is missing. The GAP
    # parser drops the whole structure, so there is neither a frame nor an error to report.
    advert = advert_from_gap(
        bytes.fromhex("1AFF4C000215F7826DA64FA24E988024BC5B71E0893E01020304"), -70
    )
    assert advert.manufacturer_data == {}
    result = decode_advert(advert)
    assert result.frames == [] and result.errors == []


@pytest.mark.parametrize(
    ("raw", "fmt", "fields"),
    [
        (  # [kontakt] TestParseEddystoneUID (20 bytes: with the 2 reserved bytes)
            "1716AAFE0004010203040506070809000102030405060000",
            "eddystone_uid",
            {"namespace": "01020304050607080900", "instance": "010203040506", "tx_power_0m": 4},
        ),
        (  # [kontakt] TestEddystoneURL: "https://" + "test" + 0x0C (".biz")
            "0B16AAFE100403746573740C",
            "eddystone_url",
            {"url": "https://test.biz", "tx_power_0m": 4},
        ),
        (  # [kontakt] TestEddystoneURL2: "http://www." + "test" + 0x06 (".gov/") + "test"
            "0F16AAFE100400746573740674657374",
            "eddystone_url",
            {"url": "http://www.test.gov/test", "tx_power_0m": 4},
        ),
        (  # [kontakt] TestEddystoneTLM: the Go suite expects 384 mV, 5.25 C, 256, 6553.6 s
            "1116AAFE2000018005400000010000010000",
            "eddystone_tlm",
            {"battery_mv": 384, "temperature_c": 5.25, "adv_count": 256, "uptime_s": 6553.6},
        ),
        (  # [kontakt] TestEddystoneETLM
            "1516AAFE20010102030405060708090A0B0C01021112",
            "eddystone_etlm",
            {"etlm": "0102030405060708090a0b0c", "salt": "0102", "mic": "1112"},
        ),
        (  # [kontakt] TestEddystoneEID
            "0D16AAFE30045152535455565758",
            "eddystone_eid",
            {"eid": "5152535455565758", "tx_power_0m": 4},
        ),
        (  # [altbeacon-lib] testRecognizeBeacon: expects mfg reserved ("manData") 9
            "02011a1bff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c50900",
            "altbeacon",
            {
                "company_id": 0x0118,
                "beacon_id": "2f234454cf6d4a0fadf2f4911ba9ffa600010002",
                "measured_power": -59,
                "mfg_reserved": 9,
            },
        ),
    ],
)
def test_captured_raw_frames(raw: str, fmt: str, fields: dict) -> None:
    assert decoded(advert_from_gap(bytes.fromhex(raw), -70)) == [(fmt, fields)]


def test_radbeacon_usb_altbeacon_with_name_and_tx_power() -> None:
    # [altbeacon-lib] testDetectsDaveMHardwareBeacon: a RadBeacon USB's advert plus scan response.
    raw = bytes.fromhex(
        "02011a1bff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600050003be02"
        "0e09526164426561636f6e20555342020a03" + "00" * 13
    )
    advert = advert_from_gap(raw, -55)
    assert (advert.local_name, advert.tx_power) == ("RadBeacon USB", 3)
    [(fmt, f)] = decoded(advert)
    assert fmt == "altbeacon"
    assert (f["beacon_id"][-8:], f["measured_power"], f["mfg_reserved"]) == ("00050003", -66, 2)


def test_altbeacon_missing_its_reserved_byte_is_reported() -> None:
    # [altbeacon-lib] testParsesBeaconMissingDataField: AD length 0x1A, one byte short of an
    # AltBeacon. The Android library fills in zero; we say what is wrong instead.
    raw = "02011a1aff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c5000000"
    result = decode_advert(advert_from_gap(bytes.fromhex(raw), -55))
    assert result.frames == []
    assert result.errors == ["altbeacon: frame is 23 bytes, expected 24"]


# ---- Eddystone service data, as bleak hands it over -----------------------------------------
@pytest.mark.parametrize(
    ("data", "fmt", "fields"),
    [
        (  # [ruuvikit] eddystone0x00_data: 18 bytes, reserved bytes left out
            RUUVI_UID,
            "eddystone_uid",
            {"namespace": "00112233445566778899", "instance": "aabbccddeeff", "tx_power_0m": 18},
        ),
        (  # [ruuvikit] eddystone0x10_data
            RUUVI_URL_SETUP,
            "eddystone_url",
            {"url": "https://ruu.vi/setupFAIL", "tx_power_0m": -18},
        ),
        (  # [ruuvikit] ruuviEddystone_data: a RuuviTag in weather-station URL mode
            RUUVI_URL_TAG,
            "eddystone_url",
            {"url": "https://ruu.vi/#BGQZAL48Q", "tx_power_0m": -10},
        ),
        (  # [ruuvikit] eddystone0x20_data: the ObjC suite expects 3210 mV, 25.5 C, 88, 455
            RUUVI_TLM,
            "eddystone_tlm",
            {"battery_mv": 3210, "temperature_c": 25.5, "adv_count": 88, "uptime_s": 45.5},
        ),
        (  # [ruuvikit] test_EIDIdentifier
            bytes.fromhex("3000deadbeefcafebabe"),
            "eddystone_eid",
            {"eid": "deadbeefcafebabe", "tx_power_0m": 0},
        ),
        (  # [ruuvikit] test_TLMEncrypted: 18 bytes, version 1
            b"\x20\x01" + bytes(16),
            "eddystone_etlm",
            {"etlm": "00" * 12, "salt": "0000", "mic": "0000"},
        ),
    ],
)
def test_eddystone_frames(data: bytes, fmt: str, fields: dict) -> None:
    frame = decode_eddystone(data)
    assert (frame.format, frame.fields) == (fmt, fields)


def test_tlm_temperature_0x8000_means_no_sensor() -> None:
    # [ruuvikit] test_TLMTemperatureUnsupported: 0x8000 is "not supported", not -128 C.
    tlm = bytes([0x20, 0x00, 0x0C, 0x8A, 0x80, 0x00]) + bytes(8)
    f = decode_eddystone(tlm).fields
    assert f["temperature_c"] is None
    assert f["battery_mv"] == 3210


def test_tlm_battery_zero_means_mains_powered() -> None:
    # [ruuvikit] test_TLMBatteryUnsupported
    f = decode_eddystone(bytes([0x20, 0x00]) + bytes(12)).fields
    assert f["battery_mv"] is None and f["temperature_c"] == 0.0


def test_negative_tlm_temperature() -> None:
    assert (
        decode_eddystone(encode_tlm(2900, int(-3.5 * 256), 5, 10)).fields["temperature_c"] == -3.5
    )


@pytest.mark.parametrize(
    ("code", "expansion"),
    list(
        enumerate(
            [".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/"]
            + [".com", ".org", ".edu", ".net", ".info", ".biz", ".gov"]
        )
    ),
)
def test_every_url_expansion_code(code: int, expansion: str) -> None:
    # [ruuvikit] test_URLEncoding: "https://foo" + each of the spec's 14 expansion codes.
    frame = decode_eddystone(bytes([0x10, 0x00, 0x03]) + b"foo" + bytes([code]))
    assert frame.fields["url"] == "https://foo" + expansion


@pytest.mark.parametrize(
    ("scheme", "prefix"),
    [(0, "http://www."), (1, "https://www."), (2, "http://"), (3, "https://")],
)
def test_every_url_scheme(scheme: int, prefix: str) -> None:
    # [ruuvikit] test_URLSchemePrefix
    frame = decode_eddystone(bytes([0x10, 0x00, scheme]) + b"foo.bar")
    assert frame.fields["url"] == prefix + "foo.bar"


# ---- malformed frames: a reason, never an exception ----------------------------------------
@pytest.mark.parametrize(
    ("advert", "reason"),
    [
        (ad({76: b"\x02\x15\x01\x02"}), "ibeacon: frame is 4 bytes, expected 23"),
        (ad({76: BLUECHARM.manufacturer_data[76] + bytes(40)}), "ibeacon: frame is 63 bytes"),
        (ad({0x0118: b"\xbe\xac" + bytes(30)}), "altbeacon: frame is 32 bytes, expected 24"),
        (ad(sd=RUUVI_TLM[:9]), "eddystone: TLM frame is 9 bytes, expected 14"),
        (ad(sd=RUUVI_TLM + b"\x00"), "eddystone: TLM frame is 15 bytes, expected 14"),
        # [ruuvikit] test_TLMEncryptedInvalid: version 1 in a 14-byte frame.
        (ad(sd=b"\x20\x01" + bytes(12)), "eddystone: encrypted TLM frame is 14 bytes, expected 18"),
        (ad(sd=b"\x20"), "eddystone: TLM frame has no version byte"),
        (ad(sd=b"\x20\x07" + bytes(12)), "eddystone: TLM version 0x07 is not defined"),
        (ad(sd=RUUVI_UID[:17]), "eddystone: UID frame is 17 bytes, expected 18 or 20"),
        (ad(sd=b"\x30\x00\x01"), "eddystone: EID frame is 3 bytes, expected 10"),
        (ad(sd=b"\x30\x00" + bytes(9)), "eddystone: EID frame is 11 bytes, expected 10"),
        (ad(sd=b"\x10\x00\x03" + b"a" * 18), "eddystone: URL frame is 21 bytes, expected 4 to 20"),
        # [ruuvikit] test_URLSchemePrefix, "invalid scheme"; test_URLInvalidCharacter (space).
        (ad(sd=b"\x10\x00\x04foo.bar"), "eddystone: URL scheme code 0x04 is not defined"),
        (ad(sd=b"\x10\x00\x00 "), "eddystone: URL byte 0x20 is not printable"),
        (ad(sd=b""), "eddystone: empty service data"),
        # [ruuvikit] test_frameType: 0x40 is reserved, 0x17 unspecified.
        (ad(sd=b"\x40" + bytes(17)), "eddystone: unknown frame type 0x40"),
        (ad(sd=b"\x17" + bytes(17)), "eddystone: unknown frame type 0x17"),
    ],
)
def test_malformed_frames_give_a_reason_not_an_exception(advert: Advert, reason: str) -> None:
    result = decode_advert(advert)
    assert result.frames == []
    assert len(result.errors) == 1 and result.errors[0].startswith(reason)


def test_a_bad_frame_does_not_hide_a_good_one() -> None:
    advert = ad({76: BLUECHARM.manufacturer_data[76]}, sd=b"\x20\x00\x01")
    result = decode_advert(advert)
    assert [f.format for f in result.frames] == ["ibeacon"]
    assert result.errors == ["eddystone: TLM frame is 3 bytes, expected 14"]


def test_helpers_raise_frame_error_only_for_known_formats() -> None:
    assert decode_manufacturer(0x0006, b"\x01\x09\x20\x02") is None  # Microsoft CDP: not ours
    with pytest.raises(FrameError, match="ibeacon: frame is 2 bytes"):
        decode_manufacturer(76, b"\x02\x15")
    with pytest.raises(FrameError, match="unknown frame type 0x50"):
        decode_eddystone(b"\x50")


def test_wrong_types_from_a_buggy_source_do_not_raise() -> None:
    # A source that forgot to unhex: str where bytes belong.
    odd = Advert(
        address="x", rssi=-60, manufacturer_data={76: "0215"}, service_data={EDDYSTONE_UUID: "2000"}
    )  # type: ignore[dict-item]
    result = decode_advert(odd)
    assert result.frames == []
    assert result.errors == ["eddystone: undecodable (ValueError)"]
    assert decode_advert(None).errors == ["advert: undecodable (AttributeError)"]  # type: ignore[arg-type]


def test_frames_are_immutable_and_json_copies_are_independent() -> None:
    frame = decode_advert(BLUECHARM).frames[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.format = "altbeacon"  # type: ignore[misc]
    obj = frame.to_json_obj()
    obj["fields"]["distance_m"] = 1.0
    assert "distance_m" not in frame.fields
    assert frame.format in FORMATS


def test_uuid_cache_stays_bounded_under_random_uuids() -> None:
    # Formatted UUIDs are cached for speed; a sender cycling random UUIDs must not grow memory.
    from edge_agent.sensing.ble import decode

    for i in range(decode._UUID_CACHE_MAX + 10):
        [(_, f)] = decoded(ad({76: encode_ibeacon(uuid.UUID(int=i), 1, 1, -59)}))
        assert f["uuid"] == str(uuid.UUID(int=i))
    assert 0 < len(decode._UUID_CACHE) <= decode._UUID_CACHE_MAX


# ---- Eddystone-EID ------------------------------------------------------------------------
def test_eid_matches_published_vectors() -> None:
    # [ephemeral_calc] identity key 0102..16, rotation exponent 10, beacon time 0 and 2000 s.
    key = bytes.fromhex("0102030405060708090A111213141516")
    assert compute_eid(key, 0, 10).hex().upper() == "A9B76A71C5F89290"
    assert compute_eid(key, 2000, 10).hex().upper() == "4144413E45FEFA58"


def test_eid_is_constant_within_a_rotation_period_and_new_after_it() -> None:
    key = bytes.fromhex("0102030405060708090A111213141516")
    assert compute_eid(key, 1023, 10) == compute_eid(key, 0, 10)
    assert compute_eid(key, 1024, 10) != compute_eid(key, 1023, 10)
    # The temporary key changes every 2**16 s: periods on both sides of that boundary differ.
    assert compute_eid(key, 65535, 10) != compute_eid(key, 65536, 10)


def test_a_computed_eid_decodes_from_its_frame() -> None:
    eid = compute_eid(bytes(range(16)), 123_456, 9)
    [(fmt, f)] = decoded(ad(sd=b"\x30\xeb" + eid))
    assert (fmt, f["eid"], f["tx_power_0m"]) == ("eddystone_eid", eid.hex(), -21)


# ---- properties ----------------------------------------------------------------------------
company = st.sampled_from([76, 0x0118, 0x0059, 0xFFFF]) | st.integers(0, 0xFFFF)
# Random bytes, and random bytes behind every known header so the parsers' branches get hit.
payload = st.binary(max_size=64) | st.sampled_from(
    [b"\x02\x15", b"\xbe\xac", b"\x00", b"\x10", b"\x20\x00", b"\x20\x01", b"\x30"]
).flatmap(lambda head: st.binary(max_size=30).map(lambda tail: head + tail))


@fuzz_timeout
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    md=st.dictionaries(company, payload, max_size=3),
    sd=st.dictionaries(
        st.sampled_from([EDDYSTONE_UUID, "0000fe9f-0000-1000-8000-00805f9b34fb"]),
        payload,
        max_size=2,
    ),
)
def test_decoder_never_raises(md: dict[int, bytes], sd: dict[str, bytes]) -> None:
    result = decode_advert(Advert(address="x", rssi=-60, manufacturer_data=md, service_data=sd))
    for e in result.errors:
        # One line each, and from a parser's own length checks, not from the safety net.
        assert "\n" not in e and "undecodable" not in e
    assert all(f.format in FORMATS for f in result.frames)
    json.dumps([f.to_json_obj() for f in result.frames])  # always JSON-serialisable


@given(st.uuids(), st.integers(0, 65535), st.integers(0, 65535), st.integers(-128, 127))
def test_ibeacon_roundtrip(u: uuid.UUID, major: int, minor: int, power: int) -> None:
    [(fmt, f)] = decoded(ad({76: encode_ibeacon(u, major, minor, power)}))
    assert fmt == "ibeacon"
    assert f == {"uuid": str(u), "major": major, "minor": minor, "measured_power": power}


@given(
    st.integers(-128, 127),
    st.binary(min_size=10, max_size=10),
    st.binary(min_size=6, max_size=6),
    st.booleans(),
)
def test_eddystone_uid_roundtrip(tx: int, namespace: bytes, instance: bytes, rfu: bool) -> None:
    [(fmt, f)] = decoded(ad(sd=encode_uid(tx, namespace, instance, rfu)))
    assert fmt == "eddystone_uid"
    assert f == {"namespace": namespace.hex(), "instance": instance.hex(), "tx_power_0m": tx}


@given(
    st.integers(1, 65535),
    st.integers(-0x7FFF, 0x7FFF),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
def test_tlm_roundtrip(mv: int, temp: int, adv: int, tenths: int) -> None:
    [(fmt, f)] = decoded(ad(sd=encode_tlm(mv, temp, adv, tenths)))
    assert fmt == "eddystone_tlm"
    assert f == {
        "battery_mv": mv,
        "temperature_c": temp / 256,
        "adv_count": adv,
        "uptime_s": tenths / 10,
    }
    # The 8.8 value comes back bit for bit.
    assert round(f["temperature_c"] * 256) == temp


# ---- the installer's CLI -----------------------------------------------------------------
def cli(text: str) -> tuple[dict, int]:
    out = io.StringIO()
    code = run_decode(io.StringIO(text), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1  # exactly one JSON line, whatever came in
    return json.loads(lines[0]), code


def test_cli_reports_every_frame_and_no_address() -> None:
    answer, code = cli(BLUECHARM.to_json())
    assert code == 0
    assert set(answer) == {"frames", "errors", "rssi"}
    assert [f["format"] for f in answer["frames"]] == ["ibeacon", "eddystone_tlm"]
    assert answer["frames"][1]["fields"]["battery_mv"] == 3070
    # -60 dBm heard, -59 dBm at 1 m: about a metre away.
    assert 0 < answer["frames"][0]["fields"]["distance_m"] < 3
    assert "00:00:00:00:00:00" not in json.dumps(answer)


def test_cli_reads_the_scanner_nodes_short_uuid_form() -> None:
    text = json.dumps(
        {"address": "C3:00:00:00:00:01", "rssi": -70, "service_data": {"FEAA": RUUVI_TLM.hex()}}
    )
    answer, code = cli(text)
    assert code == 0 and answer["frames"][0]["format"] == "eddystone_tlm"
    assert "C3:00" not in json.dumps(answer)


def test_cli_malformed_frame_next_to_a_good_one_is_listed() -> None:
    text = json.dumps(
        {
            "address": "a",
            "rssi": -50,
            "manufacturer_data": {"76": BLUECHARM.manufacturer_data[76].hex()},
            "service_data": {EDDYSTONE_UUID: "2000"},
        }
    )
    answer, code = cli(text)
    assert code == 0
    assert answer["errors"] == ["eddystone: TLM frame is 2 bytes, expected 14"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no input"),
        ("   \n", "no input"),
        ("not json at all", "not JSON"),
        ("\x00\x01\x02\xff\ud800 junk", "not JSON"),
        ("[1, 2]", "advert must be a JSON object"),
        ("null", "advert must be a JSON object"),
        ('{"address":"a","rssi":"x"}', "rssi: must be a number"),
        ('{"address":7,"rssi":-50}', "address: must be a string"),
        ('{"address":"a","rssi":-50,"manufacturer_data":[1]}', "manufacturer_data: must be"),
        ('{"address":"a","rssi":-50,"manufacturer_data":{"apple":"00"}}', "not a decimal"),
        ('{"address":"a","rssi":-50,"manufacturer_data":{"76":"zz"}}', "not valid hex"),
        ('{"address":"a","rssi":-50,"manufacturer_data":{"76":7}}', "must be a hex string"),
        ('{"address":"a","rssi":-50,"service_uuids":"feaa"}', "service_uuids"),
        ('{"address":"a","rssi":-50,"tx_power":"high"}', "tx_power"),
        ('{"address":"a","rssi":-50,"manufacturer_data":{"76":"0215"}}', "ibeacon: frame is 2"),
        ('{"address":"a","rssi":-50}', "no known beacon frame"),
        # Values JSON allows but an advert cannot hold: these crashed the first version.
        ('{"address":"a","rssi":1e400}', "rssi: must be finite"),
        ('{"address":"a","rssi":NaN}', "not JSON: NaN is not a number"),
        ("[" * 50_000, "nested too deeply"),
        ("[" * 100_000, "input is over"),
    ],
)
def test_cli_garbage_gets_format_null_and_a_reason(text: str, error: str) -> None:
    answer, code = cli(text)
    assert code == 1
    assert answer["format"] is None and answer["frames"] == []
    assert error in answer["error"]


def test_cli_unreadable_stdin() -> None:
    class Broken(io.StringIO):
        def read(self, n: int | None = -1) -> str:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    out = io.StringIO()
    assert run_decode(Broken(), out) == 1
    assert json.loads(out.getvalue())["error"] == "unreadable input: UnicodeDecodeError"


mac = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b))
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
hexbytes = (st.binary(max_size=30) | payload).map(bytes.hex)
advert_like = st.fixed_dictionaries(
    {"address": mac},
    optional={
        "rssi": st.integers(-127, 0) | json_value,
        "manufacturer_data": st.dictionaries(
            st.sampled_from(["76", "280", "6", "-1", "70000", "x"]),
            hexbytes | json_value,
            max_size=3,
        )
        | json_value,
        "service_data": st.dictionaries(
            st.sampled_from([EDDYSTONE_UUID, "feaa", "0xFEAA", "fe2c"]),
            hexbytes | json_value,
            max_size=2,
        )
        | json_value,
        "service_uuids": st.lists(st.text(max_size=6), max_size=2) | json_value,
        "tx_power": st.integers(-100, 20) | json_value,
        "local_name": json_value,
        "ts": json_value,
        "receiver": json_value,
    },
)


@fuzz_timeout
@settings(max_examples=FUZZ_EXAMPLES // 4, deadline=None)
@given(advert_like)
def test_cli_never_crashes_and_never_prints_the_address(obj: dict) -> None:
    answer, code = cli(json.dumps(obj))
    assert code in (0, 1)
    if code == 0:
        assert answer["frames"] and all(f["format"] in FORMATS for f in answer["frames"])
    else:
        assert answer["format"] is None and isinstance(answer["error"], str)
    assert obj["address"] not in json.dumps(answer)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_cli_never_crashes_on_any_text(text: str) -> None:
    answer, code = cli(text)
    assert code in (0, 1) and isinstance(answer, dict)


def test_the_installed_command_reads_stdin() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "edge-agent")
    ok = subprocess.run(
        [exe, "ble", "decode"], input=BLUECHARM.to_json().encode(), capture_output=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert [f["format"] for f in json.loads(ok.stdout)["frames"]] == ["ibeacon", "eddystone_tlm"]
    junk = subprocess.run(
        [exe, "ble", "decode"], input=os.urandom(4096), capture_output=True, timeout=60
    )
    assert junk.returncode == 1 and json.loads(junk.stdout)["format"] is None
    assert junk.stderr == b""
    empty = subprocess.run([exe, "ble", "decode"], input=b"", capture_output=True, timeout=60)
    assert empty.returncode == 1 and "no input" in json.loads(empty.stdout)["error"]
