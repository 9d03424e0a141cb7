"""The store map on the wire: an IMDF delivery (archive or folder) as one JSON downlink body of
kind ``map``, shared by ``edge-ops push map`` (central) and the box.

Body, as ``edge-ops push map`` sends it::

    {"type": "map", "store_id"?: S, "version": N,          # N >= 1, the map version
     "archive": "<base64 of a zip (deflate) of manifest.json and the *.geojson files>"}

or, for a small hand-written map, the same files inline::

    {"type": "map", "store_id"?: S, "version": N,
     "manifest": {...IMDF manifest.json...},
     "collections": {"unit": {"type": "FeatureCollection", "features": [...]}, ...}}

Why an archive: one downlink message is capped (1 MB by default) and IMDF GeoJSON is mostly
coordinates written as text, which deflate shrinks about twelve times; a 500-unit, 3-level venue
is 0.7 MB as JSON and 60 KB zipped, so a mall-sized map still travels as one signed message. The
box reads the archive with limits (files, bytes unzipped), so a zip bomb is refused by name.

Only the shape is checked here; the IMDF content (geometry, references) is validated on the box
by the IMDF importer, which names the feature and the field of every error.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A feature type as a file name stem: IMDF's are lower-case words ("unit", "opening").
_TYPE = re.compile(r"^[a-z][a-z_]{0,31}$")
# An IMDF delivery has a manifest and at most a dozen or so feature types.
MAX_ARCHIVE_FILES = 64
# Unzipped, all files together: far above any store's map, far below what a box can hold.
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024


class MapBundleError(ValueError):
    """A body that is not a map bundle; the message names the field."""


def read_delivery(path: Path | str) -> dict[str, bytes]:
    """The ``.json``/``.geojson`` files of an IMDF archive or folder, by base name. Raises
    OSError or zipfile.BadZipFile when the path cannot be read."""
    path = Path(path)
    files: dict[str, bytes] = {}
    if path.is_dir():
        for p in sorted(path.iterdir()):
            if p.is_file() and p.suffix.lower() in (".geojson", ".json"):
                files[p.name] = p.read_bytes()
        return files
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename.rsplit("/", 1)[-1]
            # macOS archivers add __MACOSX/._name shadows: not IMDF.
            if info.is_dir() or name.startswith("._") or "__MACOSX" in info.filename:
                continue
            if name.lower().endswith((".geojson", ".json")):
                files[name] = zf.read(info)
    return files


def bundle(
    files: Mapping[str, bytes],
    version: int,
    store_id: str | None = None,
    *,
    archive: bool = True,
) -> dict[str, Any]:
    """An IMDF delivery's files as a ``map`` body (zipped, or inline with ``archive=False``);
    MapBundleError naming the file if one is not JSON (the box would refuse it anyway; ops hear
    it before signing)."""
    if version < 1:
        raise MapBundleError("version: a map version is a whole number >= 1")
    body: dict[str, Any] = {"type": "map", "version": version, "collections": {}}
    if store_id is not None:
        body["store_id"] = store_id
    for name, data in sorted(files.items()):
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise MapBundleError(f"{name}: not JSON: {exc}") from None
        if name == "manifest.json":
            body["manifest"] = doc
        else:
            body["collections"][name.rsplit(".", 1)[0].lower()] = doc
    if "manifest" not in body:
        raise MapBundleError("manifest.json: missing (an IMDF delivery starts with its manifest)")
    if not archive:
        return body
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        # Re-serialised compactly: the box reads the same documents, not the same bytes.
        zf.writestr("manifest.json", _dump(body.pop("manifest")))
        for ftype, doc in body.pop("collections").items():
            zf.writestr(f"{ftype}.geojson", _dump(doc))
    body["archive"] = base64.b64encode(buf.getvalue()).decode()
    return body


def _unzip(archive: Any) -> dict[str, bytes]:
    """The IMDF files of a bundled archive, within the limits; MapBundleError naming the file."""
    if not isinstance(archive, str):
        raise MapBundleError("archive: expected base64 text")
    try:
        raw = base64.b64decode(archive, validate=True)
    except (binascii.Error, ValueError):
        raise MapBundleError("archive: not base64") from None
    files: dict[str, bytes] = {}
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > MAX_ARCHIVE_FILES:
                raise MapBundleError(
                    f"archive: {len(infos)} files, an IMDF delivery has at most {MAX_ARCHIVE_FILES}"
                )
            for info in infos:
                name = info.filename.rsplit("/", 1)[-1]
                if name.startswith("._") or "__MACOSX" in info.filename:
                    continue
                if not name.lower().endswith((".geojson", ".json")):
                    continue
                stem = name.rsplit(".", 1)[0].lower()
                if name != "manifest.json" and not _TYPE.match(stem):
                    raise MapBundleError(f"archive: {name[:64]!r}: not a feature type name")
                if name in files:
                    raise MapBundleError(f"archive: {name[:64]}: twice in the archive")
                # Read no more than the limit allows, whatever the header claims.
                with zf.open(info) as f:
                    data = f.read(MAX_UNZIPPED_BYTES - total + 1)
                total += len(data)
                if total > MAX_UNZIPPED_BYTES:
                    raise MapBundleError(
                        f"archive: {name[:64]}: over {MAX_UNZIPPED_BYTES // 2**20} MB unzipped"
                    )
                files[name] = data
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise MapBundleError(f"archive: not a readable zip: {str(exc)[:120]}") from None
    except NotImplementedError as exc:  # a compression method zipfile lacks
        raise MapBundleError(f"archive: {str(exc)[:120]}") from None
    if "manifest.json" not in files:
        raise MapBundleError("archive: manifest.json missing (an IMDF delivery starts with it)")
    return files


def unbundle(body: Any) -> tuple[int, dict[str, bytes]]:
    """(map version, IMDF files by name) from a ``map`` body; MapBundleError naming the field."""
    if not isinstance(body, dict):
        raise MapBundleError("(root): a map body is a JSON object")
    unknown = sorted(
        set(body) - {"type", "store_id", "version", "manifest", "collections", "archive"}
    )
    if unknown:
        raise MapBundleError(f"{unknown[0]}: unknown field in a map body")
    if body.get("type") != "map":
        raise MapBundleError("type: expected 'map'")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MapBundleError("version: expected a whole number >= 1")
    if "archive" in body:
        if "manifest" in body or "collections" in body:
            raise MapBundleError("archive: give the archive or manifest and collections, not both")
        return version, _unzip(body["archive"])
    manifest = body.get("manifest")
    if not isinstance(manifest, dict):
        raise MapBundleError("manifest: expected the IMDF manifest as an object")
    collections = body.get("collections")
    if not isinstance(collections, dict) or not collections:
        raise MapBundleError("collections: expected {feature type: FeatureCollection}")
    files = {"manifest.json": _dump(manifest)}
    for ftype, doc in collections.items():
        if not isinstance(ftype, str) or not _TYPE.match(ftype):
            raise MapBundleError(f"collections.{str(ftype)[:32]!r}: not a feature type name")
        files[f"{ftype}.geojson"] = _dump(doc)
    return version, files


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
