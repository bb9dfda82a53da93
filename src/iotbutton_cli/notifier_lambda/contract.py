"""What the notifier shares with the rest of iotbutton: click types, the button's payload, the
messaging config, templates and TwiML.

Standard library only, and nothing from outside this package: it runs inside Lambda (zipped with
the handler) and is imported by the CLI side too (``notify`` config checks and sends, the button
simulator), so each rule here is written once and both sides keep it.

The button. An AWS IoT button publishes to ``iotbutton/<serial>``::

    {"serialNumber": "G030JF0553648RUH", "batteryVoltage": "1650mV", "clickType": "SINGLE"}

(:func:`button_payload`), and iotbutton's topic rules add ``topicSerial``, the serial taken from
the topic. The click type is one of :data:`CLICK_TYPES`; :func:`click_type` says which one a value
names.

The deployment. ``notify deploy`` gives the function the environment in :data:`ENVIRONMENT`,
stores the messaging config (:func:`parse_config` is its shape) as a JSON object in S3, and the
Twilio secret as a SecureString SSM parameter named :data:`SECRET_PARAMETER` (the environment
names it with its version). The name lives here, not in the deployer, because it is part of the
deployed notifier's shape that more than the deployer reads: the sandbox's Twilio stand-in accepts
the secret stored under it.

Templates are ``str.format``-style with exactly the fields in :data:`TEMPLATE_FIELDS`; ``{{`` and
``}}`` are literal braces; anything else in braces (positional fields, attributes, indexes,
conversions, format specs) is refused. :func:`check_template` and :func:`render` are the rules.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

CLICK_TYPES = ("SINGLE", "DOUBLE", "LONG")
CHANNELS = ("sms", "call")
TEMPLATE_FIELDS = ("person", "serial", "click", "battery", "time")
CONFIG_VERSION = 1
TWIML_MAX_CHARS = 4000
SMS_MAX_UNITS = 1600  # Twilio counts a Body in UTF-16 code units

# The button's payload, and what iotbutton's rules add to it.
SERIAL_FIELD = "serialNumber"
BATTERY_FIELD = "batteryVoltage"
CLICK_FIELD = "clickType"
TOPIC_SERIAL_FIELD = "topicSerial"
# The rule's ``timestamp()``: when IoT Core received the click, in ms since the epoch.
CLICKED_AT_FIELD = "clickedAt"
DEFAULT_BATTERY_MV = 1650

# The deployment: the function's environment, and where its secret is.
# The deployed function's name: the sandbox finds the notifier's config through it.
FUNCTION_NAME = "iotbutton-notifier"
SECRET_PARAMETER = "/iotbutton/twilio-secret"  # noqa: S105 - a name, not the secret
# The alarm ledger: one DynamoDB table that makes one click one alarm, and each delivery once.
ALARM_TABLE = "iotbutton-alarms"
ALARM_TABLE_ENV = "IOTBUTTON_ALARM_TABLE"
DEFAULT_DEBOUNCE_SECONDS = 5
# Escalation: how long each call rings (Twilio's Timeout: 5 to 600 s), how long a callee has to
# press a key once asked, and how many times through the list at most.
DEFAULT_RING_SECONDS = 25
MIN_RING_SECONDS = 5
MAX_RING_SECONDS = 600
GATHER_SECONDS = 6
MAX_ROUNDS = 5
ACK_DIGIT = "1"
# The notifier's function URL: Twilio posts delivery receipts there (StatusCallback).
CALLBACK_URL_ENV = "IOTBUTTON_CALLBACK_URL"
CALLBACK_ALARM_PARAMETER = "alarm"
CALLBACK_ATTEMPT_PARAMETER = "attempt"
# Nothing dropped silently: Lambda sends what it gave up on to a second function (the same code,
# another handler), which tells the owner through this SNS topic.
FAILURES_FUNCTION_NAME = "iotbutton-notifier-failures"
OWNER_TOPIC = "iotbutton-owner"
OWNER_TOPIC_ENV = "IOTBUTTON_OWNER_TOPIC"
CONFIG_BUCKET_ENV = "IOTBUTTON_CONFIG_BUCKET"
CONFIG_KEY_ENV = "IOTBUTTON_CONFIG_KEY"
SECRET_PARAMETER_ENV = "IOTBUTTON_SECRET_PARAMETER"  # noqa: S105 - a name
TWILIO_API_BASE_ENV = "TWILIO_API_BASE"
TWILIO_TIMEOUT_ENV = "IOTBUTTON_TWILIO_TIMEOUT"
ENVIRONMENT = (
    CONFIG_BUCKET_ENV,
    CONFIG_KEY_ENV,
    SECRET_PARAMETER_ENV,
    TWILIO_API_BASE_ENV,
    TWILIO_TIMEOUT_ENV,
)


class ConfigError(Exception):
    """The deployment is broken (environment, config object or secret): a person must fix it."""


class TemplateError(ValueError):
    """A message template uses something other than the allowed ``{field}`` names."""


# -- the button ------------------------------------------------------------------------------


def button_payload(serial: str, click: str, battery_mv: int = DEFAULT_BATTERY_MV) -> dict[str, str]:
    """The exact payload an AWS IoT button publishes."""
    return {SERIAL_FIELD: serial, BATTERY_FIELD: f"{battery_mv}mV", CLICK_FIELD: click}


def click_type(value: object) -> str | None:
    """The click type ``value`` names: itself if it is one, else the one it spells in another
    case or with spaces around it; None if it names none."""
    if not isinstance(value, str):
        return None
    if value in CLICK_TYPES:
        return value
    folded = value.strip().upper()
    return folded if folded in CLICK_TYPES else None


# -- templates -------------------------------------------------------------------------------


def check_template(template: str) -> list[str]:
    """The field names a template uses, in order; raises TemplateError if it breaks the rules."""
    if not isinstance(template, str):
        raise TemplateError("a message template must be a string")
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"malformed template: {exc}") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            allowed = ", ".join("{" + field_name + "}" for field_name in TEMPLATE_FIELDS)
            raise TemplateError(f"unknown template field {_shown(name)}; allowed: {allowed}")
        if spec or conversion:
            raise TemplateError(
                f"template field {_shown(name)} may not have a format or conversion"
            )
        names.append(name)
    return names


def _shown(name: str) -> str:
    """A field as written, kept to one line: messages about it are one line."""
    field = "{" + name + "}"
    return field if field.isprintable() else repr(field)


def render(template: str, fields: Mapping[str, object]) -> str:
    """Fill a template's ``{field}`` names from ``fields`` under the rules of check_template."""
    check_template(template)
    parts = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            if name not in fields:
                raise TemplateError(f"no value for template field {{{name}}}")
            parts.append(str(fields[name]))
    return "".join(parts)


