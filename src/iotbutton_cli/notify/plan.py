"""The deploy planner: what AWS has and what the notifier wants in, the changes to make out.

Pure functions over plain data, no AWS and no registry: :mod:`iotbutton_cli.notify.current` reads
the current state, :mod:`iotbutton_cli.notify.apply` makes the planned changes, and
``notify deploy --dry-run`` prints the plan. Each ``*_step`` function plans one resource; the
apply calls them again when a resource turns out to exist after all (a create that lost a race),
so one set of rules decides what differs.

Current state uses AWS's own shapes where there is one (a function's ``Configuration``, a topic
rule's payload); ``None`` means the resource does not exist.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from iotbutton_cli.notifier_lambda.contract import SECRET_PARAMETER, SECRET_PARAMETER_ENV
from iotbutton_cli.notify.resources import (
    ALARM_TABLE,
    FAILURES_FUNCTION_NAME,
    FUNCTION_NAME,
    FUNCTION_URL_AUTH_TYPE,
    OWNER_TOPIC,
    PUBLIC_ACCESS_BLOCK,
    RELEASE_SCHEDULE_ID,
    RULE_ERROR_LOG_GROUP,
    SCHEDULE_GROUP,
    TABLE_TTL_ATTRIBUTE,
    secret_reference,
    subscription_key,
)

PlannedAction = Literal["create", "update", "unchanged", "remove"]
DeployAction = Literal["created", "updated", "unchanged", "removed"]
DONE: dict[PlannedAction, DeployAction] = {
    "create": "created",
    "update": "updated",
    "unchanged": "unchanged",
    "remove": "removed",
}

ROLE = "IAM role"
LOG_GROUP = "log group"
BUCKET = "S3 bucket"
CONFIG_OBJECT = "config object"
PARAMETER = "SSM parameter"
TABLE = "DynamoDB table"
FUNCTION_URL = "function URL"
FUNCTION_URL_NAME = f"{FUNCTION_NAME} URL"  # how a plan names it: it has no name of its own
FUNCTION = "Lambda function"
TOPIC = "SNS topic"
INVOKE_CONFIG = "asynchronous invocation"
METRIC_FILTER = "metric filter"
METRIC_ALARM = "CloudWatch alarm"
RULE = "topic rule"
OLD_CONFIG_OBJECTS = "old config objects"
SCHEDULE_GROUP_STEP = "schedule group"
SCHEDULE = "schedule"

# The asynchronous invocation settings, by the name a plan gives them.
INVOKE_SETTINGS = {
    "MaximumRetryAttempts": "retries",
    "MaximumEventAgeInSeconds": "maximum event age",
    "DestinationConfig": "on-failure destination",
}

# The release schedule's settings a deploy manages, by the name a plan gives them.
SCHEDULE_SETTINGS = {
    "ScheduleExpression": "expression",
    "ScheduleExpressionTimezone": "time zone",
    "FlexibleTimeWindow": "time window",
    "Target": "target",
    "State": "state",
}
# The parts of its target a deploy sets (GetSchedule may add others).
SCHEDULE_TARGET_KEYS = ("Arn", "RoleArn", "Input", "RetryPolicy")

# The function settings a deploy manages, by the name a plan gives them.
FUNCTION_SETTINGS = {
    "Role": "role",
    "Handler": "handler",
    "Runtime": "runtime",
    "MemorySize": "memory",
    "Timeout": "timeout",
    "Environment": "environment",
}


@dataclass(frozen=True)
class Step:
    """One resource's planned change; ``changes`` names what differs (for ``update``)."""

    resource: str
    name: str
    action: PlannedAction
    changes: tuple[str, ...] = ()

    @property
    def outcome(self) -> DeployAction:
        """What a deploy reports once the step is applied."""
        return DONE[self.action]

    @property
    def changes_something(self) -> bool:
        return self.action != "unchanged"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    config_key: str = ""

    @property
    def up_to_date(self) -> bool:
        return not any(step.changes_something for step in self.steps)

    @property
    def change_count(self) -> int:
        return sum(step.changes_something for step in self.steps)


