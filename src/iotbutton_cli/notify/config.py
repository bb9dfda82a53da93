"""The notifier config the user edits (``notify.yaml``): template, validation, Lambda document.

``notify init`` writes :data:`TEMPLATE`; :func:`load_config` reads the file and checks everything
the notifier will depend on *before* any AWS call, reporting each problem as ``file:line: what``
with exit status 2. :meth:`NotifyConfig.lambda_document` is exactly the JSON the notifier's
``parse_config`` accepts (see :mod:`iotbutton_cli.notifier_lambda.contract`, whose template
rules are reused here; the dependency only goes this way, the notifier never imports the CLI).

The Twilio secret never sits in this file: :func:`resolve_secret` takes it from the environment
(``TWILIO_AUTH_TOKEN``, or ``TWILIO_API_KEY`` + ``TWILIO_API_SECRET`` as Twilio's own tools do)
or from a hidden prompt, and the deployer stores it in SSM as a SecureString.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import string
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from iotbutton_cli import paths
from iotbutton_cli.errors import IotButtonError, usage_error
from iotbutton_cli.notifier_lambda.contract import (
    CHANNELS,
    CLICK_TYPES,
    CONFIG_VERSION,
    FIELD_MAX_CHARS,
    FIELD_PREFIX,
    PLAIN_SAY,
    SMS_MAX_UNITS,
    TEMPLATE_FIELDS,
    TWIML_MAX_CHARS,
    Escalation,
    SayOptions,
    TemplateError,
    check_template,
    free_fields_used,
    render,
    twiml,
)

if TYPE_CHECKING:
    from yaml.nodes import Node

    from iotbutton_cli.notifier_lambda.contract import BatteryConfig, QuietHours
    from iotbutton_cli.notifier_lambda.hook_settings import Slack, Webhook
    from iotbutton_cli.notify.escalation_config import Cost

CONFIG_NAME = "notify.yaml"
ACCOUNT_SID_PATTERN = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY_SID_PATTERN = re.compile(r"SK[0-9a-fA-F]{32}")
E164_PATTERN = re.compile(r"\+[1-9][0-9]{1,14}")  # [0-9], not \d: no other scripts' digits
SMS_MAX_CHARS = SMS_MAX_UNITS  # Twilio's limit for a message body, in UTF-16 code units
# Bounds that keep a mistaken or hostile file from costing memory, time or a flood of calls.
MAX_CONFIG_BYTES = 256 * 1024
MAX_RECIPIENTS = 50  # per click type, SMS and calls together
MAX_NESTING = 20  # the template needs 4 levels
PERSON_MAX_CHARS = 100
TOP_LEVEL_KEYS = (
    "account_sid",
    "api_key_sid",
    "from",
    "person",
    "address",
    "notes",
    "fields",
    "timezone",
    "debounce",
    "owner",
    "clicks",
    "buttons",
    "unlisted",
    "battery",
    "quiet_hours",
)
OWNER_KEYS = ("sms", "email")
# An address SNS can deliver to: one @, no spaces, a dot in the domain (SNS checks no more).
EMAIL_PATTERN = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")
EMAIL_MAX_CHARS = 254
# Clicks of one button and click type this close together are one alarm (seconds).
DEFAULT_DEBOUNCE_SECONDS = 5
MAX_DEBOUNCE_SECONDS = 600
CLICK_KEYS = ("sms", "call", "message", "voice", "say", "escalation", "webhook", "slack")
# The longest each template field can be when a click arrives ({person} is the config's own value,
# {click} the click type's name): thing names go up to 128 characters, "1650mV" is a typical
# battery reading, and times look like "2026-11-21 23:04 UTC".
WORST_CASE_LENGTHS = {"serial": 128, "battery": 16, "time": len("2026-11-21 23:04 UTC")}
SECRET_LIKE_KEYS = frozenset(
    {"auth_token", "token", "secret", "api_secret", "api_key_secret", "password", "twilio_secret"}
)
# Names of environment variables, not secrets:
AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"  # noqa: S105
API_KEY_ENV = "TWILIO_API_KEY"
API_SECRET_ENV = "TWILIO_API_SECRET"  # noqa: S105
ACCOUNT_SID_ENV = "TWILIO_ACCOUNT_SID"

_NULL_TAG = "tag:yaml.org,2002:null"
E164_HINT = (
    "Write phone numbers in E.164, in quotes: a plus, the country code and the number, no spaces "
    'or dashes, e.g. "+15551234567".'
)
OPTION_E164_HINT = (
    "Give phone numbers in E.164: a plus, the country code and the number, no spaces or dashes, "
    "e.g. --sms +15551234567."
)
NOBODY_HINT = (
    'Add numbers to sms: or call: under SINGLE, DOUBLE or LONG, e.g. sms: ["+15551234567"].'
)
SHAPE_HINT = "Compare it with the template: `iotbutton notify init --force` writes a fresh one."
TEMPLATE_HINT = (
    "Use only {person}, {serial}, {click}, {battery}, {time}, {address}, {notes} and "
    "{fields.NAME}; {{ and }} for braces."
)
NO_SECRETS_HINT = (
    "Secrets never go in this file: set TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and "
    "TWILIO_API_SECRET) in your shell when you deploy."
)

TEMPLATE = """\
# iotbutton notifier config: who gets an SMS or a phone call when the button is clicked.
#
# Check it with `iotbutton notify check`, then deploy it with `iotbutton notify deploy`.
#
# Phone numbers are E.164, in quotes: a plus sign, the country code and the number, with no
# spaces or dashes, e.g. "+15551234567" (US) or "+447700900123" (UK).
#
# The Twilio secret (auth token or API key secret) NEVER goes in this file. `iotbutton notify
# deploy` reads it from TWILIO_AUTH_TOKEN, or from TWILIO_API_KEY and TWILIO_API_SECRET, or asks
# for it, and stores it encrypted in AWS SSM Parameter Store (a SecureString).

# Your Twilio Account SID: "AC" and 32 hex digits (Twilio Console > Account Info).
account_sid: ${account_sid}

# Optional: authenticate with an API key instead of the account's auth token. Its SID is "SK" and
# 32 hex digits; its secret goes in TWILIO_API_SECRET. TWILIO_API_KEY, if set, wins over this.
# api_key_sid: "SK00000000000000000000000000000000"

# The Twilio phone number messages and calls come from (E.164). Trial accounts can only reach
# numbers verified in the Twilio Console.
from: ${sender}

# Who the button belongs to; {person} in the messages below.
person: ${person}

# Optional: more for the messages to say. {address} and {notes}, and {fields.NAME} for each
# field you add (e.g. {fields.room}); {time} in your time zone (an IANA name; UTC if not set).
# address: "12 High Street, flat 2"
# notes: "Key under the blue pot"
# fields: {room: "bedroom"}
# timezone: "Europe/London"

