"""The notifier Lambda: turn an AWS IoT button click into Twilio SMS messages and voice calls.

Runs alone inside AWS Lambda (Python 3.13 runtime): standard library plus the runtime's boto3, and
nothing else from iotbutton_cli. Twilio is called over its REST API with urllib (:mod:`.twilio`);
boto3 is imported only when the config or secret must first be read (once per warm container).
What it shares with the CLI (click types, the payload, the messaging config, templates, TwiML) is
in :mod:`.contract`. The package is zipped whole, its modules importing each other relatively,
so the same code runs inside the CLI and inside Lambda.

Entry point: ``notifier_lambda.handler.lambda_handler(event, context)``.

Event. A button publishes ``{"serialNumber", "batteryVoltage", "clickType"}`` to
``iotbutton/<serial>``; iotbutton's topic rules (``SELECT serialNumber, clickType,
batteryVoltage, topic(2) AS topicSerial FROM 'iotbutton/+'``, SQL version 2016-03-23) add the
serial from the topic, so the function gets::

    {"serialNumber": "G030JF0553648RUH", "batteryVoltage": "1650mV", "clickType": "SINGLE",
      "topicSerial": "G030JF0553648RUH", "clickedAt": 1795647840123}

``topicSerial`` names the button: the IoT policy lets a certificate publish only to its own
topic, while the payload is whatever the device wrote, so a stolen certificate cannot speak for
another button. A ``serialNumber`` that disagrees is logged (WARNING) and the topic's serial is
used; an event without ``topicSerial`` (a rule made before iotbutton selected it) falls back to
``serialNumber`` and logs a WARNING saying so.

Malformed events are alarms, never ignored: a button press that produces no message is the
worst failure. An event that is not an object, or lacks fields, still alerts: the serial comes from
``topicSerial``, else ``serialNumber``, else it is shown as "unknown"; a missing or unknown click
type is handled as SINGLE (after a case-insensitive match), with a WARNING; a battery reading of
any type renders as short text or "unknown".

What reaches a message is sanitised and bounded, so that Twilio accepts it whatever the payload
held: a serial that is not an AWS thing name (``^[A-Za-z0-9:_-]{1,128}$``) is shown with each
other character replaced by "?" and cut to 128; the battery is printable text of at most 16
characters; the rendered text (template and person included) has no lone surrogates, no
characters XML 1.0 forbids and no other control characters (tab, newline and carriage return are
kept), and is cut to 1,600 UTF-16 code units for an SMS and to fit 4,000 characters of TwiML for a
call. Log lines are one line each, with anything unprintable escaped.

Environment::

    IOTBUTTON_CONFIG_BUCKET      S3 bucket holding the messaging config
    IOTBUTTON_CONFIG_KEY         S3 key of the messaging config (JSON object)
    IOTBUTTON_SECRET_PARAMETER   SSM SecureString with the Twilio secret (auth token or API key
                                 secret), read with WithDecryption=True
    TWILIO_API_BASE              default https://api.twilio.com (the sandbox points it elsewhere)
    IOTBUTTON_TWILIO_TIMEOUT     seconds per Twilio request, default 10
    IOTBUTTON_ALARM_TABLE        the alarm ledger's DynamoDB table (see :mod:`.alarms`)
    IOTBUTTON_CALLBACK_URL       the function URL Twilio posts delivery receipts to
    IOTBUTTON_OWNER_TOPIC        the SNS topic that tells the owner of a dropped alarm
                                 (read by :mod:`.failures`)
    IOTBUTTON_DATA_ENDPOINT      the iot-data endpoint each click is reported to, on its
                                 thing's shadow (:mod:`.shadow`); unset: it is not

Messaging config (the contract with the deployer; see ``contract.parse_config``)::

    {
      "version": 1,
      "account_sid": "AC…",                 # Twilio account; in the request path
      "api_key_sid": null | "SK…",          # Basic-auth user if set, else account_sid
      "from": "+15005550006",               # Twilio number (E.164)
      "person": "Grandma",                  # who the button belongs to; {person} in templates
      "clicks": {                           # any of SINGLE, DOUBLE, LONG; a missing one is ignored
        "SINGLE": {
          "sms": ["+1…"],                   # optional, default []
          "call": ["+1…"],                  # optional, default []
          "message": "template"             # required; SMS body and the text a call speaks
        }
      }
    }

Templates are ``str.format``-style with exactly the fields in ``TEMPLATE_FIELDS``: ``{person}``,
``{serial}``, ``{click}``, ``{battery}``, ``{time}`` ("2026-11-21 23:04 UTC": when IoT Core
received the click, the rule's ``clickedAt``; the run time, with a WARNING, for an event without
one). ``{{`` and ``}}`` are literal braces; anything else in braces (positional fields,
attributes, indexes, conversions, format specs) is refused. ``contract.render`` and
``contract.check_template`` are the rules, which the CLI's config validator uses too.

The config and secret are cached per warm container, keyed by bucket/key and parameter name; to
change the config, write it under a new key or update the function configuration (either reaches
new containers). A Twilio 20003 (authentication failed) drops the cached secret.

Result (returned and logged as one JSON line)::

    {"serial", "click", "results": [{"channel": "sms"|"call", "to", "status":
     "queued"|"failed"|"skipped-duplicate", "sid"?, "note"?, "error"?: {"code", "message"},
     "attempts"?}], "notes"?: ["what was odd about the event"], "ignored"?: "reason",
     "escalation"?: [{"channel": "call", "to", "step", "status", "sid"?}] | {"error"},
     "joinedEscalation"?: "<alarm id>"}

``serial`` and ``click`` are the values the messages used. ``ignored`` appears only when the config
has nobody for the click type. Any 2xx answer from Twilio means the request was accepted: it is
``queued`` (Twilio's word: what became of it comes later, in a receipt), and when the answer's
body cannot be read (not a JSON object, no sid, not UTF-8, empty) the item has no ``sid`` and a
``note`` saying so.

Retries and duplicates. Each Twilio request is tried up to ``twilio.MAX_ATTEMPTS`` times with
exponential backoff and jitter on HTTP 429, 5xx, Twilio code 20429 and network errors/timeouts,
within the Lambda's remaining time. IoT invokes Lambda asynchronously and Lambda retries a failed
invocation, possibly in another container, and may deliver one event twice: the alarm ledger
(:mod:`.alarms`, the DynamoDB table ``IOTBUTTON_ALARM_TABLE`` names) makes one click one alarm
(repeats within ``debounce_seconds`` included) and claims each recipient before sending, so a
recipient that got the message is ``skipped-duplicate`` on any retry. The invocation raises
``DeliveryIncomplete`` at the end only if some recipient failed in a way a retry could fix
(throttling, 5xx, network, authentication); errors a retry cannot fix (invalid or unsubscribed
number, unverified trial number, ...) are reported in the result and logged at ERROR level, and do
not raise, because a retry would only repeat them.

Limits, stated plainly: Twilio's Messages and Calls create API takes no idempotency key (its API
description has none), so a request that timed out may have reached Twilio and is retried, which
can duplicate. Without the table (an older deploy, or the table unreachable: logged at ERROR), what
Twilio accepted is remembered in this container's memory only.
"""

