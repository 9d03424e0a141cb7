"""`edge-agent release ...`: the box's release tools (issue 20, OTA; README "OTA").

  edge-agent release status -c agent.toml        what runs, what is installed, what is on probation
  edge-agent release install BUNDLE -c agent.toml [--switch]   by hand (a USB stick): the same
                checks and install as a push; --switch also puts it on probation as current
  edge-agent release pre-start -c agent.toml     before each start (systemd ExecStartPre): settle
                an interrupted install, count a start on probation, roll back a crash loop
  edge-agent release post-stop -c agent.toml --status S   after each stop (ExecStopPost): the
                exit status, for the rollback's reason
  edge-agent release supervise -c agent.toml [-- ARGS]   what systemd does, as one process (tests,
                a box without systemd): pre-start, run current/bin/edge-agent run -c agent.toml,
                restart it when it exits non-zero, until SIGTERM

These read only ``[release]`` and ``[downlink] ops_public_key`` from the file, not the whole
config: the guard (pre-start, post-stop) runs from the box's first install, which must keep
working when a later release's config has keys it does not know.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

log = logging.getLogger("edge_agent.release")


def register(sub: Any) -> None:
    p = sub.add_parser("release", help="over-the-air releases: status, install, guard, supervise")
    rs = p.add_subparsers(dest="release_cmd", required=True)

    def cfg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", required=True, help="agent.toml ([release] root)")

    st = rs.add_parser("status", help="current, previous, installed, probation (JSON)")
    cfg(st)
    ins = rs.add_parser("install", help="check and install a bundle by hand")
    ins.add_argument("bundle")
    ins.add_argument("--switch", action="store_true", help="make it current, on probation")
    cfg(ins)
    pre = rs.add_parser("pre-start", help="before each start: settle, count, roll back")
    cfg(pre)
    post = rs.add_parser("post-stop", help="after each stop: note the exit status")
    post.add_argument("--status", default="", help="the exit status ($EXIT_STATUS)")
    cfg(post)
    sv = rs.add_parser("supervise", help="run current/bin/edge-agent as systemd would")
    sv.add_argument("--restart-delay", type=float, default=5.0, help="seconds (RestartSec=)")
    sv.add_argument("args", nargs=argparse.REMAINDER, help="after --: the agent's arguments")
    cfg(sv)
    p.set_defaults(func=_main)


def store_from(config: str) -> Any:
    """The release store the config names; ValueError with one line when it names none."""
    from contracts.signing import load_public_key
    from edge_agent.box.releases import ReleaseStore

    path = Path(config)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{config}: {exc}") from None
    section = data.get("release")
    rel: dict[str, Any] = section if isinstance(section, dict) else {}
    root = rel.get("root")
    if not isinstance(root, str):
        raise ValueError(f"{config}: no [release] root: this box takes no releases")
    key = (data.get("downlink") or {}).get("ops_public_key")
    if not isinstance(key, str):
        raise ValueError(f"{config}: no [downlink] ops_public_key")
    root_path = Path(root) if Path(root).is_absolute() else path.parent / root
    if not Path(key).is_absolute() and not key.endswith("=") and (path.parent / key).is_file():
        key = str(path.parent / key)
    return ReleaseStore(
        root_path,
        load_public_key(key),
        max_starts=int(rel.get("max_starts", 3)),
        timeout_s=float(rel.get("timeout_s", 900.0)),
    )


def _main(args: argparse.Namespace) -> int:
    from contracts.release import ReleaseError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        store = store_from(args.config)
    except ValueError as exc:
        print(f"edge-agent release: {exc}", file=sys.stderr)
        # The guard of a box that takes no releases has nothing to guard: the agent starts.
        return 0 if args.release_cmd in ("pre-start", "post-stop") else 2
    cmd = args.release_cmd
    if cmd == "status":
        print(json.dumps(status(store)))
        return 0
    if cmd == "install":
        try:
            manifest = store.install(Path(args.bundle))
            previous = store.switch(manifest.release) if args.switch else None
        except (ReleaseError, OSError) as exc:
            print(f"edge-agent release: {args.bundle}: refused: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"installed": manifest.release, "switched": args.switch, "was": previous}))
        return 0
    if cmd == "pre-start":
        note = store.pre_start()
        if note:
            log.error("%s", note)
        return 0  # never keeps the agent from starting: current is always complete
    if cmd == "post-stop":
        if store.on_probation(store.running()) is not None:
            store.note_exit(args.status)
        return 0
    return supervise(store, args.config, args.args, args.restart_delay)


def status(store: Any) -> dict[str, Any]:
    try:
        probation = store.probation.read()
    except ValueError as exc:
        probation = {"unreadable": str(exc)}
    result = store.read_result()
    return {
        "current": store.running(),
        "installed": store.installed(),
        "probation": probation,
        "result": result.ack() if result is not None else None,
    }


def supervise(store: Any, config: str, extra: list[str], delay: float) -> int:
    """systemd's part, in one process: the guard before each start, the agent from ``current``
    (resolved at each start, so a switch takes effect at the next one), restarted after a
    non-zero exit (75: a restart asked for), stopped with SIGTERM forwarded."""
    stop = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        for p in child:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    args = [a for a in extra if a != "--"] or ["run", "-c", config]
    status = 0
    while not stop.is_set():
        note = store.pre_start()
        if note:
            log.error("%s", note)
        entry = store.current / "bin" / "edge-agent"
        log.info("supervise: starting %s (release %s)", entry, store.running())
        try:
            proc = subprocess.Popen([str(entry), *args])
        except OSError as exc:
            log.error("supervise: cannot start %s: %s", entry, exc)
            status = 127
        else:
            child[:] = [proc]
            if stop.is_set():  # a SIGTERM between the check and the start
                proc.send_signal(signal.SIGTERM)
            status = proc.wait()
        if store.on_probation(store.running()) is not None:
            store.note_exit(status)
        if stop.is_set() or status == 0:
            break
        log.warning("supervise: the agent exited with %s; restarting in %g s", status, delay)
        stop.wait(delay)
    return 0 if stop.is_set() else status
