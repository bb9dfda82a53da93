"""Read what the notifier reported on the buttons' thing shadows: each one's last click.

The notifier writes ``reported.lastClick`` of a button's classic shadow after each click
(``notifier_lambda/shadow.py``: the document and the outcomes). ``things list`` reads every
button's shadow at once (bounded concurrency, as bulk work does: ``aws/bulk.py``), ``things show``
one. A shadow that does not exist (never clicked, or no notifier) is no last click, not an error;
one that cannot be read (no permission, throttled, not JSON) is reported with why, per button.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from iotbutton_cli.aws import bulk
from iotbutton_cli.aws.calls import absent_ok
from iotbutton_cli.context import AppContext, clean_error
from iotbutton_cli.errors import ExitStatus

DEFAULT_WORKERS = 8
LAST_CLICK = "lastClick"


@dataclass(frozen=True)
class LastClick:
    """A button's last click as its shadow holds it (a value the shadow lacks is None)."""

    type: str | None
    time: str | None  # ISO 8601, UTC: when IoT Core received the click
    outcome: str | None  # sent, partial, failed, ignored, repeat, escalating, acknowledged, ...
    battery: str | None  # as the button reported it ("1650mV")
    battery_mv: int | None
    alarm: str | None


@dataclass(frozen=True)
class ShadowReading:
    """One button's shadow: its last click (None: none reported), or why it could not be read."""

    last_click: LastClick | None = None
    error: str | None = None


SHOWN_CHARS = 64  # of each value a shadow holds, as the CLI shows it


def read_last_click(ctx: AppContext, serial: str) -> ShadowReading:
    """The button's shadow, read now (its thing is named after its serial)."""
    try:
        client = ctx.client("iot-data")
        answer = absent_ok(client.get_thing_shadow, thingName=serial)
        if answer is None:
            return ShadowReading()
        return ShadowReading(last_click_of(json.loads(answer["payload"].read())))
    except ValueError:
        return ShadowReading(error="the shadow is not a JSON document")
    except Exception as exc:
        return ShadowReading(error=_why_unreadable(exc, ctx))


def _why_unreadable(exc: Exception, ctx: AppContext) -> str:
    """Why a shadow could not be read, for a note under the listing; but bad input (such as
    AWS_MAX_ATTEMPTS=lots) is the command's error, not a shadow's, and a bug stays a bug."""
    error = clean_error(exc, ctx)
    if error is None:
        raise exc
    if error.exit_status == ExitStatus.USAGE:
        raise error from None
    return error.message


def read_last_clicks(
    ctx: AppContext,
    serials: Iterable[str],
    workers: int = DEFAULT_WORKERS,
    on_done: Callable[[str], None] | None = None,
) -> dict[str, ShadowReading]:
    """Every button's shadow, ``workers`` at a time; Ctrl-C stops at once (see ``bulk.run``)."""
    wanted = list(serials)
    if not wanted:
        return {}
    found: dict[str, ShadowReading] = {}
    try:
        ctx.client("iot-data")  # made once here (DescribeEndpoint on AWS), not per thread
    except Exception as exc:
        why = _why_unreadable(exc, ctx)
        return {serial: ShadowReading(error=why) for serial in wanted}

    def done(serial: str, future: Future[ShadowReading]) -> None:
        found[serial] = future.result()
        if on_done:
            on_done(serial)

    def job(serial: str, _stopping: threading.Event) -> ShadowReading:
        return read_last_click(ctx, serial)

    bulk.run(wanted, job, done, workers=min(workers, len(wanted)))
    return found


def last_click_of(document: Any) -> LastClick | None:
    """``state.reported.lastClick`` of a shadow document, field by field: a field of the wrong
    type reads as None (anyone allowed ``iot:UpdateThingShadow`` can write the shadow)."""
    state = document.get("state") if isinstance(document, dict) else None
    reported = state.get("reported") if isinstance(state, dict) else None
    click = reported.get(LAST_CLICK) if isinstance(reported, dict) else None
    if not isinstance(click, dict):
        return None

    def text(key: str) -> str | None:
        value = click.get(key)
        if not isinstance(value, str):
            return None
        # Shown in a terminal: one short printable line, whatever wrote it.
        shown = "".join(char if char.isprintable() else "?" for char in value[:SHOWN_CHARS])
        return shown + ("…" if len(value) > SHOWN_CHARS else "")

    millivolts = click.get("batteryMv")
    return LastClick(
        type=text("type"),
        time=text("time"),
        outcome=text("outcome"),
        battery=text("battery"),
        battery_mv=millivolts
        if isinstance(millivolts, int) and not isinstance(millivolts, bool)
        else None,
        alarm=text("alarm"),
    )
