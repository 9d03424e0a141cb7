"""What the kernel says about a process, for the benchmarks' memory and CPU figures."""

from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")  # /proc counts CPU time in these ticks


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size in MB (``VmRSS`` in ``/proc/<pid>/status``); NaN where there is none
    (a process gone or a zombie): a missing figure must not read as zero."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) for every process we may read."""
    out: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                # "pid (comm) state ppid ...": comm may hold spaces, so split after its last ")".
                rest = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(name)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return out


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (the agent's camera worker), from /proc."""
    return [p for p, (parent, _) in proc_table().items() if parent == pid]


def tree_cpu_s(root: int) -> float:
    """CPU seconds so far of ``root`` and its children (e.g. PostgreSQL and its backends)."""
    return sum(cpu for p, (parent, cpu) in proc_table().items() if root in (p, parent))
