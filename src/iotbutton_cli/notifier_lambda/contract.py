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

import contextlib
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

from .hook_settings import HookSettingsError, Slack, Webhook, parse_hooks

CLICK_TYPES = ("SINGLE", "DOUBLE", "LONG")
CHANNELS = ("sms", "call")
TEMPLATE_FIELDS = ("person", "serial", "click", "battery", "time", "address", "notes")
# {fields.NAME}: a button's own free fields (notify.yaml's `fields:`), by name.
FIELD_PREFIX = "fields."
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
MAX_FIELDS = 20
FIELD_MAX_CHARS = 200
UNLISTED_CHOICES = ("defaults", "refuse")
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
# Set ("1") only by a deploy to the sandbox, whose webhook sink is on loopback.
LOOPBACK_HOOKS_ENV = "IOTBUTTON_HOOKS_LOOPBACK"
# Quiet hours that hold SINGLE and DOUBLE: an EventBridge Scheduler schedule invokes the
# notifier with the release event when each such window ends (``notify deploy`` makes it).
RELEASE_EVENT_KEY = "iotbuttonRelease"
SCHEDULED_TIME_PLACEHOLDER = "<aws.scheduler.scheduled-time>"  # Scheduler fills it in
SCHEDULE_GROUP = "iotbutton"
RELEASE_SCHEDULE = "release-held"
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
        if name not in TEMPLATE_FIELDS and not is_free_field(name):
            allowed = ", ".join("{" + field_name + "}" for field_name in TEMPLATE_FIELDS)
            raise TemplateError(
                f"unknown template field {_shown(name)}; allowed: {allowed}, {{fields.NAME}}"
            )
        if spec or conversion:
            raise TemplateError(
                f"template field {_shown(name)} may not have a format or conversion"
            )
        names.append(name)
    return names


def is_free_field(name: str) -> bool:
    """``fields.NAME``, a button's own field."""
    return name.startswith(FIELD_PREFIX) and bool(FIELD_NAME.fullmatch(name[len(FIELD_PREFIX) :]))


def free_fields_used(template: str) -> list[str]:
    """The NAMEs of the ``{fields.NAME}`` a template uses."""
    return [name[len(FIELD_PREFIX) :] for name in check_template(template) if is_free_field(name)]


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


def format_time(moment: datetime, zone: str = "UTC", rules: str = "") -> str:
    """``{time}`` in a message: "2026-11-21 23:04 UTC", or in the config's time zone (an IANA
    name): "2026-11-22 00:04 CET". ``rules`` is the zone's TZif file, base64, as the deploy
    copied it from the machine that deployed: Lambda's runtime may have no tz database. A zone
    that cannot be read falls back to UTC."""
    if zone in ("UTC", ""):
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        local = moment.astimezone(_zone(zone, rules))
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return format_time(moment)
    return local.strftime("%Y-%m-%d %H:%M %Z")


def _zone(name: str, rules: str) -> Any:
    import zoneinfo

    if not rules:
        return zoneinfo.ZoneInfo(name)
    import base64
    import io

    return zoneinfo.ZoneInfo.from_file(io.BytesIO(base64.b64decode(rules)), key=name)


# -- TwiML -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SayOptions:
    """How a call speaks the message: Twilio ``<Say>``'s ``voice``, ``language`` and ``loop``
    (how many times the message is said)."""

    voice: str = ""
    language: str = ""
    loop: int = 1

    def attributes(self, message: bool = True) -> str:
        """The attributes for a ``<Say>``; ``loop`` only for the message itself."""
        found = [
            (name, value)
            for name, value in (("voice", self.voice), ("language", self.language))
            if value
        ]
        if message and self.loop != 1:
            found.append(("loop", str(self.loop)))
        return "".join(f' {name}="{escape(value, {chr(34): "&quot;"})}"' for name, value in found)


