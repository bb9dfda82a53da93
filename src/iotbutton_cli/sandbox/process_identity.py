"""Which process a pid stands for: its start time and command line, so a reused pid is caught.

A pid file outlives its process, and the kernel hands the number to the next process that asks.
Before signalling or trusting a recorded pid, compare what the pid is now with what it was: on
Linux, field 22 of ``/proc/<pid>/stat`` (start time in clock ticks since boot) and
``/proc/<pid>/cmdline``; where there is no ``/proc`` (macOS, the BSDs), ``ps -o lstart=,args=``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

PROC = Path("/proc")
# /proc/<pid>/stat: "pid (comm) state ppid ...": start time is field 22, the 20th after ")".
START_TIME_AFTER_COMM = 19


def identity(pid: int) -> dict[str, str] | None:
    """What ``pid`` is right now (``source``, ``start``, ``command``), or None if there is no
    such process (or it cannot be told)."""
    if pid <= 0:
        return None
    if (PROC / "self" / "stat").exists():
        return _from_proc(pid)
    return _from_ps(pid)


def same_process(pid: int, recorded: object) -> bool:
    """True only if ``pid`` is still the process whose :func:`identity` was ``recorded``."""
    if not isinstance(recorded, dict) or not recorded.get("start"):
        return False
    return identity(pid) == recorded


def _from_proc(pid: int) -> dict[str, str] | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        command = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:  # gone, or (hidepid) not ours to see
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) <= START_TIME_AFTER_COMM or fields[0] in ("Z", "X"):  # dead, not yet reaped
        return None
    return {
        "source": "proc",
        "start": fields[START_TIME_AFTER_COMM],
        "command": command.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace"),
    }


def _from_ps(pid: int) -> dict[str, str] | None:
    try:
        result = subprocess.run(
            ["ps", "-ww", "-o", "lstart=,args=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = result.stdout.strip()
    if result.returncode != 0 or not line:
        return None
    # lstart is always 24 characters: "Mon Jan  1 00:00:00 2024".
    return {"source": "ps", "start": line[:24], "command": line[24:].strip()}
