"""Look at and exercise the deployed notifier: show it, invoke it, read its logs, and send the
configured messages from this machine to check numbers and credentials before deploying."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.aws.calls import absent_is_fine, absent_ok
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError, usage_error
from iotbutton_cli.notifier_lambda.contract import (
    CLICK_TYPES,
    DEFAULT_DEBOUNCE_SECONDS,
    button_payload,
)
from iotbutton_cli.notify import rules
from iotbutton_cli.notify.config import NotifyConfig, TwilioSecret
from iotbutton_cli.notify.resources import FUNCTION_LOG_GROUP, FUNCTION_NAME
from iotbutton_cli.registry import kinds

DEFAULT_TEST_SERIAL = "iotbutton-test"
SEND_TIMEOUT_SECONDS = 15.0  # per Twilio request, as the SDK client this replaced waited


def not_deployed() -> IotButtonError:
    return IotButtonError(
        "notifier-not-deployed",
        "The notifier is not deployed in this account and region.",
        "Run `iotbutton notify deploy` first.",
    )


def check_click(click: str) -> str:
    upper = click.upper()
    if upper not in CLICK_TYPES:
        raise usage_error(
            "bad-click", f"Unknown click type {click!r}.", "Use SINGLE, DOUBLE or LONG."
        )
    return upper


# --- show ----------------------------------------------------------------------------------------


@dataclass
class NotifierStatus:
    function_arn: str
    runtime: str
    code_sha256: str
    last_modified: str
    state: str
    config_object: str
    secret_parameter: str
    config: dict[str, Any]
    rules: list[rules.RuleInfo] = field(default_factory=list)


def status(ctx: AppContext) -> NotifierStatus:
    """What is deployed, read from AWS (the config summary comes from the deployed object,
    which holds no secret)."""
    if ctx.namespace.get(kinds.FUNCTIONS, FUNCTION_NAME) is None:
        raise not_deployed()
    found = absent_ok(ctx.client("lambda").get_function, FunctionName=FUNCTION_NAME)
    if found is None:
        raise IotButtonError(
            "notifier-missing",
            f"The registry records {FUNCTION_NAME}, but AWS has no such function.",
            "Run `iotbutton notify deploy` to recreate it.",
        )
    function = found["Configuration"]
    env = function.get("Environment", {}).get("Variables", {})
    bucket, key = env.get("IOTBUTTON_CONFIG_BUCKET", ""), env.get("IOTBUTTON_CONFIG_KEY", "")
    document = _deployed_config(ctx, bucket, key)
    return NotifierStatus(
        function_arn=function["FunctionArn"],
        runtime=function.get("Runtime", ""),
        code_sha256=function["CodeSha256"],
        last_modified=function.get("LastModified", ""),
        state=function.get("State", "Active"),
        config_object=f"s3://{bucket}/{key}",
        secret_parameter=env.get("IOTBUTTON_SECRET_PARAMETER", ""),
        config=_summary(document),
        rules=rules.list_rules(ctx),
    )


def deployed_document(ctx: AppContext, status: NotifierStatus) -> dict[str, Any]:
    """The config document the deployed function reads (``{}`` if its object is gone)."""
    bucket, _, key = status.config_object.removeprefix("s3://").partition("/")
    return _deployed_config(ctx, bucket, key)


def _deployed_config(ctx: AppContext, bucket: str, key: str) -> dict[str, Any]:
    found = absent_ok(ctx.client("s3").get_object, Bucket=bucket, Key=key)
    if found is None:
        return {}
    return dict(json.loads(found["Body"].read()))


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    clicks = document.get("clicks", {})
    return {
        "from": document.get("from"),
        "person": document.get("person"),
        "account_sid": document.get("account_sid"),
        "api_key_sid": document.get("api_key_sid"),
        # What the notifier uses: a config deployed before debounce existed gets the default.
        "debounce_seconds": document.get("debounce_seconds", DEFAULT_DEBOUNCE_SECONDS),
        "clicks": {
            click: {
                "sms": item.get("sms", []),
                "call": item.get("call", []),
                "message": item.get("message", ""),
            }
            # The deployed JSON has sorted keys; show clicks in the button's own order.
            for click, item in sorted(clicks.items(), key=lambda pair: _click_order(pair[0]))
        },
    }


def _click_order(click: str) -> int:
    return CLICK_TYPES.index(click) if click in CLICK_TYPES else len(CLICK_TYPES)


# --- test ----------------------------------------------------------------------------------------


@dataclass
class TestInvocation:
    event: dict[str, str | int]
    payload: Any
    function_error: str | None
    log_tail: str

    @property
    def ok(self) -> bool:
        if self.function_error or not isinstance(self.payload, dict):
            return False
        return all(r.get("status") != "failed" for r in self.payload.get("results", []))


def button_event(serial: str, click: str, battery_mv: int = 1650) -> dict[str, str]:
    """The exact payload an AWS IoT button publishes."""
    return button_payload(serial, click, battery_mv)


def rule_event(serial: str, click: str) -> dict[str, str | int]:
    """What the function receives when that button clicks: the payload plus what iotbutton's
    rules add, ``topic(2) AS topicSerial`` and ``timestamp() AS clickedAt`` (now)."""
    return {
        **button_event(serial, click),
        rules.TOPIC_SERIAL: serial,
        rules.CLICKED_AT: int(time.time() * 1000),
    }


def default_serial(ctx: AppContext) -> str:
    """The only recorded button, if there is exactly one; else a name that says it is a test."""
    things = list(ctx.namespace.items(kinds.THINGS))
    return things[0] if len(things) == 1 else DEFAULT_TEST_SERIAL


def invoke_test(ctx: AppContext, serial: str | None, click: str) -> TestInvocation:
    """Invoke the deployed function synchronously with the event a click gives it through
    iotbutton's rules (``serial`` None: see :func:`default_serial`)."""
    # Bad input first, before any AWS call.
    event = rule_event(serial or default_serial(ctx), check_click(click))
    if ctx.namespace.get(kinds.FUNCTIONS, FUNCTION_NAME) is None:
        raise not_deployed()
    response = ctx.client("lambda").invoke(
        FunctionName=FUNCTION_NAME, Payload=json.dumps(event).encode(), LogType="Tail"
    )
    raw = response["Payload"].read()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode(errors="replace")
    tail = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
    return TestInvocation(event, payload, response.get("FunctionError"), tail)


