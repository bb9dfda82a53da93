"""The docs must keep up with the code: the IAM policy, the commands and the error codes.

docs/iam-policy.md is checked against the AWS calls a full lifecycle really makes (recorded with a
botocore hook while the CLI runs against the sandbox's AWS endpoint: moto, with Lambda Invoke really
running the deployed notifier), docs/reference.md against the Typer app and the error codes in the
source. A new command, option, error code or AWS call fails the build here
until the docs say what it is.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from support import TWILIO_ACCOUNT_SID, TWILIO_SECRET  # what the twilio_standin fixture accepts

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "iotbutton_cli"
ACCOUNT = "123456789012"
REGION = "us-east-1"

# Command groups and top-level commands that docs/reference.md covers. Extend these lists when a
# group or command is added to the app.
DOCUMENTED_GROUPS = ["things", "certs", "notify", "rules", "sandbox", "sim", "device"]
DOCUMENTED_COMMANDS = ["endpoint", "clean", "paths", "demo"]

# Every source file's error codes are explained in docs/reference.md: a new module cannot raise an
# undocumented one.
DOCUMENTED_ERROR_SOURCES = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py"))
# Calls that raise an error, and which positional argument holds its code: the factories, and
# the notify.yaml parser's ``self.fail(line_or_node, code, detail, hint)``.
ERROR_FACTORIES = {"IotButtonError": 0, "usage_error": 0, "credentials_error": 0, "fail": 1}

# AWS actions that do not support resource-level permissions: only these may use "Resource": "*".
# (The Service Authorization Reference, as parliament bundles it, lists no resource type for them.)
ACCOUNT_LEVEL_ACTIONS = {
    "iot:CreateCertificateFromCsr",
    "iot:DescribeEndpoint",
    "iot:ListAttachedPolicies",
    "iot:ListCertificates",
    "iot:ListPrincipalThings",
    "iot:ListThingTypes",
    "iot:ListThings",
    "iot:ListTopicRules",
    "logs:DescribeLogGroups",
    "sns:Unsubscribe",
    "sts:GetCallerIdentity",
}

# Condition keys the recorder knows the value of for each call; a policy condition on any other
# key cannot be checked here and fails the test.
CONDITION_KEYS = {"iam:PassedToService", "lambda:Principal"}

# S3 and Lambda operations whose IAM action has another name than the API operation (for every
# other service here the action is the operation's name). An S3 operation missing from this table
# fails the test, because S3 is where the names differ most.
S3_ACTIONS = {
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",  # per key; plus s3:DeleteObjectVersion for versions
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "GetBucketTagging": "s3:GetBucketTagging",
    "GetObject": "s3:GetObject",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListObjectsV2": "s3:ListBucket",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "PutBucketTagging": "s3:PutBucketTagging",
    "PutObject": "s3:PutObject",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}
RENAMED_ACTIONS = {"lambda:Invoke": "lambda:InvokeFunction"}

# Creating a resource with tags is also authorized as the service's tagging action.
TAG_ON_CREATE = {
    "iam:CreateRole": ("Tags", "iam:TagRole"),
    "lambda:CreateFunction": ("Tags", "lambda:TagResource"),
    "logs:CreateLogGroup": ("tags", "logs:TagResource"),
    "ssm:PutParameter": ("Tags", "ssm:AddTagsToResource"),
    "dynamodb:CreateTable": ("Tags", "dynamodb:TagResource"),
    "sns:CreateTopic": ("Tags", "sns:TagResource"),
    "cloudwatch:PutMetricAlarm": ("Tags", "cloudwatch:TagResource"),
    "scheduler:CreateScheduleGroup": ("Tags", "scheduler:TagResource"),
}

SERIAL = "G030JF0553648RUH"


# --- docs/iam-policy.md ----------------------------------------------------------------------


class Call:
    """One authorization AWS makes for a call: action, resource ARN, condition key values."""

    def __init__(self, action: str, resource: str, context: dict[str, str] | None = None) -> None:
        self.action = action
        self.resource = resource
        self.context = context or {}

    def __repr__(self) -> str:
        extra = f" {self.context}" if self.context else ""
        return f"{self.action} on {self.resource}{extra}"


class CallRecorder:
    """Every AWS call the CLI makes, as the IAM authorizations AWS performs for it."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    @property
    def actions(self) -> set[str]:
        return {call.action for call in self.calls}

    def register(self, session: Any) -> None:
        session.events.register("before-parameter-build", self._remember_params)
        session.events.register("before-call", self._record)

    @staticmethod
    def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["docs_test_params"] = dict(params)

    def _record(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        from iotbutton_cli.aws.errors import iam_action

        found = authorizations(iam_action(model), context.get("docs_test_params", {}))
        with self._lock:
            self.calls.extend(found)


def authorizations(operation: str, params: dict[str, Any]) -> list[Call]:
    """What IAM checks for one API call (per the AWS Service Authorization Reference and each
    API's "Permissions" notes): the action and its resource, and the actions it implies."""
    service, name = operation.split(":", 1)
    if service == "s3":
        return s3_authorizations(name, params)
    action = RENAMED_ACTIONS.get(operation, operation)
    if service == "cloudwatch" and "AlarmNames" in params:  # one authorization per alarm
        return [
            Call(action, f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}")
            for name in params["AlarmNames"]
        ]
    calls = [Call(action, resource_arn(action, params), principal_context(action, params))]
    if operation in TAG_ON_CREATE and params.get(TAG_ON_CREATE[operation][0]):
        tag_action = TAG_ON_CREATE[operation][1]
        resource = calls[0].resource
        if service == "logs":  # TagResource names the log group itself, not its streams
            resource = resource.removesuffix(":log-stream:")
        calls.append(Call(tag_action, resource))
    for role, service_principal in passed_roles(operation, params):
        calls.append(Call("iam:PassRole", role, {"iam:PassedToService": service_principal}))
    if operation == "scheduler:DeleteScheduleGroup":  # it deletes the group's schedules too
        group = params["Name"]
        calls.append(
            Call(
                "scheduler:DeleteSchedule",
                f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/*",
            )
        )
    return calls


def s3_authorizations(name: str, params: dict[str, Any]) -> list[Call]:
    assert name in S3_ACTIONS, f"tests/test_docs.py does not know the IAM action for s3:{name}"
    action = S3_ACTIONS[name]
    bucket = f"arn:aws:s3:::{params['Bucket']}"
    if name == "DeleteObjects":
        calls = []
        for item in params["Delete"]["Objects"]:
            calls.append(Call(action, f"{bucket}/{item['Key']}"))
            if item.get("VersionId") not in (None, "null"):  # "null": an unversioned object
                calls.append(Call("s3:DeleteObjectVersion", f"{bucket}/{item['Key']}"))
        return calls
    if "Key" in params:
        return [Call(action, f"{bucket}/{params['Key']}")]
    return [Call(action, bucket)]


def passed_roles(operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """Roles a call hands to a service (iam:PassRole), with the service they are passed to."""
    if operation in ("lambda:CreateFunction", "lambda:UpdateFunctionConfiguration"):
        return [(params["Role"], "lambda.amazonaws.com")] if params.get("Role") else []
    if operation in ("iot:CreateTopicRule", "iot:ReplaceTopicRule"):
        return [(arn, "iot.amazonaws.com") for arn in role_arns(params["topicRulePayload"])]
    if operation in ("scheduler:CreateSchedule", "scheduler:UpdateSchedule"):
        role = params.get("Target", {}).get("RoleArn")
        return [(role, "scheduler.amazonaws.com")] if role else []
    return []


def role_arns(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["roleArn"]] if "roleArn" in value else []
        return found + [arn for item in value.values() for arn in role_arns(item)]
    if isinstance(value, list):
        return [arn for item in value for arn in role_arns(item)]
    return []


def principal_context(action: str, params: dict[str, Any]) -> dict[str, str]:
    if action == "lambda:AddPermission":
        context = {"lambda:Principal": params["Principal"]}
        if params.get("FunctionUrlAuthType"):
            context["lambda:FunctionUrlAuthType"] = params["FunctionUrlAuthType"]
        return context
    return {}


def resource_arn(action: str, params: dict[str, Any]) -> str:
    """The resource IAM checks for ``action`` (per the AWS Service Authorization Reference)."""
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}"
    service = action.split(":", 1)[0]
    if action in ACCOUNT_LEVEL_ACTIONS:
        return "*"
    if service == "iam":
        return f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}"
    if service == "lambda":
        name = params.get("FunctionName") or params["Resource"]
        name = name.split(":function:")[-1]
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    if service == "ssm":
        name = params.get("Name") or params["ResourceId"]
        return f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name.lstrip('/')}"
    if service == "dynamodb":
        name = params.get("TableName") or params["ResourceArn"].split(":table/")[-1]
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    if service == "sns":
        if "Name" in params:  # CreateTopic
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{params['Name']}"
        arn = params.get("TopicArn") or params.get("ResourceArn")
        if arn is None:  # Unsubscribe: the subscription's topic
            arn = params["SubscriptionArn"].rsplit(":", 1)[0]
        return str(arn)
    if service == "cloudwatch":
        if "ResourceARN" in params:
            return str(params["ResourceARN"])
        return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{params['AlarmName']}"
    if service == "scheduler":
        scheduler = f"arn:aws:scheduler:{REGION}:{ACCOUNT}"
        if "ResourceArn" in params:  # the tag calls: a schedule group
            return str(params["ResourceArn"])
        if action.endswith("ScheduleGroup"):
            return f"{scheduler}:schedule-group/{params['Name']}"
        return f"{scheduler}:schedule/{params.get('GroupName') or 'default'}/{params['Name']}"
    if service == "logs":
        # CloudWatch Logs checks log-group actions against the group's streams.
        return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{params['logGroupName']}:log-stream:"
    if action in ("iot:AttachPolicy", "iot:DetachPolicy"):
        return params["target"]  # the certificate, not the IoT policy
    if action in ("iot:AttachThingPrincipal", "iot:DetachThingPrincipal"):
        return params["principal"]  # the certificate ARN
    if action.endswith("ThingType"):
        return f"{arn}:thingtype/{params['thingTypeName']}"
    if action.endswith("TopicRule"):
        return f"{arn}:rule/{params['ruleName']}"
    if "certificateId" in params:
        return f"{arn}:cert/{params['certificateId']}"
    if "policyName" in params:
        return f"{arn}:policy/{params['policyName']}"
    if "thingName" in params:
        return f"{arn}:thing/{params['thingName']}"
    raise AssertionError(f"tests/test_docs.py does not know which resource {action} acts on")


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> CallRecorder:
    """Hook every boto3 session the CLI's AppContext creates."""
    from iotbutton_cli.context import AppContext

    calls = CallRecorder()
    make_session = AppContext.__dict__["session"].func

    def session(self: AppContext) -> Any:
        created = make_session(self)
        calls.register(created)
        return created

    hooked = cached_property(session)
    hooked.__set_name__(AppContext, "session")
    monkeypatch.setattr(AppContext, "session", hooked)
    return calls


class StandInMqtt:
    """Replaces the simulator's MQTT connection. MQTT is authorized by the device's certificate and
    the IoT policy attached to it, not by IAM, so what the IAM test needs of `sim` is the AWS calls
    around the connection (the endpoint, the monitor's policy and certificate), which stay real."""

    def publish(self, topic: str, payload: Any, qos: Any) -> tuple[Any, int]:
        return done(None), 1

    def subscribe(self, topic: str, qos: Any, callback: Any) -> tuple[Any, int]:
        return done({"topic": topic, "qos": qos}), 1

    def disconnect(self) -> Any:
        return done(None)


def done(value: Any) -> Any:
    from concurrent.futures import Future

    future: Future[Any] = Future()
    future.set_result(value)
    return future


@pytest.fixture
def stand_in_mqtt(monkeypatch: pytest.MonkeyPatch) -> None:
    from iotbutton_cli.device import simulator

    monkeypatch.setattr(
        simulator, "_connect", lambda endpoint, identity, **callbacks: StandInMqtt()
    )


def interrupted_certificate_request(iot: Any) -> str:
    """What a `things create` killed between CreateCertificateFromCsr's answer and the registry
    write leaves: an open certificate request, and a certificate in AWS that nothing records."""
    from iotbutton_cli.provisioning.devicekeys import new_key_request
    from iotbutton_cli.registry.store import Registry, utc_now

    since = utc_now()
    request = new_key_request(SERIAL, "0123456789abcdef")
    lost = iot.create_certificate_from_csr(
        certificateSigningRequest=request.csr_pem, setAsActive=True
    )["certificateId"]
    with Registry().transaction() as document:
        (namespace,) = document["namespaces"].values()
        namespace["resources"]["certificate_requests"] = {
            "0123456789abcdef": {
                "thing": SERIAL,
                "since": since,
                "until": utc_now(),
                "public_key_sha256": request.public_key_sha256,
            }
        }
    return lost


def certificate_of_an_older_iotbutton(iot: Any, serial: str) -> None:
    """A certificate AWS made the key of (CreateKeysAndCertificate, as iotbutton did before it
    signed its own keys), recorded as the button's second one and attached to the button policy
    only (a rotation stopped half-way): it carries no subject mark, so the retirement proves it
    is ours by its attachments (to a thing of ours: none; to a policy of ours: yes)."""
    from iotbutton_cli.registry.store import Registry

    made = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_policy(policyName="iotbutton-button", target=made["certificateArn"])
    with Registry().transaction() as document:
        (namespace,) = document["namespaces"].values()
        namespace["resources"]["certificates"][made["certificateId"]] = {
            "arn": made["certificateArn"],
            "thing": serial,
            "status": "ACTIVE",
            "policies": ["iotbutton-button"],
            "thing_attached": False,
            "files": {},
        }


def run_lifecycle(cli: Any, iot: Any) -> None:
    """Every path of things, certs, endpoint, sim and clean that talks to AWS."""
    cli("things", "create", "--count", "2")
    cli("things", "create", SERIAL)
    cli("things", "create", SERIAL)  # unchanged
    cli("things", "show", SERIAL)
    cli("things", "list")
    cli("certs", "list")
    lost = interrupted_certificate_request(iot)
    cli("certs", "rotate", SERIAL)  # also retires the certificate the interrupted run made
    assert lost not in {c["certificateId"] for c in iot.list_certificates()["certificates"]}
    cli("certs", "revoke", SERIAL, "--yes")
    cli("certs", "show", SERIAL)
    cli("endpoint")
    cli("paths")
    cli("sim", "click", SERIAL, "--long")  # iot:DescribeEndpoint; the click itself is MQTT
    cli("sim", "subscribe", "--duration", "0")  # creates the monitor's IoT policy and certificate
    cli("sim", "subscribe", "--duration", "0")  # reuses them
    # A button policy left by an older iotbutton, already at AWS's five versions: the next
    # `things create` replaces the default version (dropping the oldest) and `clean` deletes the
    # non-default versions before the policy.
    for version in range(4):
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"old-{version}"}
            ],
        }
        iot.create_policy_version(
            policyName="iotbutton-button", policyDocument=json.dumps(document), setAsDefault=True
        )
    cli("things", "create", "G030AA0000000BBB")
    certificate_of_an_older_iotbutton(iot, "G030AA0000000BBB")
    serials = [b["serial"] for b in cli.json("things", "list")]
    cli("things", "delete", serials[0], "--yes")


def run_notifier_lifecycle(
    cli: Any, twilio_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every path of notify and rules that talks to AWS, with the function really invoked."""
    from iotbutton_cli.notify import bundle

    base = ["--twilio-api-base", twilio_url]
    init = ["notify", "init", "--account-sid", TWILIO_ACCOUNT_SID, "--from", "+15005550006"]
    init += ["--sms", "+15551230001", "--call", "+15551230002"]
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    cli(*init, "--person", "Grandma")
    config = home / "config" / "notify.yaml"
    config.write_text(config.read_text() + '\nowner:\n  sms: "+15551230009"\n')
    cli("notify", "check")
    cli("notify", "bundle")
    assert cli.json("notify", "deploy", *base, "--dry-run")["up_to_date"] is False
    assert cli.json("notify", "deploy", *base)["up_to_date"] is False
    assert cli.json("notify", "deploy", *base, "--dry-run")["up_to_date"] is True
    assert cli.json("notify", "deploy", *base)["up_to_date"] is True
    cli("notify", "show")
    assert cli.json("notify", "test", "--click", "LONG")["ok"] is True
    cli("notify", "logs", "--since", "5")
    [alarm] = cli.json("notify", "history")
    cli("notify", "retry", alarm["alarm"])  # everything got through: nothing to resend
    cli("notify", "send", *base)  # Twilio only, no AWS call

    # Everything changes: the config (a new object, the old one deleted, the function's
    # environment follows it), the secret (a new parameter version) and the code.
    cli(*init, "--person", "Grandpa", "--force")
    # ... and the owner: the old contact is unsubscribed, the new one subscribed.
    config.write_text(config.read_text() + '\nowner:\n  sms: "+15551230008"\n')
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "t" * 32)
    source = bundle._source
    monkeypatch.setattr(bundle, "_source", lambda name: source(name) + b"\n# changed\n")
    steps = cli.json("notify", "deploy", *base)["steps"]
    assert {s["name"]: s["action"] for s in steps}["iotbutton-notifier"] == "updated"
    # Someone made the function URL private: the next deploy puts it back for Twilio.
    import boto3

    lam = boto3.client("lambda", region_name=REGION)
    lam.update_function_url_config(FunctionName="iotbutton-notifier", AuthType="AWS_IAM")
    lam.remove_permission(FunctionName="iotbutton-notifier", StatementId="iotbutton-function-url")
    steps = cli.json("notify", "deploy", *base)["steps"]
    assert ("function URL", "updated") in {(s["resource"], s["action"]) for s in steps}

    # The same deploy from another machine, whose registry records none of it: iotbutton checks
    # the managed-by tag of each resource (the topic rule: its description and target) before it
    # adopts it, and then has nothing to change.
    monkeypatch.setenv("IOTBUTTON_HOME", str(home.parent / "second-machine"))
    cli(*init, "--person", "Grandpa")
    second = home.parent / "second-machine" / "config" / "notify.yaml"
    second.write_text(second.read_text() + '\nowner:\n  sms: "+15551230008"\n')
    assert cli.json("notify", "deploy", *base)["up_to_date"] is True
    monkeypatch.setenv("IOTBUTTON_HOME", str(home))

    long_clicks = "SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'"
    cli("rules", "create", "--name", "iotbutton_long_clicks", "--sql", long_clicks)
    cli("rules", "create", "--name", "iotbutton_long_clicks", "--sql", long_clicks + " OR 1 = 1")
    cli("rules", "create", "--serial", SERIAL)
    cli("rules", "list")
    cli("rules", "show", "iotbutton_long_clicks")
    # Only the user's rules route clicks: the default rule and its permission go.
    steps = cli.json("notify", "deploy", *base, "--no-default-rule")["steps"]
    assert {s["name"]: s["action"] for s in steps}["iotbutton_notifier"] == "removed"
    cli("rules", "delete", "iotbutton_long_clicks", "--yes")

    # Quiet hours that hold clicks: the scheduler role, the schedule group and the release
    # schedule; new hours update the schedule; without `then: hold` they go (and what was held
    # is released); held again, they stay for `clean` (and `clean --discover`) to remove.
    text = config.read_text()
    hold = '\nquiet_hours: {{from: "22:00", to: "{end}", then: hold}}\n'
    config.write_text(text + hold.format(end="07:00"))
    assert cli.json("notify", "deploy", *base, "--dry-run")["up_to_date"] is False
    steps = cli.json("notify", "deploy", *base)["steps"]
    assert {s["name"]: s["action"] for s in steps}["iotbutton/release-held"] == "created"
    config.write_text(text + hold.format(end="06:30"))
    steps = cli.json("notify", "deploy", *base)["steps"]
    assert {s["name"]: s["action"] for s in steps}["iotbutton/release-held"] == "updated"
    config.write_text(text)
    steps = cli.json("notify", "deploy", *base)["steps"]
    assert {s["name"]: s["action"] for s in steps}["iotbutton/release-held"] == "removed"
    config.write_text(text + hold.format(end="07:00"))
    cli("notify", "deploy", *base)


def run_discovery(cli: Any, twilio_url: str, home: Path) -> None:
    """`clean --discover` after the registry was lost, with a button, the monitor, the notifier
    and a rule of the user's in AWS."""
    cli("things", "create", SERIAL)
    cli("sim", "subscribe", "--duration", "0")
    cli("notify", "deploy", "--twilio-api-base", twilio_url)
    long_clicks = "SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'"
    cli("rules", "create", "--name", "iotbutton_long", "--sql", long_clicks)
    (home / "registry.json").unlink()
    planned = cli.json("clean", "--dry-run", "--discover")["steps"]
    assert not (home / "registry.json").exists()  # a dry run records nothing
    result = cli.json("clean", "--discover", "--yes")
    assert result["complete"] is True
    assert len(result["steps"]) == len(planned)


def policy_from(markdown: str) -> dict[str, Any]:
    """The one ```json block under the heading "The policy"."""
    blocks = re.findall(r"```json\n(.*?)```", section(markdown, "The policy"), flags=re.S)
    assert len(blocks) == 1, "docs/iam-policy.md: put one ```json block under ## The policy"
    return json.loads(blocks[0])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def iam_match(pattern: str, value: str) -> bool:
    """IAM wildcard matching: ``*`` any run of characters, ``?`` one character."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value) is not None


def allows(statement: dict[str, Any], call: Call) -> bool:
    """Whether one Allow statement grants ``call``: action, resource and every condition."""
    if call.action not in as_list(statement["Action"]):
        return False
    if not any(iam_match(pattern, call.resource) for pattern in as_list(statement["Resource"])):
        return False
    for operator, tests in statement.get("Condition", {}).items():
        assert operator in ("StringEquals", "StringLike"), f"cannot check {operator} here"
        for key, wanted in tests.items():
            assert key in CONDITION_KEYS, f"tests/test_docs.py cannot check condition key {key}"
            value = call.context.get(key)
            if value is None:
                return False
            if operator == "StringEquals" and value not in as_list(wanted):
                return False
            if operator == "StringLike" and not any(iam_match(w, value) for w in as_list(wanted)):
                return False
    return True


def test_iam_policy_covers_exactly_the_calls_the_code_makes(
    cli, sandbox_aws, twilio_standin, recorder, isolated_env, monkeypatch, stand_in_mqtt
):
    import boto3

    iot = boto3.client("iot", endpoint_url=sandbox_aws.url, region_name=REGION)
    run_lifecycle(cli, iot)
    run_notifier_lifecycle(cli, twilio_standin.base_url, isolated_env, monkeypatch)
    cli("clean", "--dry-run")
    assert cli.json("clean", "--yes")["complete"] is True
    # Somebody else's rule in the account: `clean --discover` must not even read it (the
    # documented policy would deny iot:GetTopicRule on it), let alone remove it.
    foreign = {"sql": "SELECT * FROM 'other/+'", "actions": [], "ruleDisabled": False}
    iot.create_topic_rule(ruleName="someone_elses_rule", topicRulePayload=foreign)
    run_discovery(cli, twilio_standin.base_url, isolated_env)
    assert iot.get_topic_rule(ruleName="someone_elses_rule")["rule"]["sql"] == foreign["sql"]
    policy = policy_from((DOCS / "iam-policy.md").read_text(encoding="utf-8"))

    statements = policy["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    granted: set[str] = set()
    for statement in statements:
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, f"list actions explicitly: {action}"
            granted.add(action)
            if "*" in as_list(statement["Resource"]):
                assert action in ACCOUNT_LEVEL_ACTIONS, f"{action} supports resource ARNs; scope it"

    called = recorder.actions
    print("AWS actions called:", sorted(called))
    assert called - granted == set(), "the code calls actions docs/iam-policy.md lacks"
    assert granted - called == set(), "docs/iam-policy.md grants actions the code never calls"
    for call in recorder.calls:
        assert any(allows(s, call) for s in statements), f"docs/iam-policy.md does not allow {call}"
    # Nothing granted beyond what is used: in every statement, each action on each resource (with
    # the statement's conditions) is needed by some call.
    for statement in statements:
        sid = statement.get("Sid", statement["Action"])
        for action in as_list(statement["Action"]):
            for pattern in as_list(statement["Resource"]):
                one = {**statement, "Action": action, "Resource": pattern}
                needed = any(allows(one, call) for call in recorder.calls)
                assert needed, f"{sid}: no call needs {action} on {pattern}"


def test_iam_doc_lists_every_action_in_its_table():
    text = (DOCS / "iam-policy.md").read_text(encoding="utf-8")
    prose = re.sub(r"```json\n.*?```", "", text, flags=re.S)
    for statement in policy_from(text)["Statement"]:
        for action in as_list(statement["Action"]):
            assert f"`{action}`" in prose, f"explain {action} in docs/iam-policy.md"


# --- docs/notifier.md ------------------------------------------------------------------------


def test_notifier_doc_shows_what_the_code_writes():
    """The template, the roles' policies and the function's settings, as the code makes them."""
    from iotbutton_cli.notify import resources, rules
    from iotbutton_cli.notify.config import render_template

    text = (DOCS / "notifier.md").read_text(encoding="utf-8")
    [template] = re.findall(r"```yaml\n(.*?)```", section(text, "The config file"), flags=re.S)
    assert template == render_template(), "docs/notifier.md: paste the template notify init writes"

    class Context:  # what the policy builders use of an AppContext
        partition, region, account_id = "aws", REGION, ACCOUNT

        def arn(self, service: str, resource: str) -> str:
            return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"

    ctx = Context()
    names = resources.Names.for_context(ctx)  # type: ignore[arg-type]
    blocks = [
        json.loads(block)
        for block in re.findall(r"```json\n(.*?)```", section(text, "The roles"), flags=re.S)
    ]
    trust, function_policy, rule_error_policy = blocks
    assert trust == json.loads(resources.trust_policy("lambda.amazonaws.com"))
    assert function_policy == resources.function_policy(ctx, names)  # type: ignore[arg-type]
    assert rule_error_policy == resources.rule_error_policy(ctx)  # type: ignore[arg-type]

    for fact in (
        f"`{resources.RUNTIME}`",
        f"`{resources.ARCHITECTURE}`",
        f"{resources.MEMORY_MB} MB",
        f"{resources.TIMEOUT_SECONDS} s",
        f"{resources.LOG_RETENTION_DAYS}-day",
        f"`{resources.FUNCTION_NAME}`",
        f"`{resources.SECRET_PARAMETER}`",
        f"`{resources.FUNCTION_LOG_GROUP}`",
        f"`{resources.RULE_ERROR_LOG_GROUP}`",
        f"`{rules.DEFAULT_RULE}`",
        rules.DEFAULT_SQL,
        rules.SQL_VERSION,
        resources.ENCRYPTION["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
    ):
        assert fact in text, f"docs/notifier.md does not say {fact}"


# --- docs/reference.md -----------------------------------------------------------------------


def reference() -> str:
    return (DOCS / "reference.md").read_text(encoding="utf-8")


def documented_commands() -> list[tuple[str, Any]]:
    """(``iotbutton things create``, click command) for every command the reference covers."""
    from typer.main import get_command

    from iotbutton_cli.cli.app import app

    root = get_command(app)
    commands = root.commands  # type: ignore[attr-defined]
    found = []
    for name in DOCUMENTED_GROUPS:
        assert name in commands, f"DOCUMENTED_GROUPS names {name}, which the app lacks"
        for sub_name, sub in commands[name].commands.items():
            found.append((f"iotbutton {name} {sub_name}", sub))
    for name in DOCUMENTED_COMMANDS:
        assert name in commands, f"DOCUMENTED_COMMANDS names {name}, which the app lacks"
        found.append((f"iotbutton {name}", commands[name]))
    return found


def section(markdown: str, heading: str) -> str:
    """The text under the heading that is exactly ``heading`` (in backticks or not); lines in
    fenced code blocks are never headings."""
    lines = markdown.splitlines()
    fenced = False
    for index, line in enumerate(lines):
        fenced ^= line.startswith("```")
        match = None if fenced else re.match(r"(#+)\s+`?(.*?)`?\s*$", line)
        if match and match.group(2) == heading:
            level = len(match.group(1))
            body = []
            inner_fenced = False
            for following in lines[index + 1 :]:
                inner_fenced ^= following.startswith("```")
                deeper = None if inner_fenced else re.match(r"(#+)\s", following)
                if deeper and len(deeper.group(1)) <= level:
                    break
                body.append(following)
            return "\n".join(body)
    raise AssertionError(f"no heading `{heading}` in the document")


def test_reference_documents_every_command_and_option():
    text = reference()
    for path, command in documented_commands():
        body = section(text, path)
        for param in command.params:
            names = [opt for opt in param.opts if opt.startswith("--")] or param.opts
            if param.param_type_name == "argument":
                names = [param.name.upper()]
            for name in names:
                assert name in body, f"docs/reference.md: `{path}` does not mention {name}"


def test_reference_documents_the_global_options():
    from typer.main import get_command

    from iotbutton_cli.cli.app import app

    body = section(reference(), "Global options")
    for param in get_command(app).params:
        for name in param.opts:
            if name.startswith("--") and name not in ("--install-completion", "--show-completion"):
                assert f"`{name}" in body, f"docs/reference.md does not document {name}"


def error_codes(relative: str) -> set[str]:
    tree = ast.parse((SRC / relative).read_text(encoding="utf-8"))
    codes = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        position = ERROR_FACTORIES.get(name)
        if position is None or len(node.args) <= position:
            continue
        code = node.args[position]
        if isinstance(code, ast.Constant) and isinstance(code.value, str):
            codes.add(code.value)
    return codes


def test_reference_explains_every_error_code():
    text = reference()
    codes = set().union(*(error_codes(path) for path in DOCUMENTED_ERROR_SOURCES))
    # The scan itself works, for the factories and for the notify.yaml parser's self.fail(...).
    assert {"access-denied", "bad-serial", "notify-config-syntax", "rule-not-ours"} <= codes
    missing = sorted(code for code in codes if f"`{code}`" not in text)
    assert missing == [], f"docs/reference.md does not explain error codes {missing}"


def test_reference_lists_every_exit_status():
    from iotbutton_cli.errors import ExitStatus

    body = section(reference(), "Exit statuses")
    for status in ExitStatus:
        assert re.search(rf"^\|\s*{int(status)}\s*\|", body, flags=re.M), status


def test_json_examples_in_the_docs_are_valid_json():
    for path in sorted(DOCS.glob("*.md")):
        for block in re.findall(r"```json\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
            json.loads(block)


def test_reference_help_blocks_are_what_the_commands_print():
    """Every `Usage: iotbutton ...` block in reference.md is that command's --help, verbatim
    (at an 80-column terminal): no `<list[str]>` or `serial <str>` a user never sees."""
    from typer.testing import CliRunner

    from iotbutton_cli.cli.app import app

    blocks = re.findall(r"```\n(Usage: iotbutton.*?)\n```", reference(), flags=re.S)
    assert len(blocks) > 20
    for block in blocks:
        words = block.split("\n", 1)[0].split()[2:]
        args = [word for word in words if re.fullmatch(r"[a-z][a-z-]*", word)]
        result = CliRunner().invoke(
            app, [*args, "--help"], prog_name="iotbutton", terminal_width=78
        )
        assert result.stdout.rstrip("\n") == block, (
            f"docs/reference.md: `iotbutton {' '.join(args)} --help` differs"
        )


def test_install_lines_work_from_a_checkout_before_the_package_is_published():
    """`pipx install iotbutton-cli` fails until it is on PyPI: the README and getting-started
    say `pipx install .` first, and `nox -s demo` says how to get `iotbutton` on PATH."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[build-system]" in pyproject  # what `pipx install .` builds with
    assert re.search(r"(?m)^\[project\.scripts\]\niotbutton = ", pyproject)  # and puts on PATH
    for path in (ROOT / "README.md", DOCS / "getting-started.md"):
        text = path.read_text(encoding="utf-8")
        assert "pipx install ." in text, f"{path.name} does not say how to install a checkout"
        first_install = re.search(r"pipx install (\S+)", text)
        assert first_install and first_install.group(1) == ".", (
            f"{path.name}'s first install line is `pipx install {first_install.group(1)}`"
        )
        assert "not published" in text or "not yet" in text
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    demo_session = noxfile[noxfile.index("def demo(") :].split("\n@nox.session", 1)[0]
    assert "not on your PATH" in demo_session and "pipx install ." in demo_session
