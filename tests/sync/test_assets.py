"""Assets by sha256 over a real loopback HTTP server: resume after a cut, verify, never expose a
half file, garbage-collect what no manifest uses."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from sync.assets import AssetFetchError, AssetRef, AssetStore


class AssetServer:
    """Serves ``files`` by name; can cut the first response short or ignore Range."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_first_after: int | None = None
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first_after is not None:
                    cut, server.cut_first_after = server.cut_first_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the link drops mid-download
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def server() -> Iterator[AssetServer]:
    blob = os.urandom(300_000)
    s = AssetServer({"video.mp4": blob, "logo.png": b"\x89PNG" + os.urandom(500)})
    s.thread.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()


def ref_for(server: AssetServer, name: str) -> AssetRef:
    data = server.files[name]
    return AssetRef(sha256=hashlib.sha256(data).hexdigest(), size=len(data), url=server.url(name))


def test_download_is_verified_and_named_by_its_hash(server, tmp_path: Path) -> None:
    store = AssetStore(tmp_path, sleep=lambda s: None)
    ref = ref_for(server, "video.mp4")
    path = store.fetch(ref)
    assert path == tmp_path / "assets" / ref.sha256
    assert path.read_bytes() == server.files["video.mp4"]
    assert store.fetch(ref) == path and store.stats.already_cached == 1
    assert len(server.requests) == 1  # cached: no second download


def test_cut_download_resumes_with_range(server, tmp_path: Path) -> None:
    store = AssetStore(tmp_path, sleep=lambda s: None)
    server.cut_first_after = 100_000
    ref = ref_for(server, "video.mp4")
    assert store.fetch(ref).read_bytes() == server.files["video.mp4"]
    assert server.requests[0][1] is None and server.requests[1][1] == "bytes=100000-"
    assert store.stats.resumed == 1
    # Fewer bytes than two whole downloads went over the wire.
    assert store.stats.downloaded_bytes == len(server.files["video.mp4"])


def test_server_ignoring_range_restarts_cleanly(server, tmp_path: Path) -> None:
    store = AssetStore(tmp_path, sleep=lambda s: None)
    server.cut_first_after = 50_000
    server.ignore_range = True
    ref = ref_for(server, "video.mp4")
    assert store.fetch(ref).read_bytes() == server.files["video.mp4"]
    assert store.stats.resumed == 0


def test_wrong_bytes_never_get_a_real_name(server, tmp_path: Path) -> None:
    store = AssetStore(tmp_path, sleep=lambda s: None)
    real = ref_for(server, "video.mp4")
    liar = AssetRef(sha256="0" * 64, size=real.size, url=real.url)
    with pytest.raises(AssetFetchError, match="asset 000000000000: got 300000 bytes"):
        store.fetch(liar)
    assert not (tmp_path / "assets" / ("0" * 64)).exists()
    assert not list((tmp_path / "assets" / ".partial").iterdir())
    missing = AssetRef(sha256="1" * 64, size=3, url=server.url("nope.png"))
    with pytest.raises(AssetFetchError, match="HTTP 404"):
        store.fetch(missing)
    assert len([r for r in server.requests if r[0] == "/nope.png"]) == 1  # a 404 is not retried
    dead = AssetRef(sha256="2" * 64, size=3, url="http://127.0.0.1:9/x")
    with pytest.raises(AssetFetchError, match="download from http://127.0.0.1:9/x failed"):
        AssetStore(tmp_path, retries=1, sleep=lambda s: None).fetch(dead)


def test_inline_small_files_and_manifest_rules(tmp_path: Path) -> None:
    data = b"tiny image"
    ref = AssetRef(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        data_b64=base64.b64encode(data).decode(),
    )
    assert AssetStore(tmp_path).fetch(ref).read_bytes() == data
    for bad in [
        {"sha256": "a" * 64, "size": 1},  # no source
        {"sha256": "a" * 64, "size": 1, "url": "http://x/y", "data_b64": "AA=="},
        {"sha256": "A" * 64, "size": 1, "url": "http://x/y"},  # not lowercase hex
        {"sha256": "a" * 64, "size": 1, "url": "file:///etc/passwd"},
        {"sha256": "a" * 64, "size": -1, "url": "http://x/y"},
    ]:
        with pytest.raises(ValidationError):
            AssetRef.model_validate(bad)


def test_gc_keeps_only_what_manifests_use(server, tmp_path: Path) -> None:
    store = AssetStore(tmp_path, sleep=lambda s: None)
    video = store.fetch(ref_for(server, "video.mp4"))
    logo = store.fetch(ref_for(server, "logo.png"))
    (tmp_path / "assets" / ".partial" / ("3" * 64)).write_bytes(b"stale")
    assert store.gc([logo.name]) == 2
    assert logo.exists() and not video.exists()
    assert not list((tmp_path / "assets" / ".partial").iterdir())
