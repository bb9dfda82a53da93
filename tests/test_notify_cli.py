"""The notify commands end to end through the sandbox's AWS endpoint, which runs the deployed
Lambda for real, and Twilio's stand-in, which checks every request against Twilio's spec."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from support import TWILIO_SECRET, notify_init_args

SMS_TO = "+15551230001"
CALL_TO = "+15551230002"


@pytest.fixture
def configured(cli, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    cli(*notify_init_args("Grandma", SMS_TO), "--call", CALL_TO)


@pytest.fixture
def deployed(cli, configured, sandbox_aws, twilio_standin):
    result = cli.json("notify", "deploy", "--twilio-api-base", twilio_standin.base_url)
    assert result["up_to_date"] is False
    return result


def all_output(*results) -> str:
    return "".join(r.stdout + r.stderr for r in results)


def test_deploy_then_redeploy_is_up_to_date(cli, deployed, twilio_standin):
    again = cli("notify", "deploy", "--twilio-api-base", twilio_standin.base_url)
    assert "up to date" in again.stdout
    assert (
        cli.json("notify", "deploy", "--twilio-api-base", twilio_standin.base_url)["up_to_date"]
        is True
    )


def test_test_invokes_the_deployed_function(cli, deployed, twilio_standin):
    result = cli.json("notify", "test", "--click", "DOUBLE")

    assert result["ok"] is True
    clicked_at = result["event"].pop("clickedAt")
    assert abs(clicked_at - time.time() * 1000) < 600_000  # IoT Core's receive time: now
    assert result["event"] == {
        "serialNumber": "iotbutton-test",
        "batteryVoltage": "1650mV",
        "clickType": "DOUBLE",
        "topicSerial": "iotbutton-test",  # what the rule adds: `notify test` sends what it would
    }
    assert "notes" not in result["payload"], "the function found nothing odd in it"
    statuses = sorted((r["channel"], r["to"], r["status"]) for r in result["payload"]["results"])
    assert statuses == [("call", CALL_TO, "queued"), ("sms", SMS_TO, "queued")]
    outbox = twilio_standin.outbox()
    assert sorted(entry["resource"] for entry in outbox) == ["Calls", "Messages"]
    assert all(entry["status"] in ("queued", 201) or "sid" in entry for entry in outbox)
    human = cli("notify", "test", "--click", "LONG")
    assert "queued" in human.stdout and SMS_TO in human.stdout


def test_show_and_logs(cli, deployed):
    shown = cli.json("notify", "show")
    assert shown["function_arn"].endswith(":function:iotbutton-notifier")
    assert shown["config"]["person"] == "Grandma"
    assert shown["config"]["clicks"]["SINGLE"]["sms"] == [SMS_TO]
    assert [rule["name"] for rule in shown["rules"]] == ["iotbutton_notifier"]

    cli("notify", "test")
    lines = cli("notify", "logs", "--json").stdout.splitlines()
    messages = [json.loads(line)["message"] for line in lines]
    assert any(m.startswith("START RequestId") for m in messages)
    assert "START RequestId" in cli("notify", "logs").stdout


def test_send_from_this_machine_as_the_notifier_would(cli, configured, twilio_standin):
    results = cli.json(
        "notify", "send", "--click", "SINGLE", "--twilio-api-base", twilio_standin.base_url
    )
    assert sorted((r["channel"], r["status"]) for r in results) == [
        ("call", "queued"),
        ("sms", "queued"),
    ]
    outbox = twilio_standin.outbox()
    message = next(e for e in outbox if e["resource"] == "Messages")
    assert message["fields"]["To"] == SMS_TO and "Grandma" in message["fields"]["Body"]
    call = next(e for e in outbox if e["resource"] == "Calls")
    assert call["fields"]["Twiml"].startswith("<Response><Say>")


def test_send_reports_twilio_errors(cli, configured, twilio_standin, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong" * 6)
    result = cli("notify", "send", "--twilio-api-base", twilio_standin.base_url, "--json", code=1)
    assert {r["error"]["code"] for r in json.loads(result.stdout)} == {20003}


def test_secret_never_leaves_ssm(cli, deployed, sandbox_aws, isolated_env):
    outputs = [
        cli("notify", "show"),
        cli("notify", "show", "--json"),
        cli("notify", "test"),
        cli("notify", "logs"),
        cli("-v", "notify", "deploy", "--twilio-api-base", "http://x"),
    ]
    assert TWILIO_SECRET not in all_output(*outputs)
    for path in isolated_env.rglob("*"):
        if path.is_file():
            assert TWILIO_SECRET not in path.read_text(errors="ignore"), path
    lam = boto3.client("lambda", endpoint_url=sandbox_aws.url, region_name="us-east-1")
    function = lam.get_function(FunctionName="iotbutton-notifier")["Configuration"]
    assert TWILIO_SECRET not in json.dumps(function["Environment"])
    s3 = boto3.client("s3", endpoint_url=sandbox_aws.url, region_name="us-east-1")
    bucket = function["Environment"]["Variables"]["IOTBUTTON_CONFIG_BUCKET"]
    for item in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        assert TWILIO_SECRET not in body


def test_clean_removes_the_notifier(cli, deployed, sandbox_aws):
    assert cli.json("clean", "--yes")["complete"] is True
    lam = boto3.client("lambda", endpoint_url=sandbox_aws.url, region_name="us-east-1")
    assert lam.list_functions()["Functions"] == []
    assert "not deployed" in cli("notify", "show", code=1).stderr


def test_commands_need_a_deployed_notifier(cli, aws, configured):
    for command in (
        ["notify", "show"],
        ["notify", "test"],
        ["notify", "logs"],
        ["notify", "history"],
    ):
        result = cli(*command, code=1)
        assert "Run `iotbutton notify deploy` first." in result.stderr, command


def test_history_refuses_bad_input_before_any_aws_call(cli, aws):
    assert cli.json("notify", "history", "no/such", code=2)["error"]["code"] == "bad-serial"
    error = cli.json("notify", "history", "--since", "40d", code=2)["error"]
    assert error["code"] == "bad-duration" and "1 second to 30d" in error["message"]


def test_deploy_without_a_secret_fails_before_any_aws_call(cli, aws, configured, monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    result = cli("notify", "deploy", code=2)
    assert "No Twilio secret" in result.stderr
    assert boto3.client("iam").list_roles()["Roles"] == []


def test_bad_click_type(cli, deployed):
    assert (
        "Unknown click type 'TRIPLE'" in cli("notify", "test", "--click", "TRIPLE", code=2).stderr
    )
