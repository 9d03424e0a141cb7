"""Central ops' view: fleet status from the retained topics, sequence gaps at the CDP, the sink
streaming events as JSON lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from central.cdp_sink import CdpSink
from central.fleet_status import collect, summary
from central.ops_cli import main
from contracts import topics
from contracts.batch import encode_batch, publish_properties
from contracts.events import AudienceSample, make_event, source_for
from edge_agent.config import BrokerConfig, UplinkConfig
from sync.outbox import Outbox
from sync.uplink import Uplink
from tests.watching import wait_for

REPO = Path(__file__).resolve().parents[2]


def evs(n: int, store: str, device: str):
    return [
        make_event(
            AudienceSample(screen_id="s", people=1, watchers=0), store_id=store, device_id=device
        )
        for _ in range(n)
    ]


@pytest.mark.timeout(60)
def test_status_shows_every_box_from_retained_topics(broker, tmp_path: Path) -> None:
    store = f"st-{uuid.uuid4().hex[:6]}"
    b = BrokerConfig(host=broker.host, port=broker.port)
    sink = CdpSink(b, tmp_path / "cdp.db", group=None)
    assert sink.start(wait_s=5)
    boxes = []
    try:
        for i, device in enumerate(("box-a", "box-b")):
            ob = Outbox(tmp_path / f"{device}.db")
            ob.append(evs(10 * (i + 1), store, device))
            up = Uplink(ob, b, store, device, UplinkConfig(linger_s=0), config_hash=f"h{i}")
            up.start()
            assert up.flush(10)
            assert up.publish_health({"ts": time.time(), "outbox_depth": ob.depth()})
            boxes.append((ob, up))
        boxes[1][1].stop(flush_timeout_s=0)  # box-b says goodbye: offline
        rows = collect(b, store=store, wait_s=1.0)
        by = {r["device"]: r for r in rows}
        assert set(by) == {"box-a", "box-b"}
        assert by["box-a"]["status"] == "online" and by["box-a"]["config_hash"] == "h0"
        assert by["box-b"]["status"] == "offline" and by["box-b"]["config_hash"] == "h1"
        assert by["box-a"]["outbox_depth"] == 0 and by["box-a"]["health_age_s"] < 30
        s = summary(rows)
        assert s["online"] == 1 and s["offline"] == [f"{store}/box-b"]
        assert s["config_hashes"] == ["h0", "h1"]
    finally:
        for ob, up in boxes:
            up.stop(flush_timeout_s=0)
            ob.close()
        sink.stop(end_session=True)


def test_gaps_name_the_missing_sequences(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    got: list[str] = []
    sink = CdpSink(BrokerConfig(), tmp_path / "cdp.db", on_stored=got.extend)
    topic = topics.events("s1", "d1")
    try:
        with Outbox(tmp_path / "ob.db") as ob:
            ob.append(evs(30, "s1", "d1"))
            rows = ob.pending(100, 10**9)
        keep = [r for r in rows if r.sequence not in (11, 12, 20)]
        for part in (keep[:10], keep[10:], keep[:5]):  # the last one is all duplicates
            payload, enc = encode_batch("b", "s1", "d1", [r.body for r in part], 10**9)
            sink.handle_batch(topic, payload, publish_properties(enc))
        # Each event streamed once, duplicates not again, in the order stored.
        assert [json.loads(b)["id"] for b in got] == [r.id for r in keep]
        [gap] = sink.gaps()
        assert gap == {
            "store": "s1",
            "device": "d1",
            "first": 1,
            "last": 30,
            "stored": 27,
            "missing": 3,
            "ranges": [[11, 12], [20, 20]],
        }
    finally:
        sink.stop()
    assert main(["cdp-gaps", "--db", str(tmp_path / "cdp.db")]) == 0
    assert json.loads(capsys.readouterr().out)["ranges"] == [[11, 12], [20, 20]]


@pytest.mark.timeout(60)
def test_cdp_sink_streams_json_lines(broker, tmp_path: Path) -> None:
    store, device = f"st-{uuid.uuid4().hex[:6]}", "box-1"
    exe = [sys.executable, "-m", "central.ops_cli", "cdp-sink", "--db", str(tmp_path / "cdp.db")]
    args = ["--group", "", "--stdout", "--host", broker.host, "--port", str(broker.port)]
    proc = subprocess.Popen(
        exe + args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # Its report line comes on stderr (after its log lines) once its subscription is
        # acknowledged: send after that.
        # (It gives up and exits after its connect timeout, 10 s: an empty line here.)
        assert proc.stderr is not None
        started = "?"
        while started and not started.startswith("cdp-sink: "):
            started = proc.stderr.readline()
        assert started.startswith("cdp-sink: "), proc.stderr.read()[-2000:]
        with Outbox(tmp_path / "ob.db") as ob:
            sent = evs(25, store, device)
            ob.append(sent)
            up = Uplink(ob, BrokerConfig(host=broker.host, port=broker.port), store, device,
                        UplinkConfig(linger_s=0))  # fmt: skip
            up.start()
            try:
                assert up.flush(15), up.stats()
            finally:
                up.stop(flush_timeout_s=0)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    mine = [e for e in lines if e["source"] == source_for(store, device)]
    assert [e["id"] for e in mine] == [e.id for e in sent]
    assert "cdp-sink:" in started + err  # its reports went to stderr, the stream is clean


@contextmanager
def store_commands(broker, store: str, kind: str) -> Iterator[list[bytes]]:
    """What central publishes on the store's ``kind`` command topic, subscribed before it does."""
    from contracts.mqtt import connect, make_client

    got: list[bytes] = []
    ready = threading.Event()
    bcfg = BrokerConfig(host=broker.host, port=broker.port)
    c = make_client(f"t-{uuid.uuid4().hex[:6]}", bcfg)
    c.on_connect = lambda c, *a: c.subscribe(topics.store_cmd(store, kind), qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda c, u, m: got.append(m.payload)
    connect(c, bcfg, clean_start=True, session_expiry_s=0)
    c.loop_start()
    try:
        assert ready.wait(5)
        yield got
    finally:
        c.loop_stop()
        c.disconnect()


@pytest.mark.timeout(60)
def test_ops_push_a_map_from_an_imdf_folder(
    broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edge-ops push map DIR`: the folder goes out as one signed `map` body of that version,
    which the box's side reads back file for file."""
    from contracts.map_bundle import read_delivery, unbundle
    from contracts.signing import verify_message

    imdf = tmp_path / "imdf"
    code = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "map", "author", str(REPO / "demo" / "store-map.toml"),
         "--out", str(imdf)], capture_output=True, text=True, timeout=60, cwd=REPO,
    ).returncode  # fmt: skip
    assert code == 0
    keys = tmp_path / "keys"
    assert main(["keygen", "--out", str(keys)]) == 0
    public = (keys / "ops_public.b64").read_text().strip()
    store = f"store-{uuid.uuid4().hex[:6]}"
    with store_commands(broker, store, "map") as got:
        args = ["push", "map", str(imdf), "--store", store, "--version", "12"]
        args += ["--key", str(keys / "ops_private.pem"), "--port", str(broker.port)]
        assert main(args) == 0
        wait_for(lambda: got, 10)
    from contracts.signing import load_public_key

    msg = verify_message(load_public_key(public), got[0], store, "box-1")
    assert (msg.kind, msg.version) == ("map", 12)
    version, files = unbundle(msg.body)
    sent = {n: json.loads(b) for n, b in files.items()}
    assert version == 12 and sent == {n: json.loads(b) for n, b in read_delivery(imdf).items()}
    # Not an IMDF delivery: said before anything is signed.
    assert main(["push", "map", str(tmp_path), "--store", store, "--version", "13",
                 "--key", str(keys / "ops_private.pem"), "--port", str(broker.port)]) == 2  # fmt: skip
    # Bigger than the boxes take: said before anything is sent, with the sizes.
    assert main(["push", "map", str(imdf), "--store", store, "--version", "14", "--max-bytes",
                 "4096", "--key", str(keys / "ops_private.pem"), "--port", str(broker.port)]) == 2  # fmt: skip
    assert "a box takes at most 4,096 (downlink.max_message_bytes)" in capsys.readouterr().err
    assert len(got) == 1


@pytest.mark.timeout(60)
def test_ops_push_a_planogram_from_the_erp_csv(
    broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edge-ops push planogram FILE.csv`: the ERP's export goes out as the signed body the box
    validates (the same rows the box's own CSV reader makes); a broken CSV is refused by line
    and column before anything is signed."""
    from contracts.signing import load_public_key, verify_message
    from edge_agent.wayfinding.products import parse_body, parse_csv

    csv_path = REPO / "demo" / "data" / "planogram.csv"
    keys = tmp_path / "keys"
    assert main(["keygen", "--out", str(keys)]) == 0
    public = (keys / "ops_public.b64").read_text().strip()
    store = f"store-{uuid.uuid4().hex[:6]}"
    base = ["--store", store, "--key", str(keys / "ops_private.pem"), "--port", str(broker.port)]
    with store_commands(broker, store, "planogram") as got:
        assert main(["push", "planogram", str(csv_path), "--version", "7", *base]) == 0
        assert wait_for(lambda: got, 10)
    msg = verify_message(load_public_key(public), got[0], store, "box-1")
    assert (msg.kind, msg.version) == ("planogram", 7)
    assert msg.body["store_id"] == store
    pushed = parse_body(msg.body)
    read_on_the_box = parse_csv(csv_path.read_text(), 7)
    assert pushed.products == read_on_the_box.products and pushed.version == 7
    # A broken export: the line and the column, exit 2, nothing sent.
    bad = tmp_path / "bad.csv"
    bad.write_text(csv_path.read_text().replace(",8.65,5.0,7", ",8.65,five,7", 1))
    capsys.readouterr()
    assert main(["push", "planogram", str(bad), "--version", "8", *base]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(": line 2 (SKU-RIDGE-GTX-42): y: expected a number")
    )
