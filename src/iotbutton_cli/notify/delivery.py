"""A simulated click and the SMS and calls it causes: in the sandbox, wait until the Twilio
stand-in has received every one the deployed config names for that click."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.context import AppContext
from iotbutton_cli.device import simulator
from iotbutton_cli.errors import usage_error
from iotbutton_cli.notify import ops


@dataclass
class ClickDelivery:
    sent: list[simulator.Published]
    expected: int = 0  # SMS and calls the deployed config names for these clicks
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # outbox entries


def click_and_wait(
    ctx: AppContext,
    serial: str | None,
    click_type: str,
    battery_mv: int = 1650,
    count: int = 1,
    timeout: float | None = None,
) -> ClickDelivery:
    """Publish the clicks, then wait for the outbox to receive what the deployed notifier sends
    for them (``outbox-timeout`` if it does not within ``timeout`` s)."""
    from iotbutton_cli.sandbox import outbox

    if not ctx.sandbox:
        raise usage_error(
            "wait-needs-sandbox",
            "--wait works in the sandbox only: it reads the Twilio stand-in's outbox.",
            "Run with --sandbox; against AWS, see `iotbutton notify logs`.",
        )
    clicks = ops.status(ctx).config.get("clicks", {})
    per_click = clicks.get(ops.check_click(click_type), {})
    expected = (len(per_click.get("sms", [])) + len(per_click.get("call", []))) * count
    before = outbox.size(ctx.sandbox_info)
    sent = simulator.click(ctx, serial, click_type, battery_mv, count)
    if expected == 0:
        return ClickDelivery(sent)
    entries = outbox.wait_for(
        expected, since=before, timeout=timeout or outbox.WAIT_SECONDS, info=ctx.sandbox_info
    )
    return ClickDelivery(sent, expected, entries)
