"""`edge-agent provision` against an HM-10 simulator on a pseudo-terminal, failures included.

The simulator (tests/box/hm10_sim.py) follows the datasheet's command table and refuses what a
real module does not know, so a provisioner speaking the wrong commands fails here. Every
failure mode must end in a one-line error, a record with status "failed" that lists exactly
what was verified, exit code 1, and never a hang.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.box.layout import load_layout, parse_layout
from edge_agent.box.provision import (
    AtPort,
    Hm10Target,
    ProvisionError,
    ProvisionResult,
    Setting,
    append_record,
    classify_reply,
    open_port,
    provision,
)
from edge_agent.cli import main
from tests.box.hm10_sim import Hm10Module, Hm10Sim
from tests.watching import wait_for

pytestmark = pytest.mark.timeout(30)

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware_configs" / "demo-store.layout.toml"
# Every setting the module can be asked for again, in the order the provisioner sets them.
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
    "adv_type",
]
# The wrong dialect an earlier provisioner spoke (no HM-10 firmware knows it).
LEGACY = [Setting("ibeacon", "AT+IBEACON1", "AT+IBEACON?", "1")]


@pytest.fixture(scope="module")
def target() -> Hm10Target:
    layout = load_layout(EXAMPLE)
    return Hm10Target.from_layout(layout, layout.beacon("entrance-shelf"))


def run(sim: Hm10Sim, target: Hm10Target, timeout: float = 1.0) -> ProvisionResult:
    port = open_port(sim.path)
    try:
        return provision(
            AtPort(port, sim.path, timeout=timeout, settle=0.03),
            target,
            # Longer than the simulator's reboot (delo_reset_s + boot_s = 0.1 s), as the
            # product's 0.8 s is longer than the datasheet's 500 ms.
            reset_wait=0.15,
            boot_timeout=0.8,
        )
    finally:
        port.close()


def collapse_handshakes(commands: list[str]) -> list[str]:
    """A handshake retried while the module boots is one handshake."""
    out: list[str] = []
    for c in commands:
        if not (c == "AT" and out and out[-1] == "AT"):
            out.append(c)
    return out


# -- what is sent ------------------------------------------------------------------------------


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
        "AT+IBEA1",
        "AT+IBE0F7826DA6",
        "AT+IBE14FA24E98",
        "AT+IBE28024BC5B",
        "AT+IBE371E0893E",
        "AT+MARJ0x0064",
        "AT+MINO0x0002",
        "AT+POWE2",
        "AT+ADVI5",
        "AT+ADTY3",
        "AT+DELO2",
    ]
    queries = [s.query_cmd for s in target.settings()]
    assert queries == [
        "AT+IBEA?",
        "AT+IBE0?",
        "AT+IBE1?",
        "AT+IBE2?",
        "AT+IBE3?",
        "AT+MARJ?",
        "AT+MINO?",
        "AT+POWE?",
        "AT+ADVI?",
        "AT+ADTY?",
        None,  # the datasheet has no AT+DELO? query
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


@pytest.mark.parametrize(
    "uuid, part",
    [
        ("00000000-4fa2-4e98-8024-bc5b71e0893e", "part 0 is 00000000"),
        ("f7826da6-4fa2-4e98-ffff-ffff71e0893e", "part 2 is FFFFFFFF"),
    ],
)
def test_a_uuid_the_module_cannot_hold_is_refused_before_sending(uuid, part):
    data = tomllib.loads(EXAMPLE.read_text())
    data["beacons"][1]["uuid"] = uuid
    layout = parse_layout(data)
    with pytest.raises(ProvisionError, match="00000001..FFFFFFFE") as exc:
        Hm10Target.from_layout(layout, layout.beacon(data["beacons"][1]["name"]))
    assert part in str(exc.value) and "\n" not in str(exc.value)


# -- the full sequence against the simulator -----------------------------------------------------


@pytest.mark.parametrize("kw", [{}, {"crlf": True, "chunked": True}], ids=["bare", "crlf-chunked"])
def test_the_full_command_sequence_against_the_datasheet_module(target, kw):
    with Hm10Sim(**kw) as sim:
        result = run(sim, target)
        assert result.status == "verified", result.error
        assert result.verified == ALL_FIELDS and result.error == ""
        assert result.set_only == ["deploy"]
        assert result.address == "A4C138F00D42"
        # Exactly the documented sequence (a handshake retried during a boot aside), each
        # command answered by the module with the reply the provisioner expected.
        expected = target.sequence()
        assert collapse_handshakes(sim.commands) == [c for c, _ in expected]
        answered = dict(zip(sim.commands, sim.replies, strict=True))
        for cmd, reply in expected:
            if cmd == "AT":
                assert answered[cmd] == "OK"
            elif cmd == "AT+ADDR?":
                assert answered[cmd] == f"OK+ADDR:{sim.addr}"
            else:
                assert answered[cmd] == reply, cmd
        # What the module now holds, in the module's own terms.
        s = sim.state
        assert (s.ibea, s.marj, s.mino, s.powe, s.advi, s.adty, s.delo) == (
            "1",
            "0064",
            "0002",
            "2",
            "5",
            "3",
            "2",
        )
        assert s.ibe == ["F7826DA6", "4FA24E98", "8024BC5B", "71E0893E"]
        # AT+DELO2 rebooted it once, AT+RESET once more; every value was read back after that.
        assert sim.boots == 2
        reset = sim.commands.index("AT+RESET")
        assert all(c.endswith("?") or c == "AT" for c in sim.commands[reset + 1 :])
        assert sum(c.endswith("?") for c in sim.commands[reset:]) == len(ALL_FIELDS)


def test_the_readback_covers_every_value(target):
    with Hm10Sim() as sim:
        result = run(sim, target)
    assert result.status == "verified", result.error
    wanted = {s.field: s.value for s in target.settings() if s.query_cmd}
    assert result.read_back == wanted
    assert set(result.wanted) == set(wanted) | {"deploy"}


def test_a_value_the_module_did_not_keep_is_caught_by_the_readback():
    """The module says OK+Set to every setting but keeps none: only the queries after the
    reset can tell, and every one must. (womens-rack: each value differs from the module's
    factory setting, so none passes by luck.)"""
    layout = load_layout(EXAMPLE)
    target = Hm10Target.from_layout(layout, layout.beacon("womens-rack"))
    queried = [s for s in target.settings() if s.query_cmd]
    with Hm10Sim(faults={s.set_cmd: "ignore" for s in queried}) as sim:
        result = run(sim, target)
    assert result.status == "failed" and result.stage == "verify"
    assert result.verified == []
    assert result.error == (
        "after reset the module holds ibeacon = 0, not 1 (10 field(s) not kept: "
        + ", ".join(ALL_FIELDS)
        + ")"
    )
    assert result.read_back == {
        "ibeacon": "0",
        "uuid[0]": "0x74278BDA",
        "uuid[1]": "0xB6444520",
        "uuid[2]": "0x8F0C720E",
        "uuid[3]": "0xAF059935",
        "major": "0xFFE0",
        "minor": "0xFFE1",
        "tx_power": "2",
        "interval": "0",
        "adv_type": "0",
    }


# -- the old, wrong commands are refused -------------------------------------------------------


@pytest.mark.parametrize("cmd", ["AT+IBEACON1", "AT+IBEACON?", "AT+IBEACON0", "at+ibea1"])
def test_the_module_does_not_know_the_old_commands(cmd):
    assert Hm10Module().handle(cmd.encode()).reply is None
    assert Hm10Module(unknown="error").handle(cmd.encode()).reply == "ERROR"


def test_a_provisioner_speaking_ibeacon1_fails(target, monkeypatch):
    monkeypatch.setattr(Hm10Target, "settings", lambda self: LEGACY)
    with Hm10Sim() as sim:
        result = run(sim, target, timeout=0.3)
    assert result.status == "failed" and result.stage == "set ibeacon"
    assert result.error.startswith("AT+IBEACON1: no reply within 0.3 s")
    assert sim.state.ibea == "0"
    with Hm10Sim(unknown="error") as sim:
        result = run(sim, target, timeout=0.3)
    assert result.status == "failed" and result.stage == "set ibeacon"
    assert result.error == (
        "AT+IBEACON1: unexpected reply 'ERROR' (module firmware refuses the command), "
        "expected 'OK+Set:1'"
    )


@pytest.mark.parametrize(
    "cmd",
    ["AT\r\n", "AT+IBEA1\r\n", "AT+POWE7", "AT+MARJ0x0000", "AT+MINO0xFFFF", "AT+IBE0FFFFFFFF"],
)
def test_out_of_range_or_terminated_commands_get_no_ok(cmd):
    module = Hm10Module()
    before = replace(module.state, ibe=list(module.state.ibe))
    assert module.handle(cmd.encode()).reply is None
    assert module.state == before


# -- wrong or garbage replies on the line: one clear line each ---------------------------------


@pytest.mark.parametrize(
    "sim_kw, stage, message, verified",
    [
        ({"faults": {"AT": "silent"}}, "handshake", "AT: no reply within 1 s", []),
        (
            {"faults": {"AT+MARJ0x": "garbage"}},
            "set major",
            "AT+MARJ0x0064: unexpected reply garbage b'\\xfe\\x00OK\\x9c+S\\xff', expected "
            "'OK+Set:0x0064'",
            [],
        ),
        (
            {"faults": {"AT+MARJ0x": "error"}},
            "set major",
            "AT+MARJ0x0064: unexpected reply 'ERROR' (module firmware refuses the command), "
            "expected 'OK+Set:0x0064'",
            [],
        ),
        (
            {"faults": {"AT+MINO0x": "wrong"}},
            "set minor",
            "AT+MINO0x0002: module set minor to 0x0001, not 0x0002",
            [],
        ),
        (
            {"faults": {"AT+DELO": "wrong"}},
            "set deploy",
            "AT+DELO2: module set deploy to 1, not 2",
            [],
        ),
        (
            {"faults": {"AT+ADDR?": "trailing"}},
            "address",
            "AT+ADDR?: unexpected reply 'OK+ADDR:A4C138F00D42OK+LOST', expected "
            "'OK+ADDR:<12 hex digits>'",
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
        (
            {"faults": {"AT+DELO": "dead"}},
            "reboot after deploy",
            "module did not come back after AT+DELO2: AT: no reply",
            [],
        ),
        ({"faults": {"AT+RESET": "dead"}}, "reconnect", "did not come back after AT+RESET", []),
        (
            {"forget_on_reset": {"advi"}},
            "verify",
            "after reset the module holds interval = 0, not 5",
            [f for f in ALL_FIELDS if f != "interval"],
        ),
        (
            {"faults": {"AT+ADVI?": "garbage"}},
            "verify interval",
            "AT+ADVI?: unexpected reply garbage",
            ALL_FIELDS[: ALL_FIELDS.index("interval")],
        ),
        (
            {"faults": {"AT+ADTY?": "error"}},
            "verify adv_type",
            "AT+ADTY?: unexpected reply 'ERROR' (module firmware refuses the command), "
            "expected 'OK+Get:3'",
            ALL_FIELDS[:-1],
        ),
    ],
    ids=[
        "silent",
        "garbage",
        "error",
        "wrong-echo",
        "wrong-deploy",
        "trailing-bytes",
        "disconnect-set",
        "disconnect-verify",
        "never-back-after-delo",
        "never-back-after-reset",
        "forgets",
        "garbage-verify",
        "error-verify",
    ],
)
def test_failures_are_one_line_and_never_reported_done(
    target, tmp_path, sim_kw, stage, message, verified
):
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
    with Hm10Sim(faults={"AT": "trailing"}) as sim:
        result = run(sim, target)
    assert result.status == "failed" and result.stage == "handshake"
    assert result.error == "AT: unexpected reply 'OKOK+LOST', expected 'OK'"


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_end_to_end(tmp_path, capsys):
    record = tmp_path / "state" / "provisioning.jsonl"
    base = ["provision", "-l", str(EXAMPLE), "-b", "womens-rack", "--record", str(record)]
    with Hm10Sim() as sim:
        assert main([*base, "-p", sim.path, "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert (
        "womens-rack: verified (10 settings after reset; deploy acknowledged, the datasheet has "
        "no query for it; module A4C138F00D42)" in out
    )
    with Hm10Sim(faults={"AT+MARJ0x": "silent"}) as sim:
        assert main([*base, "-p", sim.path, "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "FAILED at set major: AT+MARJ0x00C8: no reply within 0.3 s" in err
    first, second = (json.loads(x) for x in record.read_text().splitlines())
    assert first["status"] == "verified" and first["store_id"] == "store-0042"
    assert first["read_back"]["major"] == "0x00C8" and first["ts"].endswith("Z")
    assert first["read_back"]["adv_type"] == "3" and first["set_only"] == ["deploy"]
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


def test_cli_dry_run_prints_the_datasheet_sequence_and_sends_nothing(capsys):
    assert main(["provision", "-l", str(EXAMPLE), "-b", "womens-rack", "-p", "x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    cmds = [line.split()[0] for line in out.splitlines()]
    assert cmds[:3] == ["AT", "AT+ADDR?", "AT+IBEA1"]
    for cmd in ("AT+MARJ0x00C8", "AT+POWE1", "AT+ADTY3", "AT+DELO2", "AT+RESET", "AT+IBEA?"):
        assert cmd in cmds
    assert cmds.index("AT+ADTY3") < cmds.index("AT+DELO2") < cmds.index("AT+RESET")
    assert "IBEACON" not in out
    assert "AT+IBEA1           -> OK+Set:1" in out and "AT+DELO2           -> OK+DELO2" in out


# -- the simulator's parser, on any bytes ------------------------------------------------------

_NAMES = ["", "ADDR", "IBEA", "IBE0", "IBE3", "MARJ", "MINO", "MEAS", "POWE", "ADVI", "ADTY"]
_NAMES += ["NAME", "DELO", "RESET", "RENEW", "VERR", "IBEACON"]
at_like = st.builds(
    lambda name, tail: f"AT+{name}".encode() + tail,
    st.sampled_from(_NAMES),
    st.one_of(
        st.binary(max_size=16),
        st.text(alphabet="0123456789ABCDEFabcdefx?\r\n", max_size=12).map(str.encode),
    ),
)


@given(
    data=st.one_of(st.binary(max_size=64), at_like), unknown=st.sampled_from(["silent", "error"])
)
@settings(max_examples=1500, deadline=None)
def test_the_sim_parser_never_crashes_on_any_bytes(data, unknown):
    module = Hm10Module(unknown=unknown)
    response = module.handle(data)
    # A reply is printable ASCII without a line end, as on the module; no OK for what the
    # datasheet does not list.
    if response.reply is not None:
        assert response.reply.isascii() and response.reply.isprintable()
        assert response.reply.startswith(("OK", "HMSoft")) or response.reply == "ERROR"
    if response.reply is None or response.reply == "ERROR":
        assert response.reboot == "none"
    # It keeps answering afterwards.
    assert module.handle(b"AT").reply == "OK"


def test_garbage_on_the_wire_does_not_wedge_the_module():
    """Noise through the real pty: each burst is framed as one (unknown) command, and the
    next AT still gets OK."""
    bursts = [b"\x00\xff\xfe", b"AT+IBEACON1", b"\r\n\r\n", b"AT+" * 30, bytes(range(256))]
    with Hm10Sim() as sim:
        port = open_port(sim.path)
        try:
            at = AtPort(port, sim.path, timeout=0.5, settle=0.03)
            for burst in bursts:
                seen = len(sim.commands)
                port.write(burst)
                assert wait_for(lambda n=seen: len(sim.commands) > n, timeout=5)
                assert sim.replies[-1] is None
                assert at.exchange("AT", "OK", 2) == "OK"
        finally:
            port.close()


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
