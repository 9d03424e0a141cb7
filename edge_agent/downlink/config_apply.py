"""Config pushed by central ops (downlink kind ``config``): atomic apply with rollback.

The body carries the whole TOML file: ``{"toml": "<text>"}``. Applying:

1. parse and validate it exactly as ``edge-agent run`` would (relative paths against the
   current file's directory); refuse a config for another store or device;
2. keep the running file as ``<config>.last-good`` and write the new one in its place
   (temporary file, fsync, rename: never a half-written config);
3. write a probation marker ``<config>.probation``; the agent then restarts on the new file.

On probation the new config must prove itself: the agent confirms it (removes the marker) once
the uplink has connected with it; a start that finds the marker already tried
``MAX_STARTS`` times (it keeps crashing), or an agent that cannot reach central within the
probation time, puts the last good file back and restarts on it.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig, ConfigError, parse_config
from edge_agent.downlink.probation import Probation, sha256_of
from edge_agent.journey.content_store import atomic_write

MAX_STARTS = 3


def _paths(config_path: Path) -> tuple[Path, Path]:
    return (
        config_path.with_name(config_path.name + ".last-good"),
        config_path.with_name(config_path.name + ".probation"),
    )


def validate(text: str, config_path: Path, current: AgentConfig) -> AgentConfig:
    """The new config, or ValueError with one line saying why it is refused."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config is not TOML: {exc}") from None
    try:
        new = parse_config(data, base_dir=config_path.parent)
    except ConfigError as exc:
        raise ValueError(f"config invalid: {'; '.join(exc.errors)[:250]}") from None
    for key in ("store_id", "device_id"):
        mine, theirs = getattr(current.store, key), getattr(new.store, key)
        if mine != theirs:
            raise ValueError(f"config store.{key} is {theirs!r}, this box is {mine!r}")
    return new


def stage(body: dict[str, Any], config_path: Path, current: AgentConfig) -> AgentConfig:
    """Validate and install a pushed config (see the module doc); the caller restarts."""
    text = body.get("toml")
    if not isinstance(text, str):
        raise ValueError('config body needs "toml": the whole file as a string')
    new = validate(text, config_path, current)
    last_good, probation = _paths(config_path)
    mode = config_path.stat().st_mode & 0o777
    shutil.copy2(config_path, last_good)
    atomic_write(config_path, text.encode(), mode)
    Probation(probation).start(text.encode())
    return new


def sha256_text(text: str) -> str:
    return sha256_of(text.encode())


def on_start(config_path: Path) -> str | None:
    """Called before loading the config; returns a one-line note when it rolled back."""
    starts = Probation(_paths(config_path)[1]).count_start()
    if starts is not None and starts > MAX_STARTS:
        return rollback(config_path, f"the new config did not start {MAX_STARTS} times")
    return None


def on_probation(config_path: Path | None, running_sha256: str | None = None) -> float | None:
    """Seconds since the pushed config was installed, or None when not on probation. With
    ``running_sha256`` (the file the caller runs on), only when that is the config on
    probation: the agent that installed it must not vouch for it."""
    if config_path is None:
        return None
    return Probation(_paths(config_path)[1]).age(running_sha256, require_running=False)


def confirm(config_path: Path) -> None:
    Probation(_paths(config_path)[1]).clear()


def rollback(config_path: Path, why: str) -> str:
    last_good, probation = _paths(config_path)
    if not last_good.exists():
        Probation(probation).clear()
        return f"config rollback impossible ({why}): no last good config; keeping the new one"
    mode = config_path.stat().st_mode & 0o777 if config_path.exists() else 0o644
    atomic_write(config_path, last_good.read_bytes(), mode)
    Probation(probation).clear()
    return f"config rolled back to the last good version: {why}"
