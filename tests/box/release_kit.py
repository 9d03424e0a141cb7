"""Tiny releases for the OTA tests (issue 20). A test release is a signed bundle like any other,
checked, installed, switched, put on probation and rolled back by the production code; only its
entry point is small: ``bin/edge-agent`` is a script that runs this checkout's agent with this
venv's Python (so every test release runs the real agent), or exits at once with a status (a
release that crashes on start). Padding files make an install take long enough to be killed
part-way."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

from contracts.release import build_bundle
from contracts.signing import generate_keypair


def keypair(tmp: Path) -> tuple[Path, str]:
    pem, public = generate_keypair()
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "ops_private.pem"
    path.write_bytes(pem)
    path.chmod(0o600)
    return path, public


def entry_script(release: str, crash: int | None = None) -> str:
    head = f"#!{sys.executable}\n# Test release {release} (tests/box/release_kit.py).\nimport sys\n"
    if crash is not None:
        return (
            head + f"print('release {release}: crashing on start', flush=True)\nsys.exit({crash})\n"
        )
    return head + "from edge_agent.cli import main\n\nsys.exit(main())\n"


def bundle(
    tmp: Path,
    key: Path,
    release: str,
    *,
    crash: int | None = None,
    arch: str | None = None,
    python: str | None = None,
    padding: int = 0,
    pad_bytes: int = 4096,
) -> Path:
    import platform

    tmp.mkdir(parents=True, exist_ok=True)
    src = tmp / f"src-{release}"
    (src / "bin").mkdir(parents=True, exist_ok=True)
    script = src / "bin" / "edge-agent"
    script.write_text(entry_script(release, crash))
    script.chmod(0o755)
    (src / "VERSION").write_text(release + "\n")
    for i in range(padding):
        (src / "lib" / f"{i // 50}").mkdir(parents=True, exist_ok=True)
        (src / "lib" / f"{i // 50}" / f"pad-{i}.bin").write_bytes(bytes([i % 251]) * pad_bytes)
    out = tmp / f"release-{release}.tar"
    build_bundle(
        src,
        out,
        release=release,
        arch=arch or platform.machine(),
        python=python or f"{sys.version_info.major}.{sys.version_info.minor}",
        private_pem=key.read_bytes(),
    )
    return out


def rewrite(
    src: Path,
    out: Path,
    *,
    drop: str | None = None,
    replace: dict[str, bytes] | None = None,
    add: dict[str, bytes] | None = None,
) -> Path:
    """A copy of a bundle with a member left out, changed or added (manifest and signature kept)."""
    import io

    with tarfile.open(src, "r:") as tin, tarfile.open(out, "w") as tout:
        for m in tin:
            if m.name == drop:
                continue
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            if replace and m.name in replace:
                data = replace[m.name]
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
        for name, data in (add or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    return out
