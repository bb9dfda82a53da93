"""How the phones the Twilio stand-in reaches behave: what becomes of an SMS or a call to them.

Twilio learns from the carriers whether an SMS was delivered and whether a call was answered; the
stand-in has no carriers, so a table says it per number (``PhoneBehaviour``). Numbers it does not
name behave as a phone that is on and answered: SMS ``delivered``, calls ``completed``.
``outage`` plays Twilio itself being down for a number: every create to it is answered 503
(Twilio error 20503) and nothing is created. The sandbox reads the table from ``phones.json`` in
its state folder at each create (``PhoneBook``), so an edit applies to the next SMS or call; a
file that cannot be read or parsed (or is a symbolic link, which is never followed) is logged and
ignored, never fatal. ``iotbutton sandbox phone`` writes it (``dump_phones``)::

    {
      "+15551230001": {"sms": "undelivered", "sms_error": 30005, "call": "busy"},
      "+15551230002": {"call": "machine"},
      "+15551230003": {"outage": true}
    }

``call`` says who picks up; for a person, ``press`` is what they key in when a call asks
(``<Gather>``: "1" unless set, "" for nothing) and ``hangup`` is a person who hangs up after the
first ``<Say>``. ``hold`` makes Twilio slow to answer a create to the number (SMS or call): that
many real seconds, never scaled, so a test can kill the caller while it waits; a create whose
client has gone by then is dropped (see ``twilio.py``).

``Timeline`` is what a behaviour means for one message or call: the statuses it goes through (by
the stand-in's ``Progress`` delays), the error code of its last one, and who answered a call.

A call whose TwiML asks for digits (``<Gather>``) or whose create says how long to ring
(``Timeout``) is instead played out (``call_course``, ``play``): it rings ``RINGING_SECONDS``
after the create, is picked up ``ANSWER_SECONDS`` later unless the callee does not answer or
``Timeout`` is shorter (then it is ``no-answer`` after ``Timeout`` seconds of ringing), and then
lasts as long as its TwiML takes to speak (``SPEECH_CHARS_PER_SECOND``), pause and wait for
digits. Every such duration is multiplied by the stand-in's time scale: a test need not wait a
real minute for a phone to ring out.

Like ``twilio.py``, this never imports ``iotbutton_cli.notifier_lambda``: it is part of the oracle.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

logger = logging.getLogger(__name__)

PHONES_FILE = "phones.json"
# A phones.json larger than this is not one anybody wrote by hand or with `sandbox phone`.
MAX_PHONES_BYTES = 256 * 1024
KNOWN_KEYS = ("sms", "sms_error", "call", "press", "hold", "outage")

SMS_OUTCOMES = ("delivered", "undelivered", "failed")
CALL_OUTCOMES = ("completed", "hangup", "no-answer", "busy", "failed", "machine")
# The keys of a phone's keypad, as Twilio's <Gather> takes them.
KEYPAD = re.compile(r"[0-9*#]*")
MAX_PRESS_CHARS = 32
# The error dictionary's codes for an SMS that did not arrive. 30003 is confirmed there; 30005
# and 30008 are the commonly cited titles, not confirmed from Twilio's own pages.
SMS_ERROR_TITLES = {
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30008: "Unknown error",
}
DEFAULT_SMS_ERROR = {"undelivered": 30003, "failed": 30008}
# AnsweredBy for a call to voicemail, by MachineDetection mode (Twilio's values; case-insensitive).
MACHINE_ANSWERED_BY = {"enable": "machine_start", "detectmessageend": "machine_end_beep"}


@dataclass(frozen=True)
class PhoneBehaviour:
    """What happens to an SMS and to a call to one number.

    ``sms``: delivered, undelivered (sent, then the carrier could not reach the handset) or failed
    (never sent); ``sms_error`` is the error code then (30003 for undelivered, 30008 for failed
    unless given). ``call``: completed (answered by a person, who keys in ``press`` when the call
    gathers digits), hangup (a person who hangs up after the first ``<Say>``), no-answer (rings
    out), busy, failed, or machine (answered by voicemail, which presses nothing: ``AnsweredBy``
    is a machine value when the call asked for ``MachineDetection``, else it is a plain completed
    call). ``hold``: seconds Twilio takes to answer a create to this number. ``outage``: Twilio is
    down for this number: every create to it (SMS or call) is answered 503, error 20503, and
    nothing is created.
    """

    sms: str = "delivered"
    sms_error: int | None = None
    call: str = "completed"
    press: str = "1"
    hold: float = 0
    outage: bool = False

    def __post_init__(self) -> None:
        if self.sms not in SMS_OUTCOMES:
            raise ValueError(f"sms must be one of {', '.join(SMS_OUTCOMES)}, got {self.sms!r}")
        if self.call not in CALL_OUTCOMES:
            raise ValueError(f"call must be one of {', '.join(CALL_OUTCOMES)}, got {self.call!r}")
        if self.sms_error is not None and (
            isinstance(self.sms_error, bool) or not isinstance(self.sms_error, int)
        ):
            raise ValueError(f"sms_error must be an integer code, got {self.sms_error!r}")
        if not isinstance(self.outage, bool):
            raise ValueError(f"outage must be true or false, got {self.outage!r}")
        if (
            not isinstance(self.press, str)
            or len(self.press) > MAX_PRESS_CHARS
            or not KEYPAD.fullmatch(self.press)
        ):
            raise ValueError(
                f"press must be up to {MAX_PRESS_CHARS} keys of 0-9, * and #, got "
                f"{_shown(self.press)}"
            )
        if (
            isinstance(self.hold, bool)
            or not isinstance(self.hold, int | float)
            or not math.isfinite(self.hold)
            or self.hold < 0
        ):
            raise ValueError(f"hold must be a number of seconds >= 0, got {_shown(self.hold)}")

    @property
    def sms_error_code(self) -> int | None:
        """The code an SMS that did not arrive carries; None for a delivered one."""
        if self.sms == "delivered":
            return None
        return self.sms_error if self.sms_error is not None else DEFAULT_SMS_ERROR[self.sms]

    @classmethod
    def from_json(cls, value: Any) -> PhoneBehaviour:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        unknown = set(value) - set(KNOWN_KEYS)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        return cls(**value)

    def to_json(self) -> dict[str, Any]:
        """What ``phones.json`` holds for it: the keys that differ from the default."""
        return {
            key: getattr(self, key)
            for key in KNOWN_KEYS
            if getattr(self, key) != getattr(DEFAULT_BEHAVIOUR, key)
        }

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_BEHAVIOUR


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


DEFAULT_BEHAVIOUR = PhoneBehaviour()
Phones: TypeAlias = Mapping[str, PhoneBehaviour] | Callable[[], Mapping[str, PhoneBehaviour]]


def parse_phones(text: str) -> dict[str, PhoneBehaviour]:
    """The table in ``phones.json``'s format; ValueError (naming the number) if it is not one."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply to be a phone table") from None
    if not isinstance(data, dict):
        raise ValueError("phones.json must hold an object: phone number -> behaviour")
    phones = {}
    for number, value in data.items():
        try:
            phones[str(number)] = PhoneBehaviour.from_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{number}: {exc}") from exc
    return phones