PLAIN_SAY = SayOptions()
MAX_SAY_LOOP = 5
# Twilio's basic voices speak these; Polly and Google voices name their own language.
BASIC_VOICES = ("man", "woman")
BASIC_LANGUAGES = ("en", "en-gb", "es", "fr", "de")
SAY_VOICE = re.compile(
    r"man|woman|Polly\.[A-Z][A-Za-z]{1,20}(-Neural|-Generative|-LongForm)?"
    r"|Google\.(?P<lang>[a-z]{2,3}-[A-Z]{2})-[A-Za-z0-9]{1,20}(-[A-Za-z0-9]{1,20}){0,2}"
)
SAY_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z]{2,4})?", re.IGNORECASE)


def say_problem(options: SayOptions) -> str | None:
    """Why Twilio would not speak with these options, or None."""
    matched = SAY_VOICE.fullmatch(options.voice) if options.voice else None
    if options.voice and matched is None:
        return (
            f"voice {options.voice[:40]!r} is not man, woman, a Polly voice (Polly.Amy, "
            "Polly.Joanna-Neural) or a Google voice (Google.en-GB-Standard-A)"
        )
    if options.language and not SAY_LANGUAGE.fullmatch(options.language):
        return f"language {options.language[:40]!r} is not a language tag such as en-GB"
    basic = options.voice in BASIC_VOICES
    if basic and options.language and options.language.lower() not in BASIC_LANGUAGES:
        return (
            f"the {options.voice} voice speaks {', '.join(BASIC_LANGUAGES)}, not "
            f"{options.language}; a Polly or Google voice speaks more"
        )
    spoken = matched.group("lang") if matched else None
    if spoken and options.language and options.language.lower() != spoken.lower():
        return f"{options.voice} speaks {spoken}, not {options.language}"
    if not (isinstance(options.loop, int) and 1 <= options.loop <= MAX_SAY_LOOP):
        return f"repeat must be 1 to {MAX_SAY_LOOP}"
    return None


def twiml(text: str, say: SayOptions = PLAIN_SAY) -> str:
    """The TwiML that makes a call speak ``text``."""
    return f"<Response><Say{say.attributes()}>{escape(text)}</Say></Response>"


ACK_PROMPT = "Press 1 if you are coming."
NO_KEY_TEXT = "No key was pressed. Goodbye."


