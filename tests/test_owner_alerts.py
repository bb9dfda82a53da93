"""Nothing dropped silently, as `notify deploy` makes it: the failures function as the notifier's
on-failure destination, the owner's SNS topic subscribed to notify.yaml's `owner`, the metric
filter and CloudWatch alarms that tell the owner; all recorded, refused when foreign, removed by
`clean`."""

from __future__ import annotations

import json

import boto3
import pytest

from support import TWILIO_SECRET, notify_init_args

REGION = "us-east-1"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:iotbutton-owner"
FAILURES_ARN = "arn:aws:lambda:us-east-1:123456789012:function:iotbutton-notifier-failures"
OWNER_SMS, OWNER_EMAIL = "+15551230009", "owner@example.com"


@pytest.fixture
def notify_yaml(cli, aws, isolated_env, monkeypatch):
    """A notify.yaml with an owner; returns a function that rewrites the owner block."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    cli(*notify_init_args("Grandma"))
    path = isolated_env / "config" / "notify.yaml"
    template = path.read_text()

    def with_owner(block: str) -> None:
        path.write_text(template + "\n" + block)

    with_owner(f'owner:\n  sms: "{OWNER_SMS}"\n  email: "{OWNER_EMAIL}"\n')
    return with_owner


def subscriptions() -> set[tuple[str, str]]:
    sns = boto3.client("sns", region_name=REGION)
    found = sns.list_subscriptions_by_topic(TopicArn=TOPIC_ARN)["Subscriptions"]
    return {(item["Protocol"], item["Endpoint"]) for item in found}


def test_deploy_makes_the_owner_alerts(cli, notify_yaml, isolated_env):
    result = cli.json("notify", "deploy")

    made = {(s["resource"], s["name"]) for s in result["steps"]}
    assert {
        ("SNS topic", "iotbutton-owner"),
        ("Lambda function", "iotbutton-notifier-failures"),
        ("asynchronous invocation", "iotbutton-notifier async config"),
        ("asynchronous invocation", "iotbutton-notifier-failures async config"),
        ("metric filter", "/iotbutton/rule-errors"),
        ("CloudWatch alarm", "iotbutton-notifier-errors"),
        ("CloudWatch alarm", "iotbutton-rule-errors"),
    } <= made
    sns = boto3.client("sns", region_name=REGION)
    tags = sns.list_tags_for_resource(ResourceArn=TOPIC_ARN)["Tags"]
    assert {"Key": "managed-by", "Value": "iotbutton"} in tags
    assert subscriptions() == {("sms", OWNER_SMS), ("email", OWNER_EMAIL)}

    lam = boto3.client("lambda", region_name=REGION)
    failures = lam.get_function(FunctionName="iotbutton-notifier-failures")["Configuration"]
    notifier = lam.get_function(FunctionName="iotbutton-notifier")["Configuration"]
    assert failures["Handler"] == "notifier_lambda.failures.failure_handler"
    assert failures["CodeSha256"] == notifier["CodeSha256"]  # one bundle
    assert failures["Role"] == notifier["Role"]
    assert "IOTBUTTON_CALLBACK_URL" not in failures["Environment"]["Variables"]
    assert failures["Environment"]["Variables"]["IOTBUTTON_OWNER_TOPIC"] == TOPIC_ARN
    config = lam.get_function_event_invoke_config(FunctionName="iotbutton-notifier")
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 3600
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == FAILURES_ARN
    own = lam.get_function_event_invoke_config(FunctionName="iotbutton-notifier-failures")
    assert not own.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")

    logs = boto3.client("logs", region_name=REGION)
    [metric_filter] = logs.describe_metric_filters(logGroupName="/iotbutton/rule-errors")[
        "metricFilters"
    ]
    assert metric_filter["filterPattern"] == ""
    assert metric_filter["metricTransformations"][0]["metricNamespace"] == "iotbutton"
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert sorted(alarms) == ["iotbutton-notifier-errors", "iotbutton-rule-errors"]
    assert all(alarm["AlarmActions"] == [TOPIC_ARN] for alarm in alarms.values())
    assert alarms["iotbutton-rule-errors"]["MetricName"] == "RuleErrors"
    watched = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
        for m in alarms["iotbutton-notifier-errors"]["Metrics"]
        if "MetricStat" in m
    }
    assert watched == {"iotbutton-notifier", "iotbutton-notifier-failures"}

    registry = json.loads((isolated_env / "registry.json").read_text())
    resources = next(iter(registry["namespaces"].values()))["resources"]
    assert resources["topics"]["iotbutton-owner"]["subscriptions"] == [
        f"email:{OWNER_EMAIL}",
        f"sms:{OWNER_SMS}",
    ]
    assert sorted(resources["metric_alarms"]) == sorted(alarms)
    assert "iotbutton-notifier-failures" in resources["functions"]


def test_a_second_deploy_changes_nothing_and_a_new_owner_only_the_subscriptions(cli, notify_yaml):
    cli("notify", "deploy")
    assert cli.json("notify", "deploy", "--dry-run")["up_to_date"] is True

    notify_yaml('owner:\n  sms: "+15551230008"\n')
    plan = cli.json("notify", "deploy", "--dry-run")
    changed = [s for s in plan["steps"] if s["action"] != "unchanged"]
    assert changed == [
        {
            "resource": "SNS topic",
            "name": "iotbutton-owner",
            "action": "update",
            "changes": ["subscriptions"],
        }
    ]
    cli("notify", "deploy")

    assert subscriptions() == {("sms", "+15551230008")}


def test_without_an_owner_the_topic_has_no_subscribers(cli, notify_yaml):
    notify_yaml("")
    cli("notify", "deploy")

    assert subscriptions() == set()


def test_a_foreign_topic_of_our_name_is_refused_before_anything_changes(cli, notify_yaml):
    boto3.client("sns", region_name=REGION).create_topic(Name="iotbutton-owner")

    result = cli("notify", "deploy", code=1)

    assert "The SNS topic iotbutton-owner exists but was not made by iotbutton." in result.stderr
    assert boto3.client("lambda", region_name=REGION).list_functions()["Functions"] == []
    assert subscriptions() == set()


def test_a_foreign_table_of_our_name_is_refused_before_anything_changes(cli, notify_yaml):
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName="iotbutton-alarms",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    result = cli("notify", "deploy", code=1)

    assert "The DynamoDB table iotbutton-alarms exists but was not made by iotbutton." in (
        result.stderr
    )
    assert boto3.client("lambda", region_name=REGION).list_functions()["Functions"] == []


def their_alarm(name: str) -> None:
    """Someone else's CloudWatch alarm, untagged."""
    boto3.client("cloudwatch", region_name=REGION).put_metric_alarm(
        AlarmName=name,
        MetricName="Theirs",
        Namespace="theirs",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )


