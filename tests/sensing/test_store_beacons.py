"""Telemetry paired with the store's configured beacons: by static address, by the identifying
frame heard from the same address (iBeacon, Eddystone-UID, a store beacon's own EID), and
encrypted TLM opened with the beacon's key. Every advert is raw advertising bytes through the
decoder, as every source delivers them. Plus the low-battery episodes staff are alerted about."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.box.firmware import eddystone_uid_adv, ibeacon_adv
from edge_agent.config import BeaconConfig
from edge_agent.sensing.ble.beacon_health import BatteryWatch
from edge_agent.sensing.ble.decode import decode_advert
from edge_agent.sensing.ble.eid import compute_eid
from edge_agent.sensing.ble.store_beacons import Heard, StoreBeacons
from tests.sensing.beacon_air import (
    eid_adv,
    etlm_adv,
    gap_eddystone,
    heard,
    tampered,
    tlm_adv,
)

UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
EIK = bytes.fromhex("00112233445566778899aabbccddeeff")
SHOPPER_KEY = bytes.fromhex("0102030405060708090a111213141516")
K = 12
OFFSET = 1_700_000_000 - 86_400  # the beacon was registered with its clock at 86,400 s
T0 = 1_700_000_000.0

BEACONS = [
    BeaconConfig(name="fitting-room", zone="womens", address="D0:0D:00:00:00:01"),
    BeaconConfig(name="entrance-door", zone="entrance", uuid=UUID, major=100, minor=1),
    BeaconConfig(
        name="till",
        zone="entrance",
        eik=EIK.hex(),
        eid_rotation_exponent=K,
        eid_clock_offset_s=OFFSET,
    ),
    BeaconConfig(name="womens-rack", zone="womens", address="D0:0D:00:00:00:02"),
]


def beacons() -> StoreBeacons:
    return StoreBeacons(BEACONS, default_rotation_exponent=10)


def observe(sb: StoreBeacons, raw: bytes, address: str, ts: float = T0) -> Heard:
    advert = heard(raw, address, ts)
    return sb.observe(advert.address, decode_advert(advert).frames, advert.timestamp)


def batteries(h: Heard) -> list[tuple[str, int, bool]]:
    return [(t.beacon, t.fields["battery_mv"], t.encrypted) for t in h.telemetry]


def beacon_time(ts: float) -> int:
    return int(ts) - OFFSET


# ---- plain TLM -------------------------------------------------------------------------------
def test_a_tlm_only_beacon_is_known_by_its_static_address() -> None:
    sb = beacons()
    # A scanner node may write the address in lower case.
    h = observe(sb, tlm_adv(2100), "d0:0d:00:00:00:01")
    assert batteries(h) == [("fitting-room", 2100, False)]
    assert h.beacons == ["fitting-room"]  # heard, for the missing-beacon check too
    assert h.untied_tlm == 0 and h.tokens == [] and h.refused == []


def test_tlm_follows_the_uid_frame_heard_from_the_same_address() -> None:
    sb = beacons()
    address = "C0:FF:EE:00:64:01"
    # Telemetry before any identifying frame names nobody.
    assert observe(sb, tlm_adv(2900), address).untied_tlm == 1
    # The layout's UID for uuid/major/minor, as the ESP32 firmware sends it.
    h = observe(sb, eddystone_uid_adv(UUID, 100, 1, -59), address)
    assert h.beacons == ["entrance-door"] and h.telemetry == []
    assert batteries(observe(sb, tlm_adv(2900), address)) == [("entrance-door", 2900, False)]
    # Another address is another device.
    assert observe(sb, tlm_adv(2000), "C0:FF:EE:00:00:99").untied_tlm == 1


def test_ibeacon_and_tlm_in_one_advert() -> None:
    raw = ibeacon_adv(UUID, 100, 1, -59) + tlm_adv(2950)[3:]  # one flags structure
    h = observe(beacons(), raw, "C0:FF:EE:00:64:01")
    assert batteries(h) == [("entrance-door", 2950, False)]


def test_an_advert_without_an_address_ties_nothing() -> None:
    sb = beacons()
    observe(sb, ibeacon_adv(UUID, 100, 1, -59), "C0:FF:EE:00:64:01")
    # Some captures carry no address: they neither tie nor untie anything.
    assert observe(sb, ibeacon_adv(UUID, 100, 1, -59), "").beacons == ["entrance-door"]
    h = observe(sb, tlm_adv(2000), "")
    assert h.telemetry == [] and h.untied_tlm == 1
    assert batteries(observe(sb, tlm_adv(2000), "C0:FF:EE:00:64:01"))


# ---- EID beacons and encrypted TLM ---------------------------------------------------------
def test_an_eid_beacons_etlm_is_opened_with_its_key() -> None:
    sb = beacons()
    address = "5A:11:22:33:44:55"  # an EID beacon's private address
    h = observe(sb, eid_adv(EIK, beacon_time(T0), K), address)
    assert h.beacons == ["till"]
    assert h.tokens == []  # a store beacon's EID is not a shopper
    h = observe(sb, etlm_adv(2050, EIK, beacon_time(T0 + 3), K), address, T0 + 3)
    assert batteries(h) == [("till", 2050, True)]
    assert h.refused == [] and h.no_key == []


def test_shoppers_eids_still_go_to_the_resolver() -> None:
    eid = compute_eid(SHOPPER_KEY, int(T0), 10)
    h = observe(beacons(), gap_eddystone(b"\x30\xee" + eid), "6B:00:00:00:00:01")
    assert h.tokens == [eid] and h.beacons == []


def test_beacon_eids_resolve_one_period_either_side_and_roll_over() -> None:
    sb = beacons()
    period = 1 << K
    # The beacon's clock a period ahead, then behind ours.
    for skew in (period, -period):
        h = observe(sb, eid_adv(EIK, beacon_time(T0) + skew, K), "5A:00:00:00:00:01")
        assert h.beacons == ["till"], skew
    # Our clock moves on ten periods: the table follows.
    later = T0 + 10 * period
    assert observe(sb, eid_adv(EIK, beacon_time(later), K), "5A:00:00:00:00:02", later).beacons
    assert observe(sb, eid_adv(EIK, beacon_time(T0), K), "5A:00:00:00:00:03", later).tokens


def test_telemetry_moves_with_an_eid_beacons_new_address() -> None:
    sb = beacons()
    observe(sb, eid_adv(EIK, beacon_time(T0), K), "5A:00:00:00:00:0A")
    later = T0 + (1 << K)
    observe(sb, eid_adv(EIK, beacon_time(later), K), "5A:00:00:00:00:0B", later)
    old = observe(sb, etlm_adv(2050, EIK, beacon_time(later), K), "5A:00:00:00:00:0A", later)
    assert old.telemetry == [] and old.untied_tlm == 1
    new = observe(sb, etlm_adv(2050, EIK, beacon_time(later), K), "5A:00:00:00:00:0B", later)
    assert batteries(new) == [("till", 2050, True)]


def test_a_tampered_etlm_is_refused_with_its_reason() -> None:
    sb = beacons()
    address = "5A:11:22:33:44:55"
    observe(sb, eid_adv(EIK, beacon_time(T0), K), address)
    good = etlm_adv(2050, EIK, beacon_time(T0), K)
    for at in (-1, -3, -5, -16):  # MIC, salt, ciphertext
        h = observe(sb, tampered(good, at), address)
        assert h.telemetry == []
        [(name, reason)] = h.refused
        assert name == "till" and "integrity" in reason


def test_etlm_from_a_beacon_without_a_key_is_reported_not_opened() -> None:
    h = observe(beacons(), etlm_adv(2050, EIK, 1000, K), "D0:0D:00:00:00:02")
    assert h.telemetry == [] and h.no_key == ["womens-rack"]


# ---- properties ----------------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(
    frame=st.sampled_from([b"\x20\x00", b"\x20\x01", b"\x30", b"\x00"]).flatmap(
        lambda head: st.binary(max_size=24).map(lambda tail: head + tail)
    ),
    address=st.sampled_from(["5A:11:22:33:44:55", "D0:0D:00:00:00:01", "D0:0D:00:00:00:02", ""]),
    dt=st.floats(-1e6, 1e6),
)
def test_random_frames_from_tied_addresses_never_raise(
    frame: bytes, address: str, dt: float
) -> None:
    sb = beacons()
    observe(sb, eid_adv(EIK, beacon_time(T0), K), "5A:11:22:33:44:55")
    h = observe(sb, gap_eddystone(frame), address, T0 + dt)
    assert all(t.fields["battery_mv"] is None or t.fields["battery_mv"] > 0 for t in h.telemetry)


# ---- low-battery episodes ------------------------------------------------------------------
def test_one_change_per_episode_not_per_reading() -> None:
    w = BatteryWatch()
    changes = [w.reading("rack", mv, 2400) for mv in (2950, 2900, 2390, 2405, 2395, 2450, 2499)]
    # The first reading is reported (healthy), then the episode starts once: hovering at the
    # threshold, or a warm afternoon's few mV, does not end it.
    assert changes == [False, None, True, None, None, None, None]
    # A new battery ends it; the next flat one starts another.
    assert [w.reading("rack", mv, 2400) for mv in (3050, 3000, 2300)] == [False, None, True]


def test_no_reading_says_nothing_about_an_episode() -> None:
    w = BatteryWatch()
    assert w.reading("mains", None, 2400) is False  # first report: not low
    assert w.reading("mains", None, 2400) is None
    assert w.reading("rack", 2100, 2400) is True
    assert w.reading("rack", None, 2400) is None  # still low until a real reading says not


def test_beacons_have_their_own_episodes() -> None:
    w = BatteryWatch()
    assert w.reading("a", 2100, 2400) is True
    assert w.reading("b", 2100, 2400) is True
    assert w.reading("a", 2100, 2400) is None