from __future__ import annotations

import json
import logging
import os
import string
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from . import alarms, battery, escalation, escalation_ledger, receipts, shadow, twilio, webhooks
from .contract import (
    ALARM_TABLE_ENV,
    BATTERY_FIELD,
    CALLBACK_ALARM_PARAMETER,
    CALLBACK_ATTEMPT_PARAMETER,
    CALLBACK_URL_ENV,
    CLICK_FIELD,
    CLICKED_AT_FIELD,
    CONFIG_BUCKET_ENV,
    CONFIG_KEY_ENV,
    FIELD_PREFIX,
    LOOPBACK_HOOKS_ENV,
    OWNER_TOPIC_ENV,
    PLAIN_SAY,
    RELEASE_EVENT_KEY,
    SECRET_PARAMETER_ENV,
    SERIAL_FIELD,
    TOPIC_SERIAL_FIELD,
    TWILIO_API_BASE_ENV,
    TWILIO_TIMEOUT_ENV,
    ClickConfig,
    ConfigError,
    MessagingConfig,
    QuietHours,
    battery_mv,
    click_type,
    format_time,
    parse_config,
    render,
    twiml,
)
from .hook_settings import (
    HOOK_CHANNELS,
    SLACK_CHANNEL,
    WEBHOOK_CHANNEL,
    HookSettingsError,
    StoredSecret,
    split_secret,
)
from .text import REPLACEMENT, UNSAFE_IN_MESSAGE, log, printable
from .twilio import AUTH_FAILED_CODE, TWILIO_ERROR_MEANINGS, TWILIO_TEXT_MAX_CHARS, TwilioOutcome

DEFAULT_TIMEOUT_SECONDS = 10.0
SERIAL_MAX_CHARS = 128
SERIAL_CHARS = frozenset(string.ascii_letters + string.digits + ":_-")  # AWS thing names
BATTERY_MAX_CHARS = 16
LOGGED_VALUE_MAX_CHARS = 40
UNKNOWN = "unknown"
SAFETY_MARGIN_SECONDS = 1.0
MAX_WORKERS = 8
EARLIEST_CLICK = 1_420_070_400  # 2015-01-01 UTC, in seconds: AWS IoT did not exist before

_config_cache: dict[tuple[str, str], MessagingConfig] = {}
_secret_cache: dict[str, StoredSecret] = {}
_clients: dict[str, Any] = {}
_remembered = alarms.MemoryLedger()  # what this container sent, when the table is unreachable
_cache_lock = threading.Lock()


class DeliveryIncomplete(RuntimeError):
    """Raised after sending so that Lambda retries; ``result`` holds the per-recipient report."""

    def __init__(self, result: dict[str, Any]) -> None:
        failed = [item["to"] for item in result["results"] if item["status"] == "failed"]
        message = f"delivery failed for {len(failed)} recipient(s): {', '.join(failed)}"
        escalated = result.get("escalation")
        if isinstance(escalated, dict) and escalated.get("error"):
            message += f"; {escalated['error']}"
        super().__init__(message)
        self.result = result


# -- event and settings ----------------------------------------------------------------------


@dataclass(frozen=True)
class ButtonEvent:
    """A click as the messages tell it: every field already safe to put in a message."""

    serial: str
    click: str
    battery: str
    # When IoT Core received the click (ms since the epoch); None without a usable clickedAt.
    clicked_ms: int | None = None
    notes: tuple[str, ...] = ()  # what was not as a button sends it; logged as warnings

    @property
    def clicked_at(self) -> datetime | None:
        if self.clicked_ms is None:
            return None
        return datetime.fromtimestamp(self.clicked_ms / 1000, timezone.utc)


@dataclass(frozen=True)
class LambdaSettings:
    bucket: str
    key: str
    secret_parameter: str
    api_base: str
    timeout: float
    alarm_table: str | None = None  # None: a deploy from before the ledger; memory only
    callback_url: str | None = None  # the function URL Twilio posts receipts to; None: none
    owner_topic: str | None = None  # the SNS topic that tells the owner of a dropped alarm
    loopback_hooks: bool = False  # the sandbox's deploy: webhooks may go to loopback

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> LambdaSettings:
        names = (CONFIG_BUCKET_ENV, CONFIG_KEY_ENV, SECRET_PARAMETER_ENV)
        missing = [name for name in names if not environ.get(name)]
        if missing:
            raise ConfigError(f"environment variable(s) not set: {', '.join(missing)}")
        raw_timeout = environ.get(TWILIO_TIMEOUT_ENV) or str(DEFAULT_TIMEOUT_SECONDS)
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigError(f"{TWILIO_TIMEOUT_ENV} is not a number: {raw_timeout!r}") from None
        if timeout <= 0:
            raise ConfigError(f"{TWILIO_TIMEOUT_ENV} must be positive")
        api_base = (environ.get(TWILIO_API_BASE_ENV) or twilio.DEFAULT_API_BASE).rstrip("/")
        if urllib.parse.urlsplit(api_base).scheme not in ("https", "http"):
            raise ConfigError(f"{TWILIO_API_BASE_ENV} must be an http(s) URL: {api_base!r}")
        return cls(
            bucket=environ[CONFIG_BUCKET_ENV],
            key=environ[CONFIG_KEY_ENV],
            secret_parameter=environ[SECRET_PARAMETER_ENV],
            api_base=api_base,
            timeout=timeout,
            alarm_table=environ.get(ALARM_TABLE_ENV) or None,
            callback_url=environ.get(CALLBACK_URL_ENV) or None,
            owner_topic=environ.get(OWNER_TOPIC_ENV) or None,
            loopback_hooks=environ.get(LOOPBACK_HOOKS_ENV) == "1",
        )