def dump_phones(phones: Mapping[str, PhoneBehaviour]) -> str:
    """``phones.json``'s text for a table (numbers sorted; numbers that behave as any number
    does are left out)."""
    table = {
        number: behaviour.to_json()
        for number, behaviour in sorted(phones.items())
        if not behaviour.is_default
    }
    return json.dumps(table, indent=2) + "\n"


def read_phones_file(path: str | os.PathLike[str], dir_fd: int | None = None) -> str | None:
    """The text of a ``phones.json``, or None if there is none; never through a symbolic link.

    OSError if it cannot be read (``is_link_error`` for a link), ValueError if it is not a
    regular file (a FIFO would block the reader forever), is too big, or is not UTF-8.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("it is not a regular file")
        data = handle.read(MAX_PHONES_BYTES + 1)
    if len(data) > MAX_PHONES_BYTES:
        raise ValueError(f"it is larger than {MAX_PHONES_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def is_link_error(exc: OSError) -> bool:
    """Whether opening with O_NOFOLLOW failed because the name is a symbolic link (ELOOP on
    Linux, EMLINK on FreeBSD)."""
    return exc.errno in (errno.ELOOP, errno.EMLINK)


class PhoneBook:
    """The table read from a JSON file at each call, so edits apply at once; a missing file is an
    empty table, an unreadable or malformed one is logged (once per change) and taken as empty."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._reported: tuple[float, str] | None = None

    def __call__(self) -> Mapping[str, PhoneBehaviour]:
        try:
            text = read_phones_file(self.path)
            mtime = os.lstat(self.path).st_mtime if text is not None else 0.0
        except FileNotFoundError:
            return {}
        except OSError as exc:
            why = "it is a symbolic link, never followed" if is_link_error(exc) else None
            self._report(0.0, why or f"cannot read it: {exc.strerror or exc}")
            return {}
        except ValueError as exc:
            self._report(0.0, str(exc))
            return {}
        if text is None:
            return {}
        try:
            return parse_phones(text)
        except ValueError as exc:  # json.JSONDecodeError is one
            self._report(mtime, str(exc))
            return {}

    def _report(self, mtime: float, problem: str) -> None:
        if self._reported != (mtime, problem):
            self._reported = (mtime, problem)
            logger.warning("twilio stand-in: ignoring %s: %s", self.path, problem[:300])


