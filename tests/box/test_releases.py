"""Releases side by side (edge_agent/box/releases.py, issue 20): the checks that refuse a bundle
before anything changes, the symlink switch, probation, rollback, and an updater killed at
random points."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.release import ReleaseError, read_manifest
from contracts.signing import load_public_key
from edge_agent.box.releases import ReleaseStore
from tests.box import release_kit
from tests.soak import SOAK

EXE = os.path.join(os.path.dirname(sys.executable), "edge-agent")


@pytest.fixture
def kit(tmp_path: Path) -> tuple[Path, str]:
    return release_kit.keypair(tmp_path)


def store_at(root: Path, public: str, **kw: object) -> ReleaseStore:
    return ReleaseStore(root, load_public_key(public), **kw)  # type: ignore[arg-type]


def first_release(tmp_path: Path, key: Path, public: str) -> ReleaseStore:
    """A box on release 1.0, confirmed."""
    store = store_at(tmp_path / "box", public)
    store.install(release_kit.bundle(tmp_path, key, "1.0"))
    store.switch("1.0")
    assert store.confirm("1.0", "first install") is not None
    store.clear_result()
    return store


def layout(store: ReleaseStore) -> tuple[str | None, list[str], list[str]]:
    """What a refusal must not change: current, the releases dir's entries, the markers."""
    entries = sorted(os.listdir(store.releases))
    markers = sorted(p.name for p in store.root.glob("release-*.json"))
    return store.running(), entries, markers


@pytest.mark.timeout(60)
def test_install_switch_confirm_and_rollback(tmp_path: Path, kit: tuple[Path, str]) -> None:
    key, public = kit
    store = first_release(tmp_path, key, public)
    assert store.running() == "1.0" and store.complete("1.0")
    store.install(release_kit.bundle(tmp_path, key, "1.1"))
    assert store.running() == "1.0"  # installed beside it, not switched yet
    assert store.switch("1.1", version=7) == "1.0"
    assert os.readlink(store.current) == "releases/1.1"
    assert store.on_probation("1.1") is not None and store.on_probation("1.0") is None
    note = store.rollback("it did not reach central")
    assert "rolled back to 1.0" in note and store.running() == "1.0"
    result = store.read_result()
    assert result is not None and (result.version, result.release, result.accepted) == (
        7,
        "1.1",
        False,
    )
    assert store.on_probation("1.1") is None


@pytest.mark.timeout(60)
def test_a_crash_loop_is_rolled_back_by_the_guard(tmp_path: Path, kit: tuple[Path, str]) -> None:
    key, public = kit
    store = first_release(tmp_path, key, public)
    store.install(release_kit.bundle(tmp_path, key, "2.0", crash=3))
    store.switch("2.0", version=9)
    for _ in range(store.max_starts):  # each start counted, each crash noted
        assert store.pre_start() is None and store.running() == "2.0"
        store.note_exit(3)
    note = store.pre_start()
    assert note is not None and "crash loop, last exit status 3" in note
    assert store.running() == "1.0"
    result = store.read_result()
    assert result is not None and not result.accepted and "rolled back to 1.0" in result.reason


@pytest.mark.timeout(60)
def test_a_cut_between_marker_and_switch_keeps_the_old_release(
    tmp_path: Path, kit: tuple[Path, str]
) -> None:
    key, public = kit
    store = first_release(tmp_path, key, public)
    store.install(release_kit.bundle(tmp_path, key, "2.0"))
    store.probation.start(b"2.0", release="2.0", previous="1.0", version=4)  # then the cut
    note = store.pre_start()
    assert note is not None and "interrupted before the switch" in note
    assert store.running() == "1.0" and store.on_probation("2.0") is None
    result = store.read_result()
    assert result is not None and (result.version, result.accepted) == (4, False)


@pytest.mark.timeout(60)
def test_unconfirmed_past_the_timeout_is_rolled_back(tmp_path: Path, kit: tuple[Path, str]) -> None:
    key, public = kit
    store = first_release(tmp_path, key, public)
    store.timeout_s = 10.0
    store.install(release_kit.bundle(tmp_path, key, "2.0"))
    store.switch("2.0")
    store.probation.update(since=time.time() - 11)
    note = store.pre_start()
    assert note is not None and "not confirmed within 10 s" in note and store.running() == "1.0"


def refused(store: ReleaseStore, bundle: Path, expect: str | None = None) -> str:
    before = layout(store)
    with pytest.raises(ReleaseError) as err:
        store.install(bundle, expect=expect)
    assert layout(store) == before, "a refused bundle changed the box"
    line = str(err.value)
    assert "\n" not in line and len(line) < 300
    return line