class _Missing:
    """A field the event does not have (distinct from a JSON null)."""


MISSING = _Missing()


def parse_event(event: object) -> ButtonEvent:
    """The click an event reports, whatever it holds: an odd event is still an alarm."""
    notes: list[str] = []
    if isinstance(event, dict):
        fields: Mapping[str, object] = event
    else:
        fields = {}
        notes.append(f"event is not a JSON object ({type(event).__name__}); alerting anyway")
    return ButtonEvent(
        serial=event_serial(fields, notes),
        click=event_click(fields.get(CLICK_FIELD, MISSING), notes),
        battery=battery_text(fields.get(BATTERY_FIELD, MISSING)),
        clicked_ms=event_time(fields.get(CLICKED_AT_FIELD, MISSING), notes),
        notes=tuple(notes),
    )


def event_time(value: object, notes: list[str]) -> int | None:
    """The rule's ``clickedAt`` (ms since the epoch); None, with a note, if absent or not a
    plausible time (before 2015, when AWS IoT began, or a day ahead of this clock)."""
    if value is MISSING:
        notes.append(
            "event has no clickedAt (a topic rule made before iotbutton selected timestamp()?): "
            "{time} is when the function ran; `iotbutton notify deploy` updates the rule"
        )
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000.0
        if EARLIEST_CLICK <= seconds <= datetime.now(timezone.utc).timestamp() + 86_400:
            return int(value)
    notes.append(f"clickedAt {shown_value(value)} is not a time; {{time}} is when the function ran")
    return None


def event_serial(fields: Mapping[str, object], notes: list[str]) -> str:
    """The topic's serial (the rule's ``topicSerial``); the payload's only from an older rule."""
    claimed = fields.get(SERIAL_FIELD, MISSING)
    if TOPIC_SERIAL_FIELD in fields:
        topic_serial = fields[TOPIC_SERIAL_FIELD]
        serial = shown_serial(topic_serial, TOPIC_SERIAL_FIELD, notes)
        if claimed is not MISSING and claimed != topic_serial:
            notes.append(
                f"payload serialNumber {shown_serial(claimed)!r} differs from the topic's "
                f"{serial!r}; handled as the topic's button"
            )
        return serial
    if claimed is MISSING:
        notes.append("event has neither topicSerial nor serialNumber; serial shown as unknown")
        return UNKNOWN
    notes.append(
        "event has no topicSerial (a topic rule made before iotbutton selected it?): using the "
        "payload's serialNumber, which the device wrote itself; `iotbutton notify deploy` "
        "updates the rule"
    )
    return shown_serial(claimed, SERIAL_FIELD, notes)


def shown_serial(value: object, name: str | None = None, notes: list[str] | None = None) -> str:
    """A serial safe in any message: an AWS thing name as it is; anything else with each other
    character replaced by "?" and cut to 128, or "unknown" if it is not a non-empty string."""
    if not isinstance(value, str) or not value:
        shown = UNKNOWN
    else:
        cut = value[:SERIAL_MAX_CHARS]
        shown = "".join(char if char in SERIAL_CHARS else REPLACEMENT for char in cut)
        if shown == value:
            return shown
    if notes is not None:
        notes.append(f"{name} {shown_value(value)} is not a valid serial; shown as {shown!r}")
    return shown


def event_click(value: object, notes: list[str]) -> str:
    """SINGLE, DOUBLE or LONG; anything else is handled as SINGLE rather than dropped."""
    click = click_type(value)
    if click is not None:
        if click != value:
            notes.append(f"click type {shown_value(value)} handled as {click}")
        return click
    notes.append(
        f"click type {shown_value(value)} is not SINGLE, DOUBLE or LONG; handled as SINGLE"
    )
    return "SINGLE"


def battery_text(value: object) -> str:
    """Short printable text for any battery reading, or "unknown"."""
    if isinstance(value, str) and value.strip():
        return printable(value.strip(), BATTERY_MAX_CHARS)
    if isinstance(value, int) and not isinstance(value, bool):
        # Bounded before str(): a huge int takes long to print, or refuses to.
        return str(value) if abs(value) < 10**BATTERY_MAX_CHARS else UNKNOWN
    if isinstance(value, float):
        text = str(value)
        return text if len(text) <= BATTERY_MAX_CHARS else UNKNOWN
    return UNKNOWN


def shown_value(value: object) -> str:
    """A payload value for the log: a short quoted string, or what kind of value it is."""
    if value is MISSING:
        return "(missing)"
    if isinstance(value, str):
        return repr(printable(value, LOGGED_VALUE_MAX_CHARS))
    return f"({type(value).__name__})"


def quiet_hours_now(config: MessagingConfig, event: ButtonEvent) -> QuietHours | None:
    """The quiet hours the click falls in, if it is a SINGLE or DOUBLE (LONG always rings)."""
    return config.quiet_at(event.click, event.clicked_at or datetime.now(timezone.utc))


def battery_warning(
    config: MessagingConfig,
    event: ButtonEvent,
    alarm_id: str,
    table: alarms.TableLedger | None,
    client: twilio.TwilioClient,
) -> dict[str, Any] | None:
    """Tell the config's battery numbers of a low battery, once per period per button."""
    mv = battery_mv(event.battery)
    settings = config.battery
    if settings is None or mv is None or mv >= settings.warn_below_mv:
        return None
    if table is None:
        return battery.result(mv, [], "not told: the alarm table is needed to tell it once")
    try:
        if not battery.due(table, event.serial, alarm_id, mv, settings.every_seconds):
            return battery.result(mv, [], "told within the period already")
        text = battery.warning(config.person, event.serial, mv, settings.warn_below_mv)
        told, tried = [], 0
        for to in dict.fromkeys(settings.notify):
            claim = table.claim(alarm_id, battery.CHANNEL, to)
            if not isinstance(claim, alarms.Claimed):
                continue
            tried += 1
            outcome = send_safely(client, Delivery("sms", to), config.sender, text)
            table.record(alarm_id, battery.CHANNEL, to, outcome)
            if outcome.ok:
                told.append(to)
            else:
                log_twilio_failure(Delivery("sms", to), outcome)
        if tried and not told:  # nobody heard: the next low click tries again
            battery.release(table, event.serial, alarm_id)
    except alarms.LedgerUnavailable as exc:
        # The click itself went out; a warning must not make Lambda send it all again.
        log(logging.ERROR, "alarm ledger unavailable (%s): the low battery is not told", exc)
        return battery.result(mv, [], "not told: the alarm table could not be reached")
    return battery.result(mv, told)


