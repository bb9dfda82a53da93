"""EventBridge Scheduler in the sandbox: when a schedule runs (cron in a time zone, DST included,
rate, at), what its target gets (the context attributes), whether its role may invoke the
function (read from moto's IAM), and the thread's logic, driven tick by tick with an injected
clock against in-process moto (the async invoker replaced by a recorder)."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest

from iotbutton_cli.sandbox.scheduler import (
    Scheduler,
    next_fire,
    role_may_invoke,
    role_refusal,
    target_input,
)

ACCOUNT, REGION = "123456789012", "us-east-1"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:iotbutton-notifier"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/iotbutton-scheduler-{REGION}"
INPUT = json.dumps({"iotbuttonRelease": {"scheduledTime": "<aws.scheduler.scheduled-time>"}})
TRUST = {
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
INVOKE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": FUNCTION}],
}


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


# -- next_fire ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # lists, ranges and steps, in UTC
        ("cron(0,30 7,8 * * ? *)", utc(2026, 12, 7, 7, 0), utc(2026, 12, 7, 7, 30)),
        ("cron(0,30 7,8 * * ? *)", utc(2026, 12, 7, 8, 30), utc(2026, 12, 8, 7, 0)),
        ("cron(10-12 9 * * ? *)", utc(2026, 12, 7, 9, 10), utc(2026, 12, 7, 9, 11)),
        ("cron(*/20 9 * * ? *)", utc(2026, 12, 7, 9, 21), utc(2026, 12, 7, 9, 40)),
        ("cron(5/20 9 * * ? *)", utc(2026, 12, 7, 9, 6), utc(2026, 12, 7, 9, 25)),
        ("cron(0 9-17/4 * * ? *)", utc(2026, 12, 7, 13, 0), utc(2026, 12, 7, 17, 0)),
        # month and day names; day of week 1-7 from SUN (2026-12-07 is a Monday)
        ("cron(0 12 1 JAN,jul ? *)", utc(2026, 12, 5), utc(2027, 1, 1, 12)),
        ("cron(0 9 ? * tue-THU *)", utc(2026, 12, 7), utc(2026, 12, 8, 9)),
        ("cron(0 9 ? * SAT *)", utc(2026, 12, 7), utc(2026, 12, 12, 9)),
        ("cron(0 9 ? * 1 *)", utc(2026, 12, 7), utc(2026, 12, 13, 9)),  # 1: Sunday
        ("cron(0 9 ? * 2,6 *)", utc(2026, 12, 7, 10), utc(2026, 12, 11, 9)),  # MON, FRI
        ("cron(0 0 29 FEB ? *)", utc(2026, 12, 5), utc(2028, 2, 29)),
        ("cron(0 0 1 1 ? 2027-2028)", utc(2027, 1, 1), utc(2028, 1, 1)),
        ("cron(0 0 1 1 ? 2020)", utc(2026, 1, 1), None),  # only in the past
        ("cron(0 0 31 2 ? *)", utc(2026, 1, 1), None),  # never: the search stops
    ],
)
def test_cron_in_utc(expression, after, expected):
    assert next_fire(expression, "UTC", after) == expected


def test_a_london_cron_follows_daylight_saving_time():
    # 07:00 in London is 07:00 UTC in winter, 06:00 UTC in summer (from 2026-03-29 01:00 UTC).
    cron = "cron(0 7 * * ? *)"
    assert next_fire(cron, "Europe/London", utc(2026, 3, 27, 12)) == utc(2026, 3, 28, 7)
    assert next_fire(cron, "Europe/London", utc(2026, 3, 28, 7)) == utc(2026, 3, 29, 6)
    assert next_fire(cron, "Europe/London", utc(2026, 10, 24, 7)) == utc(2026, 10, 25, 7)
    assert next_fire(cron, "Europe/London", utc(2026, 10, 24, 5)) == utc(2026, 10, 24, 6)


def test_the_skipped_hour_does_not_run_and_the_repeated_hour_runs_once():
    cron = "cron(30 1 * * ? *)"  # 01:30 does not exist on 29 March, happens twice on 25 October
    assert next_fire(cron, "Europe/London", utc(2026, 3, 28, 12)) == utc(2026, 3, 30, 0, 30)
    first = next_fire(cron, "Europe/London", utc(2026, 10, 24, 12))
    assert first == utc(2026, 10, 25, 0, 30)  # 01:30 BST
    assert next_fire(cron, "Europe/London", first) == utc(2026, 10, 26, 1, 30)  # not 01:30 GMT


def test_without_a_zone_a_cron_is_in_utc():
    assert next_fire("cron(0 7 * * ? *)", None, utc(2026, 7, 1)) == utc(2026, 7, 1, 7)


def test_rate_runs_from_its_creation():
    created = utc(2026, 12, 7, 12, 0, 30)
    assert next_fire("rate(5 minutes)", None, created - timedelta(seconds=1), created) == created
    assert next_fire("rate(5 minutes)", None, created, created) == utc(2026, 12, 7, 12, 5, 30)
    assert next_fire("rate(5 minutes)", None, utc(2026, 12, 7, 12, 7), created) == utc(
        2026, 12, 7, 12, 10, 30
    )
    assert next_fire("rate(1 hour)", None, created, created) == utc(2026, 12, 7, 13, 0, 30)
    # A day is 24 hours, in any zone: DST does not move a rate.
    assert next_fire("rate(2 days)", "Europe/London", utc(2026, 3, 28), utc(2026, 3, 27)) == utc(
        2026, 3, 29
    )


def test_at_runs_once_in_its_zone():
    at = "at(2026-12-07T07:00:00)"
    assert next_fire(at, "Europe/London", utc(2026, 12, 1)) == utc(2026, 12, 7, 7)
    assert next_fire("at(2026-07-07T07:00:00)", "Europe/London", utc(2026, 7, 1)) == utc(
        2026, 7, 7, 6
    )
    assert next_fire(at, "Europe/London", utc(2026, 12, 7, 7)) is None  # past


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("cron(0 0 L * ? *)", "not emulated"),
        ("cron(0 0 ? * 6L *)", "not emulated"),
        ("cron(0 0 15W * ? *)", "not emulated"),
        ("cron(0 0 ? * 3#2 *)", "not emulated"),
        ("cron(0 7 * * *)", "6"),
        ("cron(0 7 * * * *)", "must be ?"),
        ("cron(60 7 * * ? *)", "0 to 59"),
        ("cron(0 7 * FOO ? *)", "not a value"),
        ("cron(0 9 ? * SAT-SUN *)", "backwards"),
        ("rate(0 minutes)", "at least 1"),
        ("every(5 minutes)", "not a cron"),
    ],
)
def test_wrong_or_unsupported_expressions_say_why(expression, says):
    with pytest.raises(ValueError, match=says):
        next_fire(expression, "UTC", utc(2026, 1, 1))


def test_an_unknown_zone_is_refused():
    with pytest.raises(ValueError, match="IANA"):
        next_fire("cron(0 7 * * ? *)", "Mars/Olympus", utc(2026, 1, 1))


# -- target_input ---------------------------------------------------------------------------------


def test_target_input_fills_the_context_attributes():
    text = json.dumps(
        {
            "arn": "<aws.scheduler.schedule-arn>",
            "at": "<aws.scheduler.scheduled-time>",
            "id": "<aws.scheduler.execution-id>",
            "attempt": "<aws.scheduler.attempt-number>",
            "other": "<aws.scheduler.unknown>",
        }
    )
    arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/iotbutton/release-held"
    filled = json.loads(target_input(text, arn, utc(2026, 12, 7, 7, 0, 0, 123), 2, "run-1"))
    assert filled == {
        "arn": arn,
        "at": "2026-12-07T07:00:00Z",
        "id": "run-1",
        "attempt": "2",
        "other": "<aws.scheduler.unknown>",
    }
    assert target_input(None, arn, utc(2026, 12, 7)) == "{}"


# -- the role -------------------------------------------------------------------------------------


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def make_role(name: str, trust: dict[str, Any], policy: dict[str, Any] | None) -> str:
    iam = boto3.client("iam", region_name=REGION)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if policy is not None:
        iam.put_role_policy(RoleName=name, PolicyName="invoke", PolicyDocument=json.dumps(policy))
    return str(arn)


def test_the_release_schedule_s_role_may_invoke_the_notifier(aws):
    role = make_role("iotbutton-scheduler-us-east-1", TRUST, INVOKE)
    assert role == ROLE
    assert role_may_invoke(role, FUNCTION) is None
    other = FUNCTION.replace("iotbutton-notifier", "other")
    assert "no policy of it allows lambda:InvokeFunction on" in str(role_may_invoke(role, other))


def test_a_role_scheduler_may_not_use_is_refused(aws):
    assert "does not exist" in str(role_may_invoke(ROLE, FUNCTION))
    lambda_trust = json.loads(
        json.dumps(TRUST).replace("scheduler.amazonaws.com", "lambda.amazonaws.com")
    )
    wrong_service = make_role("lambda-role", lambda_trust, INVOKE)
    assert "trust policy does not let scheduler.amazonaws.com" in str(
        role_may_invoke(wrong_service, FUNCTION)
    )
    other_account = json.loads(json.dumps(TRUST).replace(ACCOUNT, "210987654321"))
    elsewhere = make_role("elsewhere", other_account, INVOKE)
    assert "aws:SourceAccount is not met" in str(role_may_invoke(elsewhere, FUNCTION))
    no_grant = make_role("no-grant", TRUST, None)
    assert "no policy of it allows" in str(role_may_invoke(no_grant, FUNCTION))


def test_wildcards_managed_policies_and_denials_count(aws):
    iam = boto3.client("iam", region_name=REGION)
    wildcard = policy({"Effect": "Allow", "Action": "lambda:*", "Resource": "*"})
    assert role_may_invoke(make_role("wild", TRUST, wildcard), FUNCTION) is None
    qualified = policy(
        {"Effect": "Allow", "Action": ["lambda:Invoke*"], "Resource": FUNCTION + ":*"}
    )
    assert role_may_invoke(make_role("qualified", TRUST, qualified), FUNCTION) is None

    managed = iam.create_policy(PolicyName="invoke", PolicyDocument=json.dumps(INVOKE))
    attached = make_role("attached", TRUST, None)
    iam.attach_role_policy(RoleName="attached", PolicyArn=managed["Policy"]["Arn"])
    assert role_may_invoke(attached, FUNCTION) is None

    denied = make_role("denied", TRUST, wildcard)
    deny = policy({"Effect": "Deny", "Action": "lambda:InvokeFunction", "Resource": "*"})
    iam.put_role_policy(RoleName="denied", PolicyName="deny", PolicyDocument=json.dumps(deny))
    assert "denies lambda:InvokeFunction" in str(role_may_invoke(denied, FUNCTION))


def test_a_source_arn_condition_is_the_schedule_group():
    group = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/iotbutton"
    trust = json.loads(json.dumps(TRUST))
    trust["Statement"][0]["Condition"]["ArnLike"] = {
        "aws:SourceArn": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/iot*"
    }
    assert role_refusal(trust, [INVOKE], FUNCTION, ACCOUNT, group) is None
    other = group.replace("iotbutton", "other")
    assert "ArnLike on aws:SourceArn is not met" in str(
        role_refusal(trust, [INVOKE], FUNCTION, ACCOUNT, other)
    )


# -- the thread's logic, one tick at a time ---------------------------------------------------


class Recorder:
    """Stands in for the sandbox's async invoker: keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def submit(self, item: Any) -> None:
        self.events.append(item)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def scheduler(aws) -> Any:
    make_role("iotbutton-scheduler-us-east-1", TRUST, INVOKE)
    client = boto3.client("scheduler", region_name=REGION)
    client.create_schedule_group(Name="iotbutton")
    return client


