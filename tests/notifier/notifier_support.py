"""Test data and helpers shared by the notifier tests (a plain module: conftest is not imported)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
API_KEY_SID = "SK" + "fedcba9876543210" * 2
SECRET = "tw-secret-9f8e7d6c5b4a"
SENDER = "+15005550006"
BUCKET = "iotbutton-notifier-test"
CONFIG_KEY = "notifier/config.json"
SECRET_PARAMETER = "/iotbutton/test/twilio-secret"
SERIAL = "G030JF0553648RUH"


def click_config(sms=(), call=(), message="{person} pressed {click} on {serial} at {time}"):
    def as_sent(numbers):  # a bare string is kept, so tests can write broken configs
        return numbers if isinstance(numbers, str) else list(numbers)

    return {"sms": as_sent(sms), "call": as_sent(call), "message": message}


def messaging_config(clicks: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    config = {
        "version": 1,
        "account_sid": ACCOUNT_SID,
        "api_key_sid": None,
        "from": SENDER,
        "person": "Grandma",
        "clicks": clicks,
    }
    config.update(overrides)
    return config


CLICKED_AT = int(time.time() * 1000)  # when these tests' button was pressed


def button_event(click: str = "SINGLE", **overrides: Any) -> dict[str, Any]:
    """What the function gets for a click through iotbutton's rules: the button's payload plus
    ``topicSerial`` from the topic and ``clickedAt`` from IoT Core's clock: one fixed time, so
    that calling it again gives the same event, as Lambda's retries do (pass ``clickedAt`` for
    another click)."""
    event = {
        "serialNumber": SERIAL,
        "batteryVoltage": "1650mV",
        "clickType": click,
        "topicSerial": SERIAL,
        "clickedAt": CLICKED_AT,
    }
    event.update(overrides)
    return event


@dataclass
class LambdaContext:
    """The two things the handler reads from Lambda's context object."""

    aws_request_id: str = "7b0f2c1e-0000-4000-8000-000000000001"
    remaining_millis: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis
