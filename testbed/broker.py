"""A private mosquitto on a free loopback port, for the demo and the test fixtures.

Production boxes use the system mosquitto (see systemd/); this one lives in a temp dir and dies
with its owner.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from contracts.mqtt import port_open
from testbed.procs import terminate


class BrokerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dynsec_plugin() -> Path:
    """mosquitto's dynamic security plugin (shipped with mosquitto 2.0; Debian puts it under the
    architecture's lib directory)."""
    for pattern in (
        "/usr/lib/*/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/mosquitto_dynamic_security.so",
    ):
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    raise BrokerError("mosquitto_dynamic_security.so not found (it ships with mosquitto >= 2.0)")


def fleet_acl_conf(acl: Path) -> str:
    """Config lines that make mosquitto apply the ACL ``edge-ops acl`` rendered into ``acl``."""
    return f"plugin {dynsec_plugin()}\nplugin_opt_config_file {acl}\n"


@dataclass
class Mosquitto:
    """``start()`` it, use ``host``/``port``, ``stop()`` or ``kill()`` it, ``start()`` it again.

    Persistence is on, so a restart keeps sessions and queued QoS 1 messages, as a real broker does.
    """

    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mosquitto-")))
    extra_conf: str = ""
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def _write_conf(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            # The default of 1000 silently drops QoS 1 messages for a lagging subscriber.
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            f"log_dest file {self.workdir}/mosquitto.log",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to user "mosquitto", who cannot open files in our temp dir.
            lines.append("user root")
        self.conf_path.write_text("\n".join(lines) + "\n" + self.extra_conf)

    def start(self, timeout: float = 5.0) -> Mosquitto:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise BrokerError("mosquitto not found; run: apt-get install -y mosquitto")
        self._write_conf()
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(
                    errors="replace"
                )
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {err.strip()}")
            if port_open(self.host, self.port):
                return self
            time.sleep(0.01)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout}s")

    def kill(self) -> None:
        """kill -9: no goodbye, no final persistence save."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
