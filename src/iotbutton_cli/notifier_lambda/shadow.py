"""The button's thing shadow: each click reports itself in ``reported.lastClick``.

After a click is handled, the function writes the thing's classic (unnamed) shadow with iot-data
``UpdateThingShadow``, so that ``iotbutton things list``/``show``, a dashboard or the device itself
can see when the button was last pressed, how its battery is and what became of the alarm::

    {"state": {"reported": {"lastClick": {
        "type": "SINGLE",                    # the click type the messages used
        "time": "2026-11-21T23:04:00.123Z",  # when IoT Core received it (clickedAt), UTC
        "battery": "1650mV",                 # as the button reported it
        "batteryMv": 1650,                   # the same in millivolts; left out if unreadable
        "alarm": "<alarm id>",
        "outcome": "sent",                   # see OUTCOMES
        "escalation": "<alarm id>"}}}}       # only while it is (or was) one: the leading alarm

A key the click has no value for is written as ``null``, which deletes it from the stored
document: what a shadow holds is always one click's, never a mix of two.

Outcomes (:data:`OUTCOMES`):

* ``sent``: every delivery went out (or had gone out on an earlier attempt);
* ``partial``: some deliveries failed for good (a bad number, say), the others went out;
* ``failed``: none went out, or the invocation failed in a way Lambda retries
  (``DeliveryIncomplete``): the retry's outcome replaces it;
* ``ignored``: nobody is configured for the click type, or the config refuses the button;
* ``repeat``: the same button and click type within the debounce window (one alarm);
* ``held``: quiet hours hold it; when they end, the release writes how it went out (unless a
  newer click is in ``lastClick`` by then);
* ``escalating``: the click rings its escalation (or joined the one still ringing);
* ``acknowledged`` / ``exhausted``: how the escalation ended (someone pressed 1, or nobody did).

When an escalation ends, ``reported.lastEscalation`` becomes ``{"alarm": <its alarm>,
"outcome": "acknowledged" | "exhausted"}``, and ``lastClick.outcome`` too while ``lastClick`` is
still that escalation's (a newer click is never overwritten). A click of an escalation that has
ended already (its calls all refused at once, or a retry that comes late) reads
``lastEscalation`` and says how it ended. Both writes name the shadow version they read, so
neither undoes the other.

The thing is named by the click's serial (iotbutton names each button's thing after its serial);
an event without a usable serial reports nowhere. A shadow is never worth a click: every error
(no such thing, no permission, throttling, a network fault) is logged at WARNING and swallowed,
and the calls are bounded (short timeouts, one retry, skipped when the invocation is nearly out
of time).

Where: ``IOTBUTTON_DATA_ENDPOINT`` (set by ``notify deploy``) is the iot-data endpoint, the
account's own ATS data endpoint (``https://<prefix>-ats.iot.<region>.amazonaws.com``, from
``DescribeEndpoint`` with ``endpointType=iot:Data-ATS``) or, in the sandbox, its AWS port.
Without it (a deploy from before shadows) nothing is reported. The role may read and write the
classic shadow of the buttons' things only (``iot:GetThingShadow``, ``iot:UpdateThingShadow`` on
each thing's ARN).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

from .contract import battery_mv
from .text import log, printable

DATA_ENDPOINT_ENV = "IOTBUTTON_DATA_ENDPOINT"
LAST_CLICK = "lastClick"
LAST_ESCALATION = "lastEscalation"

SENT = "sent"
PARTIAL = "partial"
FAILED = "failed"
IGNORED = "ignored"
REPEAT = "repeat"
ESCALATING = "escalating"
ACKNOWLEDGED = "acknowledged"
EXHAUSTED = "exhausted"
HELD = "held"
OUTCOMES = (SENT, PARTIAL, FAILED, IGNORED, REPEAT, HELD, ESCALATING, ACKNOWLEDGED, EXHAUSTED)
FINAL = frozenset({ACKNOWLEDGED, EXHAUSTED})
# How the click path says a click was a repeat (handler.click_handler's "ignored" reason).
REPEAT_REASON = "a repeat of alarm "

THING_NAME = re.compile(r"^[A-Za-z0-9:_-]{1,128}$")
NO_SERIAL = "unknown"  # what the handler shows for an event without one
NO_BATTERY = "unknown"
# Each call: connected within a second, answered within two, tried at most twice; and not begun
# with less than this much of the invocation left.
CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0
MAX_ATTEMPTS = 2
MIN_REMAINING_MS = 7_000  # one call at worst: 2 tries x (1 s to connect + 2 s to answer)
# An escalation's end is written while Twilio waits for the answer to a key press: no call
# starts once this long has gone.
END_BUDGET_SECONDS = 2.0
CONFLICT_TRIES = 2  # a write that names a version another writer moved on is tried once more

_clients: dict[str, Any] = {}
_lock = threading.Lock()


class Click(Protocol):
    """What the shadow needs of a click (``handler.ButtonEvent``)."""

    @property
    def serial(self) -> str: ...
    @property
    def click(self) -> str: ...
    @property
    def battery(self) -> str: ...
    @property
    def clicked_ms(self) -> int | None: ...


class Unavailable(Exception):
    """No shadow to write: not configured, or no thing for the serial (not worth a warning)."""


class NoTimeLeft(Exception):
    """The invocation is too close to its end to start a call (a warning)."""


class Unchanged(Exception):
    """The shadow could not be written without undoing a newer write."""


# -- the document -----------------------------------------------------------------------------


def outcome_of(result: Mapping[str, Any], incomplete: bool = False) -> str:
    """What became of the click, from ``click_handler``'s result (``incomplete``: it raised
    ``DeliveryIncomplete``)."""
    if incomplete:
        return FAILED
    ignored = result.get("ignored")
    if ignored is not None:
        repeat = result.get("repeatOf") or str(ignored).startswith(REPEAT_REASON)
        return REPEAT if repeat else IGNORED
    if result.get("held"):
        return HELD
    escalation = result.get("escalation")
    if isinstance(escalation, dict):  # Twilio took none of its calls
        return FAILED
    if escalation is not None or result.get("joinedEscalation"):
        return ESCALATING
    statuses = [item.get("status") for item in result.get("results", ())]
    failed = statuses.count("failed")
    if failed == 0:
        return SENT
    return FAILED if failed == len(statuses) else PARTIAL


def escalation_of(result: Mapping[str, Any]) -> str | None:
    """The escalation the click belongs to: the one it joined, or its own alarm's."""
    joined = result.get("joinedEscalation")
    if joined:
        return str(joined)
    if isinstance(result.get("escalation"), list):
        alarm = result.get("alarm")
        return str(alarm) if alarm else None
    return None


