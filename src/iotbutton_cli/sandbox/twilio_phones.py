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

``Timeline`` is what a behaviour means for one message or call: the statuses it goes through (by
the stand-in's ``Progress`` delays), the error code of its last one, and who answered a call.

Like ``twilio.py``, this never imports ``iotbutton_cli.notifier_lambda``: it is part of the oracle.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

logger = logging.getLogger(__name__)

PHONES_FILE = "phones.json"
# A phones.json larger than this is not one anybody wrote by hand or with `sandbox phone`.
MAX_PHONES_BYTES = 256 * 1024
KNOWN_KEYS = ("sms", "sms_error", "call", "outage")

SMS_OUTCOMES = ("delivered", "undelivered", "failed")
CALL_OUTCOMES = ("completed", "no-answer", "busy", "failed", "machine")
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
    unless given). ``call``: completed (answered by a person), no-answer (rings out), busy,
    failed, or machine (answered by voicemail: ``AnsweredBy`` is a machine value when the call
    asked for ``MachineDetection``, else it is a plain completed call). ``outage``: Twilio is down
    for this number: every create to it (SMS or call) is answered 503, error 20503, and nothing
    is created.
    """

    sms: str = "delivered"
    sms_error: int | None = None
    call: str = "completed"
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
    is what Twilio reports from the answer on (calls with MachineDetection only)."""

    steps: tuple[tuple[float, str], ...]
    error_code: int | None = None
    answered_by: str | None = None

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
    answered_by = None
    if machine_detection:
        mode = machine_detection.lower()
        if behaviour.call == "machine":
            answered_by = MACHINE_ANSWERED_BY.get(mode, "machine_start")
        else:
            answered_by = "human"
    steps = ((0.0, "queued"), (ringing, "ringing"), (answered, "in-progress"))
    return Timeline((*steps, (completed, "completed")), answered_by=answered_by)


def billed_minutes(seconds: int) -> int:
    """Twilio's ``Duration`` of a call: its length in minutes, rounded up."""
    return math.ceil(seconds / 60) if seconds > 0 else 0