def click_texts(click: ClickConfig, config: MessagingConfig, event: ButtonEvent) -> dict[str, str]:
    """What an SMS says and what a call says (its voice text, else the message)."""
    return {
        "sms": message_text(click.message, config, event),
        "call": message_text(click.spoken, config, event),
    }


def message_text(template: str, config: MessagingConfig, event: ButtonEvent) -> str:
    """The filled-in message with everything XML or a phone cannot carry replaced by "?"."""
    filled = render(template, template_values(config, event))
    return UNSAFE_IN_MESSAGE.sub(REPLACEMENT, filled).strip()  # an empty {notes} at the end


def _client(service: str) -> Any:
    """A cached boto3 client; boto3 is imported here, not at module import."""
    with _cache_lock:
        if service not in _clients:
            import boto3

            # botocore logs response bodies at DEBUG, the decrypted secret included, and
            # Lambda's log-level setting can put the root logger at DEBUG: hold botocore at
            # WARNING (INFO would log "Found credentials" on every cold start).
            logging.getLogger("botocore").setLevel(logging.WARNING)
            _clients[service] = boto3.client(service)
        return _clients[service]


def load_config(settings: LambdaSettings) -> MessagingConfig:
    cache_key = (settings.bucket, settings.key)
    cached = _config_cache.get(cache_key)
    if cached is not None:
        return cached
    try:
        response = _client("s3").get_object(Bucket=settings.bucket, Key=settings.key)
        document = json.loads(response["Body"].read())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"s3://{settings.bucket}/{settings.key} is not JSON: {exc}") from None
    config = parse_config(document)
    _config_cache[cache_key] = config
    return config


def stored_secret(settings: LambdaSettings) -> StoredSecret:
    """The SSM parameter's value: the Twilio secret, and any webhook and Slack secrets."""
    cached = _secret_cache.get(settings.secret_parameter)
    if cached is not None:
        return cached
    response = _client("ssm").get_parameter(Name=settings.secret_parameter, WithDecryption=True)
    try:
        secret = split_secret(str(response["Parameter"]["Value"]).strip())
    except HookSettingsError as exc:
        raise ConfigError(f"SSM parameter {settings.secret_parameter}: {exc}") from None
    if not secret.twilio.strip():
        raise ConfigError(f"SSM parameter {settings.secret_parameter} is empty")
    _secret_cache[settings.secret_parameter] = secret
    return secret


def load_secret(settings: LambdaSettings) -> str:
    """The Twilio secret (auth token or API key secret)."""
    return stored_secret(settings).twilio.strip()


def hook_sender(settings: LambdaSettings, context: object) -> webhooks.HookSender:
    """What posts this invocation's webhooks and Slack messages, bounded by its time left."""
    return webhooks.HookSender(
        secrets=stored_secret(settings).hooks,
        timeout=settings.timeout,
        deadline=invocation_deadline(context),
        allow_loopback=settings.loopback_hooks,
    )


def webhook_payload(
    config: MessagingConfig, event: ButtonEvent, alarm_id: str, message: str
) -> dict[str, Any]:
    """The click as a webhook gets it: the Standard Webhooks envelope around the alarm."""
    moment = event.clicked_at or datetime.now(timezone.utc)
    stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data: dict[str, Any] = {
        "alarm": alarm_id,
        "serial": event.serial,
        "click": event.click,
        "person": config.person,
        "battery": event.battery,
        "batteryMv": battery_mv(event.battery),
        "time": format_time(moment, config.timezone, config.timezone_rules),
        "clickedAt": stamp if event.clicked_at else None,
        "message": message,
    }
    data.update({k: v for k, v in (("address", config.address), ("notes", config.notes)) if v})
    if config.fields:
        data["fields"] = dict(config.fields)
    return {"type": webhooks.EVENT_TYPE, "timestamp": stamp, "data": data}


def forget_secret(settings: LambdaSettings) -> None:
    _secret_cache.pop(settings.secret_parameter, None)


def reset_caches() -> None:
    """Forget config, secret, boto3 clients and delivery record (for tests)."""
    with _cache_lock:
        _config_cache.clear()
        _secret_cache.clear()
        _clients.clear()
    _remembered.clear()
    webhooks.forget_tokens()


def alarm_table(settings: LambdaSettings) -> alarms.TableLedger | None:
    """The alarm table, if the deploy made one."""
    if settings.alarm_table is None:
        return None
    return alarms.TableLedger(settings.alarm_table, _client("dynamodb"))


def ledger_for(settings: LambdaSettings) -> alarms.MemoryLedger | alarms.FallingBackLedger:
    """The alarm table if the deploy made one; this container's memory otherwise."""
    table = alarm_table(settings)
    return _remembered if table is None else alarms.FallingBackLedger(table, _remembered)


# -- the handler -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    channel: str
    to: str


def listed_deliveries(click: ClickConfig) -> list[Delivery]:
    """Every (channel, recipient) in config order, repeats included."""
    return (
        [Delivery("sms", to) for to in click.sms]
        + [Delivery("call", to) for to in click.call]
        + [Delivery(WEBHOOK_CHANNEL, hook.target) for hook in click.webhooks]
        + [Delivery(SLACK_CHANNEL, slack.target) for slack in click.slack]
    )


