"""Chunked snapshots (issue 5): a slice too big for one downlink message, sent as parts, staged
durably in any order and swapped in atomically with the last one. Real SQLite files, a real
broker, a real ``edge-ops push-slice`` and a real kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.signing import expires_in, generate_keypair, sign_message
from contracts.slice_parts import SplitError, join_parts, split_snapshot
from edge_agent.slice.store import ProfileSlice, SliceError, SliceOrderError

STORE = "store-42"
pytestmark = pytest.mark.timeout(60)


def rows(n: int, prefix: str = "p", key_base: int = 0) -> list[dict]:
    return [
        {
            "profile_id": f"{prefix}-{i}",
            "first_name": "Ann",
            "consent_personalisation": i % 2 == 0,
            "segments": ["outdoor"],
            "identity_keys": [f"{key_base + i:032x}"],
        }
        for i in range(n)
    ]


def snapshot(version: int, profiles: list[dict], **kw) -> dict:
    return {"type": "snapshot", "store_id": STORE, "version": version, "profiles": profiles, **kw}


@pytest.fixture
def s(tmp_path: Path) -> ProfileSlice:
    sl = ProfileSlice(tmp_path / "profiles.db", store_id=STORE)
    sl.apply(snapshot(1, rows(10, "old")))
    yield sl
    sl.close()


def parts_of(body: dict, part_rows: int) -> list[dict]:
    return split_snapshot(body, part_rows=part_rows)


# ---- staging and the swap ----------------------------------------------------------------------


def test_parts_out_of_order_and_duplicated_swap_once_with_the_last(s: ProfileSlice) -> None:
    body = snapshot(2, rows(100), stock=[{"sku": "S1", "available": True}])
    parts = parts_of(body, 15)
    assert len(parts) == 7
    order = [3, 0, 3, 6, 1, 0, 5, 2]  # 4 missing until the end, duplicates on the way
    for n in order:
        res = s.apply(parts[n])
        assert res.kind == "snapshot_part"
        # The current slice keeps serving until the last part is in.
        assert s.version == 1 and s.count() == 10 and s.get("old-3") is not None
        assert s.get("p-0") is None
    st_ = s.staging()
    assert st_ is not None and (st_.received, st_.parts, st_.version) == (6, 7, 2)
    assert s.health()["profiles_snapshot_staged"] == "v2 6/7 parts"
    dup = s.apply(parts[3])
    assert dup.duplicate and dup.staged == 6
    res = s.apply(parts[4])
    assert (res.kind, res.version, res.rows, res.keys_changed) == ("snapshot", 2, 100, None)
    assert s.version == 2 and s.count() == 100 and s.get("old-3") is None
    assert s.get("p-42") is not None and s.get("p-42").version == 2
    assert len(s.identity_keys()) == 100
    assert s.identity_keys(["p-7"])["p-7"] == (bytes.fromhex(f"{7:032x}"),)
    assert s.stock("S1") == {"sku": "S1", "available": True, "quantity": None, "aisle": ""}
    assert s.staging() is None and s.health()["profiles_snapshot_staged"] == "no"
    assert s.verify() == []
    # A part redelivered after the swap changes nothing.
    assert s.apply(parts[0]).duplicate and s.count() == 100


def test_a_missing_part_never_swaps(s: ProfileSlice) -> None:
    parts = parts_of(snapshot(2, rows(50)), 10)
    for p in parts[:-1]:
        s.apply(p)
        s.apply(p)
    assert s.version == 1 and s.count() == 10 and s.staging().received == len(parts) - 1
    # A delta on the current slice still applies; the staged snapshot is still newer: kept.
    s.apply({"type": "delta", "store_id": STORE, "base_version": 1, "version": 2, "ops": []})
    assert s.staging() is None  # v2 reached by the delta: the staged v2 can never apply
    with pytest.raises(SliceOrderError, match="not newer"):
        s.apply(parts[-1])
    assert s.version == 2 and s.count() == 10


def test_a_newer_snapshot_supersedes_a_partial_one_and_an_older_part_is_refused(
    s: ProfileSlice,
) -> None:
    old = parts_of(snapshot(2, rows(30)), 10)
    new = parts_of(snapshot(3, rows(20, "q")), 10)
    s.apply(old[0])
    s.apply(new[1])
    assert s.staging().snapshot_id == new[0]["snapshot_id"] and s.staging().received == 1
    with pytest.raises(SliceOrderError, match="older than the staged snapshot"):
        s.apply(old[1])
    s.apply(new[0])
    assert s.version == 3 and s.count() == 20 and s.get("p-0") is None


def test_an_expired_partial_snapshot_is_dropped(tmp_path: Path) -> None:
    sl = ProfileSlice(tmp_path / "p.db", store_id=STORE, staging_ttl_s=0.2)
    parts = parts_of(snapshot(2, rows(30)), 10)
    sl.apply(parts[0])
    sl.apply(parts[1])
    time.sleep(0.3)
    res = sl.purge_expired()
    assert res.staged_dropped == 2 and sl.staging() is None
    # A late part starts a new staging: the dropped parts are needed again.
    assert sl.apply(parts[2]).staged == 1 and sl.version == 0
    sl.close()


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda p: p["rows"][3].update(churn_risk=7), r"part 1 rows\[3\] \(p-13\): churn_risk"),
        (lambda p: p["rows"][4].update(profile_id="p-2"), r"part 1 rows\[4\] \(p-2\): .*part 0"),
        (lambda p: p["rows"].append(dict(p["rows"][0])), r"rows\[10\] \(p-10\): .*duplicate"),
        (lambda p: p.update(part=9), r"part: 9 is not below parts \(3\)"),
        (lambda p: p.update(parts=4), r"parts: snapshot .* in 3 parts, this part says v2 in 4"),
        (lambda p: p.update(snapshot_id="bad id!"), "snapshot_id: expected"),
        (lambda p: p.update(rows={}), "rows: expected a list"),
        (lambda p: p.update(colour=1), "colour: unknown field in a snapshot_part"),
        (lambda p: p.update(stock=[{"sku": "S"}]), r"stock\[0\] \(S\): available"),
    ],
)
def test_a_bad_part_is_refused_by_part_row_and_field_and_the_staging_stays(
    s: ProfileSlice, mutate, where: str
) -> None:
    parts = parts_of(snapshot(2, rows(30)), 10)
    s.apply(parts[0])
    bad = json.loads(json.dumps(parts[1]))
    mutate(bad)
    with pytest.raises(SliceError, match=where) as exc:
        s.apply(bad)
    assert "\n" not in str(exc.value)
    assert s.staging().received == 1 and s.version == 1 and s.count() == 10
    s.apply(parts[1])
    s.apply(parts[2])
    assert s.version == 2 and s.count() == 30


def test_a_part_resent_with_other_content_is_refused(s: ProfileSlice) -> None:
    parts = parts_of(snapshot(2, rows(30)), 10)
    s.apply(parts[0])
    other = {**parts[0], "rows": parts[0]["rows"][:-1]}
    with pytest.raises(SliceError, match="already staged with other content"):
        s.apply(other)


def test_staged_identity_keys_are_sealed_on_disk(tmp_path: Path) -> None:
    sl = ProfileSlice(tmp_path / "p.db", store_id=STORE)
    secret = "5ec2e7000000000000000000000000ab"
    part = parts_of(snapshot(2, [{"profile_id": "secret-1", "identity_key": secret}] + rows(20)), 5)
    sl.apply(part[0])
    sl.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = (tmp_path / "p.db").read_bytes()
    assert bytes.fromhex(secret) not in data and secret.encode() not in data
    sl.close()


# ---- splitting (central's side) ----------------------------------------------------------------

_row = st.fixed_dictionaries(
    {
        "profile_id": st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        "first_name": st.text(max_size=30),
        "segments": st.lists(st.text(min_size=1, max_size=20), max_size=5),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profiles=st.lists(_row, max_size=60),
    stock=st.none() | st.lists(st.fixed_dictionaries({"sku": st.text(max_size=10)}), max_size=20),
    max_bytes=st.integers(3000, 20_000),
    part_rows=st.none() | st.integers(1, 30),
)
def test_split_parts_rejoin_to_the_snapshot_and_each_fits_one_message(
    profiles, stock, max_bytes, part_rows
) -> None:
    body = snapshot(5, profiles)
    if stock is not None:
        body["stock"] = stock
    pem, _ = generate_keypair()
    parts = split_snapshot(body, max_bytes=max_bytes, part_rows=part_rows)
    assert [p["part"] for p in parts] == list(range(len(parts)))
    assert {p["parts"] for p in parts} == {len(parts)}
    assert len({p["snapshot_id"] for p in parts}) == 1
    assert join_parts(parts) == body
    for p in parts:
        if part_rows is not None:
            assert len(p["rows"]) + len(p.get("stock", [])) <= part_rows
        msg = sign_message(pem, "profiles", p, STORE, "dev-1", 99, expires_in(60))
        assert len(msg) <= max_bytes
    # Deterministic: the same push again resumes the same staging on the box.
    assert split_snapshot(body, max_bytes=max_bytes, part_rows=part_rows) == parts


def test_a_row_bigger_than_a_message_is_named() -> None:
    body = snapshot(2, [{"profile_id": "p-1", "first_name": "x" * 5000}])
    with pytest.raises(SplitError, match=r"profiles\[0\]: .* more than one message holds"):
        split_snapshot(body, max_bytes=4000)


# ---- kill -9 between parts and during the swap -------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    from edge_agent.slice.store import ProfileSlice
    path, parts_file = sys.argv[1], sys.argv[2]
    s = ProfileSlice(path, store_id="store-42")
    def progress(done):
        if done < 0:
            print(f"swap {-done}", flush=True)
    for line in open(parts_file):
        part = json.loads(line)
        res = s.apply(part, on_progress=progress)
        print(f"applied {part['part']} {res.kind} {res.duplicate}", flush=True)
    print("done", flush=True)
    """
)