def behaviour_of(phones: Phones | None, number: str | None) -> PhoneBehaviour:
    if phones is None or not number:
        return DEFAULT_BEHAVIOUR
    table = phones() if callable(phones) else phones
    return table.get(number, DEFAULT_BEHAVIOUR)


@dataclass(frozen=True)
class Timeline:
    """The statuses one message or call goes through, as (seconds after creation, status), the
    first "queued" and the last final; ``error_code`` belongs to the final one; ``answered_by``
    is what Twilio reports from the answer on (calls with MachineDetection only). ``scale`` is
    the time scale the steps were played at, so a call's duration reads as Twilio's would."""

    steps: tuple[tuple[float, str], ...]
    error_code: int | None = None
    answered_by: str | None = None
    scale: float = 1.0

    def seconds(self, delay: float) -> int:
        """A stretch of the stand-in's clock as whole seconds of Twilio's (unscaled) time."""
        return round(delay / self.scale)

    @property
    def final(self) -> tuple[float, str]:
        return self.steps[-1]

    @property
    def answered_at(self) -> float | None:
        return next((delay for delay, status in self.steps if status == "in-progress"), None)

    @property
    def error_message(self) -> str | None:
        if self.error_code is None:
            return None
        return SMS_ERROR_TITLES.get(self.error_code, "Message delivery failed")


def message_timeline(behaviour: PhoneBehaviour, sent: float, delivered: float) -> Timeline:
    """Delivered: queued, sent, delivered; undelivered: queued, sent, undelivered; failed:
    queued, failed (it never left)."""
    code = behaviour.sms_error_code
    if behaviour.sms == "failed":
        return Timeline(((0.0, "queued"), (sent, "failed")), code)
    return Timeline(((0.0, "queued"), (sent, "sent"), (delivered, behaviour.sms)), code)


def call_timeline(
    behaviour: PhoneBehaviour,
    ringing: float,
    answered: float,
    completed: float,
    machine_detection: str | None = None,
) -> Timeline:
    """Answered (completed, machine): queued, ringing, in-progress, completed; no-answer: queued,
    ringing, then no-answer when an answered call would have ended; busy and failed: queued,
    then that status when it would have rung."""
    if behaviour.call in ("busy", "failed"):
        return Timeline(((0.0, "queued"), (ringing, behaviour.call)))
    if behaviour.call == "no-answer":
        return Timeline(((0.0, "queued"), (ringing, "ringing"), (completed, "no-answer")))
    steps = ((0.0, "queued"), (ringing, "ringing"), (answered, "in-progress"))
    answered_by = answered_by_of(behaviour, machine_detection)
    return Timeline((*steps, (completed, "completed")), answered_by=answered_by)


def answered_by_of(behaviour: PhoneBehaviour, machine_detection: str | None) -> str | None:
    """``AnsweredBy`` of an answered call: None without MachineDetection."""
    if not machine_detection:
        return None
    if behaviour.call == "machine":
        return MACHINE_ANSWERED_BY.get(machine_detection.lower(), "machine_start")
    return "human"


