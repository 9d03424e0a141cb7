"""`edge-agent provision` against an HM-10 simulator on a pseudo-terminal, failures included.

Every failure mode must end in a one-line error, a record with status "failed" that lists
exactly what was verified, exit code 1, and never a hang.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.box.layout import load_layout, parse_layout
from edge_agent.box.provision import (
    AtPort,
    Hm10Target,
    ProvisionError,
    append_record,
    classify_reply,
    open_port,
    provision,
)
from edge_agent.cli import main
from tests.box.hm10_sim import Hm10Sim

pytestmark = pytest.mark.timeout(30)

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware_configs" / "demo-store.layout.toml"
ALL_FIELDS = [
    "ibeacon",
    "uuid[0]",
    "uuid[1]",
    "uuid[2]",
    "uuid[3]",
    "major",
    "minor",
    "tx_power",
    "interval",
]


@pytest.fixture(scope="module")
def target() -> Hm10Target:
    layout = load_layout(EXAMPLE)
    return Hm10Target.from_layout(layout, layout.beacon("entrance-shelf"))


def run(sim: Hm10Sim, target: Hm10Target, timeout: float = 0.4):
    port = open_port(sim.path)
    try:
        return provision(
            AtPort(port, sim.path, timeout=timeout, settle=0.03),
            target,
            reset_wait=0.05,
            boot_timeout=0.8,
        )
    finally:
        port.close()


def test_target_from_layout(target):
    assert target.uuid == "F7826DA64FA24E988024BC5B71E0893E"
    assert (target.major, target.minor, target.power_code, target.interval_code) == (
        100,
        2,
        2,
        "5",
    )
    cmds = [s.set_cmd for s in target.settings()]
    assert cmds == [
        "AT+IBEACON1",
        "AT+IBE0F7826DA6",
        "AT+IBE14FA24E98",
        "AT+IBE28024BC5B",
        "AT+IBE371E0893E",
        "AT+MARJ0x0064",
        "AT+MINO0x0002",
        "AT+POWE2",
        "AT+ADVI5",
    ]
    layout = load_layout(EXAMPLE)
    with pytest.raises(ProvisionError, match="not an HM-10"):
        Hm10Target.from_layout(layout, layout.beacon("entrance-door"))


def test_a_bought_eddystone_beacon_is_not_provisioned_here():
    data = tomllib.loads(EXAMPLE.read_text())
    data["beacons"].append(
        {"name": "tag", "zone": "womens", "hardware": "eddystone", "address": "D0:0D:00:00:00:01"}
    )
    layout = parse_layout(data)
    with pytest.raises(ProvisionError, match="not an HM-10 \\(set it up with its maker's tool\\)"):
        Hm10Target.from_layout(layout, layout.beacon("tag"))


@pytest.mark.parametrize("kw", [{}, {"crlf": True, "chunked": True}], ids=["bare", "crlf-chunked"])
def test_provisions_and_verifies_after_reset(target, kw):
    with Hm10Sim(**kw) as sim:
        result = run(sim, target)
        assert result.status == "verified", result.error
        assert result.verified == ALL_FIELDS and result.error == ""
        assert result.address == "A4C138F00D42"
        assert sim.state["marj"] == "0064" and sim.state["mino"] == "0002"
        assert sim.state["ibe"] == ["F7826DA6", "4FA24E98", "8024BC5B", "71E0893E"]
        assert (sim.state["powe"], sim.state["advi"], sim.state["ibeacon"]) == ("2", "5", "1")
        # Every setting is read back only after the module rebooted with it.
        reset = sim.commands.index("AT+RESET")
        assert all(c.endswith("?") or c == "AT" for c in sim.commands[reset + 1 :])
        assert sum(c.endswith("?") for c in sim.commands[reset:]) == len(ALL_FIELDS)


@pytest.mark.parametrize(
    "sim_kw, stage, message, verified",
    [
        ({"faults": {"AT": "silent"}}, "handshake", "AT: no reply within 0.4 s", []),
        (
            {"faults": {"AT+MARJ0x": "garbage"}},
            "set major",
            "AT+MARJ0x0064: unexpected reply garbage",
            [],
        ),
        (
            {"faults": {"AT+MINO0x": "wrong"}},
            "set minor",
            "AT+MINO0x0002: module set minor to 0x0001, not 0x0002",
            [],
        ),
        (
            {"faults": {"AT+POWE": "disconnect"}},
            "set tx_power",
            "port lost during AT+POWE2",
            [],
        ),
        (
            {"faults": {"AT+IBE2?": "disconnect"}},
            "verify uuid[2]",
            "port lost during AT+IBE2?",
            ["ibeacon", "uuid[0]", "uuid[1]"],
        ),
        ({"faults": {"AT+RESET": "dead"}}, "reconnect", "did not come back after AT+RESET", []),
        (
            {"forget_on_reset": {"advi"}},
            "verify",
            "after reset the module holds interval = 0, not 5",
            ALL_FIELDS[:-1],
        ),
        (
            {"faults": {"AT+MINO0x": "ignore"}},
            "verify",
            "after reset the module holds minor = 0xFFE1, not 0x0002",
            [f for f in ALL_FIELDS if f != "minor"],
        ),
        (
            {"faults": {"AT+ADVI?": "garbage"}},
            "verify interval",
            "AT+ADVI?: unexpected reply garbage",
            ALL_FIELDS[:-1],
        ),
    ],
    ids=[
        "silent",
        "garbage",
        "wrong-echo",
        "disconnect-set",
        "disconnect-verify",
        "never-back",
        "forgets",
        "ignores",
        "garbage-verify",
    ],
)
def test_failures_are_never_reported_done(target, tmp_path, sim_kw, stage, message, verified):
    with Hm10Sim(**sim_kw) as sim:
        result = run(sim, target)
    assert result.status == "failed"
    assert result.stage == stage
    assert message in result.error and "\n" not in result.error
    assert result.verified == verified
    record = tmp_path / "p.jsonl"
    append_record(record, result)
    (line,) = record.read_text().splitlines()
    rec = json.loads(line)
    assert rec["status"] == "failed" and rec["verified"] == verified and rec["error"]


def test_extra_bytes_after_a_reply_are_not_ignored(target):
    """A second reply glued to the first ("OK" + "OK+LOST") must not pass as the handshake."""
    with Hm10Sim() as sim:
        sim._reply_orig = sim._reply  # type: ignore[attr-defined]

        def noisy(cmd, **kw):
            reply = sim._reply_orig(cmd, **kw)  # type: ignore[attr-defined]
            return reply + "OK+LOST" if cmd == "AT" else reply

        sim._reply = noisy  # type: ignore[method-assign]
        result = run(sim, target)
    assert result.status == "failed" and result.stage == "handshake"
    assert "unexpected reply 'OK" in result.error


def test_cli_end_to_end(tmp_path, capsys):
    record = tmp_path / "state" / "provisioning.jsonl"
    base = ["provision", "-l", str(EXAMPLE), "-b", "womens-rack", "--record", str(record)]
    with Hm10Sim() as sim:
        assert main([*base, "-p", sim.path, "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "womens-rack: verified (9 settings after reset" in out
    with Hm10Sim(faults={"AT+MARJ0x": "silent"}) as sim:
        assert main([*base, "-p", sim.path, "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "FAILED at set major: AT+MARJ0x00C8: no reply within 0.3 s" in err
    first, second = (json.loads(x) for x in record.read_text().splitlines())
    assert first["status"] == "verified" and first["store_id"] == "store-0042"
    assert first["read_back"]["major"] == "0x00C8" and first["ts"].endswith("Z")
    assert second["status"] == "failed" and second["verified"] == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-b", "entrance-door", "-p", "/dev/null"], "not an HM-10"),
        (["-b", "nope", "-p", "/dev/null"], "no beacon named 'nope'"),
        (["-b", "womens-rack", "-p", "/dev/does-not-exist"], "cannot open /dev/does-not-exist"),
    ],
)
def test_cli_refusals_are_one_line(tmp_path, capsys, argv, message):
    record = tmp_path / "p.jsonl"
    assert main(["provision", "-l", str(EXAMPLE), "--record", str(record), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not record.exists()


def test_cli_dry_run_sends_nothing(capsys):
    assert main(["provision", "-l", str(EXAMPLE), "-b", "womens-rack", "-p", "x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "AT+MARJ0x00C8" in out and "AT+POWE1" in out


# -- the reply reader, as a pure function ------------------------------------------------------


@given(
    value=st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=8),
    crlf=st.booleans(),
    cuts=st.lists(st.integers(0, 40), max_size=6),
)
@settings(max_examples=300, deadline=None)
def test_a_reply_in_any_chunks_is_partial_then_complete(value, crlf, cuts):
    reply = f"OK+Get:{value}".encode()
    wire = reply + (b"\r\n" if crlf else b"")
    for cut in sorted(c for c in cuts if c < len(reply)):
        assert classify_reply(wire[:cut], b"OK+Get:", len(reply)) == "partial"
    assert classify_reply(wire, b"OK+Get:", len(reply)) == "complete"
    assert classify_reply(wire.lower(), b"OK+Get:", len(reply)) == "complete"


@given(
    noise=st.one_of(st.binary(max_size=40), st.binary(max_size=30).map(lambda b: b"OK+Set:" + b)),
    length=st.integers(7, 30),
)
@settings(max_examples=500, deadline=None)
def test_any_bytes_classify_without_raising(noise, length):
    state = classify_reply(noise, b"OK+Set:", length)
    assert state in ("partial", "complete", "wrong")
    if state == "complete":
        body = noise.lstrip(b"\r\n")
        assert body[:7].upper() == b"OK+SET:" and not body[length:].strip(b"\r\n")
