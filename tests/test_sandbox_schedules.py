"""`iotbutton sandbox schedules` and `sandbox schedules run`, through the CLI, against the real
background sandbox process: EventBridge Scheduler schedules made with boto3 are listed with their
next run, run now with the scheduled time they stand for, refused when their role may not invoke
the function, and fired by the sandbox itself when they are due."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE_NAME = f"iotbutton-scheduler-{REGION}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
INPUT = json.dumps({"iotbuttonRelease": {"scheduledTime": "<aws.scheduler.scheduled-time>"}})
ECHO = """
import json
def handler(event, context):
    print("EVENT " + json.dumps(event))
    return event
"""


def client(sandbox: dict[str, Any], service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=sandbox["aws_url"],
        aws_access_key_id=sandbox["access_key_id"],
        aws_secret_access_key=sandbox["secret_access_key"],
    )


def echo_function(sandbox: dict[str, Any], name: str = "echo") -> str:
    """A function that logs its event, with the log group Lambda writes its log to."""
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("fn.py", ECHO)
    role = client(sandbox, "iam").create_role(RoleName=f"{name}-fn", AssumeRolePolicyDocument="{}")
    client(sandbox, "logs").create_log_group(logGroupName=f"/aws/lambda/{name}")
    created = client(sandbox, "lambda").create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="fn.handler",
        Code={"ZipFile": code.getvalue()},
    )
    return str(created["FunctionArn"])


def scheduler_role(sandbox: dict[str, Any], name: str, function: str | None) -> str:
    """A role Scheduler may assume, allowed to invoke ``function`` (None: nothing)."""
    iam = client(sandbox, "iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "scheduler.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
            }
        ],
    }
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if function is not None:
        grant = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": function}
            ],
        }
        iam.put_role_policy(RoleName=name, PolicyName="invoke", PolicyDocument=json.dumps(grant))
    return str(arn)


def schedule(
    sandbox: dict[str, Any], name: str, expression: str, target: str, role: str, **extra: Any
) -> None:
    client(sandbox, "scheduler").create_schedule(
        GroupName="iotbutton",
        Name=name,
        ScheduleExpression=expression,
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": target, "RoleArn": role, "Input": INPUT},
        **extra,
    )


def received(sandbox: dict[str, Any], name: str = "echo") -> list[dict[str, Any]]:
    """The events the echo function was invoked with, from its CloudWatch log."""
    logs = client(sandbox, "logs")
    found = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    return [
        json.loads(event["message"].split("EVENT ", 1)[1])
        for event in found
        if "EVENT " in event["message"]
    ]


def wait_for(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def release_event(when: str) -> dict[str, Any]:
    return {"iotbuttonRelease": {"scheduledTime": when}}


def next_london_seven() -> str:
    """The next 07:00 in London, in UTC: computed here with zoneinfo alone."""
    zone = ZoneInfo("Europe/London")
    now = datetime.now(timezone.utc)
    day = now.astimezone(zone).date()
    while True:
        local = datetime(day.year, day.month, day.day, 7, tzinfo=zone)
        if local > now:
            return local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        day += timedelta(days=1)


def one_error(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["Error", "Hint"], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return str(lines[0])


def test_schedules_lists_every_schedule_with_its_next_run(cli, sandbox):
    assert cli.json("sandbox", "schedules") == []
    assert cli("sandbox", "schedules").stdout.strip() == "No schedules."

    function = echo_function(sandbox)
    role = scheduler_role(sandbox, ROLE_NAME, function)
    scheduler = client(sandbox, "scheduler")
    scheduler.create_schedule_group(Name="iotbutton")
    schedule(
        sandbox,
        "release-held",
        "cron(0 7 * * ? *)",
        function,
        role,
        ScheduleExpressionTimezone="Europe/London",
    )
    schedule(sandbox, "paused", "rate(5 minutes)", function, role, State="DISABLED")
    scheduler.create_schedule(
        Name="elsewhere",
        ScheduleExpression="at(2099-01-01T00:00:00)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": function, "RoleArn": role},
    )

    listed = cli.json("sandbox", "schedules")

    assert listed == [
        {
            "group": "default",
            "name": "elsewhere",
            "expression": "at(2099-01-01T00:00:00)",
            "timezone": "UTC",
            "state": "ENABLED",
            "target": function,
            "next_run": "2099-01-01T00:00:00Z",
        },
        {
            "group": "iotbutton",
            "name": "paused",
            "expression": "rate(5 minutes)",
            "timezone": "UTC",
            "state": "DISABLED",
            "target": function,
            "next_run": None,
        },
        {
            "group": "iotbutton",
            "name": "release-held",
            "expression": "cron(0 7 * * ? *)",
            "timezone": "Europe/London",
            "state": "ENABLED",
            "target": function,
            "next_run": next_london_seven(),
        },
    ]
    lines = cli("sandbox", "schedules").stdout.splitlines()
    assert lines[2] == (
        f"iotbutton/release-held  cron(0 7 * * ? *) Europe/London  ENABLED  "
        f"next {next_london_seven()}  -> echo"
    )
    assert "DISABLED  next none (disabled)" in lines[1]


def test_run_invokes_the_target_with_the_time_it_stands_for(cli, sandbox):
    function = echo_function(sandbox)
    role = scheduler_role(sandbox, ROLE_NAME, function)
    client(sandbox, "scheduler").create_schedule_group(Name="iotbutton")
    zone = {"ScheduleExpressionTimezone": "Europe/London"}
    schedule(sandbox, "release-held", "cron(0 7 * * ? *)", function, role, **zone)
    when = next_london_seven()

    ran = cli.json("sandbox", "schedules", "run", "iotbutton/release-held")

    assert ran == {
        "schedule": "iotbutton/release-held",
        "scheduled_time": when,
        "target": function,
        "status": 202,
    }
    assert wait_for(lambda: received(sandbox), "the invocation") == [release_event(when)]
    said = cli("sandbox", "schedules", "run", "iotbutton/release-held").stdout.strip()
    assert said == f"Ran iotbutton/release-held as at {when}: invoked echo."
    wait_for(lambda: len(received(sandbox)) == 2, "the second invocation")
    # The schedule is left as it was: it still runs at that time.
    assert cli.json("sandbox", "schedules")[0]["next_run"] == when


def test_a_role_that_may_not_invoke_the_function_is_refused(cli, sandbox):
    function = echo_function(sandbox)
    client(sandbox, "scheduler").create_schedule_group(Name="iotbutton")
    no_grant = scheduler_role(sandbox, "no-grant", None)
    schedule(sandbox, "refused", "cron(0 7 * * ? *)", function, no_grant)
    missing = f"arn:aws:iam::{ACCOUNT}:role/missing"
    schedule(sandbox, "no-role", "cron(0 7 * * ? *)", function, missing)

    refused = cli("sandbox", "schedules", "run", "iotbutton/refused", code=1)
    assert one_error(refused) == (
        f"Error: Scheduler may not invoke {function} for iotbutton/refused: no policy of it "
        f"allows lambda:InvokeFunction on {function}."
    )
    error = cli.json("sandbox", "schedules", "run", "iotbutton/no-role", code=1)["error"]
    assert error["code"] == "schedule-role-refused"
    assert f"its role {missing} does not exist" in error["message"]


def test_an_unknown_or_malformed_schedule_is_an_error(cli, sandbox):
    unknown = cli.json("sandbox", "schedules", "run", "iotbutton/nope", code=1)["error"]
    assert unknown["code"] == "schedule-not-found"
    assert unknown["message"] == "The sandbox has no schedule iotbutton/nope."
    one_error(cli("sandbox", "schedules", "run", "iotbutton/nope", code=1))
    for malformed in ("release-held", "a/b/c", "iotbutton/", "bad group/x"):
        error = cli.json("sandbox", "schedules", "run", malformed, code=2)["error"]
        assert error["code"] == "sandbox-bad-schedule-name", malformed


def test_without_a_sandbox_the_commands_say_so(cli):
    for args in (("sandbox", "schedules"), ("sandbox", "schedules", "run", "iotbutton/x")):
        error = cli.json(*args, code=1)["error"]
        assert error["code"] == "sandbox-not-running"


def test_the_sandbox_fires_schedules_when_they_are_due(cli, sandbox):
    function = echo_function(sandbox)
    role = scheduler_role(sandbox, ROLE_NAME, function)
    scheduler = client(sandbox, "scheduler")
    scheduler.create_schedule_group(Name="iotbutton")
    log = Path(sandbox["outbox"]).parent / "sandbox.log"

    # A rate schedule starts at once, as on AWS: its first run is the time it was made.
    schedule(sandbox, "every-minute", "rate(1 minute)", function, role)
    made = scheduler.get_schedule(GroupName="iotbutton", Name="every-minute")["CreationDate"]
    first = made.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert wait_for(lambda: received(sandbox), "the rate schedule's run") == [release_event(first)]
    assert f"schedule iotbutton/every-minute: runs for {first}, invoking {function}" in (
        log.read_text()
    )
    scheduler.delete_schedule(GroupName="iotbutton", Name="every-minute")

    # A one-time schedule a few seconds ahead runs then, and is deleted as it asks.
    at = (datetime.now(timezone.utc) + timedelta(seconds=3)).replace(microsecond=0)
    expression = f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})"
    schedule(sandbox, "once", expression, function, role, ActionAfterCompletion="DELETE")
    wanted = release_event(at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    wait_for(lambda: wanted in received(sandbox), "the one-time schedule's run")
    wait_for(lambda: cli.json("sandbox", "schedules") == [], "the deletion")
    assert "schedule iotbutton/once: deleted after its run" in log.read_text()

    # A role that may not invoke the function: Scheduler's invocation fails, in the log.
    no_grant = scheduler_role(sandbox, "no-grant", None)
    schedule(sandbox, "refused", "rate(1 minute)", function, no_grant)
    wait_for(
        lambda: "schedule iotbutton/refused: due at" in log.read_text(), "the refusal's log line"
    )
    assert "Scheduler could not invoke" in log.read_text()
    assert len(received(sandbox)) == 2