def create(client: Any, name: str, expression: str, **extra: Any) -> None:
    target = {"Arn": FUNCTION, "RoleArn": ROLE, "Input": INPUT, **extra.pop("target", {})}
    client.create_schedule(
        GroupName="iotbutton",
        Name=name,
        ScheduleExpression=expression,
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=target,
        **extra,
    )


def scheduled_times(recorder: Recorder) -> list[str]:
    return [item.event["iotbuttonRelease"]["scheduledTime"] for item in recorder.events]


def test_a_cron_schedule_fires_when_its_time_comes_in_its_zone(scheduler):
    create(
        scheduler,
        "release-held",
        "cron(0 7 * * ? *)",
        ScheduleExpressionTimezone="Europe/London",
    )
    clock, recorder = Clock(utc(2027, 3, 27, 12)), Recorder()
    runner = Scheduler(recorder, clock=clock)
    runner.tick()
    assert recorder.events == []
    assert runner.next_runs() == {"iotbutton/release-held": utc(2027, 3, 28, 6)}  # BST

    clock.now = utc(2027, 3, 28, 5, 59, 59)
    runner.tick()
    assert recorder.events == []
    clock.now = utc(2027, 3, 28, 6, 0, 1)
    runner.tick()
    runner.tick()  # once only
    assert scheduled_times(recorder) == ["2027-03-28T06:00:00Z"]
    item = recorder.events[0]
    assert (item.function, item.source) == (FUNCTION, "schedule iotbutton/release-held")
    assert runner.next_runs()["iotbutton/release-held"] == utc(2027, 3, 29, 6)