# Clicks of one button's click type this many seconds apart or closer are one alarm: a button
# or flaky Wi-Fi can publish one press twice. 0 makes every click its own alarm.
debounce: 5

# Optional: who hears about it when an alarm could not be delivered (Twilio down for every
# retry, the notifier failing): through Amazon SNS, not Twilio. An e-mail address gets a
# message from AWS to confirm first; an SMS needs SNS's SMS sandbox left or the number verified.
# owner:
#   sms: "+15551230009"
#   email: "owner@example.com"

# What each kind of click does: SINGLE, DOUBLE, or LONG (held for 1.5 seconds or more).
#   sms:     numbers that get the message as an SMS (at most 1600 characters once filled in)
#   call:    numbers that get a phone call that speaks the message
#   message: the text. These fields are filled in when the button is clicked:
#              {person}   the person above
#              {serial}   the button's serial number, e.g. G030JF0553648RUH
#              {click}    SINGLE, DOUBLE or LONG
#              {battery}  the button's battery voltage, e.g. 1650mV
#              {time}     when AWS IoT received the click, e.g. 2026-11-21 23:04 UTC
#            Write {{ and }} for literal braces; no other {...} is allowed.
#   voice:   optional: what a call says instead of the message (same fields)
#   webhook: optional: POST the click as signed JSON to your https:// URL, e.g.
#              {url: "https://example.com/hook", secret: $$HOOK_SECRET}
#   slack:   optional: post the message to Slack: {webhook_url: $$SLACK_WEBHOOK_URL}
#   say:     optional: how calls speak, e.g. {voice: "Polly.Amy", language: "en-GB", repeat: 2}
#            ($$NAME: an environment variable `notify deploy` reads; never the secret itself)
# A click type with no sms, call, webhook or slack does nothing.
#
# Several buttons for several people: give each its own section under buttons:, which wins
# over the settings above key by key (person, address, notes, fields, and each click type's
# sms, call, message, voice, say, escalation, webhook, slack). A button not listed uses the
# settings above, or sends nothing with `unlisted: refuse`.
# buttons:
#   G030JF0553648RUH:
#     person: "Grandpa"
#     clicks:
#       LONG:
#         sms: ["+15551230003"]
clicks:
  SINGLE:
    sms: ${sms}
    call: ${call}
    message: "{person} pressed the button ({serial}) at {time}."
  DOUBLE:
    sms: ${sms}
    call: ${call}
    message: "{person} double-clicked the button ({serial}) at {time}. Please check in soon."
  LONG:
    sms: ${sms}
    call: ${call}
    message: "URGENT: {person} held the button ({serial}) at {time} and needs help now. \\
      Please call {person} or go there right away."
"""


# -- the config as the rest of the tool sees it -------------------------------------------------


@dataclass(frozen=True)
class ClickSettings:
    """Who one click type reaches, and what it says."""

    sms: tuple[str, ...]
    call: tuple[str, ...]
    message: str
    escalation: Escalation | None = None
    voice: str | None = None  # what a call says, when not the message
    webhooks: tuple[Webhook, ...] = ()
    slack: tuple[Slack, ...] = ()
    say: SayOptions = PLAIN_SAY  # how its calls speak

    @property
    def recipients(self) -> int:
        escalated = len(self.escalation.numbers) if self.escalation else 0
        return len(self.sms) + len(self.call) + escalated + len(self.webhooks) + len(self.slack)

    def escalation_cost(self, person: str, click: str) -> Cost | None:
        """What an alarm of this click type nobody acknowledges costs, at worst."""
        if self.escalation is None:
            return None
        from iotbutton_cli.notify.escalation_config import cost

        spoken = self.voice or self.message
        filled = render(spoken, worst_case_fields(person, click, spoken))
        return cost(self.escalation, " ".join([filled] * self.say.loop))


@dataclass(frozen=True)
class Details:
    """Who a button belongs to and what its messages may say about them: {person},
    {address}, {notes} and {fields.NAME}."""

    person: str
    address: str = ""
    notes: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    # False for the defaults when unlisted buttons are refused: only listed buttons use them,
    # and each is checked for the fields it needs.
    check_fields: bool = field(default=True, compare=False)

    def document(self) -> dict[str, Any]:
        """The keys the notifier's config has for them (only those set)."""
        found: dict[str, Any] = {"person": self.person}
        found.update({k: v for k, v in (("address", self.address), ("notes", self.notes)) if v})
        if self.fields:
            found["fields"] = dict(self.fields)
        return found


@dataclass(frozen=True)
class ButtonSettings:
    """One button's own section: its details and its click types, merged with the defaults."""

    details: Details
    clicks: Mapping[str, ClickSettings]
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True)
class Owner:
    """Who is told, through SNS, about an alarm that could not be delivered."""

    sms: str | None = None
    email: str | None = None

    def endpoints(self) -> list[tuple[str, str]]:
        """(SNS protocol, endpoint) pairs, as Subscribe takes them."""
        pairs = [("sms", self.sms), ("email", self.email)]
        return [(protocol, endpoint) for protocol, endpoint in pairs if endpoint]


@dataclass(frozen=True)
class TwilioSecret:
    """The Twilio credential for HTTP Basic auth; ``value`` never appears in repr or logs."""

    username: str  # the API key SID (SK...) or the account SID (AC...)
    value: str = field(repr=False)
    source: str = ""  # where it came from: an environment variable name, or "prompt"

    @property
    def kind(self) -> str:
        return "api_key" if self.username.startswith("SK") else "auth_token"

    @property
    def api_key_sid(self) -> str | None:
        return self.username if self.kind == "api_key" else None


