"""``notify ack ALARM_ID``: acknowledge an escalating alarm from a terminal.

The same as a 1 pressed on one of its calls: the deployed function records it (a conditional
write, so a press on a call at the same moment and this cannot both win), stops the calls still
ringing and tells everyone who is coming. The function does it because it holds the Twilio
secret; this module checks the alarm and invokes it.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from typing import Any

from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.notify import history
from iotbutton_cli.notify.resources import FUNCTION_NAME

ACK_EVENT_KEY = "iotbuttonAck"  # notifier_lambda.handler.ACK_EVENT_KEY
MAX_NAME_CHARS = 100


@dataclass
class AckResult:
    alarm_id: str
    acknowledged: bool  # by this command
    state: str  # the escalation's state after it: acknowledged, exhausted, ringing
    by: str | None
    at_ms: int | None
    function_error: str | None = None


def default_name() -> str:
    """Who acknowledges when ``--by`` is not given: the local user, said to be at a terminal."""
    try:
        return f"{getpass.getuser()} (terminal)"
    except (KeyError, OSError):
        return "someone at a terminal"


def acknowledge(ctx: AppContext, alarm_id: str, by: str | None = None) -> AckResult:
    name = " ".join((by or default_name()).split())
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise IotButtonError(
            "ack-bad-name",
            f"--by must be a name of 1 to {MAX_NAME_CHARS} printable characters.",
            'For example: --by "Alice". Everyone else gets it in an SMS.',
        )
    found = history.alarm(ctx, alarm_id)
    if found is None:
        raise IotButtonError(
            "alarm-not-found",
            f"No alarm {alarm_id!r} in the alarm table.",
            "`iotbutton notify history` lists the alarms of the last 30 days with their ids.",
        )
    if found.escalation is None:
        raise IotButtonError(
            "alarm-not-escalating",
            f"Alarm {alarm_id} has no escalation: there is nothing to acknowledge.",
            "Only click types with an `escalation:` in notify.yaml call until acknowledged.",
        )
    event = {ACK_EVENT_KEY: {"alarm": alarm_id, "by": name}}
    answer = ctx.client("lambda").invoke(FunctionName=FUNCTION_NAME, Payload=json.dumps(event))
    payload: Any = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError") or not isinstance(payload, dict):
        error = (payload or {}).get("errorMessage") if isinstance(payload, dict) else None
        return AckResult(
            alarm_id, False, found.escalation.state, None, None, str(error or "no answer")
        )
    return AckResult(
        alarm_id,
        bool(payload.get("acknowledged")),
        str(payload.get("state") or found.escalation.state),
        payload.get("by"),
        payload.get("at") if isinstance(payload.get("at"), int) else None,
    )