def billed_minutes(seconds: int) -> int:
    """Twilio's ``Duration`` of a call: its length in minutes, rounded up."""
    return math.ceil(seconds / 60) if seconds > 0 else 0


# A played call's real durations (seconds of Twilio's time; the stand-in multiplies them by its
# time scale): the create to ringing, ringing to someone picking up, speech, and Twilio's
# defaults for ``Timeout`` (how long it rings) and a ``<Gather>``'s ``timeout``.
RINGING_SECONDS = 1.0
ANSWER_SECONDS = 4.0
SPEECH_CHARS_PER_SECOND = 15.0
DEFAULT_RING_SECONDS = 60
MAX_RING_SECONDS = 600
DEFAULT_GATHER_SECONDS = 5.0
DEFAULT_PAUSE_SECONDS = 1.0
MAX_LOOPS = 1000  # Twilio's cap on loop="0" (repeat until the call ends)
FOREVER = math.inf  # when a call waiting on a Gather's answer ends: not known yet


@dataclass(frozen=True)
class Gathered:
    """Digits a callee keyed in at a ``<Gather>``: posted to ``action`` (as written, fragment
    and all) with ``method``, ``delay`` seconds after the call's creation. ``finished_on_key`` is
    the key that ended the input ("" if ``numDigits`` or the timeout did)."""

    delay: float
    digits: str
    finished_on_key: str
    action: str
    method: str


@dataclass(frozen=True)
class Played:
    """What a TwiML document does from the moment it starts: the call ends at ``end`` (seconds
    after its creation), or, with ``gathered``, waits at that Gather for its action's answer."""

    end: float
    gathered: Gathered | None = None


def is_played(fields: Mapping[str, Any]) -> bool:
    """Whether a new call is played out from its TwiML (``call_course``) rather than moved on by
    the stand-in's fixed delays: its Twiml gathers digits, or its create says how long to ring."""
    twiml = fields.get("Twiml")
    if not isinstance(twiml, str) or not twiml:
        return False
    return bool(fields.get("Timeout")) or "<Gather" in twiml


def ring_seconds(value: Any) -> float:
    """A create's ``Timeout`` as Twilio takes it: 60 unless given, at most 600."""
    try:
        seconds = int(str(value)) if value not in (None, "") else DEFAULT_RING_SECONDS
    except ValueError:
        seconds = DEFAULT_RING_SECONDS
    return float(min(max(seconds, 0), MAX_RING_SECONDS))


def call_course(
    behaviour: PhoneBehaviour,
    twiml: str,
    timeout: Any,
    machine_detection: str | None,
    scale: float,
) -> tuple[Timeline, Gathered | None]:
    """A played call: its statuses (the end ``FOREVER`` while it waits on a Gather's answer)
    and the digits it gathers first, if any. Busy and failed end when it would have rung;
    no-answer, or a ``Timeout`` shorter than ``ANSWER_SECONDS``, ring out after ``Timeout``."""
    ringing = RINGING_SECONDS * scale
    queued = (0.0, "queued")
    if behaviour.call in ("busy", "failed"):
        return Timeline((queued, (ringing, behaviour.call)), scale=scale), None
    ring = ring_seconds(timeout)
    if behaviour.call == "no-answer" or ring < ANSWER_SECONDS:
        steps = (queued, (ringing, "ringing"), (ringing + ring * scale, "no-answer"))
        return Timeline(steps, scale=scale), None
    answered = ringing + ANSWER_SECONDS * scale
    played = play(twiml, behaviour, answered, scale)
    steps = (queued, (ringing, "ringing"), (answered, "in-progress"))
    end = FOREVER if played.gathered is not None else played.end
    answered_by = answered_by_of(behaviour, machine_detection)
    return Timeline((*steps, (end, "completed")), answered_by=answered_by, scale=scale), (
        played.gathered
    )


def ended_at(timeline: Timeline, end: float) -> Timeline:
    """A played call's timeline once its end is known."""
    return Timeline((*timeline.steps[:-1], (end, timeline.final[1])), **_rest(timeline))


def _rest(timeline: Timeline) -> dict[str, Any]:
    return {
        "error_code": timeline.error_code,
        "answered_by": timeline.answered_by,
        "scale": timeline.scale,
    }


