"""Campaigns in the console: the bundle last pushed to each store, the checks of
``edge-agent campaigns check`` and the box's rendering of every variant (``edge-agent campaigns
render``, run as the box's own tool: central never imports the box's code), and previews drawn by
the player itself.

A preview is ``python -m signage_ui.preview`` in a subprocess (the player's own ``Stage`` and
templates, Kivy's offscreen window: no X server) with a timeout, one PNG per variant and screen
shape, cached by the hash of what is drawn: the same card is drawn once, however often it is
checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.files import atomic_write
from contracts.screen_protocol import Content

# Bump when the drawing changes in a way the content hash cannot see (the cache is keyed on it).
RENDERER = "signage_ui.preview/1"
SHAPES = {"landscape": (960, 540), "portrait": (540, 960)}
RENDER_TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 30.0
MAX_BUNDLE_BYTES = 256 * 1024
# Previews kept on disk (about 30-60 KB each): the oldest go beyond this.
MAX_CACHED = 1000


class PreviewError(RuntimeError):
    pass


@dataclass(frozen=True)
class BundleSummary:
    version: int
    campaigns: list[str]  # ids
    default: list[str]  # content ids


@dataclass(frozen=True)
class Checked:
    """A bundle that passed: its parsed body (what is pushed), what it holds, and every variant
    as the box renders it (label, kind, content)."""

    body: dict[str, Any]
    bundle: BundleSummary
    items: list[tuple[str, str, Content]]


def _edge_agent() -> list[str]:
    exe = Path(sys.executable).with_name("edge-agent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "edge_agent.cli"]


def check(text: str) -> Checked:
    """``edge-agent campaigns render``: the checks of ``campaigns check`` and the box's own
    rendering of every variant, run as the box's tool (central never imports the box's code:
    tests/test_architecture.py). ValueError names the field."""
    if not text.strip():
        raise ValueError("the bundle is empty: paste a campaign bundle's JSON")
    if len(text.encode()) > MAX_BUNDLE_BYTES:
        raise ValueError(f"the bundle is over {MAX_BUNDLE_BYTES // 1024} KB")
    try:
        done = subprocess.run(
            [*_edge_agent(), "campaigns", "render", "-"],
            input=text,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise PreviewError("the campaign check took too long") from None
    if done.returncode == 2:
        line = (done.stderr.strip().splitlines() or ["invalid bundle"])[-1]
        raise ValueError(line.removeprefix("campaigns render: "))
    if done.returncode != 0:
        raise PreviewError(f"the campaign check failed: {done.stderr.strip()[-300:]}")
    out = json.loads(done.stdout)
    items = [
        (str(i["label"]), str(i["kind"]), Content.model_validate(i["content"]))
        for i in out["items"]
    ]
    summary = BundleSummary(int(out["version"]), list(out["campaigns"]), list(out["default"]))
    return Checked(json.loads(text), summary, items)


def dry_run(body: dict[str, Any], screens: list[dict[str, Any]], at: str) -> dict[str, Any]:
    """``edge-agent campaigns dry-run``: the box's own decision code asked what each screen
    (id, zone, personal limit, as its box reports them) would show at ``at`` to a few
    audiences. PreviewError when the tool fails; ValueError for what it refuses."""
    request = {"bundle": body, "screens": screens, "at": at}
    try:
        done = subprocess.run(
            [*_edge_agent(), "campaigns", "dry-run", "-"],
            input=json.dumps(request), capture_output=True, text=True, timeout=CHECK_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PreviewError("the dry run took too long") from None
    if done.returncode == 2:
        line = (done.stderr.strip().splitlines() or ["refused"])[-1]
        raise ValueError(line.removeprefix("campaigns dry-run: "))
    if done.returncode != 0:
        raise PreviewError(f"the dry run failed: {done.stderr.strip()[-300:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@dataclass(frozen=True)
class Preview:
    """One variant as a screen of one shape draws it."""

    label: str  # "summer-sale: personalised"
    kind: str  # anonymous, personalised, default
    shape: str  # landscape, portrait
    content: Content
    key: str  # the PNG's name in the cache: the hash of what is drawn and how

    @property
    def url(self) -> str:
        return f"/campaigns/previews/{self.key}.png"


def previews(checked: Checked) -> list[Preview]:
    out = []
    for label, kind, content in checked.items:
        for shape, (w, h) in SHAPES.items():
            raw = json.dumps([RENDERER, w, h, content.model_dump(mode="json")], sort_keys=True)
            key = hashlib.sha256(raw.encode()).hexdigest()[:32]
            out.append(Preview(label, kind, shape, content, key))
    return out


class Previewer:
    """Draws previews into ``cache_dir`` (one at a time: a render is a Kivy process)."""

    def __init__(
        self,
        cache_dir: Path,
        timeout_s: float = RENDER_TIMEOUT_S,
        content_dir: Path | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.timeout_s = timeout_s
        self.content_dir = content_dir
        self._lock = threading.Lock()

    def path(self, key: str) -> Path | None:
        p = self.cache_dir / f"{key}.png"
        return p if len(key) == 32 and all(c in "0123456789abcdef" for c in key) else None

    def render(self, wanted: list[Preview]) -> float:
        """Draw the previews not in the cache yet; returns the seconds spent. PreviewError
        when the player could not draw them within the timeout."""
        started = time.monotonic()
        with self._lock:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            missing: dict[str, list[Preview]] = {}
            for p in wanted:
                png = self.cache_dir / f"{p.key}.png"
                try:
                    os.utime(png)  # used again: the last to be pruned
                except FileNotFoundError:
                    missing.setdefault(p.shape, []).append(p)
            for shape, items in missing.items():
                self._draw(shape, {p.key: p for p in items}.values())
            if missing:
                self._prune({p.key for p in wanted})
        return time.monotonic() - started

    def _prune(self, keep: set[str]) -> None:
        files = sorted(self.cache_dir.glob("*.png"), key=lambda p: p.stat().st_mtime)
        for p in files[: max(0, len(files) - MAX_CACHED)]:
            if p.stem not in keep:
                p.unlink(missing_ok=True)

    def _draw(self, shape: str, items: Any) -> None:
        w, h = SHAPES[shape]
        doc = {"items": [{"name": p.key, "content": p.content.model_dump(mode="json")}
                         for p in items]}  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="kivy-", dir=self.cache_dir) as home:
            env = dict(os.environ)
            # Kivy's offscreen window (SDL's EGL driver): never a window on someone's desktop.
            for k in ("DISPLAY", "WAYLAND_DISPLAY", "KIVY_WINDOW", "KIVY_GL_BACKEND"):
                env.pop(k, None)
            env.update(KIVY_HOME=home, KIVY_NO_ARGS="1", KIVY_NO_FILELOG="1",
                       KIVY_NO_CONSOLELOG="1")  # fmt: skip
            try:
                r = subprocess.run(
                    [sys.executable, "-m", "signage_ui.preview", "--size", f"{w}x{h}",
                     "--out", str(self.cache_dir),
                     *(["--content-dir", str(self.content_dir)] if self.content_dir else [])],
                    input=json.dumps(doc).encode(), capture_output=True, env=env,
                    timeout=self.timeout_s, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise PreviewError(
                    f"the player did not draw the {shape} previews in {self.timeout_s:.0f} s"
                ) from None
        if r.returncode != 0:
            tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise PreviewError(f"the player could not draw the {shape} previews: {tail[0]}")


class PushedBundles:
    """The bundle this console last pushed to each store (``state_dir/campaigns/<store>.json``:
    the body, its versions, who pushed it and when)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, store: str, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / f"{store}.json", json.dumps(record, indent=1).encode())

    def get(self, store: str) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.root / f"{store}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def all(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            doc = self.get(p.stem)
            if doc is not None:
                out[p.stem] = doc
        return out