@dataclass
class Senders:
    """What sends one alarm's deliveries: Twilio for SMS and calls, HTTP for webhooks and
    Slack, with the texts and the click's JSON already made."""

    client: twilio.TwilioClient
    sender: str
    texts: Mapping[str, str]
    hooks: webhooks.HookSender | None = None
    click: ClickConfig | None = None
    alarm_id: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)

    def send(self, delivery: Delivery, status_callback: str | None = None) -> TwilioOutcome:
        """One delivery; a bug here must not stop the others' being recorded (an unrecorded
        delivery would be sent again on Lambda's retry)."""
        try:
            if delivery.channel in HOOK_CHANNELS:
                return self._send_hook(delivery)
            return self.client.send(
                delivery.channel,
                delivery.to,
                self.sender,
                self.texts[delivery.channel],
                status_callback,
                self.click.say if self.click is not None else PLAIN_SAY,
            )
        except Exception as exc:
            # A hook's exception can quote its URL or a header, which may be secrets.
            shown = "" if delivery.channel in HOOK_CHANNELS else f": {exc}"
            problem = f"internal error: {type(exc).__name__}{shown}"
            return TwilioOutcome(
                ok=False, message=printable(problem, TWILIO_TEXT_MAX_CHARS), retryable=True
            )

    def _send_hook(self, delivery: Delivery) -> TwilioOutcome:
        if self.hooks is None or self.click is None:
            return TwilioOutcome(ok=False, message="no hook settings for this delivery")
        if delivery.channel == WEBHOOK_CHANNEL:
            hook = next((h for h in self.click.webhooks if h.target == delivery.to), None)
            if hook is None:
                return TwilioOutcome(ok=False, message="this webhook is no longer in the config")
            return self.hooks.post_webhook(hook, self.alarm_id, self.payload)
        slack = next((s for s in self.click.slack if s.target == delivery.to), None)
        if slack is None:
            return TwilioOutcome(ok=False, message="this Slack post is no longer in the config")
        return self.hooks.post_slack(slack, self.texts["sms"])


Ledger = alarms.MemoryLedger | alarms.FallingBackLedger


def deliver(
    deliveries: Iterable[Delivery],
    senders: Senders,
    ledger: Ledger,
    alarm_id: str,
    callback_for: Callable[[int | None], str | None] | None = None,
) -> dict[Delivery, tuple[dict[str, Any], TwilioOutcome | None]]:
    """Send, concurrently, to every recipient this alarm has not reached yet; each delivery is
    claimed in the ledger before its request, so no other attempt sends it too."""
    results: dict[Delivery, tuple[dict[str, Any], TwilioOutcome | None]] = {}

    def claim_and_send(delivery: Delivery) -> tuple[dict[str, Any], TwilioOutcome | None]:
        claimed = ledger.claim(alarm_id, delivery.channel, delivery.to)
        if isinstance(claimed, alarms.Earlier):
            return _earlier_item(delivery, claimed), None
        callback = callback_for(claimed.attempt) if callback_for else None
        hooked = delivery.channel in HOOK_CHANNELS  # no Twilio receipts for these
        outcome = senders.send(delivery, None if hooked else callback)
        ledger.record(alarm_id, delivery.channel, delivery.to, outcome)
        return _record_outcome(delivery, outcome), outcome

    listed = list(deliveries)
    if listed:
        workers = min(MAX_WORKERS, len(listed))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="twilio") as pool:
            for delivery, answer in zip(listed, pool.map(claim_and_send, listed), strict=True):
                results[delivery] = answer
    return results


def _earlier_item(delivery: Delivery, earlier: alarms.Earlier) -> dict[str, Any]:
    """A delivery an earlier attempt made (or began: its outcome is then unknown)."""
    if earlier.status == alarms.SENDING:
        note = "an earlier attempt began this delivery and never finished; not sent again"
        return _item(delivery, "skipped-duplicate", note=note)
    return _item(delivery, "skipped-duplicate", sid=earlier.sid)


def send_safely(
    client: twilio.TwilioClient,
    delivery: Delivery,
    sender: str,
    text: str,
    status_callback: str | None = None,
) -> TwilioOutcome:
    """Send one SMS or call (see :meth:`Senders.send`)."""
    return Senders(client, sender, {delivery.channel: text}).send(delivery, status_callback)


def _record_outcome(delivery: Delivery, outcome: TwilioOutcome) -> dict[str, Any]:
    if outcome.ok:
        if outcome.note:
            log(logging.WARNING, "%s to %s: %s", delivery.channel, delivery.to, outcome.note)
        return _item(
            delivery, "queued", sid=outcome.sid, note=outcome.note, attempts=outcome.attempts
        )
    log_twilio_failure(delivery, outcome)
    error = {"code": outcome.code, "message": outcome.message}
    return _item(delivery, "failed", error=error, attempts=outcome.attempts)


def _item(delivery: Delivery, status: str, **extra: Any) -> dict[str, Any]:
    item = {"channel": delivery.channel, "to": delivery.to, "status": status}
    item.update({key: value for key, value in extra.items() if value is not None})
    return item


def log_twilio_failure(delivery: Delivery, outcome: TwilioOutcome) -> None:
    meaning = TWILIO_ERROR_MEANINGS.get(outcome.code or 0)
    code = f"Twilio error {outcome.code}" if outcome.code else "error"
    log(
        logging.WARNING,
        "%s to %s failed after %d attempt(s): %s%s: %s%s",
        delivery.channel,
        delivery.to,
        outcome.attempts,
        code,
        f" ({meaning})" if meaning else "",
        outcome.message,
        f" -- {outcome.more_info}" if outcome.more_info else "",
    )


def twilio_client(
    settings: LambdaSettings, config: MessagingConfig, secret: str, context: object
) -> twilio.TwilioClient:
    """The Twilio client for one invocation, bounded by the time it has left."""
    return twilio.TwilioClient(
        api_base=settings.api_base,
        account_sid=config.account_sid,
        auth_user=config.auth_user,
        secret=secret,
        timeout=settings.timeout,
        deadline=invocation_deadline(context),
    )


def status_callback_url(
    settings: LambdaSettings, config: MessagingConfig, alarm: str, attempt: int | None = None
) -> str | None:
    """Where Twilio reports on one attempt at one of this alarm's deliveries. Twilio signs
    callbacks with the account's auth token, so with an API key (whose secret is all the
    notifier has) there is nothing to check them with, and none are asked for."""
    if settings.callback_url is None or config.api_key_sid is not None:
        return None
    fields = {CALLBACK_ALARM_PARAMETER: alarm}
    if attempt is not None:
        fields[CALLBACK_ATTEMPT_PARAMETER] = str(attempt)
    return f"{settings.callback_url}?{urllib.parse.urlencode(fields)}"