@dataclass(frozen=True)
class NotifyConfig:
    """A validated notify.yaml. ``clicks`` holds the click types the file lists, in SINGLE,
    DOUBLE, LONG order (a click type with no numbers is kept; the notifier ignores it)."""

    path: Path
    account_sid: str
    api_key_sid: str | None
    sender: str
    person: str
    clicks: Mapping[str, ClickSettings]
    debounce_seconds: int = DEFAULT_DEBOUNCE_SECONDS
    owner: Owner | None = None
    details: Details | None = None  # address, notes, fields of the defaults (person above)
    timezone: str = "UTC"
    buttons: Mapping[str, ButtonSettings] = field(default_factory=dict)
    unlisted: str = "defaults"  # or "refuse"
    battery: BatteryConfig | None = None
    quiet_hours: QuietHours | None = None

    @property
    def owner_endpoints(self) -> tuple[tuple[str, str], ...]:
        """What the owner topic is subscribed to: (SNS protocol, endpoint) pairs."""
        return tuple(self.owner.endpoints()) if self.owner else ()

    def lambda_document(self, secret: TwilioSecret | None = None) -> dict[str, Any]:
        """The messaging config JSON the notifier's ``parse_config`` accepts.

        With ``secret``, ``api_key_sid`` follows the credential actually stored (an auth token
        pairs with the account SID, so it is then null), so that the notifier's Basic-auth user
        always matches the secret in SSM.
        """
        api_key_sid = self.api_key_sid if secret is None else secret.api_key_sid
        document: dict[str, Any] = {
            "version": CONFIG_VERSION,
            "account_sid": self.account_sid,
            "api_key_sid": api_key_sid,
            "from": self.sender,
            "person": self.person,
            "debounce_seconds": self.debounce_seconds,
            "clicks": {click: _click_document(item) for click, item in self.clicks.items()},
        }
        # Only what is set: a file of the older shape makes the document it always made.
        if self.details is not None:
            document.update(self.details.document())
        if self.timezone != "UTC":
            from iotbutton_cli.notify.buttons_config import zone_rules

            document["timezone"] = self.timezone
            document["timezone_rules"] = zone_rules(self.timezone)
        if self.battery is not None:
            document["battery"] = {
                "warn_below_mv": self.battery.warn_below_mv,
                "notify": list(self.battery.notify),
                "every_seconds": self.battery.every_seconds,
            }
        if self.quiet_hours is not None:
            document["quiet_hours"] = _quiet_document(self.quiet_hours)
        if self.buttons:
            document["buttons"] = {
                serial: {
                    **button.details.document(),
                    "clicks": {c: _click_document(i) for c, i in button.clicks.items()},
                    **(
                        {"quiet_hours": _quiet_document(button.quiet_hours)}
                        if button.quiet_hours is not None
                        else {}
                    ),
                }
                for serial, button in self.buttons.items()
            }
            document["unlisted"] = self.unlisted
        return document

    def summary(self) -> dict[str, Any]:
        """What ``notify show``/``check`` print: no secrets (the file holds none)."""
        summary: dict[str, Any] = {
            "path": str(self.path),
            "account_sid": self.account_sid,
            "api_key_sid": self.api_key_sid,
            "from": self.sender,
            "person": self.person,
            "debounce_seconds": self.debounce_seconds,
            "owner": None
            if self.owner is None
            else {"sms": self.owner.sms, "email": self.owner.email},
            "clicks": _clicks_summary(self.clicks, self.person),
            "recipients": len({n for item in self.every_click() for n in _numbers(item)}),
        }
        if self.timezone != "UTC":
            summary["timezone"] = self.timezone
        if self.details is not None:
            summary.update(self.details.document())
        if self.battery is not None:
            summary["battery"] = {
                "warn_below_mv": self.battery.warn_below_mv,
                "notify": list(self.battery.notify),
                "at_most_every_seconds": self.battery.every_seconds,
            }
        if self.quiet_hours is not None:
            summary["quiet_hours"] = _quiet_shown(self.quiet_hours)
        if self.buttons:
            summary["buttons"] = {
                serial: {
                    **button.details.document(),
                    "clicks": _clicks_summary(button.clicks, button.details.person),
                    **(
                        {"quiet_hours": _quiet_shown(button.quiet_hours)}
                        if button.quiet_hours is not None
                        else {}
                    ),
                }
                for serial, button in self.buttons.items()
            }
            summary["unlisted"] = self.unlisted
        return summary

    def every_click(self) -> list[ClickSettings]:
        """The defaults' click types and every button's."""
        found = list(self.clicks.values())
        for button in self.buttons.values():
            found += button.clicks.values()
        return found


def _quiet_shown(quiet: QuietHours) -> str:
    """``22:30-07:00``, and ``22:30-07:00 hold`` when the clicks wait for the end."""
    return f"{quiet.shown} hold" if quiet.hold else quiet.shown


def _quiet_document(quiet: QuietHours) -> dict[str, Any]:
    document: dict[str, Any] = {"start_minute": quiet.start, "end_minute": quiet.end}
    if quiet.hold:  # left out otherwise: a config without it deploys byte for byte as before
        document["hold"] = True
    return document


def _clicks_summary(clicks: Mapping[str, ClickSettings], person: str) -> dict[str, Any]:
    return {
        click: {
            "sms": list(item.sms),
            "call": list(item.call),
            "sms_count": len(item.sms),
            "call_count": len(item.call),
            "message": item.message,
            **({"voice": item.voice} if item.voice is not None else {}),
            **({"say": _say_summary(item.say)} if item.say != PLAIN_SAY else {}),
            "escalation": _escalation_summary(item, person, click),
            **_hooks_summary(item),
        }
        for click, item in clicks.items()
    }


def _say_summary(say: SayOptions) -> dict[str, Any]:
    return {"voice": say.voice or None, "language": say.language or None, "repeat": say.loop}


def _hooks_summary(item: ClickSettings) -> dict[str, Any]:
    """Webhooks and Slack posts, where set: their URLs and the names of their secrets."""
    found: dict[str, Any] = {}
    if item.webhooks:
        found["webhooks"] = [
            {"url": hook.target, "auth": hook.auth, "secret_env": hook.secret}
            for hook in item.webhooks
        ]
    if item.slack:
        found["slack"] = [{"webhook_url_env": slack.secret} for slack in item.slack]
    return found


def _numbers(item: ClickSettings) -> tuple[str, ...]:
    return item.sms + item.call + (item.escalation.numbers if item.escalation else ())


def _click_document(item: ClickSettings) -> dict[str, Any]:
    document: dict[str, Any] = {
        "sms": list(item.sms),
        "call": list(item.call),
        "message": item.message,
    }
    if item.voice is not None:
        document["voice"] = item.voice
    if item.escalation is not None:
        from iotbutton_cli.notify.escalation_config import as_document

        document["escalation"] = as_document(item.escalation)
    if item.say != PLAIN_SAY:
        from iotbutton_cli.notify.say_config import as_document as say_document

        document["say"] = say_document(item.say)
    if item.webhooks:
        from iotbutton_cli.notify.hooks_config import documents

        document["webhooks"] = documents(item.webhooks)
    if item.slack:
        document["slack"] = [{"secret": slack.secret} for slack in item.slack]
    return document


def _escalation_summary(item: ClickSettings, person: str, click: str) -> dict[str, Any] | None:
    cost = item.escalation_cost(person, click)
    if item.escalation is None or cost is None:
        return None
    from iotbutton_cli.notify.escalation_config import as_document

    return {**as_document(item.escalation), **cost.as_json()}


def check_escalation_secret(config: NotifyConfig, secret: TwilioSecret) -> None:
    """An escalation moves on when Twilio's signed callbacks come, and Twilio signs them with
    the auth token: an API key secret (from TWILIO_API_KEY, say) cannot run one."""
    everywhere = [*config.clicks.items()]
    everywhere += [pair for button in config.buttons.values() for pair in button.clicks.items()]
    escalating = [click for click, item in everywhere if item.escalation is not None]
    if escalating and secret.kind == "api_key":
        raise usage_error(
            "notify-config-escalation-api-key",
            f"{escalating[0]} has an escalation, which needs the account's auth token, and the "
            f"secret from {secret.source or 'the environment'} is an API key's",
            "Twilio signs the callbacks an escalation moves on with the auth token: unset "
            "TWILIO_API_KEY and TWILIO_API_SECRET and set TWILIO_AUTH_TOKEN.",
        )


