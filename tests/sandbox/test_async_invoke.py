"""Asynchronous invocations in the sandbox as Lambda runs them: the function's event invoke config
decides the retries and the maximum age, and the invocation record goes to its on-failure
destination. Real moto and real function code (the sandbox's AWS endpoint, in-process), with the
retry delays shortened."""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from typing import Any

import boto3
import pytest

from iotbutton_cli.sandbox import async_invoke
from iotbutton_cli.sandbox.async_invoke import AsyncEvent

REGION = "us-east-1"
EVENT = {"serialNumber": "G030JF0553648RUH", "batteryVoltage": "1650mV", "clickType": "DOUBLE"}
FAILING = """
def handler(event, context):
    print("ATTEMPT " + context.function_name + " " + context.aws_request_id)
    raise ValueError("Twilio said no")
"""
RECORDING = """
def handler(event, context):
    print("ATTEMPT " + context.function_name + " " + context.aws_request_id)
    return event
"""


def bundle(source: str) -> bytes:
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr(zipfile.ZipInfo("fn.py", (1980, 1, 1, 0, 0, 0)), source)
    return code.getvalue()


@pytest.fixture
def lam(sandbox_aws, monkeypatch) -> Any:
    monkeypatch.setattr(async_invoke, "ASYNC_RETRY_DELAYS", (0.05, 0.05))
    iam = boto3.client("iam", region_name=REGION)
    iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")
    return boto3.client("lambda", region_name=REGION)


def create(lam: Any, name: str, source: str) -> str:
    role = boto3.client("iam", region_name=REGION).get_role(RoleName="fn")["Role"]["Arn"]
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="fn.handler",
        Code={"ZipFile": bundle(source)},
    )
    return str(created["FunctionArn"])


def attempts(sandbox_aws: Any, name: str) -> list[str]:
    """The request ids of ``name``'s invocations so far, in order."""
    found = []
    for invocation in list(sandbox_aws.invocations):
        for line in invocation.log.splitlines():
            if line.startswith(f"ATTEMPT {name} "):
                found.append(line.split()[-1])
    return found


def records(sandbox_aws: Any, name: str) -> list[dict[str, Any]]:
    """What the recording function ``name`` was given (it answers with its event)."""
    return [
        invocation.payload
        for invocation in list(sandbox_aws.invocations)
        if f"ATTEMPT {name} " in invocation.log
    ]


def wait_until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def queue(sandbox_aws: Any, name: str, event: Any = EVENT) -> None:
    sandbox_aws.async_invoker.submit(AsyncEvent(name, event, source="rule clicks"))


def test_retries_as_configured_then_the_record_goes_to_the_on_failure_function(lam, sandbox_aws):
    arn = create(lam, "notifier", FAILING)
    failures = create(lam, "failures", RECORDING)
    lam.put_function_event_invoke_config(
        FunctionName="notifier",
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": failures}},
    )

    queue(sandbox_aws, "notifier")
    [record] = wait_until(lambda: records(sandbox_aws, "failures"))
    time.sleep(0.3)  # time for any further attempt there should not be

    tried = attempts(sandbox_aws, "notifier")
    assert len(tried) == 2 and len(set(tried)) == 1
    assert records(sandbox_aws, "failures") == [record]
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": tried[0],
        "functionArn": f"{arn}:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 2,
    }
    assert record["requestPayload"] == EVENT
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "Twilio said no"


def test_maximum_retry_attempts_0_runs_it_once_and_drops_it_with_a_warning(
    lam, sandbox_aws, caplog
):
    create(lam, "notifier", FAILING)
    lam.put_function_event_invoke_config(FunctionName="notifier", MaximumRetryAttempts=0)

    with caplog.at_level(logging.INFO, logger="iotbutton.sandbox"):
        queue(sandbox_aws, "notifier")
        wait_until(lambda: "dropped the event after 0 retries (request" in caplog.text)
        time.sleep(0.3)

    assert len(attempts(sandbox_aws, "notifier")) == 1
    assert "Lambda retries" not in caplog.text


def test_without_a_config_lambda_retries_twice(lam, sandbox_aws, caplog):
    create(lam, "notifier", FAILING)

    with caplog.at_level(logging.INFO, logger="iotbutton.sandbox"):
        queue(sandbox_aws, "notifier")
        wait_until(lambda: "notifier dropped the event after 2 retries (request" in caplog.text)

    tried = attempts(sandbox_aws, "notifier")
    assert len(tried) == 3 and len(set(tried)) == 1
    assert "rule clicks: Lambda retries notifier in 0.05 s (retry 1 of 2" in caplog.text


def test_a_second_put_replaces_the_first(lam, sandbox_aws):
    create(lam, "notifier", FAILING)
    failures = create(lam, "failures", RECORDING)
    lam.put_function_event_invoke_config(
        FunctionName="notifier",
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": failures}},
    )
    lam.put_function_event_invoke_config(FunctionName="notifier", MaximumRetryAttempts=0)

    config = lam.get_function_event_invoke_config(FunctionName="notifier")
    listed = lam.list_function_event_invoke_configs(FunctionName="notifier")

    assert config["MaximumRetryAttempts"] == 0
    assert "DestinationConfig" not in config  # Put removes what it does not name, as on AWS
    assert len(listed["FunctionEventInvokeConfigs"]) == 1
    lam.update_function_event_invoke_config(
        FunctionName="notifier", DestinationConfig={"OnFailure": {"Destination": failures}}
    )
    updated = lam.get_function_event_invoke_config(FunctionName="notifier")
    assert updated["MaximumRetryAttempts"] == 0  # Update keeps what it does not name
    assert updated["DestinationConfig"]["OnFailure"]["Destination"] == failures

    queue(sandbox_aws, "notifier")
    [record] = wait_until(lambda: records(sandbox_aws, "failures"))
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert len(attempts(sandbox_aws, "notifier")) == 1


