"""POS receipts: the documented line protocol, on a real pseudo-terminal, and bad input."""

from __future__ import annotations

import contextlib
import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sensing.pos import MAX_LINE, Receipt, ReceiptDeduper, ReceiptError, parse_receipt
from edge_agent.sensing.serial_lines import SerialLineReader
from tests.watching import wait_for


def receipt(rid: str = "R-1", **kw) -> dict:
    return {
        "receipt": rid,
        "ts": "2026-11-23T10:15:02+01:00",
        "till": "till-1",
        "loyalty": "cdp-p-1003",
        "currency": "EUR",
        "total": 129.9,
        "items": [{"sku": "SKU-RIDGE", "qty": 1, "amount": 129.9}],
        **kw,
    }


def line(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_the_documented_example_parses() -> None:
    r = parse_receipt(line(receipt()))
    assert (r.receipt, r.till, r.loyalty, r.total) == ("R-1", "till-1", "cdp-p-1003", 129.9)
    assert r.ts.utcoffset() is not None and r.items[0].sku == "SKU-RIDGE"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ts": "2026-11-23T10:15:02"}, "ts: Input should have timezone info"),
        ({"total": -1}, "total: Input should be greater than or equal to 0"),
        ({"items": []}, "items: List should have at least 1 item"),
        ({"items": [{"sku": "A", "qty": 0, "amount": 1}]}, "items.0.qty"),
        ({"currency": "euro"}, "currency"),
        ({"cashier": "Jo"}, "cashier: Extra inputs are not permitted"),
        ({"receipt": ""}, "receipt: String should have at least 1 character"),
    ],
)
def test_bad_receipts_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(ReceiptError, match=message):
        parse_receipt(line(receipt(**change)))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe garbage", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"receipt": "R", "total": NaN}', "not JSON: NaN is not a number"),
        (b"[" * 50_000, "over the 4096 limit"),
        (b"[" * 2000 + b"]" * 2000, "nested too deeply|must be a JSON object"),
    ],
)
def test_garbage_is_a_receipt_error(raw: bytes, message: str) -> None:
    with pytest.raises(ReceiptError, match=message):
        parse_receipt(raw)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=MAX_LINE + 10))
def test_any_bytes_parse_or_raise_receipt_error(raw: bytes) -> None:
    with contextlib.suppress(ReceiptError):
        assert isinstance(parse_receipt(raw), Receipt)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["receipt", "ts", "till", "loyalty", "currency", "total", "items"]),
        st.none() | st.integers() | st.floats() | st.text(max_size=10) | st.lists(st.integers()),
    )
)
def test_any_field_values_parse_or_raise_receipt_error(fields: dict) -> None:
    with contextlib.suppress(ReceiptError):
        parse_receipt(json.dumps(receipt(**fields)))


def test_a_resent_receipt_counts_once() -> None:
    got: list[Receipt] = []
    d = ReceiptDeduper(got.append)
    for raw in [line(receipt("R-1")), line(receipt("R-2")), line(receipt("R-1")), b"junk"]:
        d.feed(raw)
    assert [r.receipt for r in got] == ["R-1", "R-2"]
    assert (d.accepted, d.duplicates, d.refused) == (2, 1, 1)
    assert "not JSON" in d.last_error


def test_receipts_over_a_pty_survive_garbage_overlong_lines_and_partial_writes() -> None:
    master, slave = os.openpty()
    got: list[Receipt] = []
    deduper = ReceiptDeduper(got.append)
    reader = SerialLineReader(os.ttyname(slave), deduper.feed, max_line=MAX_LINE, name="pos")
    reader.start()
    try:
        assert wait_for(lambda: reader.stats.connected)
        os.write(master, line(receipt("R-1")))
        os.write(master, b"\x00\xff\x13 line noise\r\n")
        # An overlong line: dropped whole, its tail (which is valid JSON) not taken for a line.
        os.write(master, b"x" * (MAX_LINE + 100) + line(receipt("R-TAIL"))[:-1] + b"\n")
        first, second = line(receipt("R-2"))[:20], line(receipt("R-2"))[20:]
        os.write(master, first)
        time.sleep(0.3)  # the reader sees half a line and must wait for the rest
        os.write(master, second)
        os.write(master, line(receipt("R-1")))  # the till resends
        assert wait_for(lambda: len(got) == 2 and deduper.duplicates == 1)
        assert [r.receipt for r in got] == ["R-1", "R-2"]
        assert reader.stats.overlong == 1 and deduper.refused == 1
    finally:
        reader.stop()
        os.close(master)
        os.close(slave)


def test_a_till_that_is_not_there_yet_is_retried_with_a_clear_error() -> None:
    got: list[bytes] = []
    reader = SerialLineReader("/dev/does-not-exist-pos", got.append, name="pos").start()
    try:
        assert wait_for(lambda: "cannot open /dev/does-not-exist-pos" in reader.stats.last_error)
        assert not reader.stats.connected
    finally:
        reader.stop()