# --- logs ----------------------------------------------------------------------------------------


def function_logs(ctx: AppContext, since_seconds: int, follow: bool = False) -> Iterator[LogEvent]:
    """``notify logs``: the deployed function's log events; refuses at once (not at the first
    event) when the registry records no notifier."""
    if ctx.namespace.get(kinds.FUNCTIONS, FUNCTION_NAME) is None:
        raise not_deployed()
    return log_events(ctx, since_seconds, follow=follow)


@dataclass
class LogEvent:
    timestamp: int
    message: str
    stream: str


def log_events(
    ctx: AppContext,
    since_seconds: int,
    follow: bool = False,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[LogEvent]:
    """The function's CloudWatch log events; with ``follow``, keep polling for new ones."""
    logs = ctx.client("logs")
    start = int((time.time() - since_seconds) * 1000)
    seen: set[str] = set()
    while True:
        newest = start
        kwargs: dict[str, Any] = {"logGroupName": FUNCTION_LOG_GROUP, "startTime": start}
        pages: list[dict[str, Any]] = []
        with absent_is_fine():
            pages = list(logs.get_paginator("filter_log_events").paginate(**kwargs))
        for page in pages:
            for event in page.get("events", []):
                if event["eventId"] in seen:
                    continue
                seen.add(event["eventId"])
                newest = max(newest, int(event["timestamp"]))
                yield LogEvent(
                    int(event["timestamp"]),
                    event["message"].rstrip("\n"),
                    event.get("logStreamName", ""),
                )
        if not follow:
            return
        start = newest
        sleep(poll_seconds)


# --- send (from this machine, with the notifier's Twilio client) --------------------------------


@dataclass
class SendResult:
    channel: str
    to: str
    status: str
    sid: str | None = None
    error: dict[str, Any] | None = None


def send_from_here(
    config: NotifyConfig,
    secret: TwilioSecret,
    click: str,
    serial: str,
    api_base: str | None = None,
) -> list[SendResult]:
    """Send one click's messages through Twilio's SDK, the way the notifier would: the
    button's own section of the config if it has one, its texts filled in as the notifier
    fills them."""
    import time

    from iotbutton_cli.notifier_lambda import handler
    from iotbutton_cli.notifier_lambda.contract import parse_config

    click = check_click(click)
    messaging = parse_config(config.lambda_document(secret)).for_button(serial)
    if messaging is None:
        raise usage_error(
            "button-not-in-config",
            f"{config.path} sends nothing for button {serial}: it is not under buttons:, and "
            "unlisted buttons are refused.",
            "Give a listed button with --serial, or remove `unlisted: refuse`.",
        )
    settings = messaging.clicks.get(click)
    if settings is None or not (settings.sms or settings.call or settings.escalation):
        raise usage_error(
            "nobody-to-message",
            f"{config.path} messages nobody on a {click} click.",
            "Add sms or call numbers for it, or pick another --click.",
        )
    event = handler.ButtonEvent(serial, click, "1650mV", int(time.time() * 1000))
    texts = handler.click_texts(settings, messaging, event)
    # The notifier's own Twilio client: what this checks is exactly what the Lambda will send.
    from iotbutton_cli.notifier_lambda import twilio as twilio_rest

    client = twilio_rest.TwilioClient(
        api_base=(api_base or twilio_rest.DEFAULT_API_BASE).rstrip("/"),
        account_sid=config.account_sid,
        auth_user=secret.username,
        secret=secret.value,
        timeout=SEND_TIMEOUT_SECONDS,
    )
    results = []
    # An escalation's numbers get one plain call each: the escalation itself needs the deployed
    # function's callbacks (`notify test --click LONG` runs it).
    escalated = settings.escalation.numbers if settings.escalation else ()
    calls = tuple(dict.fromkeys((*settings.call, *escalated)))
    for channel, numbers in (("sms", settings.sms), ("call", calls)):
        for number in numbers:
            outcome = client.send(channel, number, config.sender, texts[channel])
            results.append(_send_result(channel, number, outcome))
    return results


def _send_result(channel: str, to: str, outcome: Any) -> SendResult:
    if outcome.ok:
        return SendResult(channel, to, "queued", sid=outcome.sid)
    error = {"code": outcome.code, "message": outcome.message, "status": outcome.http_status}
    return SendResult(channel, to, "failed", error=error)