def escalation_twiml(text: str, action_url: str, say: SayOptions = PLAIN_SAY) -> str:
    """An escalation call: speak ``text``, then ask for the key; the key goes to ``action_url``
    (Twilio posts ``Digits`` there); no key in time falls through to the goodbye."""
    action = escape(action_url, {'"': "&quot;"})
    voice = say.attributes(message=False)
    return (
        f"<Response><Say{say.attributes()}>{escape(text)}</Say>"
        f'<Gather numDigits="1" timeout="{GATHER_SECONDS}" action="{action}" method="POST">'
        f"<Say{voice}>{ACK_PROMPT}</Say></Gather><Say{voice}>{NO_KEY_TEXT}</Say></Response>"
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
    voice: str | None = None  # what a call says, if not the message
    webhooks: tuple[Webhook, ...] = ()
    slack: tuple[Slack, ...] = ()
    say: SayOptions = PLAIN_SAY

    @property
    def spoken(self) -> str:
        return self.voice or self.message

    @property
    def reaches_anyone(self) -> bool:
        return bool(self.sms or self.call or self.escalation or self.webhooks or self.slack)

    def sms_only(self) -> ClickConfig:
        """The click type as quiet hours send it: whoever it would call is texted instead."""
        called = (*self.call, *(self.escalation.numbers if self.escalation else ()))
        sms = tuple(dict.fromkeys((*self.sms, *called)))
        return replace(self, sms=sms, call=(), escalation=None, voice=None)


@dataclass(frozen=True)
class BatteryConfig:
    """A low battery is told to ``notify`` once per ``every_seconds`` per button, not once per
    click: a button that is about to die must be replaced before it is needed."""

    warn_below_mv: int
    notify: tuple[str, ...]
    every_seconds: int = 86400


def battery_mv(value: object) -> int | None:
    """A battery reading in millivolts: ``"1650mV"``, ``"1650 mV"``, ``"1.65V"``, ``1650`` or
    ``1.65`` (a bare number below 10 is volts); None for anything else."""
    unit = ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 16:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(mv|v)?\s*", value, re.IGNORECASE)
        if match is None:
            return None
        number, unit = float(match[1]), (match[2] or "").lower()
    else:
        return None
    if unit == "v" or (not unit and number < 10):
        number *= 1000
    return round(number) if 0 <= number <= 100_000 else None


@dataclass(frozen=True)
class QuietHours:
    """From ``start`` to ``end`` (minutes after midnight in the config's time zone; the window
    may cross midnight) SINGLE and DOUBLE are SMS only (whoever they would call gets the message
    as an SMS) or, with ``hold``, held until the window ends. LONG always rings."""

    start: int
    end: int
    hold: bool = False

    def covers(self, minute: int) -> bool:
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    @property
    def shown(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end_shown}"

    @property
    def end_shown(self) -> str:
        return f"{self.end // 60:02d}:{self.end % 60:02d}"


QUIET_CLICKS = ("SINGLE", "DOUBLE")


def minute_of_day(moment: datetime, zone: str = "UTC", rules: str = "") -> int:
    """Minutes after midnight in the config's time zone (UTC if it cannot be read)."""
    local = moment.astimezone(timezone.utc)
    if zone not in ("", "UTC"):
        with contextlib.suppress(ValueError, OSError, KeyError):  # UTC, then
            local = moment.astimezone(_zone(zone, rules))
    return local.hour * 60 + local.minute


@dataclass(frozen=True)
class ButtonConfig:
    """One button's own person, details and click types (already merged with the defaults)."""

    person: str
    address: str
    notes: str
    fields: Mapping[str, str]
    clicks: Mapping[str, ClickConfig]
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True)
class MessagingConfig:
    account_sid: str
    api_key_sid: str | None
    sender: str
    person: str
    clicks: Mapping[str, ClickConfig]
    debounce_seconds: int = DEFAULT_DEBOUNCE_SECONDS
    address: str = ""
    notes: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    timezone_rules: str = ""  # the zone's TZif file, base64 (see format_time)
    buttons: Mapping[str, ButtonConfig] = field(default_factory=dict)
    unlisted: str = "defaults"  # or "refuse": a button the config does not list sends nothing
    battery: BatteryConfig | None = None
    quiet_hours: QuietHours | None = None

    @property
    def auth_user(self) -> str:
        return self.api_key_sid or self.account_sid

    def quiet_at(self, click: str, moment: datetime) -> QuietHours | None:
        """The quiet hours a ``click`` at ``moment`` falls in (LONG always rings)."""
        quiet = self.quiet_hours
        if quiet is None or click not in QUIET_CLICKS:
            return None
        minute = minute_of_day(moment, self.timezone, self.timezone_rules)
        return quiet if quiet.covers(minute) else None

    def for_button(self, serial: str) -> MessagingConfig | None:
        """The config as one button sees it: its own section if it has one, else the defaults
        (None when unlisted buttons are refused)."""
        own = self.buttons.get(serial)
        if own is None:
            return None if self.unlisted == "refuse" and self.buttons else self
        return replace(
            self,
            person=own.person,
            address=own.address,
            notes=own.notes,
            fields=own.fields,
            clicks=own.clicks,
            quiet_hours=own.quiet_hours,
            buttons={},
        )


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
    zone = document.get("timezone", "UTC")
    if not isinstance(zone, str) or not zone or len(zone) > 64:
        raise ConfigError("timezone must be an IANA time zone name")
    rules = document.get("timezone_rules", "")
    if not isinstance(rules, str) or len(rules) > 64 * 1024:
        raise ConfigError("timezone_rules must be a base64 TZif file")
    unlisted = document.get("unlisted", "defaults")
    if unlisted not in UNLISTED_CHOICES:
        raise ConfigError(f"unlisted must be one of {', '.join(UNLISTED_CHOICES)}")
    person = _required_string(document, "person")
    details = _details(document, "")
    parsed_clicks = {click: _parse_click(click, value) for click, value in clicks.items()}
    buttons = document.get("buttons", {})
    if not isinstance(buttons, dict):
        raise ConfigError("buttons must be an object")
    if unlisted != "refuse" or not buttons:  # else only the listed buttons use the defaults
        _check_fields(parsed_clicks, details[2], "")
    return MessagingConfig(
        account_sid=account_sid,
        api_key_sid=api_key_sid,
        sender=_required_string(document, "from"),
        person=person,
        clicks=parsed_clicks,
        debounce_seconds=debounce,
        address=details[0],
        notes=details[1],
        fields=details[2],
        timezone=zone,
        timezone_rules=rules,
        buttons={serial: _parse_button(serial, value) for serial, value in buttons.items()},
        unlisted=unlisted,
        battery=_parse_battery(document.get("battery")),
        quiet_hours=_parse_quiet(document.get("quiet_hours"), ""),
    )


