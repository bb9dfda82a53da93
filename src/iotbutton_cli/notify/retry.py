"""``notify retry ALARM_ID``: send an alarm again to the recipients it did not reach, and only to
them.

What did not get through is what the alarm ledger says: refused by Twilio (``failed``), reported
not reached by a delivery receipt (undelivered, failed, busy, no-answer, canceled), or an attempt
that never finished. The deployed function does the sending (it holds the Twilio secret, and the
ledger's conditional claims keep a delivery that got through meanwhile from being sent twice);
this module picks the deliveries and invokes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.notifier_lambda.hook_settings import (
    SLACK_CHANNEL,
    WEBHOOK_CHANNEL,
    HookSettingsError,
    parse_hooks,
)
from iotbutton_cli.notify import history
from iotbutton_cli.notify.resources import FUNCTION_NAME

RETRY_EVENT_KEY = "iotbuttonRetry"  # notifier_lambda.handler.RETRY_EVENT_KEY


@dataclass
class RetryResult:
    alarm: history.Alarm
    asked: list[history.Delivery] = field(default_factory=list)  # what did not get through
    results: list[dict[str, Any]] = field(default_factory=list)  # the function's, per delivery
    function_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.function_error is None and all(
            r.get("status") != "failed" for r in self.results
        )


def never_tried(ctx: AppContext, alarm: history.Alarm) -> list[history.Delivery]:
    """The deployed config's recipients for the alarm's click that the ledger has no delivery
    for: the invocation failed before it could claim them (no secret, a timeout)."""
    from iotbutton_cli.notify import ops

    if alarm.state == "repeat":
        return []
    # The deployed document itself: the status's summary has the default clicks only, so a
    # button with a section of its own would have been retried to the defaults' recipients.
    deployed = ops.deployed_document(ctx, ops.status(ctx))
    buttons = deployed.get("buttons") or {}
    own = buttons.get(alarm.serial)  # the button's own section (its clicks merged), if any
    if own is None and buttons and deployed.get("unlisted") == "refuse":
        return []  # the notifier sends nothing for an unlisted button
    click = (own or deployed).get("clicks", {}).get(alarm.click, {})
    known = {(d.channel, d.to) for d in alarm.deliveries}
    listed = [(channel, to) for channel in ("sms", "call") for to in click.get(channel, [])]
    try:
        webhooks, slack = parse_hooks("", click)
    except HookSettingsError:
        webhooks, slack = (), ()
    listed += [(WEBHOOK_CHANNEL, hook.target) for hook in webhooks]
    listed += [(SLACK_CHANNEL, post.target) for post in slack]
    return [
        history.Delivery(channel, to, "never tried")
        for channel, to in dict.fromkeys(listed)
        if (channel, to) not in known
    ]


def retry(ctx: AppContext, alarm_id: str) -> RetryResult:
    found = history.alarm(ctx, alarm_id)
    if found is None:
        raise IotButtonError(
            "alarm-not-found",
            f"No alarm {alarm_id!r} in the alarm table.",
            "`iotbutton notify history` lists the alarms of the last 30 days with their ids.",
        )
    if found.state == "repeat":
        raise IotButtonError(
            "alarm-is-a-repeat",
            f"Alarm {alarm_id} repeats {found.repeat_of} (a click within the debounce window): "
            "it sent nothing of its own.",
            f"Retry the alarm it repeats: `iotbutton notify retry {found.repeat_of}`.",
        )
    if found.state == "held":
        raise IotButtonError(
            "alarm-is-held",
            f"Alarm {alarm_id} is held by quiet hours {found.held_until}: nothing of it has "
            "been sent yet.",
            "It goes out when the quiet hours end; `iotbutton notify release` sends it now "
            "(as SMS while they last).",
        )
    asked = [d for d in found.deliveries if d.reached is False or d.status == "sending"]
    asked += never_tried(ctx, found)
    result = RetryResult(found, asked)
    if not asked:
        return result
    event = {RETRY_EVENT_KEY: {"alarm": alarm_id, "deliveries": [[d.channel, d.to] for d in asked]}}
    answer = ctx.client("lambda").invoke(FunctionName=FUNCTION_NAME, Payload=json.dumps(event))
    payload = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        result.function_error = str((payload or {}).get("errorMessage", answer["FunctionError"]))
    elif isinstance(payload, dict):
        result.results = list(payload.get("results", []))
    return result