@pytest.mark.timeout(60)
def test_bad_bundles_are_refused_before_anything_changes(
    tmp_path: Path, kit: tuple[Path, str]
) -> None:
    key, public = kit
    store = first_release(tmp_path, key, public)
    good = release_kit.bundle(tmp_path, key, "2.0")
    other_key, _ = release_kit.keypair(tmp_path / "other")
    forged = release_kit.bundle(tmp_path / "other", other_key, "2.0")
    assert "bad signature" in refused(store, forged)
    assert "built for aarch64, this box is" in refused(
        store, release_kit.bundle(tmp_path / "arm", key, "2.1", arch="aarch64")
    )
    assert "built for Python 3.9" in refused(
        store, release_kit.bundle(tmp_path / "py", key, "2.2", python="3.9")
    )
    missing = release_kit.rewrite(good, tmp_path / "missing.tar", drop="VERSION")
    assert "missing file 'VERSION'" in refused(store, missing)
    changed = release_kit.rewrite(good, tmp_path / "changed.tar", replace={"VERSION": b"evil\n"})
    assert "'VERSION' does not match release.json" in refused(store, changed)
    extra = release_kit.rewrite(good, tmp_path / "extra.tar", add={"bin/backdoor": b"x"})
    assert "'bin/backdoor' is in the bundle, not in release.json" in refused(store, extra)
    # A manifest edited after signing (one more file listed) fails the signature.
    raw = read_manifest(good).model_dump_json().replace('"2.0"', '"2.0"', 1)
    resigned = release_kit.rewrite(
        good, tmp_path / "edited.tar", replace={"release.json": raw.encode() + b" "}
    )
    assert "bad signature" in refused(store, resigned)
    assert "the push said '3.0'" in refused(store, good, expect="3.0")
    assert "not a release bundle" in refused(store, tmp_path / "missing.tar.nope")
    assert store.install(good).release == "2.0"  # and the genuine one still installs


def _install_cmd(bundle: Path, cfg: Path) -> list[str]:
    return [EXE, "release", "install", str(bundle), "-c", str(cfg), "--switch"]


# Kill points: CI runs 6, ``EDGE_SOAK=1`` the full 12. Each point is drawn at random within its
# own sixth (twelfth) of the span, so a bounded run still cuts the start, the unpacking and the
# switch, where 6 points drawn over the whole span could bunch up in one part of it.
KILL_POINTS = 12 if SOAK else 6


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_killing_the_updater_at_random_points_leaves_a_complete_release(
    tmp_path: Path, kit: tuple[Path, str]
) -> None:
    """SIGKILL (a power cut, as far as the files know) at seed-driven points of a real
    ``edge-agent release install --switch``: afterwards ``current`` names a complete release,
    the guard settles the box, the agent starts, and the install can be done again."""
    key, public = kit
    base = first_release(tmp_path, key, public).root
    bundle = release_kit.bundle(tmp_path, key, "2.0", padding=1500)
    cfg = tmp_path / "agent.toml"

    def fresh(n: int) -> tuple[Path, ReleaseStore]:
        root = tmp_path / f"box-{n}"
        shutil.copytree(base, root, symlinks=True)
        cfg.write_text(f'[release]\nroot = "{root}"\n[downlink]\nops_public_key = "{public}"\n')
        return root, store_at(root, public)

    # How long the updater takes to start, and a whole install, on this machine: the kill
    # points span the install's work (its start is mostly Python importing).
    _, store = fresh(0)
    t0 = time.monotonic()
    status = [EXE, "release", "status", "-c", str(cfg)]
    assert subprocess.run(status, capture_output=True, timeout=60).returncode == 0
    startup = time.monotonic() - t0
    t0 = time.monotonic()
    done = subprocess.run(_install_cmd(bundle, cfg), capture_output=True, text=True, timeout=60)
    full = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert store.running() == "2.0" and store.complete("2.0")

    outcomes = {"old": 0, "new": 0}
    lo, hi = 0.8 * startup, 1.05 * full
    for seed in range(1, KILL_POINTS + 1):
        root, store = fresh(seed)
        delay = lo + (seed - 1 + random.Random(seed).random()) * (hi - lo) / KILL_POINTS
        proc = subprocess.Popen(
            _install_cmd(bundle, cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.wait(10)
        running = store.running()
        assert running in ("1.0", "2.0"), f"seed {seed}: current names {running!r}"
        assert store.complete(running), f"seed {seed}: release {running} is incomplete"
        outcomes["new" if running == "2.0" else "old"] += 1
        # The next boot: the guard settles what the cut left, then the agent starts.
        store.pre_start()
        running = store.running()
        assert running is not None and store.complete(running)
        assert not list(store.releases.glob(".staging-*"))
        started = subprocess.run(
            [str(root / "current" / "bin" / "edge-agent"), "release", "status", "-c", str(cfg)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert started.returncode == 0, f"seed {seed}: {started.stderr}"
        # And the update can be done again from whatever state was left.
        if running == "1.0":
            assert (
                subprocess.run(
                    _install_cmd(bundle, cfg), capture_output=True, timeout=60
                ).returncode
                == 0
            )
            assert store.running() == "2.0" and store.complete("2.0")
    print(
        f"start {startup:.2f} s, full install {full:.2f} s; kills left 1.0: {outcomes['old']}, 2.0: {outcomes['new']}"
    )
    assert outcomes["old"] > 0, "no kill landed before the switch: the test tested nothing"