def _parse_quiet(value: object, where: str) -> QuietHours | None:
    if value is None:
        return None
    start = value.get("start_minute") if isinstance(value, dict) else None
    end = value.get("end_minute") if isinstance(value, dict) else None
    if not _whole(start, 0, 1439) or not _whole(end, 0, 1439) or start == end:
        raise ConfigError(f"{where}quiet_hours needs start_minute and end_minute (0 to 1439)")
    hold = value.get("hold", False)  # type: ignore[attr-defined]
    if not isinstance(hold, bool):
        raise ConfigError(f"{where}quiet_hours.hold must be true or false")
    return QuietHours(int(start), int(end), hold)  # type: ignore[arg-type]


def release_event(
    scheduled_time: str = SCHEDULED_TIME_PLACEHOLDER, force: bool = False
) -> dict[str, Any]:
    """The event that releases held clicks: ``scheduledTime`` is when the quiet hours ended
    (Scheduler's own time for the run); ``force`` releases every held click now (``notify
    release``)."""
    body: dict[str, Any] = {"scheduledTime": scheduled_time}
    if force:
        body["force"] = True
    return {RELEASE_EVENT_KEY: body}


def hold_ends(document: Mapping[str, Any]) -> tuple[int, ...]:
    """The minutes of the day (in the document's ``timezone``) at which some quiet hours that
    hold clicks end: when the release schedule must run. Empty: nothing is ever held."""
    windows = [document.get("quiet_hours")]
    buttons = document.get("buttons")
    if isinstance(buttons, dict):
        windows += [b.get("quiet_hours") for b in buttons.values() if isinstance(b, dict)]
    ends = {
        w["end_minute"]
        for w in windows
        if isinstance(w, dict) and w.get("hold") is True and _whole(w.get("end_minute"), 0, 1439)
    }
    return tuple(sorted(ends))


def _parse_battery(value: object) -> BatteryConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError("battery must be an object")
    below, every, numbers = (value.get(k) for k in ("warn_below_mv", "every_seconds", "notify"))
    if not _whole(below, 1, 100_000) or not _whole(every, 60, 30 * 86400):
        raise ConfigError("battery needs warn_below_mv (mV) and every_seconds (60 s to 30 days)")
    if (
        not isinstance(numbers, list)
        or not numbers
        or not all(isinstance(n, str) and n for n in numbers)
    ):
        raise ConfigError("battery.notify must be a list of phone numbers")
    return BatteryConfig(int(below), tuple(numbers), int(every))  # type: ignore[arg-type]


