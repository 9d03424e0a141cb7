"""`edge-agent install`: lay out the box on Debian / Raspberry Pi OS.

Service users (systemd-sysusers), the units in /etc/systemd/system, the config in
/etc/edge-agent, the state directories, and (optionally) the local mosquitto. Idempotent: a
second run changes nothing, and an existing agent.toml is never overwritten (the installer
says so). ``--root`` lays everything out under another directory (an image, a test);
``--dry-run`` prints the plan and touches nothing.

The plan is computed first (pure), then carried out, so the dry run and the real run cannot
disagree.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
DEFAULT_PREFIX = Path("/opt/edge-agent")
STATE_DIR = Path("/var/lib/edge-agent")
# Directories hidden from the services by ProtectHome=yes: a venv there cannot start.
HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"))


class InstallError(Exception):
    """One line naming what is wrong; nothing has been changed when it is raised by plan()."""


@dataclass(frozen=True)
class Action:
    kind: str  # "users" | "file" | "dir" | "link" | "systemctl"
    path: Path | None = None
    content: bytes | None = None
    mode: int = 0o644
    owner: str | None = None
    overwrite: bool = True
    argv: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "file":
            how = "write" if self.overwrite else "write if absent"
            return (
                f"{how} {self.path} (mode {self.mode:04o}{', ' + self.owner if self.owner else ''})"
            )
        if self.kind == "dir":
            return (
                f"mkdir {self.path} (mode {self.mode:04o}{', ' + self.owner if self.owner else ''})"
            )
        if self.kind == "link":
            assert self.content is not None
            how = "link" if self.overwrite else "link if absent"
            return f"{how} {self.path} -> {self.content.decode()}"
        if self.kind == "users":
            return f"create service users and groups from {self.path} (systemd-sysusers)"
        return "run " + " ".join(self.argv)


@dataclass(frozen=True)
class Options:
    root: Path = Path("/")
    prefix: Path = DEFAULT_PREFIX
    config: Path | None = None
    screens: tuple[str, ...] = ()
    with_mosquitto: bool = False
    # The store LAN listener for ESP32 nodes, as `edge-agent firmware render` wrote it
    # (OUT/mosquitto/: nodes.conf, nodes.acl, nodes.passwd).
    bus_nodes: Path | None = None
    enable: bool = True


def default_prefix() -> Path:
    """The checkout this venv belongs to (/opt/edge-agent/.venv/bin/python -> /opt/edge-agent)."""
    venv = Path(sys.prefix)
    return venv.parent if venv.name == ".venv" else DEFAULT_PREFIX


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


def _unit_text(name: str, prefix: Path) -> bytes:
    text = (UNITS_DIR / name).read_text()
    if prefix != DEFAULT_PREFIX:
        text = text.replace(str(DEFAULT_PREFIX) + "/", str(prefix) + "/")
    return text.encode()


def _check_config(path: Path) -> tuple[bytes, list[str]]:
    """The config, validated; its screen ids. Paths must stay writable under the unit."""
    from edge_agent.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise InstallError(f"{exc.path}: {'; '.join(exc.errors)}") from None
    state = cfg.paths_resolved.state_dir
    if state != STATE_DIR and STATE_DIR not in state.parents:
        # ProtectSystem=strict: only StateDirectory= is writable for the agent.
        raise InstallError(
            f"{path}: paths.state_dir is {state}; under the unit it must be {STATE_DIR} "
            "(the only writable place with ProtectSystem=strict)"
        )
    return path.read_bytes(), [s.id for s in cfg.screens]


def plan(opts: Options) -> list[Action]:
    for hidden in HIDDEN:
        if opts.prefix == hidden or hidden in opts.prefix.parents:
            raise InstallError(
                f"--prefix {opts.prefix} is under {hidden}, which ProtectHome=yes hides from "
                "the services; install the checkout under /opt"
            )
    r = opts.root
    actions: list[Action] = []
    sysusers = (UNITS_DIR / "edge-agent.sysusers").read_bytes()
    sysusers_path = _under(r, Path("/etc/sysusers.d/edge-agent.conf"))
    actions.append(Action("file", sysusers_path, sysusers, 0o644))
    actions.append(Action("users", sysusers_path))

    unit_dir = _under(r, Path("/etc/systemd/system"))
    # The store API is installed, not enabled: a store opens it to phones when it wants to.
    units = ["edge-agent.service", "signage-ui@.service", "store-api.service"]
    if opts.with_mosquitto:
        units.append("mosquitto.service")
    for name in units:
        actions.append(Action("file", unit_dir / name, _unit_text(name, opts.prefix), 0o644))

    etc = _under(r, Path("/etc/edge-agent"))
    actions.append(Action("dir", etc, mode=0o755))
    screens = list(opts.screens)
    if opts.config is not None:
        content, cfg_screens = _check_config(opts.config)
        screens = screens or cfg_screens
        actions.append(Action("file", etc / "agent.toml", content, 0o644, overwrite=False))
    if opts.with_mosquitto:
        conf = (UNITS_DIR / "mosquitto.conf").read_bytes()
        actions.append(Action("file", etc / "mosquitto.conf", conf, 0o644))
        # mosquitto.conf includes this directory: it must exist even in a store without nodes.
        actions.append(Action("dir", etc / "mosquitto.d", mode=0o755))
        actions += _bus_node_files(opts.bus_nodes, etc / "mosquitto.d")
    elif opts.bus_nodes is not None:
        raise InstallError("--bus-nodes: the node listener is part of --with-mosquitto")
    actions.append(Action("dir", _under(r, STATE_DIR), mode=0o700, owner="edge-agent"))
    actions.append(
        Action("dir", _under(r, Path("/var/lib/signage-ui")), mode=0o700, owner="signage")
    )

    actions += _release_root(r, opts.prefix)

    if r == Path("/") and opts.enable:
        enable = ["edge-agent.service", *(f"signage-ui@{s}.service" for s in screens)]
        if opts.with_mosquitto:
            enable.append("mosquitto.service")
        actions.append(Action("systemctl", argv=("systemctl", "daemon-reload")))
        actions.append(Action("systemctl", argv=("systemctl", "enable", *enable)))
    return actions


def _release_root(r: Path, prefix: Path) -> list[Action]:
    """The OTA layout the units run from (README "OTA"): ``<prefix>/ota``, writable by the agent
    only, readable by the players; a first release, ``factory``, whose entry points are this
    checkout's venv, and ``current`` naming it unless a release is already current (a second
    install never switches a box back)."""
    ota = _under(r, prefix / "ota")
    factory = ota / "releases" / "factory"
    venv_bin = prefix / ".venv" / "bin"
    actions = [
        Action("dir", ota, mode=0o755, owner="edge-agent"),
        Action("dir", ota / "releases", mode=0o755, owner="edge-agent"),
        Action("dir", factory / "bin", mode=0o755),
    ]
    for name in ("edge-agent", "signage-ui"):
        actions.append(Action("link", factory / "bin" / name, str(venv_bin / name).encode()))
    actions.append(Action("link", ota / "current", b"releases/factory", overwrite=False))
    return actions


def _bus_node_files(src: Path | None, dest: Path) -> list[Action]:
    """The node listener, its ACL and its password file (readable by mosquitto only: the hashes
    are what a node's password is checked against)."""
    if src is None:
        return []
    from edge_agent.box.node_bus import NODES_ACL, NODES_CERT, NODES_CONF, NODES_KEY, NODES_PASSWD

    actions = []
    tls = (src / NODES_CERT).is_file() or (src / NODES_KEY).is_file()
    for name, mode, owner in (
        (NODES_CONF, 0o644, None),
        (NODES_ACL, 0o644, None),
        (NODES_PASSWD, 0o600, "mosquitto"),
        # With [bus] tls: the box's certificate for the nodes, its key for mosquitto only.
        *(((NODES_CERT, 0o644, None), (NODES_KEY, 0o600, "mosquitto")) if tls else ()),
    ):
        path = src / name
        if not path.is_file():
            raise InstallError(
                f"--bus-nodes {src}: no {name} (run `edge-agent firmware render LAYOUT --out DIR` "
                "and pass DIR/mosquitto)"
            )
        actions.append(Action("file", dest / name, path.read_bytes(), mode, owner=owner))
    return actions


def _uid_gid(root: Path, user: str) -> tuple[int, int] | None:
    if root == Path("/"):
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            return None
        return pw.pw_uid, pw.pw_gid
    passwd = root / "etc" / "passwd"
    if not passwd.exists():
        return None
    for line in passwd.read_text().splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == user:
            return int(parts[2]), int(parts[3])
    return None


def apply(actions: list[Action], root: Path, out=sys.stdout) -> None:
    for a in actions:
        if a.kind == "file":
            assert a.path is not None and a.content is not None
            if a.path.exists() and not a.overwrite:
                print(f"kept   {a.path} (exists; not overwritten)", file=out)
                continue
            ids = _uid_gid(root, a.owner) if a.owner else None
            if a.path.exists() and a.path.read_bytes() == a.content:
                os.chmod(a.path, a.mode)
                if ids is not None and os.geteuid() == 0:
                    os.chown(a.path, *ids)
                print(f"same   {a.path}", file=out)
                continue
            a.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = a.path.with_name(a.path.name + ".tmp")
            tmp.unlink(missing_ok=True)
            # Created with its final mode: a password file is never readable by others.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, a.mode)
            with os.fdopen(fd, "wb") as f:
                f.write(a.content)
            os.chmod(tmp, a.mode)  # the umask may have taken bits the mode wants
            if ids is not None and os.geteuid() == 0:
                os.chown(tmp, *ids)
            os.replace(tmp, a.path)  # never a half-written unit or config
            print(f"wrote  {a.path}", file=out)
        elif a.kind == "dir":
            assert a.path is not None
            a.path.mkdir(parents=True, exist_ok=True)
            os.chmod(a.path, a.mode)
            ids = _uid_gid(root, a.owner) if a.owner else None
            if ids is not None and os.geteuid() == 0:
                os.chown(a.path, *ids)
            print(f"dir    {a.path}", file=out)
        elif a.kind == "link":
            assert a.path is not None and a.content is not None
            target = a.content.decode()
            if a.path.is_symlink() and (not a.overwrite or os.readlink(a.path) == target):
                print(f"kept   {a.path} -> {os.readlink(a.path)}", file=out)
                continue
            a.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = a.path.with_name(a.path.name + ".tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, a.path)  # as a release switch does: never missing
            print(f"linked {a.path} -> {target}", file=out)
        elif a.kind == "users":
            _run(["systemd-sysusers", f"--root={root}", str(a.path)], out)
        else:
            _run(list(a.argv), out)


def _run(argv: list[str], out) -> None:
    if shutil.which(argv[0]) is None:
        raise InstallError(f"{argv[0]} not found (install the systemd package)")
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise InstallError(f"{' '.join(argv)} failed: {msg[-1] if msg else proc.returncode}")
    print(f"ran    {' '.join(argv)}", file=out)