@dataclass(frozen=True)
class Current:
    """What AWS and the registry have; ``None`` for a resource that does not exist.

    - ``roles``: name -> ``{"Arn": ..., "policy": <inline policy document or None>}``
    - ``log_groups``: name -> ``{"retentionInDays": <days or None>}``
    - ``bucket``: ``{"public_access_block": {...}, "encrypted": bool, "untagged": bool}``
      (``untagged``: the registry says a deploy created it and stopped before tagging it)
    - ``secret``: SSM's ``Parameter`` (``Type``, ``Value``, ``Version``)
    - ``table``: the alarm table, ``{"TableArn", "billing_mode", "ttl_attribute"}``
    - ``function``: Lambda's ``Configuration`` (``FunctionArn``, ``CodeSha256``, settings)
    - ``function_url``: ``{"FunctionUrl", "AuthType", "public"}`` (see current.function_url)
    - ``failures_function``: the failures function's ``Configuration``
    - ``invoke_configs``: function name -> its asynchronous invocation settings
    - ``topic``: the owner topic, ``{"TopicArn", "subscriptions": {key: ARN}}``
    - ``metric_filter``: the rule-error log group's filter (current.metric_filter)
    - ``metric_alarms``: alarm name -> the alarm as DescribeAlarms has it
    - ``rule``: the default rule as GetTopicRule has it
    - ``rule_permission``: the function's policy lets IoT invoke it for the default rule
    - ``default_rule_recorded``: the registry records the default rule
    - ``config_objects``: the config objects the registry records in the bucket
    - ``schedule_group``: the release schedule's group, ``{"Arn", "tagged"}`` (read only when
      a schedule is wanted)
    - ``schedule``: the release schedule as GetSchedule has it
    - ``release_recorded``: which of the release schedule, its group and the scheduler role
      the registry records (:data:`SCHEDULE`, :data:`SCHEDULE_GROUP_STEP`, :data:`ROLE`)
    """

    roles: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    log_groups: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    bucket: dict[str, Any] | None = None
    config_object: bool = False
    secret: dict[str, Any] | None = field(default=None, repr=False)
    table: dict[str, Any] | None = None
    function: dict[str, Any] | None = None
    function_url: dict[str, Any] | None = None
    failures_function: dict[str, Any] | None = None
    invoke_configs: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    topic: dict[str, Any] | None = None
    metric_filter: dict[str, Any] | None = None
    metric_alarms: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    rule: dict[str, Any] | None = None
    rule_permission: bool = False
    default_rule_recorded: bool = False
    config_objects: tuple[str, ...] = ()
    schedule_group: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    release_recorded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Wanted:
    """What the notifier should be.

    - ``roles``: name -> its inline policy document
    - ``log_groups``: name -> retention in days
    - ``function``: ``{"CodeSha256": ..., "config": <UpdateFunctionConfiguration's settings>}``;
      the planner sets the secret's version in the environment
    - ``failures_function``: the same, for the failures function
    - ``invoke_configs``: function name -> PutFunctionEventInvokeConfig's settings
    - ``owner``: the (protocol, endpoint) pairs the owner topic should have
    - ``metric_filter``, ``metric_alarms``: PutMetricFilter's and PutMetricAlarm's settings
    - ``rule_payload``: the default rule's ``topicRulePayload``, or ``None`` when the default
      rule is not wanted (``--no-default-rule``)
    - ``schedule``: the release schedule's CreateSchedule settings, or ``None`` when no quiet
      hours hold clicks (then neither it, its group nor ``scheduler_role`` is wanted, and
      ``roles`` leaves the scheduler role out)
    """

    roles: dict[str, dict[str, Any]]
    log_groups: dict[str, int]
    bucket: str
    config_key: str
    secret: str = field(repr=False)
    table: str = ALARM_TABLE
    function: dict[str, Any] = field(default_factory=dict)
    receipts: bool = True  # a function URL for Twilio's delivery receipts
    failures_function: dict[str, Any] = field(default_factory=dict)
    invoke_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    owner: tuple[tuple[str, str], ...] = ()
    metric_filter: dict[str, Any] = field(default_factory=dict)
    metric_alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    rule_name: str = "iotbutton_notifier"
    rule_payload: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    schedule_group: str = SCHEDULE_GROUP
    scheduler_role: str = ""


