"""What the kernel says about a process, for the benchmarks' memory figures."""

from __future__ import annotations


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