def format_time(moment: datetime) -> str:
    """``{time}`` in a message: "2026-11-21 23:04 UTC"."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -- TwiML -----------------------------------------------------------------------------------


def twiml(text: str) -> str:
    """The TwiML that makes a call speak ``text``."""
    return f"<Response><Say>{escape(text)}</Say></Response>"


ACK_PROMPT = "Press 1 if you are coming."
NO_KEY_TEXT = "No key was pressed. Goodbye."


def escalation_twiml(text: str, action_url: str) -> str:
    """An escalation call: speak ``text``, then ask for the key; the key goes to ``action_url``
    (Twilio posts ``Digits`` there); no key in time falls through to the goodbye."""
    action = escape(action_url, {'"': "&quot;"})
    return (
        f"<Response><Say>{escape(text)}</Say>"
        f'<Gather numDigits="1" timeout="{GATHER_SECONDS}" action="{action}" method="POST">'
        f"<Say>{ACK_PROMPT}</Say></Gather><Say>{NO_KEY_TEXT}</Say></Response>"
    )


def fitted_twiml(text: str, build: Callable[[str], str] = twiml) -> tuple[str, int]:
    """TwiML (``build`` of ``text``) cut short if needed to fit Twilio's 4000-character limit,
    and how many characters of ``text`` it kept.

    Escaping can grow a character fivefold (``&`` -> ``&amp;``), so the longest prefix that fits
    is found by bisection rather than by subtracting the excess.
    """
    if len(build(text)) <= TWIML_MAX_CHARS:
        return build(text), len(text)
    fits, too_long = 0, len(text)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if len(build(text[:middle])) <= TWIML_MAX_CHARS:
            fits = middle
        else:
            too_long = middle
    return build(text[:fits]), fits


# -- the messaging config (written by `notify deploy`, read by the notifier) ------------------


@dataclass(frozen=True)
class EscalationStep:
    """Numbers called at once; the step ends when every call has ended unacknowledged."""

    call: tuple[str, ...]
    ring_seconds: int = DEFAULT_RING_SECONDS


@dataclass(frozen=True)
class Escalation:
    """Call step by step, ``rounds`` times through the steps, until someone presses 1; then
    send ``exhausted`` (a template) to everyone if nobody did."""

    steps: tuple[EscalationStep, ...]
    rounds: int
    exhausted: str

    def after(self, position: tuple[int, int]) -> tuple[int, int] | None:
        """The (round, step) that follows ``position``, or None when the list is done."""
        round_, step = position
        if step + 1 < len(self.steps):
            return round_, step + 1
        if round_ + 1 < self.rounds:
            return round_ + 1, 0
        return None

    @property
    def numbers(self) -> tuple[str, ...]:
        """Everyone it may call, once each, in order."""
        return tuple(dict.fromkeys(n for step in self.steps for n in step.call))


@dataclass(frozen=True)
class ClickConfig:
    sms: tuple[str, ...]
    call: tuple[str, ...]
    message: str
    escalation: Escalation | None = None


@dataclass(frozen=True)
class MessagingConfig:
    account_sid: str
    api_key_sid: str | None
    sender: str
    person: str
    clicks: Mapping[str, ClickConfig]
    debounce_seconds: int = DEFAULT_DEBOUNCE_SECONDS

    @property
    def auth_user(self) -> str:
        return self.api_key_sid or self.account_sid


def parse_config(document: object) -> MessagingConfig:
    """Check the messaging config's shape and turn it into a MessagingConfig::

    {
      "version": 1,
      "account_sid": "AC…",                 # Twilio account; in the request path
      "api_key_sid": null | "SK…",          # Basic-auth user if set, else account_sid
      "from": "+15005550006",               # Twilio number (E.164)
      "person": "Grandma",                  # who the button belongs to; {person}
      "debounce_seconds": 5,                # optional: repeats this close are one alarm
      "clicks": {                           # any of SINGLE, DOUBLE, LONG
        "SINGLE": {
          "sms": ["+1…"],                   # optional, default []
          "call": ["+1…"],                  # optional, default []
          "message": "template"             # required; SMS body and what a call speaks
        }
      }
    }
    """
    if not isinstance(document, dict):
        raise ConfigError("messaging config is not a JSON object")
    if document.get("version") != CONFIG_VERSION:
        raise ConfigError(f"messaging config version must be {CONFIG_VERSION}")
    account_sid = _required_string(document, "account_sid")
    if not account_sid.startswith("AC"):
        raise ConfigError("account_sid must start with AC")
    api_key_sid = document.get("api_key_sid")
    if api_key_sid is not None and not (
        isinstance(api_key_sid, str) and api_key_sid.startswith("SK")
    ):
        raise ConfigError("api_key_sid must be null or a string starting with SK")
    clicks = document.get("clicks")
    if not isinstance(clicks, dict):
        raise ConfigError("clicks must be an object")
    unknown = sorted(set(clicks) - set(CLICK_TYPES))
    if unknown:
        raise ConfigError(f"unknown click type(s) in config: {', '.join(unknown)}")
    debounce = document.get("debounce_seconds", DEFAULT_DEBOUNCE_SECONDS)
    if not isinstance(debounce, int) or isinstance(debounce, bool) or not 0 <= debounce <= 3600:
        raise ConfigError("debounce_seconds must be a whole number of seconds from 0 to 3600")
    return MessagingConfig(
        account_sid=account_sid,
        api_key_sid=api_key_sid,
        sender=_required_string(document, "from"),
        person=_required_string(document, "person"),
        clicks={click: _parse_click(click, value) for click, value in clicks.items()},
        debounce_seconds=debounce,
    )


def _required_string(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string")
    return value


def _parse_click(click: str, value: object) -> ClickConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"clicks.{click} must be an object")
    numbers = {}
    for channel in CHANNELS:
        listed = value.get(channel, [])
        if not isinstance(listed, list) or not all(isinstance(n, str) and n for n in listed):
            raise ConfigError(f"clicks.{click}.{channel} must be a list of phone numbers")
        numbers[channel] = tuple(listed)
    message = value.get("message")
    if not isinstance(message, str) or not message:
        raise ConfigError(f"clicks.{click}.message must be a non-empty string")
    try:
        check_template(message)
    except TemplateError as exc:
        raise ConfigError(f"clicks.{click}.message: {exc}") from None
    escalation = value.get("escalation")
    return ClickConfig(
        sms=numbers["sms"],
        call=numbers["call"],
        message=message,
        escalation=None if escalation is None else _parse_escalation(click, escalation),
    )


def _parse_escalation(click: str, value: object) -> Escalation:
    where = f"clicks.{click}.escalation"
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object")
    steps = value.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{where}.steps must be a non-empty list")
    parsed = []
    for index, step in enumerate(steps):
        numbers = step.get("call") if isinstance(step, dict) else None
        ring = step.get("ring_seconds", DEFAULT_RING_SECONDS) if isinstance(step, dict) else None
        if (
            not isinstance(numbers, list)
            or not numbers
            or not all(isinstance(n, str) and n for n in numbers)
        ):
            raise ConfigError(f"{where}.steps[{index}].call must be a list of phone numbers")
        if not _whole(ring, MIN_RING_SECONDS, MAX_RING_SECONDS):
            raise ConfigError(
                f"{where}.steps[{index}].ring_seconds must be {MIN_RING_SECONDS} to "
                f"{MAX_RING_SECONDS}"
            )
        parsed.append(EscalationStep(tuple(numbers), int(ring)))  # type: ignore[arg-type]
    rounds = value.get("rounds", 1)
    if not _whole(rounds, 1, MAX_ROUNDS):
        raise ConfigError(f"{where}.rounds must be 1 to {MAX_ROUNDS}")
    exhausted = value.get("exhausted")
    if not isinstance(exhausted, str) or not exhausted:
        raise ConfigError(f"{where}.exhausted must be a non-empty string")
    try:
        check_template(exhausted)
    except TemplateError as exc:
        raise ConfigError(f"{where}.exhausted: {exc}") from None
    return Escalation(tuple(parsed), int(rounds), exhausted)


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
