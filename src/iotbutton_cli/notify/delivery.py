"""A simulated click and the SMS and calls it causes: in the sandbox, wait until the Twilio
stand-in has received every one the deployed config names for that click.

Clicks of one button and click type within the config's debounce window are one alarm (see
``notifier_lambda/alarms.py``), so ``--count N`` waits for the alarms its clicks make, not for N:
the clicks' span over the window, less one if the button's last alarm of that type is still
within it. Counted on the safe side (half a second of slack per window), so the wait never
outlasts what the notifier sends.
"""

from __future__ import annotations

import math
import time
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
    repeats: bool = False  # the clicks repeat an alarm within the debounce window: no send
    held: str = ""  # quiet hours hold the click: until when ("07:00 UTC"), nothing sent now


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
    status = ops.status(ctx)
    click = ops.check_click(click_type)
    window = float(status.config.get("debounce_seconds", 0) or 0)
    button, _ = simulator.button_identity(ctx, serial)
    recipients, held = sent_now(ops.deployed_document(ctx, status), button, click)
    last_alarm = _last_alarm_seconds(ctx, button, click) if window else None
    before = outbox.size(ctx.sandbox_info)
    started = time.time()
    sent = simulator.click(ctx, serial, click_type, battery_mv, count)
    if held:
        return ClickDelivery(sent, held=held)
    alarms = alarms_made(count, time.time() - started, window, started, last_alarm)
    expected = recipients * alarms
    if expected == 0:
        return ClickDelivery(sent, repeats=recipients > 0)
    entries = outbox.wait_for(
        expected, since=before, timeout=timeout or outbox.WAIT_SECONDS, info=ctx.sandbox_info
    )
    return ClickDelivery(sent, expected, entries)


def sent_now(document: dict[str, Any], serial: str, click: str) -> tuple[int, str]:
    """How many SMS and calls the deployed config sends for one ``click`` of ``serial`` now, as
    the notifier reads it (the button's own section, quiet hours: SMS only, or held, then 0 and
    until when)."""
    from datetime import datetime, timezone

    from iotbutton_cli.notifier_lambda.contract import ConfigError, parse_config

    try:
        config = parse_config(document).for_button(serial)
    except ConfigError:  # the notifier refuses it too: it sends nothing
        return 0, ""
    per_click = config.clicks.get(click) if config is not None else None
    if config is None or per_click is None:
        return 0, ""
    quiet = config.quiet_at(click, datetime.now(timezone.utc))
    if quiet is not None and quiet.hold:
        return 0, f"{quiet.end_shown} {config.timezone}"
    if quiet is not None:
        per_click = per_click.sms_only()
    return len(per_click.sms) + len(per_click.call), ""


SLACK_SECONDS = 0.5


def alarms_made(
    clicks: int, span: float, window: float, started: float, last_alarm: float | None
) -> int:
    """At least how many alarms ``clicks`` clicks over ``span`` seconds make (see the module
    docstring); ``last_alarm``: when the button's last alarm of this type was clicked."""
    if window <= 0:
        return clicks
    alarms = min(clicks, math.floor(span / (window + SLACK_SECONDS)) + 1)
    if last_alarm is not None and started - last_alarm < window + SLACK_SECONDS:
        alarms -= 1  # the first clicks repeat the last alarm
    return max(alarms, 0)


def _last_alarm_seconds(ctx: AppContext, serial: str, click: str) -> float | None:
    """When the ledger says this button's last alarm of ``click`` was clicked (seconds)."""
    from iotbutton_cli.aws.calls import absent_ok
    from iotbutton_cli.notifier_lambda.alarms import recent_key
    from iotbutton_cli.notify.resources import ALARM_TABLE

    found = absent_ok(
        ctx.client("dynamodb").get_item,
        TableName=ALARM_TABLE,
        Key=recent_key(serial, click),
        ConsistentRead=True,
    )
    item = (found or {}).get("Item") or {}
    clicked = item.get("clickedAt", {}).get("N")
    return int(clicked) / 1000 if clicked else None