def _step(resource: str, name: str, changes: list[str]) -> Step:
    return Step(resource, name, "update" if changes else "unchanged", tuple(changes))


def role_step(name: str, current: dict[str, Any] | None, policy: dict[str, Any]) -> Step:
    if current is None:
        return Step(ROLE, name, "create")
    have = current.get("policy")
    if isinstance(have, str):  # IAM returns the document URL-decoded; boto3 parses it, moto not
        have = json.loads(have)
    return _step(ROLE, name, ["inline policy"] if have != policy else [])


def log_group_step(name: str, current: dict[str, Any] | None, retention_days: int) -> Step:
    if current is None:
        return Step(LOG_GROUP, name, "create")
    differs = current.get("retentionInDays") != retention_days
    return _step(LOG_GROUP, name, ["retention"] if differs else [])


def bucket_step(name: str, current: dict[str, Any] | None) -> Step:
    if current is None:
        return Step(BUCKET, name, "create")
    changes = []
    if current.get("untagged"):
        changes.append("tags")
    if current.get("public_access_block") != PUBLIC_ACCESS_BLOCK:
        changes.append("public access block")
    if not current.get("encrypted"):
        changes.append("encryption")
    return _step(BUCKET, name, changes)


def config_object_step(key: str, exists: bool) -> Step:
    """The config is named by its hash: if the key exists, its content is already right."""
    return Step(CONFIG_OBJECT, key, "unchanged" if exists else "create")


def secret_step(name: str, current: dict[str, Any] | None, secret: str) -> Step:
    """The secret is compared, never named in the plan."""
    if current is None:
        return Step(PARAMETER, name, "create")
    changes = []
    if current.get("Type") != "SecureString":
        changes.append("type")
    if current.get("Value") != secret:
        changes.append("value")
    return _step(PARAMETER, name, changes)


def table_step(name: str, current: dict[str, Any] | None) -> Step:
    """TTL on the attribute the notifier's items expire by. The table is made on demand; a
    capacity mode changed since is the owner's choice, left as it is."""
    if current is None:
        return Step(TABLE, name, "create")
    differs = current.get("ttl_attribute") != TABLE_TTL_ATTRIBUTE
    return _step(TABLE, name, ["time to live"] if differs else [])


def secret_version(current: dict[str, Any] | None, step: Step) -> int:
    """The parameter version after ``step``: SSM numbers them 1, 2, 3..."""
    if current is None or step.action == "create":
        return 1
    version = int(current["Version"])
    return version + 1 if step.action == "update" else version


def with_secret_version(config: dict[str, Any], version: int) -> dict[str, Any]:
    variables = {
        **config["Environment"]["Variables"],
        SECRET_PARAMETER_ENV: secret_reference(version),
    }
    return {**config, "Environment": {"Variables": variables}}


def function_step(name: str, current: dict[str, Any] | None, wanted: dict[str, Any]) -> Step:
    """Code (by its SHA-256) and each managed setting; only the environment's variables count."""
    if current is None:
        return Step(FUNCTION, name, "create")
    changes = ["code"] if current.get("CodeSha256") != wanted["CodeSha256"] else []
    for key, value in wanted["config"].items():
        have = current.get(key)
        if key == "Environment":
            have = {"Variables": (have or {}).get("Variables", {})}
        if have != value:
            changes.append(FUNCTION_SETTINGS.get(key, key))
    return _step(FUNCTION, name, changes)


def function_url_step(name: str, current: dict[str, Any] | None) -> Step:
    """A public (auth type NONE) URL: Twilio cannot sign AWS requests; the function checks
    Twilio's own signature instead."""
    if current is None:
        return Step(FUNCTION_URL, name, "create")
    changes = []
    if current.get("AuthType") != FUNCTION_URL_AUTH_TYPE:
        changes.append("auth type")
    if not current.get("public"):
        changes.append("public permission")
    return _step(FUNCTION_URL, name, changes)