def config_path() -> Path:
    return paths.config_dir() / CONFIG_NAME


# -- notify init -----------------------------------------------------------------------------


def write_template(
    path: Path | None = None,
    account_sid: str | None = None,
    from_: str | None = None,
    person: str | None = None,
    sms: Sequence[str] = (),
    call: Sequence[str] = (),
    force: bool = False,
) -> Path:
    """Write the commented template, filled in with what is given; refuse to replace a file.

    Every value is checked before anything is written; ``sms`` and ``call`` numbers go to every
    click type. Values not given are left empty for the user to fill in (``notify check`` says
    which).
    """
    path = Path(path) if path is not None else config_path()
    _check_options(account_sid, from_, person, sms, call)
    if path.exists() and not force:
        raise usage_error(
            "notify-config-exists",
            f"{path} already exists.",
            "Edit it, or pass --force to replace it with a fresh template.",
        )
    text = render_template(account_sid, from_, person, sms, call)
    try:
        _Parser(path, allow_incomplete=True).parse(text)  # the template itself must be sound
    except IotButtonError as exc:
        # _check_options should have caught it; still, never name a line of a file not written.
        detail = exc.message.removeprefix(f"{path}:").split(": ", 1)[-1]
        raise usage_error(
            exc.code, f"These options would not make a valid notify.yaml: {detail}.", exc.hint
        ) from None
    paths.write_private_file(path, text, mode=0o600)
    return path


def render_template(
    account_sid: str | None = None,
    from_: str | None = None,
    person: str | None = None,
    sms: Sequence[str] = (),
    call: Sequence[str] = (),
) -> str:
    """:data:`TEMPLATE` with the values filled in as YAML double-quoted strings."""

    def quoted(value: str | None) -> str:
        return json.dumps(value or "", ensure_ascii=False)

    def numbers(values: Sequence[str]) -> str:
        return "[" + ", ".join(quoted(value) for value in values) + "]"

    return string.Template(TEMPLATE).substitute(
        account_sid=quoted(account_sid),
        sender=quoted(from_),
        person=quoted(person),
        sms=numbers(sms),
        call=numbers(call),
    )


def _check_options(
    account_sid: str | None,
    from_: str | None,
    person: str | None,
    sms: Sequence[str],
    call: Sequence[str],
) -> None:
    if account_sid is not None and not ACCOUNT_SID_PATTERN.fullmatch(account_sid):
        raise usage_error(
            "notify-bad-account-sid",
            "--account-sid is not a Twilio Account SID (AC followed by 32 hex digits).",
            _account_sid_hint(account_sid),
        )
    if person is not None and (problem := _person_problem(person)):
        raise usage_error(
            "notify-bad-person", f"--person {problem}.", "Give a short name: --person Grandma."
        )
    options = [("--from", from_)] if from_ is not None else []
    options += [("--sms", number) for number in sms] + [("--call", number) for number in call]
    for option, number in options:
        if not E164_PATTERN.fullmatch(number):
            raise usage_error(
                "notify-bad-number",
                f"{option} {number!r} is not an E.164 phone number.",
                OPTION_E164_HINT.replace("--sms", option),
            )
        if option != "--from" and number == from_:
            raise usage_error(
                "notify-bad-number",
                f"{option} {number} is the --from number.",
                "Twilio cannot send a number a message or call from itself (error 21266); "
                "give --from your Twilio number and --sms/--call the people to reach.",
            )


def _person_problem(person: str) -> str | None:
    if not person.strip():
        return "is empty"
    if not person.isprintable():
        return "must be one line of printable text"
    if len(person) > PERSON_MAX_CHARS:
        return f"is {len(person)} characters long (at most {PERSON_MAX_CHARS})"
    return None


def _account_sid_hint(value: str) -> str:
    if re.fullmatch(r"[0-9a-fA-F]{32}", value):
        return "That looks like an auth token, which is a secret. " + NO_SECRETS_HINT
    return "Copy the Account SID from the Twilio Console (Account Info); it starts with AC."


# -- reading notify.yaml ----------------------------------------------------------------------


