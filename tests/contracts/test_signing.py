"""Ed25519 signed downlink messages: roundtrip, every refusal reason, fuzzing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.signing import (
    DownlinkRejected,
    canonical_json,
    expires_in,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign_message,
    verify_message,
)

PRIV, PUB_B64 = generate_keypair()
PUB = load_public_key(PUB_B64)
OTHER_PRIV, _ = generate_keypair()
BODY = {"bundle": {"version": 3, "campaigns": [{"id": "c1", "segments": ["vip"]}]}}


def signed(**kw) -> bytes:
    args = {
        "private_pem": PRIV,
        "kind": "campaigns",
        "body": BODY,
        "store_id": "s1",
        "device_id": "d1",
        "version": 3,
        "expires_at": expires_in(3600),
    }
    args.update(kw)
    return sign_message(**args)


def verify(raw: bytes, **kw):
    args = {"store_id": "s1", "device_id": "d1", "max_bytes": 65536}
    args.update(kw)
    return verify_message(PUB, raw, **args)


def reason_of(raw: bytes, **kw) -> str:
    with pytest.raises(DownlinkRejected) as exc:
        verify(raw, **kw)
    return exc.value.reason


def envelope(raw: bytes) -> dict:
    return json.loads(raw)


def reenvelope(env: dict, payload_doc: dict | None = None) -> bytes:
    env = dict(env)
    if payload_doc is not None:
        env["payload"] = base64.b64encode(canonical_json(payload_doc)).decode()
    return json.dumps(env).encode()


def test_roundtrip() -> None:
    msg = verify(signed())
    assert (msg.kind, msg.store_id, msg.device_id, msg.version) == ("campaigns", "s1", "d1", 3)
    assert msg.body == BODY
    assert msg.key_id == key_id(PUB) and len(msg.key_id) == 16
    assert msg.expires_at > msg.issued_at
    env = envelope(signed())
    assert set(env) == {"payload", "sig", "key_id"}
    payload = json.loads(base64.b64decode(env["payload"]))
    assert set(payload) == {
        "kind",
        "store_id",
        "device_id",
        "version",
        "issued_at",
        "expires_at",
        "body",
    }
    assert payload["issued_at"].endswith("Z")


def test_store_wide_message_accepted_by_every_device() -> None:
    raw = signed(device_id=None)
    assert verify(raw, device_id="d1").device_id is None
    assert verify(raw, device_id="d2").device_id is None


def test_public_key_forms(tmp_path: Path) -> None:
    priv_path = tmp_path / "k.pem"
    priv_path.write_bytes(PRIV)
    pub_path = tmp_path / "k.pub.pem"
    pub_path.write_bytes(
        load_private_key(PRIV)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for form in (PUB_B64, str(pub_path), str(priv_path)):
        assert key_id(load_public_key(form)) == key_id(PUB)
    for bad in ("", "abc", base64.b64encode(b"x" * 31).decode(), str(tmp_path / "missing.pem")):
        with pytest.raises(ValueError):
            load_public_key(bad)


def test_sign_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError):
        signed(kind="rootkit")
    with pytest.raises(ValueError):
        signed(version=0)


def test_refusal_reasons() -> None:
    good = signed()
    env = envelope(good)
    doc = json.loads(base64.b64decode(env["payload"]))

    assert reason_of(good, max_bytes=100).startswith("oversized")
    assert reason_of(b"\xff\xfe not json") == "not JSON"
    assert reason_of(b"[1, 2]") == "not a JSON object"
    assert reason_of(reenvelope({k: v for k, v in env.items() if k != "payload"})) == (
        "missing field: payload"
    )
    assert reason_of(reenvelope({k: v for k, v in env.items() if k != "key_id"})) == (
        "missing field: key_id"
    )
    assert reason_of(reenvelope({k: v for k, v in env.items() if k != "sig"})).startswith(
        "unsigned"
    )
    assert reason_of(reenvelope({**env, "sig": ""})).startswith("unsigned")
    assert reason_of(reenvelope({**env, "payload": "!!not base64!!"})) == "payload: bad base64"
    assert reason_of(reenvelope({**env, "sig": "@@@@"})) == "sig: bad base64"
    # Same bytes, different text: the unused low bits of the last base64 character.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sig = env["sig"]  # 64 bytes -> 86 data characters + "==": 4 unused bits in the last one
    alt = sig[:-3] + alphabet[alphabet.index(sig[-3]) ^ 1] + sig[-2:]
    assert base64.b64decode(alt) == base64.b64decode(sig) and alt != sig
    assert reason_of(reenvelope({**env, "sig": alt})) == "sig: non-canonical base64"
    # Tampered payload, original signature.
    assert reason_of(reenvelope(env, {**doc, "version": 99})) == "bad signature"
    # Signed by someone else (their key id), and signed by someone else claiming our key id.
    other = signed(private_pem=OTHER_PRIV)
    assert reason_of(other).startswith("wrong key")
    assert reason_of(reenvelope({**envelope(other), "key_id": env["key_id"]})) == "bad signature"
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert reason_of(signed(expires_at=past)).startswith("expired")
    assert reason_of(good, now=datetime.now(UTC) + timedelta(hours=2)).startswith("expired")
    assert reason_of(signed(store_id="s2")).startswith("addressed to another store")
    assert reason_of(signed(device_id="d2")).startswith("addressed to another device")


def _resign(doc: dict) -> bytes:
    """A correctly signed payload with arbitrary content (checks after the signature)."""
    priv = load_private_key(PRIV)
    payload = canonical_json(doc)
    return json.dumps(
        {
            "payload": base64.b64encode(payload).decode(),
            "sig": base64.b64encode(priv.sign(payload)).decode(),
            "key_id": key_id(PUB),
        }
    ).encode()


def test_signed_but_malformed_payloads() -> None:
    doc = json.loads(base64.b64decode(envelope(signed())["payload"]))
    cases = {
        "missing field: payload.body": {k: v for k, v in doc.items() if k != "body"},
        "payload.kind: unknown": {**doc, "kind": "rootkit"},
        "payload.version: not an integer": {**doc, "version": "3"},
        "payload.version: not an integer ": {**doc, "version": True},
        "payload.body: not an object": {**doc, "body": [1]},
        "payload.expires_at: not RFC 3339": {**doc, "expires_at": "tomorrow"},
        "payload.issued_at: no time zone": {**doc, "issued_at": "2030-01-01T00:00:00"},
    }
    for expected, bad in cases.items():
        assert reason_of(_resign(bad)).startswith(expected.strip()), expected
    assert reason_of(_resign([1, 2])) == "payload: not a JSON object"  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_always_refused(raw: bytes) -> None:
    with pytest.raises(DownlinkRejected):
        verify(raw)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_random_json_always_refused(value) -> None:
    with pytest.raises(DownlinkRejected):
        verify(json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(JSON, st.binary(min_size=64, max_size=64))
def test_random_envelopes_with_our_key_id_refused(value, sig: bytes) -> None:
    raw = json.dumps(
        {
            "payload": base64.b64encode(json.dumps(value).encode()).decode(),
            "sig": base64.b64encode(sig).decode(),
            "key_id": key_id(PUB),
        }
    ).encode()
    with pytest.raises(DownlinkRejected):
        verify(raw)


GOOD = signed()


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_mutated_signed_messages_always_refused(data) -> None:
    raw = bytearray(GOOD)
    how = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        raw[pos] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        del raw[pos:]
    elif how == "delete":
        del raw[pos]
    else:
        # Whitespace between JSON tokens would be the same message; anything else must fail.
        byte = data.draw(st.integers(0, 255).filter(lambda b: b not in b" \t\r\n"))
        raw.insert(pos, byte)
    assert bytes(raw) != GOOD
    with pytest.raises(DownlinkRejected):
        verify(bytes(raw))


def test_an_encrypted_key_signs_only_with_its_passphrase() -> None:
    from contracts.signing import SCRYPT_N, generate_keypair, is_encrypted, load_private_key

    pem, public = generate_keypair(b"a long passphrase here")
    assert is_encrypted(pem) and pem.startswith(f"Edge-Ops-KDF: scrypt n={SCRYPT_N} ".encode())
    with pytest.raises(ValueError, match="passphrase is needed"):
        sign_message(pem, "command", {}, "s", None, 1, expires_in(60))
    with pytest.raises(ValueError, match="wrong passphrase"):
        load_private_key(pem, b"a long passphrase herE")
    key = load_private_key(pem, b"a long passphrase here")
    msg = sign_message(key, "command", {"command": "resync"}, "s", None, 1, expires_in(60))
    assert verify_message(public, msg, "s", "d").body == {"command": "resync"}
    # A doctored KDF line asking for a huge cost is refused before any work is done.
    hostile = pem.replace(f"n={SCRYPT_N}".encode(), b"n=1073741824", 1)
    with pytest.raises(ValueError, match="out of range"):
        load_private_key(hostile, b"a long passphrase here")
    plain, _ = generate_keypair()
    assert not is_encrypted(plain) and load_private_key(plain, b"ignored")
