"""The release schedule `notify deploy` keeps while quiet hours hold clicks (`then: hold`), and
nothing of EventBridge Scheduler otherwise: against moto, at the service level."""

from __future__ import annotations

import json

import boto3
import pytest

from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.notify import deploy as notifier_deploy
from iotbutton_cli.notify.resources import release_schedule_expression
from test_notify_deploy import DOCUMENT, deploy_input, record_calls

GROUP, NAME = "iotbutton", "release-held"
ROLE = "iotbutton-scheduler-us-east-1"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:iotbutton-notifier"


def holding(end_minute: int = 7 * 60, zone: str | None = None, **buttons) -> dict:
    document = {
        **DOCUMENT,
        "quiet_hours": {"start_minute": 22 * 60, "end_minute": end_minute, "hold": True},
    }
    if zone:
        document["timezone"] = zone
    if buttons:
        document["buttons"] = buttons
    return document


def schedule() -> dict:
    return boto3.client("scheduler", region_name="us-east-1").get_schedule(
        Name=NAME, GroupName=GROUP
    )


@pytest.fixture
def ctx(aws):
    from moto.core.config import default_user_config

    # moto runs an invoked function in Docker, which this machine has not; without it moto
    # answers the invocation without running anything, which is all these tests look at.
    lambda_config = default_user_config["lambda"]
    saved = dict(lambda_config)
    lambda_config["use_docker"] = False
    yield AppContext()
    lambda_config.clear()
    lambda_config.update(saved)


def test_the_expression_runs_at_every_end_of_the_quiet_hours():
    assert release_schedule_expression((420,)) == "cron(0 7 * * ? *)"
    assert release_schedule_expression((420, 510)) == "cron(0,30 7,8 * * ? *)"
    assert release_schedule_expression((0, 1439)) == "cron(0,59 0,23 * * ? *)"
    with pytest.raises(ValueError):
        release_schedule_expression(())


def test_without_hold_a_deploy_makes_no_scheduler_call(ctx):
    calls = record_calls(ctx)
    notifier_deploy.deploy(ctx, deploy_input())

    assert not [c for c in calls if "Schedule" in c]
    iam = boto3.client("iam", region_name="us-east-1")
    assert ROLE not in [r["RoleName"] for r in iam.list_roles()["Roles"]]


def test_hold_makes_the_schedule_its_group_and_its_role(ctx):
    report = notifier_deploy.deploy(ctx, deploy_input(holding(zone="Europe/London")))

    actions = {(s.resource, s.name): s.action for s in report.steps}
    assert actions[("schedule group", GROUP)] == "created"
    assert actions[("schedule", f"{GROUP}/{NAME}")] == "created"
    found = schedule()
    assert found["ScheduleExpression"] == "cron(0 7 * * ? *)"
    assert found["ScheduleExpressionTimezone"] == "Europe/London"
    assert found["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = found["Target"]
    assert target["Arn"] == FUNCTION_ARN
    assert target["RoleArn"].endswith(f":role/{ROLE}")
    assert json.loads(target["Input"]) == {
        "iotbuttonRelease": {"scheduledTime": "<aws.scheduler.scheduled-time>"}
    }
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    group_arn = scheduler.get_schedule_group(Name=GROUP)["Arn"]
    tags = scheduler.list_tags_for_resource(ResourceArn=group_arn)["Tags"]
    assert {"Key": "managed-by", "Value": "iotbutton"} in tags

    iam = boto3.client("iam", region_name="us-east-1")
    trust = iam.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    (policy_name,) = iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
    policy = iam.get_role_policy(RoleName=ROLE, PolicyName=policy_name)["PolicyDocument"]
    assert [(s["Action"], s["Resource"]) for s in policy["Statement"]] == [
        ("lambda:InvokeFunction", FUNCTION_ARN)
    ]


def test_a_second_deploy_changes_nothing_and_new_hours_update_the_schedule(ctx):
    notifier_deploy.deploy(ctx, deploy_input(holding()))

    again = notifier_deploy.deploy(ctx, deploy_input(holding()))
    assert again.up_to_date

    button = {"quiet_hours": {"start_minute": 1260, "end_minute": 510, "hold": True}}
    moved = notifier_deploy.deploy(ctx, deploy_input(holding(G030JF0553648RUH=button)))
    actions = {s.name: s.action for s in moved.steps if s.action != "unchanged"}
    assert actions.get(f"{GROUP}/{NAME}") == "updated"
    assert schedule()["ScheduleExpression"] == "cron(0,30 7,8 * * ? *)"


def test_a_deploy_without_hold_removes_them_and_releases_what_is_held(ctx):
    recorded = record_calls(ctx)  # clients made later carry the hook
    notifier_deploy.deploy(ctx, deploy_input(holding()))
    first = len(recorded)

    report = notifier_deploy.deploy(ctx, deploy_input())
    calls = recorded[first:]

    assert report.released_held is True
    removed = [s.name for s in report.steps if s.action == "removed"]
    assert removed == [f"{GROUP}/{NAME}", GROUP, ROLE]  # reverse order of creation
    assert calls.index("DeleteSchedule") < calls.index("Invoke")  # released once it is gone
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    assert GROUP not in [g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]]
    iam = boto3.client("iam", region_name="us-east-1")
    assert ROLE not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert ctx.namespace.get("schedules", f"{GROUP}/{NAME}") is None

    quiet = notifier_deploy.deploy(ctx, deploy_input())
    assert quiet.up_to_date and quiet.released_held is False


def test_a_group_of_that_name_it_did_not_make_is_refused(ctx):
    boto3.client("scheduler", region_name="us-east-1").create_schedule_group(Name=GROUP)

    with pytest.raises(IotButtonError) as refused:
        notifier_deploy.deploy(ctx, deploy_input(holding()))

    assert refused.value.code == "resource-not-ours"


def test_clean_removes_the_schedule_before_the_function_and_the_role_after(ctx, cli):
    notifier_deploy.deploy(ctx, deploy_input(holding()))

    result = cli.json("clean", "--yes")

    assert result["complete"] is True
    kinds = [step["kind"] for step in result["steps"]]
    assert kinds.index("schedules") < kinds.index("schedule_groups")
    assert kinds.index("schedules") < kinds.index("functions") < kinds.index("roles")
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    assert GROUP not in [g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]]


def test_clean_discover_finds_them_after_the_registry_is_lost(ctx, cli, isolated_env):
    notifier_deploy.deploy(ctx, deploy_input(holding()))
    for registry in [*isolated_env.rglob("registry.json"), *isolated_env.rglob("*.journal")]:
        registry.unlink()

    found = cli.json("clean", "--discover", "--dry-run")

    names = {(step["kind"], step["id"]) for step in found["steps"]}
    assert ("schedules", f"{GROUP}/{NAME}") in names
    assert ("schedule_groups", GROUP) in names
    assert ("roles", ROLE) in names