def _run_until(path: Path, parts_file: Path, marker: str) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(parts_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith(marker):
                os.kill(child.pid, signal.SIGKILL)
                break
        child.wait(20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    return child


@pytest.mark.parametrize("marker", ["applied 4", "swap 1", "swap 2"])
def test_kill_9_mid_way_then_the_push_resumes(tmp_path: Path, marker: str) -> None:
    path = tmp_path / "profiles.db"
    seed = ProfileSlice(path, store_id=STORE)
    seed.apply(snapshot(1, rows(100, "old", key_base=10**6)))
    seed.close()
    parts = split_snapshot(snapshot(2, rows(20_000)), part_rows=2_000)
    parts_file = tmp_path / "parts.jsonl"
    parts_file.write_text("".join(json.dumps(p) + "\n" for p in parts))

    child = _run_until(path, parts_file, marker)
    assert child.returncode == -signal.SIGKILL
    sl = ProfileSlice(path, store_id=STORE)
    # Either the old slice whole (with some parts staged) or, never, anything in between.
    assert sl.version == 1 and sl.count() == 100 and len(sl.identity_keys()) == 100
    assert sl.get("p-0") is None and sl.verify() == []
    staged = sl.staging()
    assert staged is not None and 1 <= staged.received < len(parts)
    sl.close()

    # The push resumes (central re-sends every part; the staged ones are duplicates).
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(parts_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip().endswith("done"), done.stderr[-500:]
    dups = sum(" True" in line for line in done.stdout.splitlines())
    assert dups == staged.received
    sl = ProfileSlice(path, store_id=STORE)
    assert sl.version == 2 and sl.count() == 20_000 and sl.staging() is None
    assert sl.get("old-1") is None and len(sl.identity_keys()) == 20_000
    assert sl.verify() == []
    sl.close()


# ---- over the real broker, into the agent, with edge-ops push-slice ----------------------------


@pytest.mark.timeout(120)
def test_a_50k_snapshot_pushed_in_parts_over_the_broker_is_swapped_atomically(
    tmp_path: Path, broker, capsys
) -> None:
    import tomllib

    from central import ops_cli
    from demo import scenario
    from edge_agent.app.agent import Agent
    from edge_agent.clock import ScaledClock
    from edge_agent.config import parse_config
    from edge_agent.sensing.ble.eid import compute_eid

    demo = Path(scenario.__file__).parent
    pem, public = generate_keypair()
    key_file = tmp_path / "ops_private.pem"
    key_file.write_bytes(pem)
    data = tomllib.loads((demo / "store.toml").read_text())
    data["central"]["port"] = data["bus"]["port"] = broker.port
    data["downlink"]["ops_public_key"] = public
    data["paths"]["state_dir"] = str(tmp_path / "var")
    data.pop("camera", None)
    cfg = parse_config(data, base_dir=demo)
    store, device = cfg.store.store_id, cfg.store.device_id
    agent = Agent(cfg, clock=ScaledClock(scenario.T0, 1.0), ble_source=None)
    agent.handlers.apply_profiles(
        {"store_id": store, "version": 1, "profiles": scenario.profile_slice()}
    )
    before = agent.profiles.count()

    body = {**snapshot(2, rows(50_000)), "store_id": store}
    file = tmp_path / "slice.json"
    file.write_text(json.dumps(body))
    assert len(file.read_bytes()) > 4 * cfg.downlink.max_message_bytes  # really needs parts

    # Readers see the old slice or the new one, never a mix.
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(agent.profiles.count())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)

    def push(*extra: str) -> int:
        args = ["push-slice", str(file), "--store", store, "--device", device, "--key"]
        args += [str(key_file), "--host", broker.host, "--port", str(broker.port)]
        return ops_cli.main([*args, *extra])

    try:
        agent.start_sync()
        assert agent.downlink._subscribed.wait(10)
        watcher.start()
        # Part 2 goes missing (the push was cut short): nothing swaps.
        cap = cfg.downlink.max_message_bytes
        parts = len(split_snapshot(body, max_bytes=cap))
        only = ",".join(str(n) for n in range(parts) if n != 2)
        code = push("--start-version", "10", "--max-bytes", str(cap), "--only", only, "--wait-ack")
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0, out
        assert out["parts"] == parts >= 5 and out["largest_message_bytes"] <= cap
        assert agent.profiles.version == 1 and agent.profiles.count() == before
        assert agent.profiles.staging().received == parts - 1
        # The push again, from a new downlink version: staged parts are duplicates, part 2
        # completes the snapshot and it swaps in.
        assert push("--start-version", "100", "--wait-ack", "60") == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["acked"] == parts and out["refused"] == {}
        assert agent.profiles.version == 2 and agent.profiles.count() == 50_000
        assert agent.profiles.staging() is None
        # A replay of an old part is refused by the downlink, not applied.
        assert push("--start-version", "5", "--only", "0", "--wait-ack", "10") == 1
        capsys.readouterr()
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join(5)
        agent.close(flush_timeout_s=2)
    assert seen <= {before, 50_000}, seen
    # The token table follows: a shopper of the new slice resolves, an old one does not.
    now, k = agent.clock.now(), cfg.ble.eid_rotation_exponent
    assert agent.resolver.wait_ready(30)
    eid = compute_eid(bytes.fromhex(f"{4242:032x}"), int(now), k)
    assert agent.resolver.resolve(eid, now) == "p-4242"
    alice = compute_eid(scenario.demo_identity_key("cdp-p-1001"), int(now), k)
    assert agent.resolver.resolve(alice, now) is None
