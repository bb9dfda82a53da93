"""Wait for the Twilio stand-in's outbox, or the webhook sink's entries: a click's SMS, calls and
webhook posts arrive a moment after the click (the rule invokes the notifier, whose first run
starts a worker), not with it."""

from __future__ import annotations

import time
from typing import Any

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.sandbox import client
from iotbutton_cli.sandbox.protocol import SandboxInfo

WAIT_SECONDS = 30.0
POLL_SECONDS = 0.1


def wait_for(
    count: int, since: int = 0, timeout: float = WAIT_SECONDS, info: SandboxInfo | None = None
) -> list[dict[str, Any]]:
    """The outbox's requests after the first ``since``, once there are at least ``count`` of them
    (of the running sandbox when ``info`` is None); ``outbox-timeout`` after ``timeout`` s."""
    info = info or client.require_running()
    deadline = time.monotonic() + timeout
    while True:
        entries = client.outbox(info, requests_only=True)[since:]
        if len(entries) >= count:
            return entries
        if time.monotonic() >= deadline:
            raise IotButtonError(
                "outbox-timeout",
                f"The outbox received {len(entries)} of the {count} SMS and calls waited for "
                f"within {timeout:g} s.",
                "See what the notifier did with `iotbutton --sandbox notify logs`, and the "
                "rules with `iotbutton --sandbox rules list`.",
            )
        time.sleep(POLL_SECONDS)


def size(info: SandboxInfo | None = None) -> int:
    """How many requests the outbox holds now."""
    return len(client.outbox(info, requests_only=True))


def wait_for_hooks(
    count: int, since: int = 0, timeout: float = WAIT_SECONDS, info: SandboxInfo | None = None
) -> list[dict[str, Any]]:
    """The webhook sink's entries after the first ``since`` it received (those whose ``seq`` is
    above it: :func:`hooks_size` before the click), once there are at least ``count`` of them
    (of the running sandbox when ``info`` is None); ``hooks-timeout`` after ``timeout`` s."""
    info = info or client.require_running()
    deadline = time.monotonic() + timeout
    while True:
        entries = [entry for entry in client.hooks(info) if entry["seq"] > since]
        if len(entries) >= count:
            return entries
        if time.monotonic() >= deadline:
            raise IotButtonError(
                "hooks-timeout",
                f"The webhook sink received {len(entries)} of the {count} posts waited for "
                f"within {timeout:g} s.",
                "See what the notifier did with `iotbutton --sandbox notify logs`, and what the "
                "sink received with `iotbutton sandbox outbox`.",
            )
        time.sleep(POLL_SECONDS)


def hooks_size(info: SandboxInfo | None = None) -> int:
    """How many requests the webhook sink has recorded since it started (the last ``seq``; it
    keeps only the last ``webhook_sink.KEEP_ENTRIES`` of them)."""
    entries = client.hooks(info)
    return int(entries[-1]["seq"]) if entries else 0