def test_a_rate_schedule_runs_at_once_then_every_period(scheduler):
    create(scheduler, "every-minute", "rate(1 minute)")
    created = scheduler.get_schedule(GroupName="iotbutton", Name="every-minute")["CreationDate"]
    clock, recorder = Clock(created + timedelta(seconds=1)), Recorder()
    runner = Scheduler(recorder, clock=clock)
    runner.tick()
    assert len(recorder.events) == 1  # started at once, as Scheduler starts a rate schedule
    runner.tick()
    assert len(recorder.events) == 1
    clock.now = created + timedelta(seconds=61)
    runner.tick()
    assert len(recorder.events) == 2
    first, second = (datetime.fromisoformat(t[:-1] + "+00:00") for t in scheduled_times(recorder))
    assert second - first == timedelta(minutes=1)


def test_a_changed_expression_is_planned_again_and_a_disabled_one_never_fires(scheduler):
    create(scheduler, "release-held", "cron(0 7 * * ? *)")
    clock, recorder = Clock(utc(2027, 1, 10, 12)), Recorder()
    runner = Scheduler(recorder, clock=clock)
    runner.tick()
    assert runner.next_runs() == {"iotbutton/release-held": utc(2027, 1, 11, 7)}
    changed = {
        "GroupName": "iotbutton",
        "Name": "release-held",
        "ScheduleExpression": "cron(30 8 * * ? *)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": FUNCTION, "RoleArn": ROLE, "Input": INPUT},
    }
    scheduler.update_schedule(**changed)
    runner.tick()
    assert runner.next_runs() == {"iotbutton/release-held": utc(2027, 1, 11, 8, 30)}

    scheduler.update_schedule(**changed, State="DISABLED")
    clock.now = utc(2027, 1, 11, 9)
    runner.tick()
    assert recorder.events == [] and runner.next_runs() == {}
    scheduler.delete_schedule(GroupName="iotbutton", Name="release-held")
    runner.tick()
    assert runner.next_runs() == {}


