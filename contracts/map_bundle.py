"""The store map on the wire: an IMDF delivery (archive or folder) as one JSON downlink body of
kind ``map``, shared by ``edge-ops push map`` (central) and the box.

Body::

    {"type": "map", "store_id"?: S, "version": N,          # N >= 1, the map version
     "manifest": {...IMDF manifest.json...},
     "collections": {"unit": {"type": "FeatureCollection", "features": [...]}, ...}}

Only the shape is checked here; the IMDF content (geometry, references) is validated on the box
by the IMDF importer, which names the feature and the field of every error.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A feature type as a file name stem: IMDF's are lower-case words ("unit", "opening").
_TYPE = re.compile(r"^[a-z][a-z_]{0,31}$")


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


def bundle(files: Mapping[str, bytes], version: int, store_id: str | None = None) -> dict[str, Any]:
    """An IMDF delivery's files as a ``map`` body; MapBundleError naming the file if one is
    not JSON (the box would refuse it anyway; ops hear it before signing)."""
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
    return body


def unbundle(body: Any) -> tuple[int, dict[str, bytes]]:
    """(map version, IMDF files by name) from a ``map`` body; MapBundleError naming the field."""
    if not isinstance(body, dict):
        raise MapBundleError("(root): a map body is a JSON object")
    unknown = sorted(set(body) - {"type", "store_id", "version", "manifest", "collections"})
    if unknown:
        raise MapBundleError(f"{unknown[0]}: unknown field in a map body")
    if body.get("type") != "map":
        raise MapBundleError("type: expected 'map'")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MapBundleError("version: expected a whole number >= 1")
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