def last_click(
    click: Click, result: Mapping[str, Any], incomplete: bool = False, now: datetime | None = None
) -> dict[str, Any]:
    """``reported.lastClick`` for one click; unknown values are ``None`` (deleted in AWS)."""
    moment = (
        datetime.fromtimestamp(click.clicked_ms / 1000, timezone.utc)
        if click.clicked_ms is not None
        else now or datetime.now(timezone.utc)
    )
    battery = None if click.battery == NO_BATTERY else click.battery
    alarm = result.get("alarm")
    return {
        "type": click.click,
        "time": iso_time(moment),
        "battery": battery,
        "batteryMv": battery_mv(battery) if battery is not None else None,
        "alarm": str(alarm) if alarm else None,
        "outcome": outcome_of(result, incomplete),
        "escalation": escalation_of(result),
    }


def document(reported: Mapping[str, Any], version: int | None = None) -> dict[str, Any]:
    """An UpdateThingShadow request that writes these sections of ``reported``; with
    ``version``, only if the shadow is still at it."""
    request: dict[str, Any] = {"state": {"reported": dict(reported)}}
    if version is not None:
        request["version"] = version
    return request


def iso_time(moment: datetime) -> str:
    """``2026-11-21T23:04:00.123Z``."""
    utc = moment.astimezone(timezone.utc)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def thing_name(serial: str) -> str | None:
    """The button's thing (named after its serial), or None for a serial no thing can have."""
    if serial == NO_SERIAL or not THING_NAME.match(serial):
        return None
    return serial


# -- writing it ---------------------------------------------------------------------------------


def report_click(
    click: Click, result: Mapping[str, Any], context: object = None, incomplete: bool = False
) -> None:
    """Write the click to its thing's shadow; never raises (a failure is a WARNING)."""
    thing = thing_name(click.serial)
    try:
        if thing is None:
            raise Unavailable(f"serial {click.serial!r} names no thing")
        reported = last_click(click, result, incomplete)
        if reported["outcome"] == REPEAT:
            # The same alarm as the press before: its outcome (an escalation, say) stands.
            raise Unavailable("a repeat of the alarm it records")
        _write_click(_data_client(context), thing, reported, context)
    except Unavailable as why:
        log(logging.DEBUG, "shadow not written: %s", why)
    except Exception as exc:
        _warn(thing or click.serial, exc)


def _write_click(client: Any, thing: str, reported: dict[str, Any], context: object) -> None:
    """The click; one that belongs to an escalation that has ended already (its calls all
    refused at once, or a late retry) says how it ended, not ``escalating``."""
    for _ in range(CONFLICT_TRIES):
        version = None
        if reported["escalation"] is not None:
            current, version = _read(client, thing, context)
            ended = _section(current, LAST_ESCALATION)
            if ended.get("alarm") == reported["escalation"] and ended.get("outcome") in FINAL:
                reported = {**reported, "outcome": ended["outcome"]}
        if _update(client, thing, document({LAST_CLICK: reported}, version), context):
            log(logging.INFO, "shadow of %s: lastClick %s", thing, reported["outcome"])
            return
    raise Unchanged("other writers kept moving its version on")


class _Budget:
    """A context whose time runs out ``seconds`` from now (or with the invocation's)."""

    def __init__(self, seconds: float, context: object = None) -> None:
        self.ends = time.monotonic() + seconds
        self.context = context

    def get_remaining_time_in_millis(self) -> int:
        mine = MIN_REMAINING_MS + (self.ends - time.monotonic()) * 1000
        remaining = getattr(self.context, "get_remaining_time_in_millis", None)
        return int(min(mine, remaining()) if callable(remaining) else mine)