def topic_step(
    name: str, current: dict[str, Any] | None, owner: tuple[tuple[str, str], ...]
) -> Step:
    """The owner topic, subscribed to exactly notify.yaml's owner contacts."""
    if current is None:
        return Step(TOPIC, name, "create")
    wanted = {subscription_key(protocol, endpoint) for protocol, endpoint in owner}
    differs = set(current.get("subscriptions", {})) != wanted
    return _step(TOPIC, name, ["subscriptions"] if differs else [])


def invoke_config_name(function: str) -> str:
    """How a plan names a function's asynchronous invocation settings (they have no name)."""
    return f"{function} async config"


def invoke_config_step(
    function: str, current: dict[str, Any] | None, wanted: dict[str, Any]
) -> Step:
    name = invoke_config_name(function)
    if current is None:
        return Step(INVOKE_CONFIG, name, "create")
    changes = [
        INVOKE_SETTINGS.get(key, key) for key, value in wanted.items() if current.get(key) != value
    ]
    return _step(INVOKE_CONFIG, name, changes)


def metric_filter_step(name: str, current: dict[str, Any] | None, wanted: dict[str, Any]) -> Step:
    if current is None:
        return Step(METRIC_FILTER, name, "create")
    return _step(METRIC_FILTER, name, ["filter"] if current != wanted else [])


def metric_alarm_step(name: str, current: dict[str, Any] | None, wanted: dict[str, Any]) -> Step:
    """Each setting PutMetricAlarm was given, against what DescribeAlarms answers."""
    if current is None:
        return Step(METRIC_ALARM, name, "create")
    differs = any(
        _alarm_setting(current.get(key)) != _alarm_setting(value) for key, value in wanted.items()
    )
    return _step(METRIC_ALARM, name, ["alarm"] if differs else [])