def test_an_event_past_its_maximum_age_is_not_retried_and_its_record_says_so(lam, sandbox_aws):
    """The sandbox's 0.05 s stands for Lambda's minute before the first retry: an event whose
    maximum age is 60 s is too old for it, as on AWS."""
    create(lam, "notifier", FAILING)
    failures = create(lam, "failures", RECORDING)
    lam.put_function_event_invoke_config(
        FunctionName="notifier",
        MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": failures}},
    )

    queue(sandbox_aws, "notifier")
    [record] = wait_until(lambda: records(sandbox_aws, "failures"))

    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert len(attempts(sandbox_aws, "notifier")) == 1


def test_a_failing_destination_is_retried_then_dropped_without_looping(lam, sandbox_aws, caplog):
    """Two functions naming each other as on-failure destinations: the record goes from the first
    to the second, whose own failure is retried as its config says and then dropped."""
    first = create(lam, "first", FAILING)
    second = create(lam, "second", FAILING)
    for name, other in (("first", second), ("second", first)):
        lam.put_function_event_invoke_config(
            FunctionName=name,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": other}},
        )

    with caplog.at_level(logging.INFO, logger="iotbutton.sandbox"):
        queue(sandbox_aws, "first")
        wait_until(lambda: "already in this chain of destinations (first -> second)" in caplog.text)
        time.sleep(0.3)

    assert len(attempts(sandbox_aws, "first")) == 2
    assert len(attempts(sandbox_aws, "second")) == 2


def test_a_destination_that_does_not_exist_drops_the_record_with_a_warning(
    lam, sandbox_aws, caplog
):
    create(lam, "notifier", FAILING)
    missing = "arn:aws:lambda:us-east-1:123456789012:function:gone"
    lam.put_function_event_invoke_config(
        FunctionName="notifier",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": missing}},
    )

    with caplog.at_level(logging.INFO, logger="iotbutton.sandbox"):
        queue(sandbox_aws, "notifier")
        wait_until(lambda: "DestinationDeliveryFailures" in caplog.text)

    assert f"its record goes to {missing} (RetriesExhausted)" in caplog.text
    assert f"destination {missing} does not exist" in caplog.text


def test_an_sqs_destination_is_logged_as_not_emulated(lam, sandbox_aws, caplog):
    create(lam, "notifier", FAILING)
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:failed-clicks"
    lam.put_function_event_invoke_config(
        FunctionName="notifier",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )

    with caplog.at_level(logging.INFO, logger="iotbutton.sandbox"):
        queue(sandbox_aws, "notifier")
        wait_until(lambda: "SQS destinations are not emulated" in caplog.text)


def test_invoke_with_invocation_type_event_takes_the_same_path(lam, sandbox_aws):
    create(lam, "notifier", FAILING)
    failures = create(lam, "failures", RECORDING)
    lam.put_function_event_invoke_config(
        FunctionName="notifier",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": failures}},
    )

    answer = lam.invoke(
        FunctionName="notifier", InvocationType="Event", Payload=json.dumps(EVENT).encode()
    )
    [record] = wait_until(lambda: records(sandbox_aws, "failures"))

    assert answer["StatusCode"] == 202
    assert record["requestPayload"] == EVENT
    assert record["requestContext"]["condition"] == "RetriesExhausted"


def test_a_success_record_goes_to_the_on_success_destination(lam, sandbox_aws):
    create(lam, "worker", RECORDING)
    successes = create(lam, "successes", RECORDING)
    lam.put_function_event_invoke_config(
        FunctionName="worker", DestinationConfig={"OnSuccess": {"Destination": successes}}
    )

    queue(sandbox_aws, "worker")
    [record] = wait_until(lambda: records(sandbox_aws, "successes"))

    assert record["requestContext"]["condition"] == "Success"
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == EVENT


def test_the_moto_fix_installs_once_and_works_without_the_sandbox():
    from moto import mock_aws

    from iotbutton_cli.sandbox import moto_fixes

    moto_fixes.install()
    moto_fixes.install()
    from moto.awslambda.models import LambdaBackend

    assert LambdaBackend.put_function_event_invoke_config._iotbutton is True
    with mock_aws():
        iam = boto3.client(
            "iam", region_name=REGION, aws_access_key_id="a", aws_secret_access_key="b"
        )
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client(
            "lambda", region_name=REGION, aws_access_key_id="a", aws_secret_access_key="b"
        )
        client.create_function(
            FunctionName="f",
            Runtime="python3.13",
            Role=role,
            Handler="fn.handler",
            Code={"ZipFile": bundle(RECORDING)},
        )
        client.put_function_event_invoke_config(FunctionName="f", MaximumRetryAttempts=2)
        client.put_function_event_invoke_config(FunctionName="f", MaximumRetryAttempts=1)
        assert (
            client.get_function_event_invoke_config(FunctionName="f")["MaximumRetryAttempts"] == 1
        )
