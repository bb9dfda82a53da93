"""Fixtures for the notifier: moto for S3/SSM, the real Twilio stand-in over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from notifier_support import (
    ACCOUNT_SID,
    API_KEY_SID,
    BUCKET,
    CONFIG_KEY,
    SECRET,
    SECRET_PARAMETER,
)

from iotbutton_cli.notifier_lambda import handler
from iotbutton_cli.notifier_lambda import twilio as twilio_rest
from iotbutton_cli.sandbox.twilio import TwilioStandIn


@dataclass
class Deployment:
    """What a deployed notifier sees: config in S3, secret in SSM, Twilio at a URL."""

    s3: Any
    twilio: TwilioStandIn
    sleeps: list[float] = field(default_factory=list)

    def write_config(self, config: dict[str, Any], key: str = CONFIG_KEY) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(config).encode())
        handler.reset_caches()

    def sent(self, resource: str | None = None) -> list[dict[str, Any]]:
        """Requests Twilio accepted, optionally only Messages or Calls."""
        return [
            entry
            for entry in self.twilio.outbox()
            if entry["http_status"] == 201 and resource in (None, entry["resource"])
        ]


@pytest.fixture(autouse=True)
def fresh_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Each test starts with empty caches and a sleep that records instead of waiting."""
    sleeps: list[float] = []
    handler.reset_caches()
    monkeypatch.setattr(twilio_rest, "sleep", sleeps.append)
    yield sleeps
    handler.reset_caches()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SSM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("IOTBUTTON_CONFIG_BUCKET", BUCKET)
    monkeypatch.setenv("IOTBUTTON_CONFIG_KEY", CONFIG_KEY)
    monkeypatch.setenv("IOTBUTTON_SECRET_PARAMETER", SECRET_PARAMETER)
    monkeypatch.setenv("IOTBUTTON_TWILIO_TIMEOUT", "5")


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn(credentials={ACCOUNT_SID: SECRET, API_KEY_SID: SECRET}) as stand_in:
        yield stand_in


@pytest.fixture
def deployment(
    aws_env: None,
    twilio: TwilioStandIn,
    fresh_handler: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("TWILIO_API_BASE", twilio.base_url)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name=SECRET_PARAMETER, Value=SECRET, Type="SecureString"
        )
        yield Deployment(s3=s3, twilio=twilio, sleeps=fresh_handler)


@pytest.fixture
def with_ledger(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    """A deployment with the alarm table, made as `notify deploy` makes it."""
    import boto3

    from iotbutton_cli.notifier_lambda.contract import ALARM_TABLE
    from iotbutton_cli.notify import resources

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName=ALARM_TABLE,
        KeySchema=resources.TABLE_KEY_SCHEMA,
        AttributeDefinitions=resources.TABLE_ATTRIBUTES,
        BillingMode=resources.TABLE_BILLING_MODE,
    )
    monkeypatch.setenv("IOTBUTTON_ALARM_TABLE", ALARM_TABLE)
    deployment.dynamodb = dynamodb  # type: ignore[attr-defined]
    return deployment
