"""Durations people type on the command line: ``90`` (minutes), ``90m``, ``2h``, ``3d``."""

from __future__ import annotations

import re

from iotbutton_cli.errors import usage_error

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str, option: str, default_unit: str, most_seconds: int) -> int:
    """Seconds in ``text``, between 1 and ``most_seconds``; a usage error naming ``option``."""
    match = DURATION.match(text)
    seconds = int(match[1]) * UNITS[(match[2] or default_unit).lower()] if match else 0
    if not 1 <= seconds <= most_seconds:
        longest = f"{most_seconds // 86400}d" if most_seconds >= 86400 else f"{most_seconds}s"
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise usage_error(
            "bad-duration",
            f"{option} {shown!r} is not a duration from 1 second to {longest}.",
            f"Write a number of minutes, or a number and a unit: {option} 90, 90m, 2h, 3d.",
        )
    return seconds