def _alarm_setting(value: Any) -> Any:
    """A setting without the empty and absent parts DescribeAlarms adds or leaves out."""
    if isinstance(value, dict):
        return {k: _alarm_setting(v) for k, v in value.items() if v not in (None, [], {}, "")}
    if isinstance(value, list):
        return [_alarm_setting(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def rule_differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """A rule's payload against the wanted one; the description is how we know it, not a
    setting."""
    return any(current.get(key) != value for key, value in wanted.items() if key != "description")


def rule_step(
    name: str, current: dict[str, Any] | None, payload: dict[str, Any], permission: bool
) -> Step:
    """``current`` is the rule as GetTopicRule has it; ``permission``: the function's policy
    already lets IoT invoke it for this rule (a create adds it when it does not)."""
    if current is None:
        return Step(RULE, name, "create")
    changes = []
    if rule_differs(current, payload):
        changes.append("rule")
    if not permission:
        changes.append("invoke permission")
    return _step(RULE, name, changes)


def schedule_group_step(name: str, current: dict[str, Any] | None) -> Step:
    """The release schedule's group, tagged at creation; one the registry records whose tag
    was taken off gets it back (``clean`` deletes only a tagged group)."""
    if current is None:
        return Step(SCHEDULE_GROUP_STEP, name, "create")
    return _step(SCHEDULE_GROUP_STEP, name, [] if current.get("tagged") else ["tags"])


def schedule_step(name: str, current: dict[str, Any] | None, wanted: dict[str, Any]) -> Step:
    """``current`` is the schedule as GetSchedule has it; ``wanted``, CreateSchedule's
    settings. The target is compared by the parts a deploy sets, its input as JSON."""
    if current is None:
        return Step(SCHEDULE, name, "create")
    changes = []
    for key, label in SCHEDULE_SETTINGS.items():
        have, want = current.get(key), wanted.get(key)
        if key == "Target":
            have, want = _target(have), _target(want)
        if have != want:
            changes.append(label)
    return _step(SCHEDULE, name, changes)


def _target(target: Any) -> dict[str, Any]:
    target = target if isinstance(target, dict) else {}
    parts = {key: target.get(key) for key in SCHEDULE_TARGET_KEYS}
    with contextlib.suppress(ValueError):  # not JSON: compared as the text it is
        parts["Input"] = json.loads(parts["Input"]) if parts["Input"] else None
    return parts


def release_steps(current: Current, wanted: Wanted) -> list[Step]:
    """The release schedule and its group, while some quiet hours hold clicks; once none do,
    what the registry records of them goes, in reverse order of creation: the schedule, its
    group, then the role it invoked the notifier as."""
    if wanted.schedule is not None:
        return [
            schedule_group_step(wanted.schedule_group, current.schedule_group),
            schedule_step(RELEASE_SCHEDULE_ID, current.schedule, wanted.schedule),
        ]
    recorded = (
        (SCHEDULE, RELEASE_SCHEDULE_ID),
        (SCHEDULE_GROUP_STEP, wanted.schedule_group),
        (ROLE, wanted.scheduler_role),
    )
    return [
        Step(resource, name, "remove")
        for resource, name in recorded
        if resource in current.release_recorded and name
    ]


def releases_held(plan: Plan) -> bool:
    """The plan removes the release schedule: the clicks still held are sent at once (no
    schedule will send them)."""
    return any(step.resource == SCHEDULE and step.action == "remove" for step in plan.steps)


def stale_objects_step(recorded: tuple[str, ...] | list[str], keep: str) -> Step | None:
    """Config objects the function no longer reads once it reads ``keep``."""
    stale = [key for key in recorded if key != keep]
    return Step(OLD_CONFIG_OBJECTS, ", ".join(stale), "update") if stale else None


def plan(current: Current, wanted: Wanted) -> Plan:
    """Every resource in dependency order: roles, log groups, bucket, config object, secret,
    alarm table, owner topic, failures function, function, its URL, their asynchronous
    invocation settings, the release schedule's group and the schedule (which invokes the
    function), the metric filter and alarms, topic rule, then the old config objects."""
    steps = [role_step(name, current.roles.get(name), p) for name, p in wanted.roles.items()]
    steps += [
        log_group_step(name, current.log_groups.get(name), days)
        for name, days in wanted.log_groups.items()
    ]
    steps.append(bucket_step(wanted.bucket, current.bucket))
    steps.append(config_object_step(wanted.config_key, current.config_object))
    secret = secret_step(SECRET_PARAMETER, current.secret, wanted.secret)
    steps.append(secret)
    steps.append(table_step(wanted.table, current.table))
    version = secret_version(current.secret, secret)
    if wanted.failures_function:
        steps.append(topic_step(OWNER_TOPIC, current.topic, wanted.owner))
        failures = {
            **wanted.failures_function,
            "config": with_secret_version(wanted.failures_function["config"], version),
        }
        steps.append(function_step(FAILURES_FUNCTION_NAME, current.failures_function, failures))
    function = {
        **wanted.function,
        "config": with_secret_version(wanted.function["config"], version),
    }
    steps.append(function_step(FUNCTION_NAME, current.function, function))
    if wanted.receipts:
        steps.append(function_url_step(FUNCTION_URL_NAME, current.function_url))
    steps += [
        invoke_config_step(name, current.invoke_configs.get(name), settings)
        for name, settings in wanted.invoke_configs.items()
    ]
    steps += release_steps(current, wanted)
    if wanted.metric_filter:
        steps.append(
            metric_filter_step(RULE_ERROR_LOG_GROUP, current.metric_filter, wanted.metric_filter)
        )
    steps += [
        metric_alarm_step(name, current.metric_alarms.get(name), settings)
        for name, settings in wanted.metric_alarms.items()
    ]
    if wanted.rule_payload is not None:
        steps.append(
            rule_step(wanted.rule_name, current.rule, wanted.rule_payload, current.rule_permission)
        )
    elif current.default_rule_recorded:
        steps.append(Step(RULE, wanted.rule_name, "remove"))
    stale = stale_objects_step(current.config_objects, wanted.config_key)
    if stale is not None:
        steps.append(stale)
    return Plan(tuple(steps), wanted.config_key)