def test_a_refused_role_a_foreign_target_and_a_bad_expression_are_logged(scheduler, caplog):
    caplog.set_level(logging.INFO, logger="iotbutton.sandbox")
    make_role("no-grant", TRUST, None)
    no_grant = f"arn:aws:iam::{ACCOUNT}:role/no-grant"
    create(scheduler, "refused", "cron(0 7 * * ? *)", target={"RoleArn": no_grant})
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs"
    create(scheduler, "to-sqs", "cron(0 7 * * ? *)", target={"Arn": queue})
    create(scheduler, "last-day", "cron(0 7 L * ? *)")
    create(scheduler, "fine", "cron(0 7 * * ? *)")
    clock, recorder = Clock(utc(2027, 1, 10, 12)), Recorder()
    runner = Scheduler(recorder, clock=clock)
    runner.tick()
    clock.now = utc(2027, 1, 11, 7, 0, 5)
    runner.tick()

    assert [item.source for item in recorder.events] == ["schedule iotbutton/fine"]
    text = caplog.text
    assert (
        f"schedule iotbutton/refused: due at 2027-01-11T07:00:00Z, Scheduler could not invoke "
        f"{FUNCTION}: no policy of it allows lambda:InvokeFunction" in text
    )
    assert f"only Lambda function targets are emulated, not {queue}" in text
    assert "schedule iotbutton/last-day never runs in the sandbox" in text
    assert "not emulated" in text


def test_a_one_time_schedule_runs_once_and_is_deleted_if_it_says_so(scheduler):
    create(scheduler, "once", "at(2027-01-11T07:00:00)", ActionAfterCompletion="DELETE")
    create(scheduler, "kept", "at(2027-01-11T07:00:00)")
    clock, recorder = Clock(utc(2027, 1, 11, 6)), Recorder()
    runner = Scheduler(recorder, clock=clock)
    runner.tick()
    clock.now = utc(2027, 1, 11, 7, 0, 1)
    runner.tick()
    clock.now = utc(2027, 1, 12)
    runner.tick()
    assert sorted(item.source for item in recorder.events) == [
        "schedule iotbutton/kept",
        "schedule iotbutton/once",
    ]
    left = scheduler.list_schedules(GroupName="iotbutton")["Schedules"]
    assert [s["Name"] for s in left] == ["kept"]
    assert runner.next_runs() == {"iotbutton/kept": None}


def test_an_error_reading_moto_does_not_stop_the_thread(scheduler, monkeypatch, caplog):
    clock, recorder = Clock(utc(2027, 1, 10, 12)), Recorder()
    runner = Scheduler(recorder, clock=clock, interval=0.01)
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("moto broke")

    monkeypatch.setattr(runner, "tick", broken)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.stop()
    assert len(calls) >= 3
    assert "the scheduler could not read the schedules" in caplog.text