def receipt_handler(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """A request to the function URL: a delivery receipt or an escalation's callback from
    Twilio, or a 403."""
    settings = LambdaSettings.from_environment()
    config = load_config(settings)
    token = load_secret(settings) if config.api_key_sid is None else None

    def on_escalation(query: Mapping[str, str], params: Mapping[str, str]) -> dict[str, Any]:
        return escalation_callback(settings, config, query, params, context)

    return receipts.handle(event, settings.callback_url, token, ledger_for(settings), on_escalation)


def stored_event(stored: Mapping[str, str]) -> ButtonEvent:
    """The click an alarm item records, as its messages tell it."""
    clicked = stored.get("clickedAt", "")
    return ButtonEvent(
        serial=stored.get("serial", UNKNOWN),
        click=stored.get("click", "SINGLE"),
        battery=stored.get("battery") or UNKNOWN,
        clicked_ms=int(clicked) if clicked.isdigit() else None,
    )


def escalator_for(
    settings: LambdaSettings,
    config: MessagingConfig,
    click: ClickConfig,
    event: ButtonEvent,
    alarm_id: str,
    table: alarms.TableLedger,
    client: twilio.TwilioClient,
) -> escalation.Escalator:
    assert click.escalation is not None and settings.callback_url is not None
    return escalation.Escalator(
        ledger=escalation_ledger.EscalationLedger(table),
        client=client,
        escalation=click.escalation,
        alarm_id=alarm_id,
        sender=config.sender,
        person=config.person,
        text=message_text(click.spoken, config, event),
        values=template_values(config, event),
        callback_url=settings.callback_url,
        sms_recipients=click.sms,
        tell_owner=owner_teller(settings),
        zone=config.timezone,
        zone_rules=config.timezone_rules,
        say=click.say,
        settle_after_seconds=twilio.MAX_ATTEMPTS * settings.timeout
        + twilio.BACKOFF_CAP_SECONDS * (twilio.MAX_ATTEMPTS - 1),
    )


def owner_teller(settings: LambdaSettings) -> Callable[[str, str], str | None] | None:
    """A function that publishes to the owner's SNS topic, if the deploy made one."""
    topic = settings.owner_topic
    if topic is None:
        return None

    def tell(subject: str, message: str) -> str | None:
        return tell_owner(topic, subject, message)

    return tell


def tell_owner(topic: str, subject: str, message: str) -> str | None:
    """Publish one message to the owner's topic; its message id."""
    answer = _client("sns").publish(
        TopicArn=topic,
        Subject=subject,
        Message=message,
        # SNS sends Promotional SMS by default: cheapest route, filtered in some countries.
        MessageAttributes={
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}
        },
    )
    return str(answer.get("MessageId") or "") or None


def _stored_escalator(
    settings: LambdaSettings, config: MessagingConfig, alarm_id: str, context: object = None
) -> tuple[escalation.Escalator | None, str]:
    """The escalator of a stored alarm, or None and why there is none."""
    table = alarm_table(settings)
    stored = table.alarm(alarm_id) if table is not None and alarm_id else None
    if table is None or stored is None:
        return None, "no such alarm"
    event = stored_event(stored)
    config = config.for_button(event.serial) or config
    click = config.clicks.get(event.click)
    if click is None or click.escalation is None or settings.callback_url is None:
        return None, f"{event.click} has no escalation"
    client = twilio_client(settings, config, load_secret(settings), context)
    return escalator_for(settings, config, click, event, alarm_id, table, client), ""


def escalation_callback(
    settings: LambdaSettings,
    config: MessagingConfig,
    query: Mapping[str, str],
    params: Mapping[str, str],
    context: object = None,
) -> dict[str, Any]:
    """A signed callback about an escalation's call: its key press (answered with TwiML) or
    its status (answered 204)."""
    alarm_id = query.get(CALLBACK_ALARM_PARAMETER, "")
    position = escalation_ledger.parse_position(query.get(escalation.ESCALATION_PARAMETER, ""))
    escalator, why_not = _stored_escalator(settings, config, alarm_id, context)
    gather = query.get(escalation.EVENT_PARAMETER) == escalation.GATHER_EVENT
    if escalator is None or position is None or not _in_escalation(escalator, position):
        log(logging.WARNING, "escalation callback for %s: %s", printable(alarm_id, 200), why_not)
        if gather:
            return receipts.twiml_answer(twiml("This alarm is not known. Goodbye."))
        return receipts.answer(400)
    if gather:
        spoken = escalator.pressed(
            position, params.get("To", ""), params.get("CallSid", ""), params.get("Digits", "")
        )
        return receipts.twiml_answer(spoken)
    receipt = receipts.receipt_of(params)
    if receipt is None or receipt["channel"] != "call":
        return receipts.answer(400)
    attempt = query.get(CALLBACK_ATTEMPT_PARAMETER, "")
    receipt["channel"] = escalation_ledger.channel_of(position)
    escalator.ledger.table.receipt(
        alarm_id, attempt=int(attempt) if attempt.isdigit() else None, **receipt
    )
    log(
        logging.INFO,
        "escalation %s step %s: call to %s %s%s",
        printable(alarm_id, 200),
        escalation_ledger.position_text(position),
        printable(receipt["to"], 32),
        printable(receipt["status"], 32),
        f" (answered by {printable(receipt['answered_by'], 32)})" if receipt["answered_by"] else "",
    )
    if receipt["status"] in escalation_ledger.CALL_ENDED:
        escalator.call_over(position)
    return receipts.answer(204)


def _in_escalation(escalator: escalation.Escalator, position: tuple[int, int]) -> bool:
    return position[0] < escalator.escalation.rounds and position[1] < len(
        escalator.escalation.steps
    )


ACK_EVENT_KEY = "iotbuttonAck"


def ack_handler(request: Mapping[str, Any], context: object) -> dict[str, Any]:
    """``notify ack``: acknowledge an alarm from a terminal, as a 1 pressed on a call would."""
    settings = LambdaSettings.from_environment()
    config = load_config(settings)
    alarm_id = str(request.get("alarm", ""))
    by = printable(str(request.get("by") or "a terminal"), 100)
    escalator, why_not = _stored_escalator(settings, config, alarm_id, context)
    if escalator is None:
        return finish({"alarm": alarm_id, "acknowledged": False, "ignored": why_not})
    return finish({"alarm": alarm_id, **escalator.acknowledge(by, "terminal")})


RETRY_EVENT_KEY = "iotbuttonRetry"


def is_retry_event(event: object) -> bool:
    """``notify retry``'s event: ``{"iotbuttonRetry": {"alarm": id, "deliveries": [[ch, to]]}}``.
    No click can look like it: iotbutton's rules select the payload's fields by name."""
    return isinstance(event, dict) and isinstance(event.get(RETRY_EVENT_KEY), dict)


