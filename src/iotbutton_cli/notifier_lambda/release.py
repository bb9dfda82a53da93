"""The release: clicks that quiet hours held (``then: hold``) go out when the hours end.

``notify deploy`` makes an EventBridge Scheduler schedule that invokes the notifier, when each
holding window ends, with::

    {"iotbuttonRelease": {"scheduledTime": "2026-12-05T07:00:00Z"}}

(Scheduler fills in its own time for the run.) Every alarm the ledger lists as held is then
looked at against the config deployed now, at that time:

- its button's quiet hours still hold it then (another button's window ended, or the hours
  changed): it stays held for its own window's end;
- its quiet hours are SMS only then: it goes out SMS only;
- otherwise it goes out as its click type says (calls, escalation, webhooks), through the same
  path as a click, with the click's own time in ``{time}``.

``{"force": true}`` (``notify release``, and a deploy that stops holding) sends every held
alarm now, SMS only while quiet hours still cover it. A delivery a retry could fix keeps its
alarm held and makes the invocation fail, so Lambda tries again (what went out is not sent
twice: each delivery is claimed in the ledger); when Lambda gives up, the failures function
tells the owner. A ``scheduledTime`` more than a day from now is not believed: the clock is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from . import alarms, shadow
from .contract import RELEASE_EVENT_KEY, MessagingConfig, QuietHours, minute_of_day
from .handler import (
    DeliveryIncomplete,
    LambdaSettings,
    deliver_alarm,
    event_result,
    finish,
    ledger_for,
    load_config,
    stored_event,
)
from .text import log, printable

BELIEVED_SKEW = timedelta(days=1)


def is_release_event(event: object) -> bool:
    return isinstance(event, dict) and isinstance(event.get(RELEASE_EVENT_KEY), dict)


def release_time(request: Mapping[str, Any], now: datetime | None = None) -> datetime:
    """When the quiet hours ended: Scheduler's ``scheduledTime``, or now."""
    now = now or datetime.now(timezone.utc)
    stamp = request.get("scheduledTime")
    if not isinstance(stamp, str):
        return now
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return now
    if moment.tzinfo is None or abs(moment - now) > BELIEVED_SKEW:
        return now
    return moment


def covering(quiet: QuietHours | None, config: MessagingConfig, at: datetime) -> QuietHours | None:
    """``quiet`` if its window covers ``at`` in the config's time zone."""
    if quiet is None:
        return None
    return (
        quiet if quiet.covers(minute_of_day(at, config.timezone, config.timezone_rules)) else None
    )


def release_handler(request: Mapping[str, Any], context: object) -> dict[str, Any]:
    """Send what quiet hours held and no longer hold (see the module docstring)."""
    settings = LambdaSettings.from_environment()
    config = load_config(settings)
    ledger = ledger_for(settings)
    force = request.get("force") is True
    at = release_time(request)
    summary: dict[str, Any] = {"release": True, "at": at.isoformat(), "released": [], "kept": []}
    if force:
        summary["force"] = True
    table = ledger.table if isinstance(ledger, alarms.FallingBackLedger) else None
    if table is None or not isinstance(ledger, alarms.FallingBackLedger):
        return finish({**summary, "ignored": "no alarm table: nothing can be held"})
    incomplete: list[dict[str, Any]] = []
    for alarm_id in table.held():
        outcome = _release_one(settings, config, ledger, table, alarm_id, at, force, context)
        if outcome is None:
            summary["kept"].append(alarm_id)
        elif outcome.get("incomplete"):
            incomplete.append(outcome)
        else:
            summary["released"].append(outcome)
    if incomplete:
        summary["incomplete"] = incomplete
        finish(summary, level=logging.ERROR)
        raise DeliveryIncomplete({"results": [r for i in incomplete for r in i["results"]]})
    return finish(summary)


def _release_one(
    settings: LambdaSettings,
    config: MessagingConfig,
    ledger: alarms.FallingBackLedger,
    table: alarms.TableLedger,
    alarm_id: str,
    at: datetime,
    force: bool,
    context: object,
) -> dict[str, Any] | None:
    """One held alarm: its result once sent, or None while its quiet hours still hold it."""
    stored = table.alarm(alarm_id)
    if stored is None or stored.get("state") != alarms.HELD:
        table.release(alarm_id)  # gone, or sent already: off the list
        return {"alarm": alarm_id, "ignored": "not held any more"}
    event = stored_event(stored)
    own = config.for_button(event.serial)
    click = own.clicks.get(event.click) if own is not None else None
    if own is None or click is None or not click.reaches_anyone:
        # The config changed since: nobody is configured for it now.
        table.release(alarm_id)
        reason = f"nobody is configured for {event.click} of {event.serial} now"
        log(logging.WARNING, "held alarm %s released unsent: %s", printable(alarm_id, 200), reason)
        return {**event_result(event, []), "alarm": alarm_id, "ignored": reason}
    quiet = covering(own.quiet_hours, own, at)
    if quiet is not None and quiet.hold and not force:
        return None
    if quiet is not None and quiet.hold:
        quiet = replace(quiet, hold=False)  # forced out during them: SMS only
    try:
        result = deliver_alarm(settings, own, click, event, alarm_id, ledger, context, quiet)
    except DeliveryIncomplete as exc:
        shadow.report_release(event, exc.result, context, incomplete=True)
        return {**exc.result, "incomplete": True}
    table.release(alarm_id)
    shadow.report_release(event, result, context)
    return {**result, "releasedFrom": stored.get("heldUntil", "")}