def load_config(path: Path | None = None) -> NotifyConfig:
    """Read and validate notify.yaml; every problem is a usage error naming file and line."""
    path = Path(path) if path is not None else config_path()
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise usage_error(
                "notify-config-too-big",
                f"{path} is {size:,} bytes; a notify.yaml is at most {MAX_CONFIG_BYTES:,}.",
                "Is this the right file? `iotbutton notify init --force` writes a fresh one.",
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise usage_error(
            "notify-config-missing",
            f"{path} does not exist.",
            "Run `iotbutton notify init` to write a template, then edit it.",
        ) from None
    except OSError as exc:
        raise usage_error(
            "notify-config-unreadable",
            f"{path}: cannot read it ({exc.strerror or exc}).",
            "Check the file's permissions, or run `iotbutton notify init --force`.",
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise usage_error(
            "notify-config-encoding", f"{path}:{line}: not UTF-8 text.", "Save the file as UTF-8."
        ) from None
    return parse_config_text(text, path)


MAX_DOCUMENT_BYTES = 1024 * 1024  # the function reads it whole into 128 MB


def parse_config_text(text: str, path: Path | None = None) -> NotifyConfig:
    """Validate notify.yaml's text (``path`` only names it in messages); what it makes for the
    function is then checked by the function's own parser, so no file the check passes can
    make the deployed notifier refuse every click."""
    from iotbutton_cli.notifier_lambda.contract import ConfigError, parse_config

    path = Path(path) if path is not None else config_path()
    config = _Parser(path).parse(text)
    document = config.lambda_document()
    size = len(json.dumps(document))
    if size > MAX_DOCUMENT_BYTES:
        raise usage_error(
            "notify-config-too-big",
            f"{path} makes a {size:,}-byte config for the notifier; at most {MAX_DOCUMENT_BYTES:,}",
            "Fewer buttons, or shorter messages: each button carries its own click types.",
        )
    try:
        parse_config(document)
    except ConfigError as exc:
        raise usage_error(
            "notify-config-shape",
            f"{path}: the notifier would refuse this config: {exc}",
            SHAPE_HINT,
        ) from None
    return config


def worst_case_fields(person: str | Details, click: str, template: str = "") -> dict[str, str]:
    """Template values as long as they can get when ``click`` arrives (``person``: the name,
    or the button's details with its address, notes and fields; a free field ``template`` uses
    that they lack, checked per button instead, is as long as a field can be)."""
    details = person if isinstance(person, Details) else Details(person)
    values = {name: "8" * length for name, length in WORST_CASE_LENGTHS.items()}
    values.update(person=details.person, click=click, address=details.address, notes=details.notes)
    assert set(values) == set(TEMPLATE_FIELDS)
    for name in free_fields_used(template) if template else ():
        values[f"{FIELD_PREFIX}{name}"] = "8" * FIELD_MAX_CHARS
    values.update({f"{FIELD_PREFIX}{name}": text for name, text in details.fields.items()})
    return values


def sms_length(text: str) -> int:
    """Length as Twilio counts it: UTF-16 code units (an emoji counts twice)."""
    return len(text.encode("utf-16-le")) // 2


class _Parser:
    """Walks the YAML node tree (which keeps line numbers) rather than the loaded values.

    Scalars are read as the text the user wrote, so an unquoted ``+15551234567`` (an int in YAML
    1.1) or ``person: Norway`` stays what was meant.
    """

    def __init__(self, path: Path, allow_incomplete: bool = False) -> None:
        self.path = path
        self.allow_incomplete = allow_incomplete

    def fail(self, at: Node | int, code: str, detail: str, hint: str = SHAPE_HINT) -> NoReturn:
        line = at if isinstance(at, int) else at.start_mark.line + 1
        raise usage_error(code, f"{self.path}:{line}: {detail}", hint)

    def parse(self, text: str) -> NotifyConfig:
        from yaml.nodes import MappingNode

        root = self.compose(text)
        if root is None:
            self.fail(
                1,
                "notify-config-empty",
                "the file is empty",
                "Run `iotbutton notify init --force` to write a fresh template.",
            )
        if not isinstance(root, MappingNode):
            self.fail(
                root,
                "notify-config-shape",
                "expected settings (account_sid, from, person, clicks), found " + _kind(root),
                "Run `iotbutton notify init --force` to write a fresh template.",
            )
        entries = self.entries(root, "", TOP_LEVEL_KEYS)
        account_sid = self.account_sid(root, entries)
        api_key_sid = self.api_key_sid(entries)
        sender = self.sender(root, entries)
        person = self.person(root, entries)
        debounce = self.debounce(entries)
        owner = self.owner(entries)
        from iotbutton_cli.notify import buttons_config

        details = buttons_config.details(self, entries, "", Details(person))
        zone = buttons_config.time_zone(self, entries)
        unlisted = buttons_config.unlisted(self, entries)
        # With unlisted buttons refused, only the listed ones use the defaults: each is
        # checked for the fields its messages need, the defaults alone are not.
        defaults = replace(details, check_fields=unlisted != "refuse")
        clicks = self.clicks(root, entries, sender, defaults)
        quiet = buttons_config.quiet_hours(self, entries, "", None)
        buttons = buttons_config.buttons(self, entries, sender, details, clicks, quiet)
        buttons_config.refuse_needs_buttons(self, entries, unlisted, buttons)
        used = [*(clicks.values() if unlisted != "refuse" else ())]
        used += [item for button in buttons.values() for item in button.clicks.values()]
        if not self.allow_incomplete and not any(item.recipients for item in used):
            self.fail(
                entries["clicks"][0] if "clicks" in entries else root,
                "notify-config-nobody",
                "no click type sends an SMS or places a call",
                NOBODY_HINT,
            )
        if api_key_sid is not None:
            self.refuse_escalation_with_api_key(entries, clicks)
            for button in buttons.values():
                self.refuse_escalation_with_api_key(entries, button.clicks)
        return NotifyConfig(
            self.path,
            account_sid,
            api_key_sid,
            sender,
            person,
            clicks,
            debounce_seconds=debounce,
            owner=owner,
            details=details if details != Details(person) else None,
            timezone=zone,
            buttons=buttons,
            unlisted=unlisted,
            battery=buttons_config.battery(self, entries, sender),
            quiet_hours=quiet,
        )

    def refuse_escalation_with_api_key(
        self, entries: dict[str, tuple[Node, Node]], clicks: Mapping[str, ClickSettings]
    ) -> None:
        """An escalation moves on when Twilio's signed callbacks come, and Twilio signs them
        with the auth token, which a deploy with an API key does not hold."""
        escalating = [click for click, item in clicks.items() if item.escalation is not None]
        if escalating:
            self.fail(
                entries["api_key_sid"][1],
                "notify-config-escalation-api-key",
                f"{escalating[0]} has an escalation, which needs the account's auth token",
                "Twilio signs the callbacks an escalation moves on with the auth token: remove "
                "api_key_sid and deploy with TWILIO_AUTH_TOKEN set.",
            )

    def compose(self, text: str) -> Node | None:
        import yaml

        too_deep = _nesting_problem(text)
        if too_deep is not None:
            self.fail(
                too_deep,
                "notify-config-shape",
                f"settings are nested more than {MAX_NESTING} levels deep",
                SHAPE_HINT,
            )
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except RecursionError:
            self.fail(1, "notify-config-shape", "settings are nested too deeply", SHAPE_HINT)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            detail = exc.problem or exc.context or "cannot parse this"
            if exc.problem and exc.context:
                context_line = exc.context_mark.line + 1 if exc.context_mark else line
                where = f" on line {context_line}" if context_line != line else ""
                detail = f"{exc.problem} ({exc.context}{where})"
            self.fail(
                line,
                "notify-config-syntax",
                f"YAML syntax error: {detail}",
                "Check the indentation and quotes there; text with {fields}, a ': ' or a "
                'leading + belongs in quotes, e.g. message: "{person} pressed the button."',
            )
        except yaml.reader.ReaderError as exc:
            character = exc.character
            shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
            self.fail(
                text[: exc.position].count("\n") + 1,
                "notify-config-syntax",
                f"the file contains a character YAML does not allow ({shown})",
                "Remove it, or save the file as plain UTF-8 text.",
            )
        except yaml.YAMLError as exc:
            self.fail(1, "notify-config-syntax", f"YAML syntax error: {exc}")

    # -- generic pieces ----------------------------------------------------------------------

    def entries(
        self, node: Node, where: str, allowed: Sequence[str]
    ) -> dict[str, tuple[Node, Node]]:
        """A mapping's keys with their (key, value) nodes; unknown or repeated keys are errors."""
        from yaml.nodes import ScalarNode

        found: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(
                    key_node, "notify-config-shape", f"{where or 'the file'}: a key must be a name"
                )
            key = str(key_node.value)
            label = f"{where}.{key}" if where else key
            if key in found:
                first = found[key][0].start_mark.line + 1
                self.fail(
                    key_node,
                    "notify-config-duplicate",
                    f"{label} appears twice (first on line {first})",
                    "Keep one of them; YAML would silently use only the last.",
                )
            if key not in allowed:
                self.unknown_key(key_node, key, where, allowed)
            found[key] = (key_node, value_node)
        return found

    def unknown_key(self, node: Node, key: str, where: str, allowed: Sequence[str]) -> NoReturn:
        if where == "clicks":
            upper = key.upper()
            hint = f"Did you mean {upper}? " if upper in CLICK_TYPES else ""
            self.fail(
                node,
                "notify-config-click-type",
                f"unknown click type {key!r} in clicks",
                hint + "The click types are SINGLE, DOUBLE and LONG, in capitals.",
            )
        if key.lower() in SECRET_LIKE_KEYS:
            hint = f"Remove {key}. " + NO_SECRETS_HINT
        else:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"Did you mean {close[0]}? " if close else ""
            hint += "Allowed here: " + ", ".join(allowed) + "."
        place = f" in {where}" if where else ""
        self.fail(node, "notify-config-unknown-key", f"unknown setting {key!r}{place}", hint)

    def text(self, node: Node, label: str) -> str | None:
        """A scalar's text as written (None for an empty value)."""
        from yaml.nodes import ScalarNode

        if not isinstance(node, ScalarNode):
            self.fail(node, "notify-config-shape", f"{label} must be text, not {_kind(node)}")
        if node.tag == _NULL_TAG:
            return None
        return self.without_surrogates(node, label, str(node.value))

    def without_surrogates(self, node: Node, label: str, value: str) -> str:
        """JSON-style escapes such as "\\ud83d\\ude00" reach YAML as two halves of a character:
        joined when they pair up, refused when one stands alone (no SMS could carry it)."""
        if not any("\ud800" <= char <= "\udfff" for char in value):
            return value
        joined = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        if joined.count("\ufffd") > value.count("\ufffd"):
            self.fail(
                node,
                "notify-config-encoding",
                f"{label} has half of a UTF-16 surrogate pair (a \\uD8xx-\\uDFxx escape alone)",
                'Write the character itself, or escape it whole, e.g. "\\U0001F600".',
            )
        return joined

    def required(
        self, root: Node, entries: dict[str, tuple[Node, Node]], key: str, hint: str
    ) -> tuple[Node, str]:
        """The value node and text of a required setting ("" if incomplete ones are allowed)."""
        if key not in entries:
            self.fail(root, "notify-config-missing-key", f"{key} is missing", hint)
        node = entries[key][1]
        value = self.text(node, key) or ""
        if not value and not self.allow_incomplete:
            self.fail(node, "notify-config-empty-value", f"{key} is empty", hint)
        return node, value

    # -- the settings ------------------------------------------------------------------------

    def account_sid(self, root: Node, entries: dict[str, tuple[Node, Node]]) -> str:
        hint = (
            "Put your Twilio Account SID here (Twilio Console > Account Info); it starts with AC."
        )
        node, value = self.required(root, entries, "account_sid", hint)
        if value and not ACCOUNT_SID_PATTERN.fullmatch(value):
            # The value is not echoed: it could be a secret pasted in the wrong place.
            self.fail(
                node,
                "notify-config-account-sid",
                f"account_sid is not a Twilio Account SID (AC followed by 32 hex digits; "
                f"this is {len(value)} characters)",
                _account_sid_hint(value),
            )
        return value

    def api_key_sid(self, entries: dict[str, tuple[Node, Node]]) -> str | None:
        if "api_key_sid" not in entries:
            return None
        node = entries["api_key_sid"][1]
        value = self.text(node, "api_key_sid")
        if value and not API_KEY_SID_PATTERN.fullmatch(value):
            self.fail(
                node,
                "notify-config-api-key-sid",
                "api_key_sid is not a Twilio API key SID (SK followed by 32 hex digits; "
                f"this is {len(value)} characters)",
                "Copy the SID of the API key (not its secret), or remove the line to use the "
                "account's auth token. " + NO_SECRETS_HINT,
            )
        return value or None

    def sender(self, root: Node, entries: dict[str, tuple[Node, Node]]) -> str:
        hint = 'Put the Twilio phone number to send from here, e.g. from: "+15005550006".'
        node, value = self.required(root, entries, "from", hint)
        if value and not E164_PATTERN.fullmatch(value):
            self.fail(
                node,
                "notify-config-number",
                f"from: {value!r} is not an E.164 phone number",
                E164_HINT,
            )
        return value

    def person(self, root: Node, entries: dict[str, tuple[Node, Node]]) -> str:
        hint = 'Name who the button belongs to, e.g. person: "Grandma".'
        node, value = self.required(root, entries, "person", hint)
        problem = _person_problem(value) if value else None
        if problem:
            self.fail(node, "notify-config-person", f"person {problem}", hint)
        return value

    def debounce(self, entries: dict[str, tuple[Node, Node]]) -> int:
        """Seconds within which repeats of one button's click type are one alarm."""
        if "debounce" not in entries:
            return DEFAULT_DEBOUNCE_SECONDS
        node = entries["debounce"][1]
        value = (self.text(node, "debounce") or "").strip().lower().removesuffix("s").strip()
        if not value.isdigit() or int(value) > MAX_DEBOUNCE_SECONDS:
            self.fail(
                node,
                "notify-config-debounce",
                f"debounce must be a number of seconds from 0 to {MAX_DEBOUNCE_SECONDS}",
                "For example: debounce: 5 (a real button or flaky Wi-Fi can publish a click "
                "twice; 0 makes every click its own alarm).",
            )
        return int(value)

    def owner(self, entries: dict[str, tuple[Node, Node]]) -> Owner | None:
        """The owner's SNS contacts: an E.164 number, an e-mail address, or both."""
        from yaml.nodes import MappingNode, ScalarNode

        if "owner" not in entries:
            return None
        key_node, node = entries["owner"]
        hint = 'For example: owner: {sms: "+15551230009", email: "owner@example.com"}.'
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            return None
        if not isinstance(node, MappingNode):
            self.fail(
                node,
                "notify-config-shape",
                f"owner must have sms or email, not {_kind(node)}",
                hint,
            )
        found = self.entries(node, "owner", OWNER_KEYS)
        sms = self.text(found["sms"][1], "owner.sms") if "sms" in found else None
        email = self.text(found["email"][1], "owner.email") if "email" in found else None
        if sms is not None:
            sms = sms.strip()
            if not E164_PATTERN.fullmatch(sms):
                self.fail(
                    found["sms"][1],
                    "notify-config-number",
                    f"{sms!r} in owner.sms is not an E.164 phone number",
                    E164_HINT,
                )
        if email is not None:
            email = email.strip()
            if len(email) > EMAIL_MAX_CHARS or not EMAIL_PATTERN.fullmatch(email):
                self.fail(
                    found["email"][1],
                    "notify-config-email",
                    f"{email[:80]!r} in owner.email is not an e-mail address",
                    'Write one address, e.g. email: "owner@example.com".',
                )
        if not sms and not email:
            self.fail(key_node, "notify-config-shape", "owner has neither sms nor email", hint)
        return Owner(sms=sms or None, email=email or None)

    def clicks(
        self, root: Node, entries: dict[str, tuple[Node, Node]], sender: str, person: Details
    ) -> dict[str, ClickSettings]:
        from yaml.nodes import MappingNode, ScalarNode

        nobody_hint = NOBODY_HINT
        if "clicks" not in entries:
            self.fail(root, "notify-config-missing-key", "clicks is missing", nobody_hint)
        node = entries["clicks"][1]
        if isinstance(node, MappingNode):
            found = self.entries(node, "clicks", CLICK_TYPES)
        elif isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            found = {}
        else:
            self.fail(
                node,
                "notify-config-shape",
                f"clicks must map click types to what they do, not {_kind(node)}",
                nobody_hint,
            )
        clicks = {
            click: self.click(click, *found[click], sender=sender, person=person)
            for click in CLICK_TYPES
            if click in found
        }
        return clicks

    def click(
        self,
        click: str,
        key_node: Node,
        node: Node,
        sender: str,
        person: str | Details,
        base: ClickSettings | None = None,
        where: str = "",
    ) -> ClickSettings:
        """One click type's settings; with ``base`` (a button's section over the defaults),
        what it does not say is the default's."""
        from yaml.nodes import MappingNode, ScalarNode

        where = where or f"clicks.{click}"
        hint = "See the template: `iotbutton notify init --force` writes a fresh one."
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            self.fail(key_node, "notify-config-shape", f"{where} is empty", hint)
        if not isinstance(node, MappingNode):
            self.fail(
                node,
                "notify-config-shape",
                f"{where} must have sms, call and message, not {_kind(node)}",
                hint,
            )
        entries = self.entries(node, where, CLICK_KEYS)
        say = base.say if base is not None else PLAIN_SAY
        if "say" in entries:
            from iotbutton_cli.notify import say_config

            say = say_config.parse(self, entries["say"][1], where)
        inherited = {"sms": base.sms, "call": base.call} if base is not None else {}
        numbers = {
            channel: self.numbers(entries[channel][1], f"{where}.{channel}", sender)
            if channel in entries
            else inherited.get(channel, ())
            for channel in CHANNELS
        }
        if sum(len(listed) for listed in numbers.values()) > MAX_RECIPIENTS:
            self.fail(
                key_node,
                "notify-config-too-many",
                f"{where} messages more than {MAX_RECIPIENTS} numbers",
                f"Keep each click type to {MAX_RECIPIENTS} numbers (SMS and calls together).",
            )
        if "message" not in entries and base is None:
            self.fail(
                key_node,
                "notify-config-missing-key",
                f"{where}.message is missing",
                'Add the text to send, e.g. message: "{person} pressed the button at {time}."',
            )
        if "message" in entries:
            message = self.message(
                entries["message"][1], f"{where}.message", click, person, numbers
            )
        else:
            assert base is not None
            message = base.message
            self.known_fields(key_node, f"{where} (its message)", message, person, where)
        voice = base.voice if base is not None else None
        if voice is not None and "voice" not in entries:
            self.known_fields(key_node, f"{where} (its voice text)", voice, person, where)
        if "voice" in entries:
            spoken = {"sms": (), "call": numbers["call"] or ("voice",)}
            voice = self.message(entries["voice"][1], f"{where}.voice", click, person, spoken)
        escalation = base.escalation if base is not None else None
        if escalation is not None and "escalation" not in entries:
            self.known_fields(
                key_node, f"{where} (its exhausted text)", escalation.exhausted, person, where
            )
            overlap = [n for n in escalation.numbers if n in numbers["call"]]
            if overlap:
                self.fail(
                    key_node,
                    "notify-config-escalation",
                    f"{overlap[0]} is in {where}.call and in its escalation: it would get two "
                    "calls at once",
                    "Keep the number in the escalation only: it asks for a 1.",
                )
        if "escalation" in entries:
            from iotbutton_cli.notify import escalation_config

            escalation = escalation_config.parse(
                self,
                *entries["escalation"],
                where,
                sender,
                person,
                render(voice or message, worst_case_fields(person, click, voice or message)),
                numbers["call"],
            )
        if (
            escalation is not None
            and len(escalation.numbers) + sum(map(len, numbers.values())) > MAX_RECIPIENTS
        ):
            self.fail(
                key_node,
                "notify-config-too-many",
                f"{where} reaches more than {MAX_RECIPIENTS} numbers",
                f"Keep each click type to {MAX_RECIPIENTS} numbers (escalation included).",
            )
        from iotbutton_cli.notify import hooks_config

        webhooks = base.webhooks if base is not None else ()
        if "webhook" in entries:
            webhooks = hooks_config.parse_webhooks(self, entries["webhook"][1], where)
        slack = base.slack if base is not None else ()
        if "slack" in entries:
            slack = hooks_config.parse_slack(self, entries["slack"][1], where)
        return ClickSettings(
            sms=numbers["sms"],
            call=numbers["call"],
            message=message,
            escalation=escalation,
            voice=voice,
            webhooks=webhooks,
            slack=slack,
            say=say,
        )

    def numbers(self, node: Node, where: str, sender: str) -> tuple[str, ...]:
        from yaml.nodes import ScalarNode, SequenceNode

        if isinstance(node, SequenceNode):
            items = list(node.value)
        elif isinstance(node, ScalarNode):
            items = [] if node.tag == _NULL_TAG else [node]  # one bare number is a list of one
        else:
            self.fail(node, "notify-config-shape", f"{where} must be a list of phone numbers")
        numbers = []
        for item in items:
            number = self.text(item, f"an entry of {where}")
            if not number:
                self.fail(item, "notify-config-number", f"{where} has an empty entry", E164_HINT)
            if not E164_PATTERN.fullmatch(number):
                self.fail(
                    item,
                    "notify-config-number",
                    f"{number!r} in {where} is not an E.164 phone number",
                    E164_HINT,
                )
            if number == sender:
                self.fail(
                    item,
                    "notify-config-number",
                    f"{number} in {where} is the from number",
                    "Twilio cannot send a number a message or call from itself (error 21266).",
                )
            numbers.append(number)
        return tuple(numbers)

    def message(
        self,
        node: Node,
        where: str,
        click: str,
        person: str | Details,
        numbers: Mapping[str, tuple[str, ...]],
    ) -> str:
        message = self.text(node, where)
        if not message or not message.strip():
            self.fail(node, "notify-config-template", f"{where} is empty", TEMPLATE_HINT)
        if len(message) > SMS_MAX_CHARS * 2:  # whatever it is for: a template is not a book
            self.fail(
                node,
                "notify-config-too-long",
                f"{where} is {len(message):,} characters; a message is at most "
                f"{SMS_MAX_CHARS * 2:,}",
                "Shorten it: an SMS holds 1600 characters once filled in.",
            )
        try:
            check_template(message)
        except TemplateError as exc:
            self.fail(node, "notify-config-template", f"{where}: {exc}", TEMPLATE_HINT)
        self.known_fields(node, where, message, person)
        filled = render(message, worst_case_fields(person, click, message))
        if numbers["sms"] and sms_length(filled) > SMS_MAX_CHARS:
            self.fail(
                node,
                "notify-config-too-long",
                f"{where} can be {sms_length(filled)} characters long once filled in; "
                f"an SMS holds at most {SMS_MAX_CHARS}",
                "Shorten the message (the check assumes a 128-character {serial}).",
            )
        if numbers["call"] and len(twiml(filled)) > TWIML_MAX_CHARS:
            self.fail(
                node,
                "notify-config-too-long",
                f"{where} makes a call's TwiML {len(twiml(filled))} characters long once "
                f"filled in; Twilio allows at most {TWIML_MAX_CHARS}",
                "Shorten the message; each &, < and > takes 4 or 5 characters in TwiML.",
            )
        return message

    def known_fields(
        self, node: Node, where: str, template: str, person: str | Details, whose: str = ""
    ) -> None:
        """Every {fields.NAME} the template uses is a field of the button(s) it is for."""
        if isinstance(person, Details) and not person.check_fields:
            return
        fields = person.fields if isinstance(person, Details) else {}
        missing = [name for name in free_fields_used(template) if name not in fields]
        if missing:
            self.fail(
                node,
                "notify-config-template",
                f"{where} uses {{fields.{missing[0]}}}, but {whose or 'the top-level fields:'} "
                f"has no field {missing[0]!r}",
                f"Add it under fields:, e.g. fields: {{{missing[0]}: ...}}, or remove it.",
            )


def _nesting_problem(text: str) -> int | None:
    """The line where flow collections ([...], {...}) nest deeper than MAX_NESTING, if they do.

    PyYAML composes recursively, so thousands of levels would crash it; block nesting is bounded
    by indentation, flow nesting is not, and is counted here before parsing. Brackets inside a
    quoted scalar (a message's literal ``{{``) and in comments do not count; a quote opens a
    scalar only where YAML starts one (after a space, ``:``, ``,``, ``[``, ``{``, ``-`` or at a
    line's start), so an apostrophe in plain text is text. (Brackets in plain text still count:
    a false alarm needs more than MAX_NESTING of them open at once; a guard this misses is
    caught as RecursionError.)
    """
    depth = 0
    line = 1
    quote = ""  # the quote of the scalar being read, if any
    previous = "\n"
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\n":
            line += 1
        if quote == '"':
            if char == "\\":
                index += 1  # the escaped character
            elif char == '"':
                quote = ""
        elif quote == "'":
            if char == "'":
                if text[index + 1 : index + 2] == "'":
                    index += 1  # '' is a quote inside
                else:
                    quote = ""
        elif char in "'\"" and previous in " \t\n:,[{-":
            quote = char
        elif char == "#" and previous in " \t\n":
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
        previous = char
        index += 1
    return None


def _kind(node: Node) -> str:
    from yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "text"


# -- the Twilio secret -----------------------------------------------------------------------


def resolve_secret(
    config: NotifyConfig,
    environ: Mapping[str, str] = os.environ,
    prompt: Callable[[str], str] | None = None,
    *,
    interactive: bool | None = None,
) -> TwilioSecret:
    """The Twilio credential to store for the notifier; the value is never logged or printed.

    In order: ``TWILIO_API_SECRET`` with the API key SID from ``TWILIO_API_KEY`` (which wins over
    the file's ``api_key_sid``) or the file; else ``TWILIO_AUTH_TOKEN`` with the account SID;
    else ``prompt(question)`` (a hidden-input prompt) when stdin is a terminal
    (``interactive``: None asks ``sys.stdin.isatty()``); else a usage error naming the variables.
    """
    api_key = (environ.get(API_KEY_ENV) or "").strip()
    api_secret = (environ.get(API_SECRET_ENV) or "").strip()
    auth_token = (environ.get(AUTH_TOKEN_ENV) or "").strip()
    if api_key and not API_KEY_SID_PATTERN.fullmatch(api_key):
        raise usage_error(
            "twilio-bad-api-key",
            f"{API_KEY_ENV} is not an API key SID (SK followed by 32 hex digits).",
            f"Put the key's SID in {API_KEY_ENV} and its secret in {API_SECRET_ENV}.",
        )
    if api_secret:
        key_sid = api_key or config.api_key_sid
        if not key_sid:
            raise usage_error(
                "twilio-no-api-key",
                f"{API_SECRET_ENV} is set, but there is no API key SID to go with it.",
                f"Set {API_KEY_ENV} to the key's SID (SK...), or add api_key_sid to {config.path}.",
            )
        return TwilioSecret(key_sid, api_secret, API_SECRET_ENV)
    if api_key:
        raise usage_error(
            "twilio-no-api-secret",
            f"{API_KEY_ENV} is set, but {API_SECRET_ENV} is not.",
            f"Set {API_SECRET_ENV} to the API key's secret too (or unset {API_KEY_ENV} and set "
            f"{AUTH_TOKEN_ENV}).",
        )
    if auth_token:
        env_account = (environ.get(ACCOUNT_SID_ENV) or "").strip()
        if env_account and env_account != config.account_sid:
            raise usage_error(
                "twilio-account-mismatch",
                f"{ACCOUNT_SID_ENV} is {env_account}, but {config.path} names account "
                f"{config.account_sid}: {AUTH_TOKEN_ENV} may belong to the other account.",
                f"Make them agree, or unset {ACCOUNT_SID_ENV}.",
            )
        return TwilioSecret(config.account_sid, auth_token, AUTH_TOKEN_ENV)
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if prompt is not None and interactive:
        if config.api_key_sid:
            question = f"Twilio API key secret for {config.api_key_sid}"
        else:
            question = f"Twilio auth token for {config.account_sid}"
        value = (prompt(question) or "").strip()
        if not value:
            raise usage_error("twilio-no-secret", "No Twilio secret was entered.", _SECRET_VARS)
        return TwilioSecret(config.api_key_sid or config.account_sid, value, "prompt")
    raise usage_error(
        "twilio-no-secret",
        "No Twilio secret: the notifier needs your auth token or an API key secret.",
        _SECRET_VARS,
    )


_SECRET_VARS = (
    f"Set {AUTH_TOKEN_ENV} (Twilio Console > Account Info), or {API_KEY_ENV} and "
    f"{API_SECRET_ENV} for an API key; or run the command in a terminal to be asked."
)


@dataclass(frozen=True)
class ConfigCheck:
    """What ``notify check`` finds: the validated config, and the secret or why there is none."""

    config: NotifyConfig
    secret: TwilioSecret | None
    problem: IotButtonError | None


def check(path: Path | None = None, environ: Mapping[str, str] = os.environ) -> ConfigCheck:
    """Validate notify.yaml and look for the Twilio secret, without prompting or calling AWS."""
    config = load_config(path)
    return ConfigCheck(config, *check_secret_available(config, environ))


def check_secret_available(
    config: NotifyConfig, environ: Mapping[str, str] = os.environ
) -> tuple[TwilioSecret | None, IotButtonError | None]:
    """The secret the environment provides, or why there is none (never prompts)."""
    try:
        return resolve_secret(config, environ, prompt=None, interactive=False), None
    except IotButtonError as error:
        return None, error