def retry_handler(request: Mapping[str, Any], context: object) -> dict[str, Any]:
    """Send an alarm again to the deliveries named that did not get through, and only those:
    each is claimed again in the ledger first, so one that got through meanwhile is skipped."""
    settings = LambdaSettings.from_environment()
    config = load_config(settings)
    ledger = ledger_for(settings)
    alarm_id = str(request.get("alarm", ""))
    table = ledger.table if isinstance(ledger, alarms.FallingBackLedger) else None
    stored = table.alarm(alarm_id) if table is not None and alarm_id else None
    if table is None or stored is None:
        return finish({"alarm": alarm_id, "retry": True, "results": [], "ignored": "no such alarm"})
    event = stored_event(stored)
    own = config.for_button(event.serial)
    if own is None:
        reason = f"button {event.serial} is not in the config, which refuses unlisted buttons"
        return finish({"alarm": alarm_id, "retry": True, "results": [], "ignored": reason})
    config = own
    click = config.clicks.get(event.click)
    if click is not None and quiet_hours_now(config, event) is not None:
        click = click.sms_only()  # the alarm was in quiet hours: nobody is rung for it now
    asked = [
        Delivery(str(pair[0]), str(pair[1]))
        for pair in request.get("deliveries", [])
        if isinstance(pair, (list, tuple)) and len(pair) == 2
    ]
    if click is None:
        return finish(
            {
                **event_result(event, []),
                "alarm": alarm_id,
                "retry": True,
                "ignored": f"no recipients configured for {event.click}",
            }
        )
    claims: dict[Delivery, alarms.Claimed] = {}
    for delivery in dict.fromkeys(asked):
        # Did not get through, or (a delivery the ledger lacks: its attempt failed before it
        # could claim) was never tried.
        claim = table.claim_again(alarm_id, delivery.channel, delivery.to)
        if claim is None:
            first = table.claim(alarm_id, delivery.channel, delivery.to)
            claim = first if isinstance(first, alarms.Claimed) else None
        if claim is not None:
            claims[delivery] = claim
    skipped = [d for d in asked if d not in claims]
    client = twilio_client(settings, config, load_secret(settings), context)
    texts = click_texts(click, config, event)
    senders = Senders(
        client,
        config.sender,
        texts,
        hook_sender(settings, context),
        click,
        alarm_id,
        webhook_payload(config, event, alarm_id, texts["sms"]),
    )
    results = []
    for delivery, claim in claims.items():
        hooked = delivery.channel in HOOK_CHANNELS
        callback = (
            None if hooked else status_callback_url(settings, config, alarm_id, claim.attempt)
        )
        outcome = senders.send(delivery, callback)
        ledger.record(alarm_id, delivery.channel, delivery.to, outcome)
        results.append(_record_outcome(delivery, outcome))
    note = "got through, or is being sent: not sent again"
    results += [_item(delivery, "skipped-duplicate", note=note) for delivery in skipped]
    return finish({**event_result(event, results), "alarm": alarm_id, "retry": True})


def lambda_handler(event: object, context: object) -> dict[str, Any]:
    if receipts.is_function_url_event(event):
        assert isinstance(event, dict)
        return receipt_handler(event, context)
    if is_retry_event(event):
        assert isinstance(event, dict)
        return retry_handler(event[RETRY_EVENT_KEY], context)
    if isinstance(event, dict) and isinstance(event.get(ACK_EVENT_KEY), dict):
        return ack_handler(event[ACK_EVENT_KEY], context)
    if isinstance(event, dict) and isinstance(event.get(RELEASE_EVENT_KEY), dict):
        from .release import release_handler  # quiet hours ended: what they held goes out

        return release_handler(event[RELEASE_EVENT_KEY], context)
    try:
        result = click_handler(event, context)
    except DeliveryIncomplete as incomplete:
        shadow.report_click(parse_event(event), incomplete.result, context, incomplete=True)
        raise
    shadow.report_click(parse_event(event), result, context)  # never fails the click
    return result


def click_handler(event: object, context: object) -> dict[str, Any]:
    """A button's click, as the topic rule delivers it: the alarm's messages."""
    parsed = parse_event(event)
    for note in parsed.notes:
        log(logging.WARNING, "%s", note)
    settings = LambdaSettings.from_environment()
    config = load_config(settings)
    request_id = getattr(context, "aws_request_id", None)
    ledger = ledger_for(settings)
    opened = ledger.open(
        alarms.Click(parsed.serial, parsed.click, parsed.clicked_ms, request_id, parsed.battery),
        config.debounce_seconds,
    )
    if opened.repeat_of is not None:
        reason = (
            f"a repeat of alarm {opened.repeat_of} (the same button and click type within "
            f"{config.debounce_seconds} s)"
        )
        return finish({**ignored_result(parsed, reason), "alarm": opened.alarm_id})
    own = config.for_button(parsed.serial)
    if own is None:
        reason = f"button {parsed.serial} is not in the config, which refuses unlisted buttons"
        return finish({**ignored_result(parsed, reason), "alarm": opened.alarm_id})
    config = own
    click = config.clicks.get(parsed.click)
    if click is None or not click.reaches_anyone:
        reason = f"no recipients configured for {parsed.click}"
        return finish({**ignored_result(parsed, reason), "alarm": opened.alarm_id})

    quiet = quiet_hours_now(config, parsed)
    if quiet is not None and quiet.hold:
        held = hold_click(config, parsed, opened.alarm_id, ledger, quiet)
        if held is not None:
            return held
    return deliver_alarm(settings, config, click, parsed, opened.alarm_id, ledger, context, quiet)


def hold_click(
    config: MessagingConfig, event: ButtonEvent, alarm_id: str, ledger: Ledger, quiet: QuietHours
) -> dict[str, Any] | None:
    """Keep the click for the release when the quiet hours end; None (send it now, SMS only)
    when it cannot be kept: a click nobody will ever hear of is worse than an SMS at night."""
    table = ledger.table if isinstance(ledger, alarms.FallingBackLedger) else None
    until = f"{quiet.end_shown} {config.timezone}"
    if table is None:
        log(logging.ERROR, "quiet hours hold clicks, but there is no alarm table: SMS only")
        return None
    try:
        table.hold(alarm_id, until)
    except alarms.LedgerUnavailable as exc:
        log(logging.ERROR, "alarm ledger unavailable (%s): the click is sent as SMS now", exc)
        return None
    result = {**event_result(event, []), "alarm": alarm_id, "held": f"until {until}"}
    result["quietHours"] = f"{quiet.shown} {config.timezone}: held"
    return finish(result)