def play(document: str, behaviour: PhoneBehaviour, start: float, scale: float) -> Played:
    """Play a TwiML document to the callee from ``start`` (seconds after the call's creation).

    Each ``<Say>`` takes its text's length at ``SPEECH_CHARS_PER_SECOND`` (times ``loop``), a
    ``<Pause>`` its ``length``; ``<Hangup/>`` (or ``<Reject/>``) and the end of the document end
    the call; other verbs take no time. At a ``<Gather>`` its nested verbs play, then a callee
    who presses keys keys in ``press`` (up to ``numDigits``, or ``finishOnKey``, else the input
    ends ``timeout`` seconds later): with an ``action`` the call waits on it; without digits it
    waits ``timeout`` and goes on after the Gather. A hangup callee ends the call after its
    first Say. A document that is not TwiML ends the call at once (Twilio's application error).
    """
    from xml.etree import ElementTree

    try:
        # Loopback-only test server; expat in supported Pythons refuses entity-expansion bombs.
        root = ElementTree.fromstring(document)  # noqa: S314
    except ElementTree.ParseError:
        return Played(start)
    if root.tag != "Response":
        return Played(start)
    player = _Player(behaviour, start, scale)
    for verb in root:
        outcome = player.verb(verb)
        if outcome is not None:
            return outcome
    return Played(player.now)


class _Player:
    """The clock of one document being played, and the callee listening to it."""

    def __init__(self, behaviour: PhoneBehaviour, start: float, scale: float) -> None:
        self.behaviour = behaviour
        self.now = start
        self.scale = scale

    @property
    def presses(self) -> bool:
        return self.behaviour.call == "completed" and bool(self.behaviour.press)

    def verb(self, verb: Any) -> Played | None:
        """Play one verb; what ends the document here, if it does."""
        if verb.tag == "Say":
            text = "".join(verb.itertext()).strip()
            loops = _number(verb.get("loop"), 1.0) or MAX_LOOPS
            self.now += len(text) / SPEECH_CHARS_PER_SECOND * loops * self.scale
            return Played(self.now) if self.behaviour.call == "hangup" else None
        if verb.tag == "Pause":
            self.now += _number(verb.get("length"), DEFAULT_PAUSE_SECONDS) * self.scale
        elif verb.tag in ("Hangup", "Reject"):
            return Played(self.now)
        elif verb.tag == "Gather":
            return self.gather(verb)
        return None

    def gather(self, verb: Any) -> Played | None:
        for nested in verb:
            if nested.tag in ("Say", "Pause"):
                outcome = self.verb(nested)
                if outcome is not None:
                    return outcome
        wait = _number(verb.get("timeout"), DEFAULT_GATHER_SECONDS) * self.scale
        digits, key = "", ""  # type: tuple[str, str | None]
        if self.presses:
            limit = int(_number(verb.get("numDigits"), 0.0))
            digits, key = keyed_in(self.behaviour.press, limit, verb.get("finishOnKey", "#"))
        if not digits:
            if not key:  # nothing pressed: the Gather times out (a lone finishOnKey ends it)
                self.now += wait
            return None
        if key is None:
            self.now += wait  # neither numDigits nor finishOnKey ended it: the timeout does
        action = verb.get("action")
        if not action:
            return Played(self.now)  # no action: see twilio.py's Differences
        method = (verb.get("method") or "POST").upper()
        return Played(FOREVER, Gathered(self.now, digits, key or "", action, method))


def keyed_in(press: str, num_digits: int, finish_on_key: str) -> tuple[str, str | None]:
    """The digits a Gather takes from keys pressed, and the key that ended the input: "" when
    ``num_digits`` did, None when nothing did (the Gather's timeout will)."""
    digits = ""
    for key in press:
        if finish_on_key and key == finish_on_key[0]:
            return digits, key
        digits += key
        if num_digits and len(digits) >= num_digits:
            return digits, ""
    return digits, None


def _number(value: str | None, default: float) -> float:
    """A TwiML attribute's non-negative number; the default if it is absent or not one."""
    try:
        number = float(value) if value is not None else default
    except ValueError:
        return default
    return number if math.isfinite(number) and number >= 0 else default