def _details(document: Mapping[str, Any], where: str) -> tuple[str, str, dict[str, str]]:
    """address, notes and the free fields of the config or of one button."""
    found = []
    for name in ("address", "notes"):
        value = document.get(name, "")
        if not isinstance(value, str) or len(value) > FIELD_MAX_CHARS:
            raise ConfigError(f"{where}{name} must be a string of at most {FIELD_MAX_CHARS}")
        found.append(value)
    fields = document.get("fields", {})
    if (
        not isinstance(fields, dict)
        or len(fields) > MAX_FIELDS
        or not all(
            isinstance(k, str)
            and FIELD_NAME.fullmatch(k)
            and isinstance(v, str)
            and len(v) <= FIELD_MAX_CHARS
            for k, v in fields.items()
        )
    ):
        raise ConfigError(f"{where}fields must map at most {MAX_FIELDS} names to strings")
    return found[0], found[1], dict(fields)


def _check_fields(clicks: Mapping[str, ClickConfig], fields: Mapping[str, str], where: str) -> None:
    """Every {fields.NAME} a template uses is one of ``fields``."""
    for click, config in clicks.items():
        templates = [config.message, config.voice or ""]
        if config.escalation is not None:
            templates.append(config.escalation.exhausted)
        for template in templates:
            missing = [name for name in free_fields_used(template) if name not in fields]
            if missing:
                raise ConfigError(f"{where}clicks.{click}: no field {missing[0]!r} in its fields")


def _parse_button(serial: object, value: object) -> ButtonConfig:
    where = f"buttons.{serial}."
    if not isinstance(serial, str) or not serial or not isinstance(value, dict):
        raise ConfigError(f"{where[:-1]} must be an object")
    clicks = value.get("clicks")
    if not isinstance(clicks, dict) or set(clicks) - set(CLICK_TYPES):
        raise ConfigError(f"{where}clicks must map click types to what they do")
    person = value.get("person")
    if not isinstance(person, str) or not person:
        raise ConfigError(f"{where}person must be a non-empty string")
    address, notes, fields = _details(value, where)
    parsed = {click: _parse_click(click, item) for click, item in clicks.items()}
    _check_fields(parsed, fields, where)
    quiet = _parse_quiet(value.get("quiet_hours"), where)
    return ButtonConfig(person, address, notes, fields, parsed, quiet)


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
    voice = value.get("voice")
    if voice is not None:
        if not isinstance(voice, str) or not voice:
            raise ConfigError(f"clicks.{click}.voice must be null or a non-empty string")
        try:
            check_template(voice)
        except TemplateError as exc:
            raise ConfigError(f"clicks.{click}.voice: {exc}") from None
    try:
        webhooks, slack = parse_hooks(f"clicks.{click}", value)
    except HookSettingsError as exc:
        raise ConfigError(str(exc)) from None
    say = _parse_say(click, value.get("say"))
    return ClickConfig(
        sms=numbers["sms"],
        call=numbers["call"],
        message=message,
        escalation=None if escalation is None else _parse_escalation(click, escalation),
        voice=voice,
        webhooks=webhooks,
        slack=slack,
        say=say,
    )


def _parse_say(click: str, value: object) -> SayOptions:
    if value is None:
        return PLAIN_SAY
    if not isinstance(value, dict):
        raise ConfigError(f"clicks.{click}.say must be an object")
    voice, language, loop = value.get("voice", ""), value.get("language", ""), value.get("loop", 1)
    if not isinstance(voice, str) or not isinstance(language, str) or not _whole(loop, 1, 99):
        raise ConfigError(f"clicks.{click}.say has a voice, language or loop of the wrong type")
    options = SayOptions(voice, language, int(loop))
    problem = say_problem(options)
    if problem:
        raise ConfigError(f"clicks.{click}.say: {problem}")
    return options


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
