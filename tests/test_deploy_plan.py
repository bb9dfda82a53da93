"""The deploy planner as data: current state and wanted state in, planned steps out. No AWS,
no moto, no registry: `notify.plan` is a pure function (the end-to-end deploys are in
test_notify_deploy.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from iotbutton_cli.notify import plan
from iotbutton_cli.notify.plan import Current, Step, Wanted
from iotbutton_cli.notify.resources import PUBLIC_ACCESS_BLOCK

SECRET = "s" * 32
ROLE_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "x:Y"}]}
ERROR_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "x:Z"}]}
CONFIG = {
    "Role": "arn:aws:iam::123456789012:role/iotbutton-notifier-us-east-1",
    "Handler": "handler.lambda_handler",
    "Runtime": "python3.13",
    "MemorySize": 128,
    "Timeout": 30,
    "Environment": {
        "Variables": {
            "IOTBUTTON_CONFIG_KEY": "notifier/config-new.json",
            "IOTBUTTON_SECRET_PARAMETER": "/iotbutton/twilio-secret:1",
        }
    },
}
PAYLOAD = {
    "sql": "SELECT serialNumber FROM 'iotbutton/+'",
    "description": "Invokes the iotbutton notifier",
    "ruleDisabled": False,
    "actions": [{"lambda": {"functionArn": "arn:aws:lambda:us-east-1:1:function:n"}}],
}


def wanted(**changes) -> Wanted:
    state = Wanted(
        roles={"role-a": ROLE_POLICY, "role-b": ERROR_POLICY},
        log_groups={"/aws/lambda/iotbutton-notifier": 30, "/iotbutton/rule-errors": 30},
        bucket="bucket",
        config_key="notifier/config-new.json",
        secret=SECRET,
        function={"CodeSha256": "code-1", "config": CONFIG},
        rule_payload=PAYLOAD,
    )
    return replace(state, **changes)


def up_to_date(**changes) -> Current:
    """What AWS has after a deploy of ``wanted()``: the secret at version 3."""
    environment = {**CONFIG["Environment"]["Variables"]}
    environment["IOTBUTTON_SECRET_PARAMETER"] = "/iotbutton/twilio-secret:3"
    function = {
        **CONFIG,
        "FunctionArn": "arn:aws:lambda:us-east-1:1:function:n",
        "CodeSha256": "code-1",
        "LastModified": "2024-01-01",  # what AWS adds is not a difference
        "Environment": {"Variables": environment},
    }
    state = Current(
        roles={
            "role-a": {"Arn": "a", "policy": ROLE_POLICY},
            "role-b": {"Arn": "b", "policy": ERROR_POLICY},
        },
        log_groups={
            "/aws/lambda/iotbutton-notifier": {"retentionInDays": 30},
            "/iotbutton/rule-errors": {"retentionInDays": 30},
        },
        bucket={"untagged": False, "public_access_block": PUBLIC_ACCESS_BLOCK, "encrypted": True},
        config_object=True,
        secret={"Type": "SecureString", "Value": SECRET, "Version": 3},
        table={"TableArn": "t", "billing_mode": "PAY_PER_REQUEST", "ttl_attribute": "expiresAt"},
        function=function,
        function_url={"FunctionUrl": "https://u.lambda-url/", "AuthType": "NONE", "public": True},
        rule={**PAYLOAD, "ruleName": "iotbutton_notifier"},
        rule_permission=True,
        default_rule_recorded=True,
        config_objects=("notifier/config-new.json",),
    )
    return replace(state, **changes)


def changed(result: plan.Plan) -> dict[str, Step]:
    return {
        step.resource + " " + step.name: step for step in result.steps if step.changes_something
    }


def test_nothing_in_aws_plans_every_resource_created_in_dependency_order():
    result = plan.plan(Current(), wanted())

    assert [(s.resource, s.name, s.action) for s in result.steps] == [
        ("IAM role", "role-a", "create"),
        ("IAM role", "role-b", "create"),
        ("log group", "/aws/lambda/iotbutton-notifier", "create"),
        ("log group", "/iotbutton/rule-errors", "create"),
        ("S3 bucket", "bucket", "create"),
        ("config object", "notifier/config-new.json", "create"),
        ("SSM parameter", "/iotbutton/twilio-secret", "create"),
        ("DynamoDB table", "iotbutton-alarms", "create"),
        ("Lambda function", "iotbutton-notifier", "create"),
        ("function URL", "iotbutton-notifier URL", "create"),
        ("topic rule", "iotbutton_notifier", "create"),
    ]
    assert result.change_count == 11 and not result.up_to_date
    assert [s.outcome for s in result.steps] == ["created"] * 11
    assert result.config_key == "notifier/config-new.json"


def test_what_aws_has_already_plans_nothing():
    result = plan.plan(up_to_date(), wanted())

    assert result.up_to_date
    assert {s.action for s in result.steps} == {"unchanged"}
    assert all(s.changes == () for s in result.steps)


def test_a_table_without_ttl_is_updated_and_its_capacity_mode_left_alone():
    table = {"TableArn": "t", "billing_mode": "PROVISIONED", "ttl_attribute": None}

    steps = changed(plan.plan(up_to_date(table=table), wanted()))

    assert steps == {
        "DynamoDB table iotbutton-alarms": Step(
            "DynamoDB table", "iotbutton-alarms", "update", ("time to live",)
        )
    }


def test_an_inline_policy_is_compared_as_a_document_not_as_text():
    roles = {"role-a": {"Arn": "a", "policy": json.dumps(ROLE_POLICY)}, "role-b": None}

    result = plan.plan(up_to_date(roles=roles), wanted())

    assert changed(result) == {"IAM role role-b": Step("IAM role", "role-b", "create")}


def test_a_changed_policy_and_retention_are_updates_that_say_what_differs():
    current = up_to_date(
        roles={
            "role-a": {"Arn": "a", "policy": ERROR_POLICY},
            "role-b": {"Arn": "b", "policy": None},
        },
        log_groups={
            "/aws/lambda/iotbutton-notifier": {"retentionInDays": None},
            "/iotbutton/rule-errors": {"retentionInDays": 30},
        },
    )

    steps = changed(plan.plan(current, wanted()))

    assert steps == {
        "IAM role role-a": Step("IAM role", "role-a", "update", ("inline policy",)),
        "IAM role role-b": Step("IAM role", "role-b", "update", ("inline policy",)),
        "log group /aws/lambda/iotbutton-notifier": Step(
            "log group", "/aws/lambda/iotbutton-notifier", "update", ("retention",)
        ),
    }
    assert [s.outcome for s in steps.values()] == ["updated"] * 3


def test_a_bucket_left_untagged_public_and_unencrypted():
    bucket = {"untagged": True, "public_access_block": {}, "encrypted": False}

    step = plan.bucket_step("bucket", bucket)

    assert step == Step(
        "S3 bucket", "bucket", "update", ("tags", "public access block", "encryption")
    )
    partly = {**PUBLIC_ACCESS_BLOCK, "RestrictPublicBuckets": False}
    assert plan.bucket_step(
        "bucket", {"public_access_block": partly, "encrypted": True}
    ).changes == ("public access block",)


def test_a_new_secret_updates_the_parameter_and_the_functions_environment():
    result = plan.plan(up_to_date(), wanted(secret="t" * 32))

    assert changed(result) == {
        "SSM parameter /iotbutton/twilio-secret": Step(
            "SSM parameter", "/iotbutton/twilio-secret", "update", ("value",)
        ),
        # The environment names the next parameter version, 4, so warm containers start afresh.
        "Lambda function iotbutton-notifier": Step(
            "Lambda function", "iotbutton-notifier", "update", ("environment",)
        ),
    }


def test_a_secret_stored_as_plain_string_becomes_a_secure_string():
    current = {"Type": "String", "Value": SECRET, "Version": 3}

    step = plan.secret_step("/iotbutton/twilio-secret", current, SECRET)

    assert step.action == "update" and step.changes == ("type",)
    assert plan.secret_version(current, step) == 4
    assert plan.secret_version(None, plan.secret_step("p", None, SECRET)) == 1
    assert plan.secret_version(current, replace(step, action="unchanged", changes=())) == 3


def test_the_secret_is_compared_but_never_in_a_plan():
    result = plan.plan(
        up_to_date(secret={"Type": "SecureString", "Value": "old", "Version": 1}), wanted()
    )

    assert SECRET not in repr(result) and "old" not in repr(result)
    assert SECRET not in repr(wanted()) and SECRET not in repr(up_to_date())


def test_new_code_and_settings_are_named():
    function = {**up_to_date().function, "CodeSha256": "code-0", "MemorySize": 256, "Timeout": 3}

    step = plan.function_step(
        "iotbutton-notifier", function, wanted().function | {"config": CONFIG}
    )

    assert step.changes == ("code", "memory", "timeout", "environment")  # and secret version 1≠3


def test_a_new_config_object_replaces_the_old_one_last():
    current = up_to_date(
        config_object=False, config_objects=("notifier/config-old.json", "notifier/config-new.json")
    )
    config_key = "notifier/config-new.json"

    result = plan.plan(current, wanted())

    assert result.steps[5] == Step("config object", config_key, "create")
    assert result.steps[-1] == Step("old config objects", "notifier/config-old.json", "update")
    assert plan.stale_objects_step((config_key,), keep=config_key) is None


@pytest.mark.parametrize(
    ("rule", "permission", "expected"),
    [
        (None, True, Step("topic rule", "iotbutton_notifier", "create")),
        ({**PAYLOAD, "sql": "SELECT * FROM 'x'"}, True, ("rule",)),
        (PAYLOAD, False, ("invoke permission",)),
        ({**PAYLOAD, "ruleDisabled": True}, False, ("rule", "invoke permission")),
        # The description is how iotbutton knows its rules, not a setting it corrects.
        ({**PAYLOAD, "description": "edited"}, True, ()),
    ],
)
def test_the_default_rule_and_its_permission(rule, permission, expected):
    step = plan.plan(up_to_date(rule=rule, rule_permission=permission), wanted()).steps[10]

    if isinstance(expected, Step):
        assert step == expected
    else:
        assert step.changes == expected
        assert step.action == ("update" if expected else "unchanged")


def test_without_the_default_rule_a_recorded_one_is_removed_and_an_unrecorded_one_left():
    removed = plan.plan(up_to_date(), wanted(rule_payload=None))
    left = plan.plan(up_to_date(default_rule_recorded=False), wanted(rule_payload=None))

    assert removed.steps[-1] == Step("topic rule", "iotbutton_notifier", "remove")
    assert removed.steps[-1].outcome == "removed"
    assert [s.resource for s in left.steps].count("topic rule") == 0
    assert left.up_to_date