def deliver_alarm(
    settings: LambdaSettings,
    config: MessagingConfig,
    click: ClickConfig,
    parsed: ButtonEvent,
    alarm_id: str,
    ledger: Ledger,
    context: object,
    quiet: QuietHours | None = None,
) -> dict[str, Any]:
    """Send one alarm as ``click`` says, SMS only in ``quiet`` hours: a click as it comes, or
    one quiet hours held, when they end. Raises DeliveryIncomplete when a retry could help."""
    if quiet is not None:
        click = click.sms_only()
    texts = click_texts(click, config, parsed)
    try:
        secret = load_secret(settings)
    except Exception:
        # Nothing went out: a press made because nothing happened must not be its repeat.
        ledger.mark_failed(alarm_id)
        raise
    client = twilio_client(settings, config, secret, context)
    table = ledger.table if isinstance(ledger, alarms.FallingBackLedger) else None
    escalates = (
        click.escalation is not None
        and table is not None
        and status_callback_url(settings, config, alarm_id) is not None
    )
    if click.escalation is not None and not escalates:
        # No table or no callbacks to drive it: ring everyone at once rather than nobody.
        log(logging.ERROR, "escalation needs the alarm table and receipts: calling everyone")
        called = tuple(dict.fromkeys((*click.call, *click.escalation.numbers)))
        click = replace(click, call=called, escalation=None)
    listed = listed_deliveries(click)

    def callback_for(attempt: int | None) -> str | None:
        return status_callback_url(settings, config, alarm_id, attempt)

    senders = Senders(
        client,
        config.sender,
        texts,
        hook_sender(settings, context) if click.webhooks or click.slack else None,
        click,
        alarm_id,
        webhook_payload(config, parsed, alarm_id, texts["sms"]),
    )
    unique = list(dict.fromkeys(listed))
    # SMS and calls first, then the escalation's first calls: a slow webhook must not hold up
    # the phones; the webhooks and Slack posts go out after.
    phones = [delivery for delivery in unique if delivery.channel not in HOOK_CHANNELS]
    outcomes = deliver(phones, senders, ledger, alarm_id, callback_for)
    escalated: Any = None
    nobody_rang: escalation.NobodyRang | None = None
    joined = None
    if escalates:
        assert table is not None
        escalator = escalator_for(settings, config, click, parsed, alarm_id, table, client)
        try:
            escalated, joined = escalator.begin(parsed.serial, parsed.click)
        except escalation.NobodyRang as exc:
            # Twilio took none of its calls: Lambda tries the click again, then tells the owner.
            escalated, nobody_rang = {"error": str(exc)}, exc
    hooks = [delivery for delivery in unique if delivery.channel in HOOK_CHANNELS]
    outcomes.update(deliver(hooks, senders, ledger, alarm_id, callback_for))
    result = {**event_result(parsed, report(listed, outcomes)), "alarm": alarm_id}
    if quiet is not None:
        result["quietHours"] = f"{quiet.shown} {config.timezone}: SMS only"
    if escalated is not None:
        result["escalation"] = escalated
    if nobody_rang is not None:
        finish(result, level=logging.ERROR)
        raise DeliveryIncomplete(result) from nobody_rang
    if joined is not None:
        result["joinedEscalation"] = joined
    low = battery_warning(config, parsed, alarm_id, table, client)
    if low is not None:
        result["battery"] = low
    failures = [outcome for _item, outcome in outcomes.values() if outcome and not outcome.ok]
    if any(outcome.code == AUTH_FAILED_CODE for outcome in failures):
        forget_secret(settings)
    finish(result, level=logging.ERROR if failures else logging.INFO)
    if any(outcome.retryable or outcome.code == AUTH_FAILED_CODE for outcome in failures):
        raise DeliveryIncomplete(result)
    return result


def event_result(event: ButtonEvent, results: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {"serial": event.serial, "click": event.click, "results": results}
    if event.notes:
        result["notes"] = list(event.notes)
    return result


def report(
    listed: list[Delivery],
    outcomes: Mapping[Delivery, tuple[dict[str, Any], TwilioOutcome | None]],
) -> list[dict[str, Any]]:
    """Per-recipient results in config order; a number listed twice is a skipped duplicate."""
    items, reported = [], set()
    for delivery in listed:
        if delivery in reported:
            items.append(_item(delivery, "skipped-duplicate"))
        else:
            items.append(outcomes[delivery][0])
            reported.add(delivery)
    return items


def template_values(config: MessagingConfig, event: ButtonEvent) -> dict[str, str]:
    values = {
        "person": config.person,
        "serial": event.serial,
        "click": event.click,
        "battery": event.battery,
        "time": format_time(
            event.clicked_at or datetime.now(timezone.utc), config.timezone, config.timezone_rules
        ),
        "address": config.address,
        "notes": config.notes,
    }
    values.update({f"{FIELD_PREFIX}{name}": value for name, value in config.fields.items()})
    return values


def invocation_deadline(context: object) -> float | None:
    """When this invocation must have finished, on the ``monotonic`` clock, with a margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        millis = float(remaining())
    except (TypeError, ValueError):
        return None
    return twilio.monotonic() + millis / 1000.0 - SAFETY_MARGIN_SECONDS


def ignored_result(event: ButtonEvent, reason: str) -> dict[str, Any]:
    return {**event_result(event, []), "ignored": reason}


def finish(result: dict[str, Any], level: int = logging.INFO) -> dict[str, Any]:
    """Log the result as one JSON line (no secrets in it by construction) and return it."""
    log(level, "%s", json.dumps(result, sort_keys=True, ensure_ascii=False))
    return result


def warm_up(environ: Mapping[str, str] = os.environ) -> bool:
    """Lambda's init phase: import boto3, make the clients and read the config and secret now,
    so that the first click does not wait for them ("initialize SDK clients ... outside of the
    function handler", Lambda's best practices). Whatever fails is left for the invocation
    to meet and report as it always has: True only if everything was read."""
    try:
        settings = LambdaSettings.from_environment(environ)
        load_config(settings)
        stored_secret(settings)
        if settings.alarm_table is not None:
            _client("dynamodb")
        if settings.owner_topic is not None:
            _client("sns")
    except Exception:  # the invocation meets it again, and says what it was
        return False
    return True


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # inside Lambda, not in the CLI or its tests
    warm_up()