def report_release(
    click: Click, result: Mapping[str, Any], context: object = None, incomplete: bool = False
) -> None:
    """A held click went out when its quiet hours ended: ``lastClick`` says how, while it is
    still that click's (a newer press is never overwritten); never raises."""
    thing = thing_name(click.serial)
    try:
        if thing is None:
            raise Unavailable(f"serial {click.serial!r} names no thing")
        client = _data_client(context)
        reported = last_click(click, result, incomplete)
        for _ in range(CONFLICT_TRIES):
            current, version = _read(client, thing, context)
            if _section(current, LAST_CLICK).get("alarm") != reported["alarm"]:
                raise Unavailable("a newer click is its last click now")
            if _update(client, thing, document({LAST_CLICK: reported}, version), context):
                log(logging.INFO, "shadow of %s: lastClick %s", thing, reported["outcome"])
                return
        raise Unchanged("other writers kept moving its version on")
    except Unavailable as why:
        log(logging.DEBUG, "shadow not written: %s", why)
    except Exception as exc:
        _warn(thing or click.serial, exc)


def report_escalation_end(serial: str, alarm_id: str, outcome: str, context: object = None) -> None:
    """Record how an escalation ended (``acknowledged`` or ``exhausted``) on the button's
    shadow: in ``lastEscalation``, and in ``lastClick`` while that is still the escalation's
    (a click reported later reads ``lastEscalation``); never raises."""
    thing = thing_name(serial)
    try:
        if thing is None:
            raise Unavailable(f"serial {serial!r} names no thing")
        budget = _Budget(END_BUDGET_SECONDS, context)
        client = _data_client(budget)
        ending = {"alarm": alarm_id, "outcome": outcome}
        for _ in range(CONFLICT_TRIES):
            current, version = _read(client, thing, budget)
            sections: dict[str, Any] = {}
            if _section(current, LAST_ESCALATION) != ending:
                sections[LAST_ESCALATION] = ending
            click = _section(current, LAST_CLICK)
            if click.get("escalation") == alarm_id and click.get("outcome") != outcome:
                sections[LAST_CLICK] = {"outcome": outcome}
            if not sections:
                return  # written already
            if _update(client, thing, document(sections, version), budget):
                log(logging.INFO, "shadow of %s: escalation %s %s", thing, alarm_id, outcome)
                return
        raise Unchanged("other writers kept moving its version on")
    except Unavailable as why:
        log(logging.DEBUG, "shadow not written: %s", why)
    except Exception as exc:
        _warn(thing or serial, exc)


def _read(client: Any, thing: str, context: object) -> tuple[dict[str, Any], int | None]:
    """The shadow's ``reported`` section and version; ``({}, None)`` if there is no shadow."""
    _check_time(context)
    try:
        answer = client.get_thing_shadow(thingName=thing)
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":  # never written: nothing to keep
            return {}, None
        raise
    stored = json.loads(answer["payload"].read())
    state = stored.get("state") if isinstance(stored, dict) else None
    version = stored.get("version") if isinstance(stored, dict) else None
    return _section(state, "reported"), version if isinstance(version, int) else None


def _section(document: Any, key: str) -> dict[str, Any]:
    found = document.get(key) if isinstance(document, dict) else None
    return found if isinstance(found, dict) else {}


def _update(client: Any, thing: str, request: dict[str, Any], context: object) -> bool:
    """Write; False when the version it names is no longer the shadow's (read again)."""
    _check_time(context)
    try:
        client.update_thing_shadow(thingName=thing, payload=json.dumps(request).encode())
    except Exception as exc:
        if "version" in request and _code(exc) == "ConflictException":
            return False
        raise
    return True


def _check_time(context: object) -> None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining) and remaining() < MIN_REMAINING_MS:
        raise NoTimeLeft(f"less than {MIN_REMAINING_MS} ms of the invocation left")


def _data_client(context: object) -> Any:
    """The iot-data client for the deploy's endpoint, made once per container."""
    endpoint = os.environ.get(DATA_ENDPOINT_ENV)
    if not endpoint:
        raise Unavailable(f"{DATA_ENDPOINT_ENV} is not set (deployed before shadows)")
    _check_time(context)
    with _lock:
        if endpoint not in _clients:
            import boto3.session

            # As handler._client: botocore's DEBUG log would print whole requests.
            logging.getLogger("botocore").setLevel(logging.WARNING)
            config = boto3.session.Config(  # botocore's Config, as boto3 itself imports it
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
                retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
            )
            _clients[endpoint] = boto3.client("iot-data", endpoint_url=endpoint, config=config)
        return _clients[endpoint]


def forget_clients() -> None:
    """Drop the cached client (for tests)."""
    with _lock:
        _clients.clear()


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _warn(thing: str, exc: BaseException) -> None:
    reason = _code(exc) or type(exc).__name__
    log(
        logging.WARNING,
        "could not write the shadow of %s (%s): %s; the click itself is not affected",
        printable(thing, 128),
        reason,
        printable(str(exc), 300),
    )