def test_a_foreign_alarm_of_our_name_is_refused(cli, notify_yaml):
    their_alarm("iotbutton-rule-errors")

    result = cli("notify", "deploy", code=1)

    assert "The CloudWatch alarm iotbutton-rule-errors exists but was not made" in result.stderr


def test_clean_removes_the_owner_alerts_and_leaves_what_is_not_ours(cli, notify_yaml):
    cli("notify", "deploy")
    sns = boto3.client("sns", region_name=REGION)
    theirs = sns.create_topic(Name="their-topic")["TopicArn"]
    their_alarm("their-alarm")
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)

    result = cli.json("clean", "--yes")

    assert result["complete"] is True
    assert [t["TopicArn"] for t in sns.list_topics()["Topics"]] == [theirs]
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]] == ["their-alarm"]
    assert boto3.client("lambda", region_name=REGION).list_functions()["Functions"] == []
    order = [step["kind"] for step in result["steps"]]
    assert order.index("functions") < order.index("metric_alarms") < order.index("topics")


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ('owner:\n  sms: "555-1234"\n', "'555-1234' in owner.sms is not an E.164 phone number"),
        ('owner:\n  email: "not an address"\n', "in owner.email is not an e-mail address"),
        ("owner:\n  pager: 1\n", "unknown setting 'pager' in owner"),
        ('owner: "+15551230009"\n', "owner must have sms or email, not text"),
        ("owner: {}\n", "owner has neither sms nor email"),
    ],
)
def test_a_bad_owner_is_a_one_line_error_with_its_line(
    cli, notify_yaml, isolated_env, block, error
):
    notify_yaml(block)
    lines = (isolated_env / "config" / "notify.yaml").read_text().splitlines()
    line = lines.index(block.splitlines()[0]) + 1

    result = cli("notify", "check", code=2)

    assert error in result.stderr
    assert "notify.yaml:" in result.stderr and "Traceback" not in result.stderr
    assert any(f"notify.yaml:{n}:" in result.stderr for n in (line, line + 1))


def test_notify_check_shows_the_owner(cli, notify_yaml):
    checked = cli.json("notify", "check")

    assert checked["owner"] == {"sms": OWNER_SMS, "email": OWNER_EMAIL}
    assert f"sms {OWNER_SMS}, email {OWNER_EMAIL}" in cli("notify", "check").stdout


@pytest.mark.parametrize(
    ("message", "retried"),
    [
        (
            "The function execution role does not have permissions to call InvokeFunction on "
            f"{FAILURES_ARN}",
            True,
        ),
        (f"The destination ARN {FAILURES_ARN} is invalid.", True),
        ("1 validation error detected: MaximumRetryAttempts", False),
    ],
)
def test_a_role_not_yet_allowed_to_reach_the_destination_is_waited_for(message, retried):
    from botocore.exceptions import ClientError

    from iotbutton_cli.notify import alerts

    error = ClientError(
        {"Error": {"Code": "InvalidParameterValueException", "Message": message}},
        "PutFunctionEventInvokeConfig",
    )

    assert alerts._destination_not_ready(error) is retried


def test_the_errors_alarm_counts_an_idle_function_as_zero():
    """Lambda publishes no Errors datapoint for a function not invoked in a period, and metric
    math's sum with a missing term is missing: FILL keeps the notifier's errors alarming alone."""
    from iotbutton_cli.notify import resources

    class Context:
        partition, region, account_id = "aws", REGION, "123456789012"

        def arn(self, service: str, resource: str) -> str:
            return f"arn:aws:{service}:{REGION}:123456789012:{resource}"

    metrics = resources.metric_alarms(Context())["iotbutton-notifier-errors"]["Metrics"]  # type: ignore[arg-type]
    [expression] = [m["Expression"] for m in metrics if "Expression" in m]
    assert expression == "FILL(notifier, 0) + FILL(failures, 0) + FILL(throttled, 0)"
