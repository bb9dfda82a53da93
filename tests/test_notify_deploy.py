"""`notify deploy` at the service level, against moto: resources, least privilege, idempotency."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile

import boto3
import pytest

from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.lifecycle import teardown
from iotbutton_cli.notify import bundle as bundles
from iotbutton_cli.notify import deploy as notifier_deploy
from iotbutton_cli.notify import rules
from iotbutton_cli.notify.resources import RUNTIME

SECRET = "f" * 32
DOCUMENT = {
    "version": 1,
    "account_sid": "AC" + "0" * 32,
    "api_key_sid": None,
    "from": "+15005550006",
    "person": "Grandma",
    "clicks": {"SINGLE": {"sms": ["+15551230001"], "call": [], "message": "Hi {person}"}},
}
MUTATING = (
    "Create",
    "Put",
    "Update",
    "Delete",
    "Add",
    "Remove",
    "Replace",
    "Attach",
    "Detach",
    "Tag",
)


def bundle_bytes(text: str = "def lambda_handler(event, context):\n    return {}\n") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # Laid out as the real bundle is, so the default handler string finds it.
        archive.writestr(zipfile.ZipInfo("notifier_lambda/__init__.py", (1980, 1, 1, 0, 0, 0)), "")
        archive.writestr(zipfile.ZipInfo("notifier_lambda/handler.py", (1980, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def deploy_input(document=DOCUMENT, secret=SECRET, code=None):
    data = code or bundle_bytes()
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return notifier_deploy.DeployInput(document, secret, data, sha)


def record_calls(ctx: AppContext) -> list[str]:
    calls: list[str] = []
    ctx.session.events.register("before-call", lambda model, **_: calls.append(model.name))
    return calls


@pytest.fixture
def ctx(aws):
    return AppContext()


def test_deploy_creates_every_resource(ctx):
    report = notifier_deploy.deploy(ctx, deploy_input())

    assert [s.action for s in report.steps] == ["created"] * len(report.steps)
    lam = boto3.client("lambda", region_name="us-east-1")
    function = lam.get_function(FunctionName="iotbutton-notifier")["Configuration"]
    env = function["Environment"]["Variables"]
    assert env == {
        "IOTBUTTON_ALARM_TABLE": "iotbutton-alarms",
        "IOTBUTTON_CALLBACK_URL": lam.get_function_url_config(FunctionName="iotbutton-notifier")[
            "FunctionUrl"
        ],
        "IOTBUTTON_CONFIG_BUCKET": "iotbutton-config-123456789012-us-east-1",
        "IOTBUTTON_CONFIG_KEY": report.config_key,
        # Where the function writes each click's shadow: the account's ATS data endpoint.
        "IOTBUTTON_DATA_ENDPOINT": "https://"
        + boto3.client("iot", region_name="us-east-1").describe_endpoint(
            endpointType="iot:Data-ATS"
        )["endpointAddress"],
        "IOTBUTTON_OWNER_TOPIC": "arn:aws:sns:us-east-1:123456789012:iotbutton-owner",
        "IOTBUTTON_SECRET_PARAMETER": "/iotbutton/twilio-secret:1",
        "IOTBUTTON_TWILIO_TIMEOUT": "5",
    }
    assert function["Runtime"] == RUNTIME
    assert function["Handler"] == "notifier_lambda.handler.lambda_handler" == bundles.HANDLER
    assert SECRET not in json.dumps(function)

    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = env["IOTBUTTON_CONFIG_BUCKET"]
    stored = json.loads(s3.get_object(Bucket=bucket, Key=report.config_key)["Body"].read())
    assert stored == DOCUMENT and SECRET not in json.dumps(stored)
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    assert s3.get_bucket_encryption(Bucket=bucket)

    ssm = boto3.client("ssm", region_name="us-east-1")
    parameter = ssm.get_parameter(Name="/iotbutton/twilio-secret", WithDecryption=True)
    assert parameter["Parameter"]["Type"] == "SecureString"
    assert parameter["Parameter"]["Value"] == SECRET

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table = dynamodb.describe_table(TableName="iotbutton-alarms")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert dynamodb.describe_time_to_live(TableName="iotbutton-alarms")[
        "TimeToLiveDescription"
    ] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    tags = dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert {"Key": "managed-by", "Value": "iotbutton"} in tags

    iot = boto3.client("iot", region_name="us-east-1")
    rule = iot.get_topic_rule(ruleName="iotbutton_notifier")["rule"]
    assert (
        rule["sql"]
        == rules.DEFAULT_SQL
        == (
            "SELECT serialNumber, clickType, batteryVoltage, topic(2) AS topicSerial, "
            "timestamp() AS clickedAt FROM 'iotbutton/+'"
        )
    )
    assert rule["awsIotSqlVersion"] == "2016-03-23"
    assert rule["actions"] == [{"lambda": {"functionArn": function["FunctionArn"]}}]
    assert rule["errorAction"]["cloudwatchLogs"]["logGroupName"] == "/iotbutton/rule-errors"
    statements = json.loads(lam.get_policy(FunctionName="iotbutton-notifier")["Policy"])[
        "Statement"
    ]
    by_sid = {s["Sid"]: s for s in statements}
    assert sorted(by_sid) == [
        "iotbutton-function-url",
        "iotbutton-function-url-invoke",
        "iotbutton-rule-iotbutton_notifier",
    ]
    # The function URL is public, for Twilio's receipts (the function checks their signature).
    url = lam.get_function_url_config(FunctionName="iotbutton-notifier")
    assert url["AuthType"] == "NONE"
    public = {(s["Action"], s["Principal"]) for sid, s in by_sid.items() if "url" in sid}
    assert public == {("lambda:InvokeFunctionUrl", "*"), ("lambda:InvokeFunction", "*")}
    statement = by_sid["iotbutton-rule-iotbutton_notifier"]
    assert statement["Principal"] == {"Service": "iot.amazonaws.com"}
    assert statement["Condition"] == {
        "ArnLike": {"AWS:SourceArn": "arn:aws:iot:us-east-1:123456789012:rule/iotbutton_notifier"},
        "StringEquals": {"AWS:SourceAccount": "123456789012"},
    }
    logs = boto3.client("logs", region_name="us-east-1")
    groups = {
        g["logGroupName"]: g.get("retentionInDays") for g in logs.describe_log_groups()["logGroups"]
    }
    assert groups == {
        "/aws/lambda/iotbutton-notifier": 30,
        "/aws/lambda/iotbutton-notifier-failures": 30,
        "/iotbutton/rule-errors": 30,
    }


def test_function_role_is_least_privilege(ctx):
    notifier_deploy.deploy(ctx, deploy_input())
    iam = boto3.client("iam", region_name="us-east-1")
    role = "iotbutton-notifier-us-east-1"

    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"},
        }
    ]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    policy = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
    grants = {s["Sid"]: (s["Action"], s["Resource"]) for s in policy["Statement"]}
    assert grants == {
        "ReadConfig": (
            "s3:GetObject",
            "arn:aws:s3:::iotbutton-config-123456789012-us-east-1/notifier/config-*",
        ),
        "ReadTwilioSecret": (
            "ssm:GetParameter",
            "arn:aws:ssm:us-east-1:123456789012:parameter/iotbutton/twilio-secret",
        ),
        "KeepAlarmLedger": (
            [
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            "arn:aws:dynamodb:us-east-1:123456789012:table/iotbutton-alarms",
        ),
        "HandOnFailures": (
            "lambda:InvokeFunction",
            "arn:aws:lambda:us-east-1:123456789012:function:iotbutton-notifier-failures",
        ),
        "TellOwner": ("sns:Publish", "arn:aws:sns:us-east-1:123456789012:iotbutton-owner"),
        "WriteOwnLogs": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [
                "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/iotbutton-notifier:*",
                "arn:aws:logs:us-east-1:123456789012:log-group:"
                "/aws/lambda/iotbutton-notifier-failures:*",
            ],
        ),
    }
    for statement in policy["Statement"]:
        assert "*" not in statement["Action"] and statement["Resource"] != "*"


def test_second_deploy_makes_no_mutating_call(ctx):
    notifier_deploy.deploy(ctx, deploy_input())
    again = AppContext()
    calls = record_calls(again)

    report = notifier_deploy.deploy(again, deploy_input())

    assert report.up_to_date
    assert [c for c in calls if c.startswith(MUTATING)] == []


def test_changed_code_config_and_secret_are_updated(ctx):
    first = notifier_deploy.deploy(ctx, deploy_input())
    document = {**DOCUMENT, "person": "Grandpa"}
    code = bundle_bytes("def lambda_handler(event, context):\n    return {'v': 2}\n")

    report = notifier_deploy.deploy(AppContext(), deploy_input(document, "e" * 32, code))

    actions = {s.name: s.action for s in report.steps}
    assert actions["iotbutton-notifier"] == "updated"
    assert actions["/iotbutton/twilio-secret"] == "updated"
    assert actions[report.config_key] == "created"
    assert report.config_key != first.config_key
    lam = boto3.client("lambda", region_name="us-east-1")
    function = lam.get_function(FunctionName="iotbutton-notifier")["Configuration"]
    assert function["CodeSha256"] == deploy_input(code=code).code_sha256
    env = function["Environment"]["Variables"]
    assert env["IOTBUTTON_CONFIG_KEY"] == report.config_key
    assert env["IOTBUTTON_SECRET_PARAMETER"] == "/iotbutton/twilio-secret:2"
    s3 = boto3.client("s3", region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=env["IOTBUTTON_CONFIG_BUCKET"])["Contents"]]
    assert keys == [report.config_key]  # the old config object is gone


def test_clean_removes_every_notifier_resource(ctx, cli):
    notifier_deploy.deploy(ctx, deploy_input())
    cli("things", "create", "G030JF0553648RUH")

    result = cli.json("clean", "--yes")

    assert result["complete"] is True
    kinds = [step["kind"] for step in result["steps"]]
    assert kinds.index("topic_rules") < kinds.index("functions") < kinds.index("roles")
    assert kinds.index("lambda_permissions") < kinds.index("functions")
    lam = boto3.client("lambda", region_name="us-east-1")
    assert lam.list_functions()["Functions"] == []
    iam = boto3.client("iam", region_name="us-east-1")
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == []
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    assert boto3.client("ssm", region_name="us-east-1").describe_parameters()["Parameters"] == []
    assert boto3.client("logs", region_name="us-east-1").describe_log_groups()["logGroups"] == []
    assert boto3.client("iot", region_name="us-east-1").list_topic_rules()["rules"] == []
    assert [k.name for k in teardown.KINDS][:2] == ["topic_rules", "lambda_permissions"]


def test_refuses_to_take_over_a_role_it_did_not_make(ctx):
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_role(RoleName="iotbutton-notifier-us-east-1", AssumeRolePolicyDocument="{}")
    from iotbutton_cli.errors import IotButtonError

    with pytest.raises(IotButtonError) as raised:
        notifier_deploy.deploy(ctx, deploy_input())
    assert raised.value.code == "resource-not-ours"
    assert iam.list_role_policies(RoleName="iotbutton-notifier-us-east-1")["PolicyNames"] == []


def test_rules_commands(ctx, cli):
    assert "notify deploy" in cli("rules", "create", "--name", "iotbutton_x", code=1).stderr
    notifier_deploy.deploy(ctx, deploy_input())

    created = cli.json(
        "rules",
        "create",
        "--name",
        "iotbutton_long_only",
        "--sql",
        "SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'",
    )
    assert created["action"] == "created" and created["permission"] is True
    assert created["sql"] == (
        "SELECT serialNumber, clickType, batteryVoltage, topic(2) AS topicSerial, "
        "timestamp() AS clickedAt FROM 'iotbutton/+' WHERE clickType = 'LONG'"
    )
    one = cli.json("rules", "create", "--serial", "G030JF0553648RUH")
    assert one["name"] == "iotbutton_G030JF0553648RUH"
    assert one["sql"] == (
        "SELECT serialNumber, clickType, batteryVoltage, topic(2) AS topicSerial, "
        "timestamp() AS clickedAt FROM 'iotbutton/G030JF0553648RUH'"
    )
    names = [r["name"] for r in cli.json("rules", "list")]
    assert names == ["iotbutton_G030JF0553648RUH", "iotbutton_long_only", "iotbutton_notifier"]
    assert cli.json("rules", "show", "iotbutton_long_only")["enabled"] is True

    lam = boto3.client("lambda", region_name="us-east-1")
    sids = {
        s["Sid"]
        for s in json.loads(lam.get_policy(FunctionName="iotbutton-notifier")["Policy"])[
            "Statement"
        ]
    }
    assert "iotbutton-rule-iotbutton_long_only" in sids

    cli("rules", "delete", "iotbutton_long_only", "--yes")
    sids = {
        s["Sid"]
        for s in json.loads(lam.get_policy(FunctionName="iotbutton-notifier")["Policy"])[
            "Statement"
        ]
    }
    assert "iotbutton-rule-long_only" not in sids
    iot = boto3.client("iot", region_name="us-east-1")
    assert "iotbutton_long_only" not in [r["ruleName"] for r in iot.list_topic_rules()["rules"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "bad-name"], "Invalid rule name 'bad-name'"),
        (
            ["--name", "iotbutton_ok", "--sql", "DROP TABLE x"],
            "Cannot read --sql at column 1: expected SELECT, found 'DROP'.",
        ),
        (
            ["--name", "iotbutton_ok", "--sql", "SELECT * FROM 'iotbutton/#/x'"],
            "Cannot read --sql at column 26: '#' may only be the last topic level.",
        ),
        (
            ["--name", "iotbutton_ok", "--sql", "SELECT *, serialNumber AS topicSerial FROM 'a'"],
            "The --sql sets topicSerial from the payload, not from the topic.",
        ),
        (["--serial", "a/b"], "Invalid serial"),
        (["--serial", "A1", "--sql", "SELECT * FROM 'x'"], "not both"),
        ([], "A rule needs a --name."),
    ],
)
def test_rules_create_rejects_bad_input_before_any_aws_call(cli, aws, args, message):
    result = cli("rules", "create", *args, code=2)
    assert message in result.stderr


def test_no_default_rule_removes_it_and_keeps_custom_rules(ctx, cli):
    notifier_deploy.deploy(ctx, deploy_input())
    cli(
        "rules",
        "create",
        "--name",
        "iotbutton_long",
        "--sql",
        "SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'",
    )

    report = notifier_deploy.deploy(
        AppContext(),
        notifier_deploy.DeployInput(**{**deploy_input().__dict__, "default_rule": False}),
    )

    assert ("topic rule", "iotbutton_notifier", "removed") in [
        (s.resource, s.name, s.action) for s in report.steps
    ]
    iot = boto3.client("iot", region_name="us-east-1")
    assert [r["ruleName"] for r in iot.list_topic_rules()["rules"]] == ["iotbutton_long"]
    again = notifier_deploy.deploy(
        AppContext(),
        notifier_deploy.DeployInput(**{**deploy_input().__dict__, "default_rule": False}),
    )
    assert again.up_to_date


def test_a_second_machine_adopts_the_deployed_notifier(ctx, isolated_env):
    """Another machine (or a lost registry): everything is recognised as ours, not refused."""
    notifier_deploy.deploy(ctx, deploy_input())
    for lost in ("registry.json", "registry.json.journal"):  # the journal the deploy appended to
        (isolated_env / lost).unlink(missing_ok=True)

    report = notifier_deploy.deploy(AppContext(), deploy_input())

    assert report.up_to_date


def test_a_bad_sql_is_one_usage_line_with_the_column_and_an_example(cli, aws):
    sql = "SELECT * FROM 'iotbutton/+' WHERE clickType LIKE 'L%'"

    result = cli("rules", "create", "--name", "iotbutton_long", "--sql", sql, "--json", code=2)

    error = json.loads(result.stdout)["error"]
    assert error == {
        "code": "bad-rule-sql",
        "message": "Cannot read --sql at column 45: expected a comparison "
        "(=, <>, <, <=, >, >=), found 'LIKE'.",
        "hint": "iotbutton understands SELECT *, fields, topic(n) and timestamp() [AS name] FROM "
        "'<topic filter>' [WHERE comparisons with AND, OR, NOT], "
        "e.g. --sql \"SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'\".",
        "exit_status": 2,
    }
    assert sql[44:48] == "LIKE"  # column 45, counted from 1
    human = cli("rules", "create", "--name", "iotbutton_long", "--sql", sql, code=2)
    assert human.stderr.count("\n") == 2, "one line for the error, one for the hint"


def test_rules_create_adds_the_topics_serial_and_shows_the_sql_it_used(ctx, cli):
    notifier_deploy.deploy(ctx, deploy_input())
    sql = "SELECT clickType, batteryVoltage FROM 'iotbutton/+' WHERE clickType = 'LONG'"

    result = cli("rules", "create", "--name", "iotbutton_long", "--sql", sql)

    used = (
        "SELECT clickType, batteryVoltage, topic(2) AS topicSerial, timestamp() AS clickedAt "
        "FROM 'iotbutton/+' WHERE clickType = 'LONG'"
    )
    assert result.stdout == f"Rule iotbutton_long created: {used}\n"
    assert "Selected serialNumber, clickType, batteryVoltage, topic(2)" in result.stderr
    iot = boto3.client("iot", region_name="us-east-1")
    assert iot.get_topic_rule(ruleName="iotbutton_long")["rule"]["sql"] == used
    again = cli.json("rules", "create", "--name", "iotbutton_long", "--sql", sql)
    assert again["action"] == "unchanged" and again["sql"] == used


def test_rules_create_keeps_a_topic_serial_the_sql_already_takes_from_the_topic(ctx, cli):
    notifier_deploy.deploy(ctx, deploy_input())
    sql = (
        "SELECT serialNumber, clickType, batteryVoltage, topic(3) AS topicSerial, "
        "timestamp() AS clickedAt FROM 'site/+/x'"
    )

    result = cli("rules", "create", "--name", "iotbutton_site", "--sql", sql)

    assert result.stdout == f"Rule iotbutton_site created: {sql}\n"
    assert "Selected" not in result.stderr


def test_a_redeploy_moves_the_default_rule_to_the_topics_serial(ctx):
    """A rule made before the notifier trusted only the topic gets the new SQL."""
    notifier_deploy.deploy(ctx, deploy_input())
    iot = boto3.client("iot", region_name="us-east-1")
    rule = iot.get_topic_rule(ruleName="iotbutton_notifier")["rule"]
    old = {key: rule[key] for key in ("actions", "errorAction", "description", "ruleDisabled")}
    iot.replace_topic_rule(
        ruleName="iotbutton_notifier",
        topicRulePayload={
            **old,
            "sql": "SELECT * FROM 'iotbutton/+'",
            "awsIotSqlVersion": "2016-03-23",
        },
    )

    report = notifier_deploy.deploy(AppContext(), deploy_input())

    steps = {(step.resource, step.name): step.action for step in report.steps}
    assert steps[("topic rule", "iotbutton_notifier")] == "updated"
    assert iot.get_topic_rule(ruleName="iotbutton_notifier")["rule"]["sql"] == (
        "SELECT serialNumber, clickType, batteryVoltage, topic(2) AS topicSerial, "
        "timestamp() AS clickedAt FROM 'iotbutton/+'"
    )


# --- notify deploy --dry-run ---------------------------------------------------------------------

READS = ("Get", "List", "Describe", "Head")


@pytest.fixture
def every_call(monkeypatch):
    """The operation names of every AWS call any AppContext makes (the CLI's included)."""
    from functools import cached_property

    calls: list[str] = []
    make_session = AppContext.__dict__["session"].func

    def session(self):
        created = make_session(self)
        created.events.register("before-call", lambda model, **_: calls.append(model.name))
        return created

    hooked = cached_property(session)
    hooked.__set_name__(AppContext, "session")
    monkeypatch.setattr(AppContext, "session", hooked)
    return calls


def test_a_dry_run_plans_every_resource_and_changes_nothing(ctx, isolated_env, every_call):
    plan = notifier_deploy.plan_deploy(ctx, deploy_input())

    assert [(s.resource, s.action) for s in plan.steps] == [
        ("IAM role", "create"),
        ("IAM role", "create"),
        ("log group", "create"),
        ("log group", "create"),
        ("log group", "create"),
        ("S3 bucket", "create"),
        ("config object", "create"),
        ("SSM parameter", "create"),
        ("DynamoDB table", "create"),
        ("SNS topic", "create"),
        ("Lambda function", "create"),
        ("Lambda function", "create"),
        ("function URL", "create"),
        ("asynchronous invocation", "create"),
        ("asynchronous invocation", "create"),
        ("metric filter", "create"),
        ("CloudWatch alarm", "create"),
        ("CloudWatch alarm", "create"),
        ("topic rule", "create"),
    ]
    assert every_call and all(name.startswith(READS) for name in every_call), every_call
    assert not (isolated_env / "registry.json").exists()
    assert boto3.client("iam", region_name="us-east-1").list_roles()["Roles"] == []


def test_a_dry_run_predicts_what_the_deploy_then_does(ctx, isolated_env, every_call):
    notifier_deploy.deploy(ctx, deploy_input())
    registry = (isolated_env / "registry.json").read_bytes()
    changed = deploy_input({**DOCUMENT, "person": "Grandpa"}, "e" * 32)
    del every_call[:]

    plan = notifier_deploy.plan_deploy(AppContext(), changed)

    assert every_call and all(name.startswith(READS) for name in every_call), every_call
    assert (isolated_env / "registry.json").read_bytes() == registry
    planned = {(s.resource, s.action, s.changes) for s in plan.steps if s.action != "unchanged"}
    assert planned == {
        ("config object", "create", ()),
        ("SSM parameter", "update", ("value",)),
        ("Lambda function", "update", ("environment",)),
        ("old config objects", "update", ()),
    }
    report = notifier_deploy.deploy(AppContext(), changed)
    assert [(s.resource, s.name, s.action) for s in report.steps] == [
        (s.resource, s.name, s.outcome) for s in plan.steps
    ]
    assert notifier_deploy.plan_deploy(AppContext(), changed).up_to_date


def test_a_dry_run_refuses_what_the_deploy_would_refuse(ctx, isolated_env):
    boto3.client("iam").create_role(
        RoleName="iotbutton-notifier-us-east-1", AssumeRolePolicyDocument="{}"
    )

    with pytest.raises(IotButtonError) as raised:
        notifier_deploy.plan_deploy(ctx, deploy_input())

    assert raised.value.code == "resource-not-ours"


def test_notify_deploy_dry_run_prints_the_plan(cli, aws, isolated_env, monkeypatch, every_call):
    from support import TWILIO_SECRET, notify_init_args

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    cli(*notify_init_args("Grandma"))
    cli("notify", "deploy")
    registry = (isolated_env / "registry.json").read_bytes()
    cli(*notify_init_args("Grandpa"), "--force")
    del every_call[:]

    shown = cli("notify", "deploy", "--dry-run")
    result = cli.json("notify", "deploy", "--dry-run")

    assert every_call and all(name.startswith(READS) for name in every_call), every_call
    assert (isolated_env / "registry.json").read_bytes() == registry
    assert "Would deploy (account 123456789012, us-east-1)" in shown.stdout
    assert "update: environment" in shown.stdout
    # The config object, both functions' environments (they name it), the old object.
    assert "A deploy would make 4 change(s)." in shown.stdout
    assert TWILIO_SECRET not in shown.stdout + shown.stderr + json.dumps(result)
    assert result["dry_run"] is True and result["up_to_date"] is False
    function = next(s for s in result["steps"] if s["name"] == "iotbutton-notifier")
    assert function == {
        "resource": "Lambda function",
        "name": "iotbutton-notifier",
        "action": "update",
        "changes": ["environment"],
    }
    cli("notify", "deploy")
    assert cli.json("notify", "deploy", "--dry-run")["up_to_date"] is True
    assert "a deploy would change nothing" in cli("notify", "deploy", "--dry-run").stdout


def test_a_deploy_says_which_buttons_iams_limit_leaves_without_a_shadow(ctx, monkeypatch):
    from iotbutton_cli.notify import shadow_grant

    many = {f"G030{n:012d}" for n in range(400)}
    monkeypatch.setattr(shadow_grant, "button_serials", lambda _ctx: many)
    report = notifier_deploy.deploy(ctx, deploy_input())
    assert 100 < len(many) - len(report.shadow_left_out) < 400
    assert set(report.shadow_left_out) < many
