"""The walk file (edge_agent/sensing/ble/walk.py): what the agent writes reads back the same,
anything else is refused in one line naming the line, and the bench scores a walk exactly as it
scores the same readings and the same truth from its simulator."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sensing.ble.walk import (
    WalkError,
    WalkReceiver,
    advert_line,
    end_line,
    header_line,
    parse_walk,
    tap_line,
)

RX = {
    "local": WalkReceiver("entrance", -59.0, 2.0),
    "node-1": WalkReceiver("womens", -61.5, 2.4),
}
HEADER = header_line("s1", "walker", "2026-12-03T09:00:00+00:00", RX)

events = st.lists(
    st.one_of(
        st.tuples(
            st.just("rx"),
            st.floats(0, 5, allow_nan=False),
            st.sampled_from(sorted(RX)),
            st.integers(-127, 20),
        ),
        st.tuples(
            st.just("tap"),
            st.floats(0, 5, allow_nan=False),
            st.sampled_from(["entrance", "womens", None]),
        ),
    ),
    min_size=1,
    max_size=60,
)


@given(events)
@settings(max_examples=150, deadline=None)
def test_what_the_agent_writes_reads_back_the_same(evs: list[tuple]) -> None:
    lines, t, adverts, taps = [HEADER], 0.0, [], []
    for ev in evs:
        t = round(t + ev[1], 3)
        if ev[0] == "rx":
            lines.append(advert_line(t, ev[2], ev[3]))
            adverts.append((t, ev[2], ev[3]))
        else:
            lines.append(tap_line(t, ev[2]))
            taps.append((t, ev[2]))
    lines.append(end_line(t + 1))
    if not taps:
        with pytest.raises(WalkError, match="no taps"):
            parse_walk("\n".join(lines))
        return
    walk = parse_walk("\n".join(lines))
    assert walk.receivers == RX and walk.tag == "walker" and walk.store == "s1"
    assert walk.adverts == adverts and walk.taps == taps
    assert walk.duration_s == pytest.approx(t + 1)
    # The truth at any moment is the last tap at or before it.
    for ts, _ in taps:
        assert walk.zone_at(ts) == [z for tt, z in taps if tt <= ts][-1]
    assert walk.zone_at(taps[0][0] - 0.001) is None


BAD = [
    ("", "empty"),
    ("not json", "line 1: not JSON"),
    ('{"walk": 2}', "line 1: not a walk header"),
    ('{"walk": 1, "store": "s", "tag": "t", "started": "x", "receivers": {}}', "at least one"),
    (
        '{"walk": 1, "store": "s", "tag": "t", "started": "x", '
        '"receivers": {"a": {"zone": "z", "rssi_1m": -59, "path_loss_n": 9}}}',
        "path_loss_n 9",
    ),
    (HEADER + '\n{"t": 1, "rx": "nowhere", "rssi": -70}', "line 2: receiver 'nowhere'"),
    (HEADER + '\n{"t": 1, "rx": "local", "rssi": -300}', "line 2: rssi -300"),
    (HEADER + '\n{"t": 1, "rx": "local", "rssi": true}', "'rssi' must be a number"),
    (HEADER + '\n{"t": 12, "tap": null}\n{"t": 1, "tap": null}', "line 3: time goes back"),
    (HEADER + '\n{"t": 1, "tap": "menswear"}', "line 2: tap names zone 'menswear'"),
    (HEADER.replace('"zones":[', '"zones":[7,'), "'zones' must be a list"),
    (HEADER + '\n{"t": "soon", "tap": null}', "'t' must be a number"),
    (HEADER + '\n{"t": 1}', "line 2: neither"),
    (HEADER + "\n[1, 2]", "line 2: expected a JSON object"),
    (HEADER + "\n" + "[" * 2000 + "]" * 2000, "line 2: nested too deep"),
    (HEADER + "\n" + "x" * 5000, "line 2: longer than"),
    (HEADER + '\n{"t": 1, "rx": "local", "rssi": -70}', "no taps"),
]


@pytest.mark.parametrize(("text", "why"), BAD, ids=[w for _, w in BAD])
def test_a_bad_walk_is_refused_in_one_line_naming_the_line(text: str, why: str) -> None:
    with pytest.raises(WalkError, match=why.replace("(", r"\(").replace("[", r"\[")) as exc:
        parse_walk(text)
    assert "\n" not in str(exc.value)


def test_readings_a_little_out_of_order_are_put_in_order() -> None:
    # Two receivers' readings reach the recorder each with its own delay: CI saw one 13 ms
    # older than the line before it. Within MAX_DISORDER_S they are sorted, not refused.
    text = "\n".join(
        [
            HEADER,
            advert_line(65.988, "local", -70),
            advert_line(65.975, "node-1", -80),
            tap_line(66.0, "entrance"),
            advert_line(66.5, "local", -69),
            tap_line(65.9, None),
        ]
    )
    w = parse_walk(text)
    assert [a[0] for a in w.adverts] == [65.975, 65.988, 66.5]
    assert w.taps == [(65.9, None), (66.0, "entrance")]


@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_garbage_after_a_good_header_never_escapes_as_anything_but_a_walk_error(
    junk: str,
) -> None:
    try:
        walk = parse_walk(HEADER + "\n" + junk)
    except WalkError as exc:
        assert str(exc).startswith("walk") and "\n" not in str(exc)
    else:  # junk that happens to be a walk's body is one: then it has its truth
        assert walk.taps


def test_the_bench_scores_a_walk_as_it_scores_the_simulator_s_same_shopper() -> None:
    """One simulated shopper, written as a walk (their readings, taps at their true crossings),
    gets the same visits, flaps and latencies from every pipeline as in the simulator."""
    from bench.ble import TICK_S, _pipes, _replay, _score
    from bench.ble_sim import PATH_LOSS_N, generate
    from bench.ble_walk import trace_of

    tr = generate(12, 600.0, seed=3)
    idx, sh = max(enumerate(tr.shoppers), key=lambda p: len(p[1].visits))
    assert len(sh.visits) >= 2
    # The walk's clock starts on the bench's tick grid, so both replays tick at the same moments.
    t0 = math.floor(sh.t_start / TICK_S) * TICK_S
    rx = {z: WalkReceiver(z, tr.calibration[z], PATH_LOSS_N) for z in tr.calibration}
    lines = [header_line("sim", "walker", "2026-12-03T09:00:00+00:00", rx)]
    marks: list[tuple[float, str]] = []
    for v in sh.visits:
        marks.append((v.t_in - t0, tap_line(v.t_in - t0, v.zone)))
        marks.append((v.t_out - t0, tap_line(v.t_out - t0, None)))
    for ts, i, r, rssi in tr.adverts:
        if i == idx:
            marks.append((ts - t0, advert_line(ts - t0, r, rssi)))
    # Same instant: the tap out before the next zone's tap in (list order is kept by sort).
    lines += [line for _, line in sorted(marks, key=lambda m: m[0])]
    lines.append(end_line(sh.t_end - t0))
    walk = parse_walk("\n".join(lines))
    wt = trace_of(walk)
    assert [(v.zone, v.t_in) for v in wt.shoppers[0].visits] == [
        (v.zone, round(v.t_in - t0, 3)) for v in sh.visits
    ]
    mine = [(ts, 0, r, rssi) for ts, i, r, rssi in tr.adverts if i == idx]
    alone = type(tr)([sh], mine, tr.rssi_1m, tr.calibration, tr.duration_s)
    for name in ("ours_median", "ours_steady", "ha_mqtt_room"):
        sim = _score(alone, _replay(alone, _pipes(alone, (name,))[0]))
        rec = _score(wt, _replay(wt, _pipes(wt, (name,))[0]))
        assert rec["stops"] == sim["stops"] and rec["flaps"] == sim["flaps"], name
        for k in ("enter_latency_s", "leave_latency_s"):
            assert rec[k]["p50"] == pytest.approx(sim[k]["p50"], abs=0.02), (name, k)


def test_a_zone_with_two_receivers_is_refused_by_the_bench_naming_them() -> None:
    from bench.ble_walk import trace_of

    two = {"a": WalkReceiver("entrance", -59, 2), "b": WalkReceiver("entrance", -60, 2)}
    text = header_line("s", "t", "x", two) + "\n" + json.dumps({"t": 1, "tap": "entrance"})
    with pytest.raises(WalkError, match="receivers 'a' and 'b'"):
        trace_of(parse_walk(text))


class Published:
    """The bus as the stage sees it: what it publishes, in order."""

    def __init__(self) -> None:
        self.states: list[dict] = []

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> bool:
        assert topic == "instore/s1/walk/state" and retain
        self.states.append(json.loads(payload))
        return True


def stage(tmp_path, now):  # type: ignore[no-untyped-def]
    from edge_agent.sensing.ble.calibrate import Calibration
    from edge_agent.sensing.walk_stage import WalkStage

    bus = Published()
    st_ = WalkStage(
        store="s1",
        walks_dir=tmp_path / "walks",
        tags={"walker", "spare"},
        zones={"entrance", "womens"},
        receivers={"local": ("entrance", Calibration()), "n1": ("womens", Calibration(-61, 2.4))},
        bus=bus,
        now=now,
    )
    return st_, bus


def cmd(**kw: object) -> bytes:
    return json.dumps(kw).encode()


def test_the_stage_writes_only_its_tag_as_heard_and_a_new_walk_ends_the_last(tmp_path) -> None:
    clock = [100.0]
    st_, bus = stage(tmp_path, lambda: clock[0])
    topic = "instore/s1/walk/cmd"
    st_.on_tag("walker", "local", -70, 100.5)  # before any walk: nothing
    st_.on_command(topic, cmd(action="start", tag="walker"))
    st_.on_tag("walker", "local", -70, 100.5)
    st_.on_tag("spare", "local", -60, 100.6)  # another beacon
    st_.on_tag("walker", "stranger-node", -60, 100.7)  # a receiver the walk does not know
    clock[0] = 101.0
    st_.on_command(topic, cmd(action="tap", zone="entrance"))
    st_.on_tag("walker", "n1", -80, 101.2)
    clock[0] = 102.0
    st_.on_command(topic, cmd(action="start", tag="spare"))  # ends the first walk
    st_.on_tag("walker", "local", -70, 102.5)  # no longer the tag being walked
    st_.on_command(topic, cmd(action="stop"))
    first, second = sorted((tmp_path / "walks").glob("walk-*.jsonl"))
    walk = parse_walk(first.read_text())
    assert walk.adverts == [(0.5, "local", -70), (1.2, "n1", -80)]
    assert walk.taps == [(1.0, "entrance")] and walk.duration_s == 2.0
    assert walk.receivers["n1"] == WalkReceiver("womens", -61, 2.4)
    assert second.read_text().splitlines()[-1] == end_line(0.0)
    assert bus.states[-1]["recording"] is False and bus.states[-1]["tag"] == "spare"


def test_the_stage_refuses_in_one_line_and_never_raises(tmp_path) -> None:
    st_, bus = stage(tmp_path, lambda: 100.0)
    topic = "instore/s1/walk/cmd"
    for raw, why in (
        (b"not json", "command refused"),
        (b'{"action": "dance"}', "command refused"),
        (b"[" * 5000, "command refused"),
        (cmd(action="stop"), "stop while no walk"),
        (cmd(action="start", tag="nobody"), "'nobody' is not a store beacon"),
    ):
        st_.on_command(topic, raw)
        assert why in bus.states[-1]["error"] and "\n" not in bus.states[-1]["error"], raw
    # The walks folder cannot be made (a file is in its way): refused, said, nothing raised.
    (tmp_path / "walks").write_text("in the way")
    st_.on_command(topic, cmd(action="start", tag="walker"))
    assert "cannot write" in bus.states[-1]["error"] and not bus.states[-1]["recording"]


def test_the_bench_command_refuses_a_bad_walk_in_one_line(tmp_path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "walk.jsonl"
    bad.write_text(HEADER + '\n{"t": 1, "tap": "menswear"}\n')
    for path, why in (
        (bad, "walk line 2: tap names zone 'menswear'"),
        (tmp_path / "none", "No such file"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "bench", "ble", "--walk", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2 and run.stdout == ""
        (line,) = run.stderr.strip().splitlines()
        assert why in line
