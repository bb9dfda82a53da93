"""What the notifier is made of: resource names, settings and policy documents, as data.

Nothing here calls AWS: :mod:`iotbutton_cli.notify.plan` compares these wanted settings with what
AWS has, and :mod:`iotbutton_cli.notify.apply` makes the difference.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.context import AppContext
from iotbutton_cli.notifier_lambda.contract import (
    ALARM_TABLE,
    ALARM_TABLE_ENV,
    CALLBACK_URL_ENV,
    CONFIG_BUCKET_ENV,
    CONFIG_KEY_ENV,
    FAILURES_FUNCTION_NAME,
    FUNCTION_NAME,
    LOOPBACK_HOOKS_ENV,
    OWNER_TOPIC,
    OWNER_TOPIC_ENV,
    RELEASE_SCHEDULE,
    SCHEDULE_GROUP,
    SECRET_PARAMETER,
    SECRET_PARAMETER_ENV,
    TWILIO_API_BASE_ENV,
    TWILIO_TIMEOUT_ENV,
    release_event,
)
from iotbutton_cli.notifier_lambda.shadow import DATA_ENDPOINT_ENV
from iotbutton_cli.notify.bundle import FAILURES_HANDLER, HANDLER
from iotbutton_cli.registry import kinds

FUNCTION_LOG_GROUP = f"/aws/lambda/{FUNCTION_NAME}"
FAILURES_LOG_GROUP = f"/aws/lambda/{FAILURES_FUNCTION_NAME}"
RULE_ERROR_LOG_GROUP = "/iotbutton/rule-errors"
RUNTIME = "python3.13"
ARCHITECTURE = "arm64"  # pure Python: Graviton is cheaper and as fast
MEMORY_MB = 128
TIMEOUT_SECONDS = 30
TWILIO_TIMEOUT_SECONDS = "5"  # 3 attempts x 5 s fit the 30 s function timeout
LOG_RETENTION_DAYS = 30
LOG_GROUPS = (FUNCTION_LOG_GROUP, FAILURES_LOG_GROUP, RULE_ERROR_LOG_GROUP)
CONFIG_PREFIX = "notifier/config-"

ROLE_KIND = kinds.ROLES
LOG_GROUP_KIND = kinds.LOG_GROUPS
BUCKET_KIND = kinds.BUCKETS
PARAMETER_KIND = kinds.PARAMETERS
FUNCTION_KIND = kinds.FUNCTIONS
TABLE_KIND = kinds.TABLES
TOPIC_KIND = kinds.TOPICS
METRIC_ALARM_KIND = kinds.METRIC_ALARMS
SCHEDULE_KIND = kinds.SCHEDULES
SCHEDULE_GROUP_KIND = kinds.SCHEDULE_GROUPS

# Nothing dropped silently. Lambda tries a click three times (its default: the first attempt
# and two retries, a minute or two apart) and keeps it queued at most an hour (a help call
# hours late is no help; the owner is told instead); what it gives up on goes to the failures
# function, which tells the owner through the SNS topic.
MAX_RETRY_ATTEMPTS = 2
MAX_EVENT_AGE_SECONDS = 3600
# CloudWatch: the functions' errors, and every rule error (a metric filter counts the events
# the rules' error action writes), alarm the owner through the same topic.
METRICS_NAMESPACE = "iotbutton"
RULE_ERRORS_METRIC = "RuleErrors"
RULE_ERRORS_FILTER = "iotbutton-rule-errors"
ERRORS_ALARM = "iotbutton-notifier-errors"
RULE_ERRORS_ALARM = "iotbutton-rule-errors"
ALARM_PERIOD_SECONDS = 300

# The alarm ledger (notifier_lambda/alarms.py): on demand, items expire by TTL.
TABLE_TTL_ATTRIBUTE = "expiresAt"
TABLE_KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
TABLE_ATTRIBUTES = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "S"},
]
TABLE_BILLING_MODE = "PAY_PER_REQUEST"

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


@dataclass(frozen=True)
class Names:
    """Resource names for one account and region (IAM and S3 names are global, hence suffixes)."""

    function_role: str
    rule_error_role: str
    bucket: str
    scheduler_role: str  # what the release schedule invokes the notifier as

    @classmethod
    def for_context(cls, ctx: AppContext) -> Names:
        return cls(
            function_role=f"iotbutton-notifier-{ctx.region}",
            rule_error_role=f"iotbutton-rule-errors-{ctx.region}",
            bucket=f"iotbutton-config-{ctx.account_id}-{ctx.region}",
            scheduler_role=f"iotbutton-scheduler-{ctx.region}",
        )


@dataclass(frozen=True)
class DeployInput:
    """Everything a deploy needs from the user's machine; the secret never leaves this object
    except towards SSM."""

    lambda_document: dict[str, Any]
    secret: str = field(repr=False)
    bundle_data: bytes = field(repr=False)
    code_sha256: str = ""
    handler: str = HANDLER
    failures_handler: str = FAILURES_HANDLER
    # notify.yaml's owner: the (SNS protocol, endpoint) pairs subscribed to the owner topic.
    owner: tuple[tuple[str, str], ...] = ()
    twilio_api_base: str | None = None  # the sandbox points Twilio calls at its stand-in
    # The default rule sends every button's clicks to the notifier; without it, only the
    # user's own rules (`rules create`) do, so they never message twice.
    default_rule: bool = True
    # A deploy to the sandbox: webhooks may go to its sink on loopback.
    loopback_hooks: bool = False


def trust_policy(service: str, account: str | None = None) -> str:
    """Trust one AWS service; with ``account``, only on behalf of that account (so another
    account's IoT cannot use the role: the confused-deputy guard AWS recommends)."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def role_arn(ctx: AppContext, name: str) -> str:
    return f"arn:{ctx.partition}:iam::{ctx.account_id}:role/{name}"


def function_policy(ctx: AppContext, names: Names, things: Iterable[str] = ()) -> dict[str, Any]:
    """Read the config objects and the one parameter, keep the alarm ledger, hand failures on
    to the failures function and tell the owner's topic, write the two functions' log groups,
    and read and write the classic shadow of the buttons' ``things`` (serials: see
    :func:`shadow_grant`). Nothing else: both functions run with this role.

    The config grant covers ``notifier/config-*`` rather than the current key: a redeploy with a
    new config switches the function to a new key, and IAM changes take seconds to reach Lambda,
    so an exact-key grant would fail the first clicks after each config change."""
    partition = ctx.partition
    log_groups = [
        ctx.arn("logs", f"log-group:{group}:*")
        for group in (FUNCTION_LOG_GROUP, FAILURES_LOG_GROUP)
    ]
    shadows = [shadow_statement([thing_arn(ctx, serial) for serial in things])] if things else []
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadConfig",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:{partition}:s3:::{names.bucket}/{CONFIG_PREFIX}*",
            },
            {
                "Sid": "ReadTwilioSecret",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": ctx.arn("ssm", f"parameter{SECRET_PARAMETER}"),
            },
            {
                "Sid": "KeepAlarmLedger",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:DeleteItem",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:Query",
                    "dynamodb:UpdateItem",
                ],
                "Resource": table_arn(ctx),
            },
            {
                "Sid": "HandOnFailures",
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": failures_function_arn(ctx),
            },
            {
                "Sid": "TellOwner",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": owner_topic_arn(ctx),
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": log_groups,
            },
            *shadows,
        ],
    }


SHADOW_ACTIONS = ["iot:GetThingShadow", "iot:UpdateThingShadow"]
# IAM: "The size of each ... inline policy ... role policy size cannot exceed 10,240 characters"
# (all of a role's inline policies together; whitespace is not counted).
ROLE_POLICY_MAX_CHARS = 10_240
THING_NAME = re.compile(r"[A-Za-z0-9:_-]{1,128}")


def shadow_statement(thing_arns: list[str]) -> dict[str, Any]:
    """Each button's thing by its ARN: ``thing/<name>`` is the classic shadow only (a named
    shadow is ``thing/<name>/<shadow>``), and IAM has no condition key or tag on things that
    could say "iotbutton's" instead (``iot:UpdateThingShadow`` takes the ``thing`` resource and
    no condition key), so a list it is; never ``thing/*``."""
    return {
        "Sid": "ReportClicksToShadows",
        "Effect": "Allow",
        "Action": SHADOW_ACTIONS,
        "Resource": thing_arns,
    }


def thing_arn(ctx: AppContext, serial: str) -> str:
    return ctx.arn("iot", f"thing/{serial}")


@dataclass(frozen=True)
class ShadowGrant:
    """The buttons whose shadows the role may write, and those IAM's size limit left out."""

    granted: tuple[str, ...]
    left_out: tuple[str, ...] = ()


def shadow_grant(
    ctx: AppContext, names: Names, serials: Iterable[str], first: Iterable[str] = ()
) -> ShadowGrant:
    """``first`` (the registry's buttons), then the other ``serials``, each sorted, as many as
    fit in the role's policy (``ROLE_POLICY_MAX_CHARS``: about 150 buttons with 16-character
    serials); the rest are left out, their clicks still alarm but their shadows are not written
    (AccessDenied, logged by the function). A name no thing can have (``*``, say) is never
    granted."""
    mine = sorted({s for s in first if THING_NAME.fullmatch(s)})
    others = sorted({s for s in serials if THING_NAME.fullmatch(s)} - set(mine))
    ordered = mine + others
    used = policy_chars(function_policy(ctx, names, ordered[:1])) if ordered else 0
    fits = 1 if ordered and used <= ROLE_POLICY_MAX_CHARS else 0
    for serial in ordered[1:]:
        used += len(json.dumps(thing_arn(ctx, serial))) + 1  # the ARN and its comma
        if used > ROLE_POLICY_MAX_CHARS:
            break
        fits += 1
    return ShadowGrant(tuple(ordered[:fits]), tuple(ordered[fits:]))


def policy_chars(document: dict[str, Any]) -> int:
    """A policy's size as IAM counts it: its JSON without whitespace."""
    return len(json.dumps(document, separators=(",", ":")))


def subscription_key(protocol: str, endpoint: str) -> str:
    """How a plan and the registry name one subscription: ``sms:+15551230009``."""
    return f"{protocol}:{endpoint}"


def owner_topic_arn(ctx: AppContext) -> str:
    return ctx.arn("sns", OWNER_TOPIC)


def failures_function_arn(ctx: AppContext) -> str:
    return ctx.arn("lambda", f"function:{FAILURES_FUNCTION_NAME}")


def function_arn(ctx: AppContext) -> str:
    """The notifier's ARN."""
    return ctx.arn("lambda", f"function:{FUNCTION_NAME}")


# --- The release schedule (quiet hours with ``then: hold``) ---------------------------------------

SCHEDULER_SERVICE = "scheduler.amazonaws.com"
# How a plan and the registry name the schedule: schedules are named within their group.
RELEASE_SCHEDULE_ID = f"{SCHEDULE_GROUP}/{RELEASE_SCHEDULE}"
# Scheduler invokes a Lambda target asynchronously: these retries are Scheduler's own, for an
# invoke Lambda refused (throttled, the role's policy not there yet); once Lambda has taken the
# event, its own retries and the notifier's on-failure destination apply. A release an hour
# late is still worth sending; later than that, the next release (or `notify release`) will do.
SCHEDULE_RETRY_ATTEMPTS = 3
SCHEDULE_MAX_EVENT_AGE_SECONDS = 3600


def scheduler_policy(ctx: AppContext) -> dict[str, Any]:
    """The scheduler role's one grant: invoke the notifier, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "InvokeNotifier",
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": function_arn(ctx),
            }
        ],
    }


def schedule_group_arn(ctx: AppContext, name: str = SCHEDULE_GROUP) -> str:
    return ctx.arn("scheduler", f"schedule-group/{name}")


def schedule_arn(ctx: AppContext, schedule_id: str = RELEASE_SCHEDULE_ID) -> str:
    return ctx.arn("scheduler", f"schedule/{schedule_id}")


def release_schedule_expression(ends: tuple[int, ...]) -> str:
    """One cron expression for every minute of the day (``ends``) at which quiet hours that
    hold clicks end: the distinct minutes by the distinct hours, so 07:00 and 08:30 give
    ``cron(0,30 7,8 * * ? *)``.

    That also runs at 07:30 and 08:00, which is harmless: a run releases only the clicks whose
    own button's quiet hours have ended by then (the notifier looks at each against the config),
    and finds nothing to do otherwise. One schedule keeps the deploy's resources fixed whatever
    the config holds."""
    if not ends:
        raise ValueError("no quiet hours end: nothing to schedule")
    minutes = sorted({end % 60 for end in ends})
    hours = sorted({end // 60 for end in ends})
    return f"cron({_joined(minutes)} {_joined(hours)} * * ? *)"


def _joined(values: list[int]) -> str:
    return ",".join(str(value) for value in values)


def release_schedule(
    ctx: AppContext, names: Names, ends: tuple[int, ...], zone: str
) -> dict[str, Any]:
    """CreateSchedule's settings (without ``Name`` and ``GroupName``): at each end of the
    quiet hours, in the config's time zone (``zone``, so daylight saving moves with it), invoke
    the notifier with the release event; Scheduler puts its own time for the run in
    ``scheduledTime``."""
    return {
        "ScheduleExpression": release_schedule_expression(ends),
        "ScheduleExpressionTimezone": zone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Description": "Sends what iotbutton's quiet hours held when they end (iotbutton)",
        "Target": {
            "Arn": function_arn(ctx),
            "RoleArn": role_arn(ctx, names.scheduler_role),
            "Input": json.dumps(release_event()),
            "RetryPolicy": {
                "MaximumRetryAttempts": SCHEDULE_RETRY_ATTEMPTS,
                "MaximumEventAgeInSeconds": SCHEDULE_MAX_EVENT_AGE_SECONDS,
            },
        },
    }


def invoke_configs(ctx: AppContext) -> dict[str, dict[str, Any]]:
    """Each function's asynchronous invocation settings, as PutFunctionEventInvokeConfig
    takes them: the notifier's failures go to the failures function, whose own go nowhere (no
    loop; the errors alarm covers it)."""
    notifier = {
        "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
        "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
        "DestinationConfig": {"OnFailure": {"Destination": failures_function_arn(ctx)}},
    }
    failures = {
        "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
        "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
        "DestinationConfig": {},
    }
    return {FUNCTION_NAME: notifier, FAILURES_FUNCTION_NAME: failures}


def rule_errors_filter() -> dict[str, Any]:
    """PutMetricFilter's settings: every event in the rule-error log group counts one."""
    return {
        "filterName": RULE_ERRORS_FILTER,
        "filterPattern": "",
        "metricTransformations": [
            {
                "metricName": RULE_ERRORS_METRIC,
                "metricNamespace": METRICS_NAMESPACE,
                "metricValue": "1",
            }
        ],
    }


def metric_alarms(ctx: AppContext) -> dict[str, dict[str, Any]]:
    """PutMetricAlarm's settings, by alarm name: any error in five minutes tells the owner."""
    common = {
        "ActionsEnabled": True,
        "AlarmActions": [owner_topic_arn(ctx)],
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
    }

    def errors_of(ident: str, function: str, metric: str = "Errors") -> dict[str, Any]:
        return {
            "Id": ident,
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Lambda",
                    "MetricName": metric,
                    "Dimensions": [{"Name": "FunctionName", "Value": function}],
                },
                "Period": ALARM_PERIOD_SECONDS,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }

    return {
        ERRORS_ALARM: {
            **common,
            "AlarmDescription": "iotbutton: the notifier or its failures function failed, or "
            "the notifier was throttled",
            "Metrics": [
                errors_of("notifier", FUNCTION_NAME),
                errors_of("failures", FAILURES_FUNCTION_NAME),
                # A throttled callback (Twilio gets a 429 and does not post it again) leaves an
                # escalation where it was: the owner must hear of that too.
                errors_of("throttled", FUNCTION_NAME, "Throttles"),
                {
                    "Id": "errors",
                    # A function not invoked in a period has no datapoint, and a sum with a
                    # missing term is missing: FILL makes an idle function count zero.
                    "Expression": "FILL(notifier, 0) + FILL(failures, 0) + FILL(throttled, 0)",
                    "Label": "Errors and throttles",
                    "ReturnData": True,
                },
            ],
        },
        RULE_ERRORS_ALARM: {
            **common,
            "AlarmDescription": "iotbutton: a topic rule could not invoke the notifier",
            "Namespace": METRICS_NAMESPACE,
            "MetricName": RULE_ERRORS_METRIC,
            "Statistic": "Sum",
            "Period": ALARM_PERIOD_SECONDS,
        },
    }


def table_arn(ctx: AppContext) -> str:
    return ctx.arn("dynamodb", f"table/{ALARM_TABLE}")


def rule_error_policy(ctx: AppContext) -> dict[str, Any]:
    log_group = ctx.arn("logs", f"log-group:{RULE_ERROR_LOG_GROUP}")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteRuleErrors",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group}:*",
            }
        ],
    }


def config_key_for(document: dict[str, Any]) -> str:
    digest = hashlib.sha256(canonical(document)).hexdigest()[:16]
    return f"{CONFIG_PREFIX}{digest}.json"


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# The function URL Twilio posts delivery receipts to, and the two public grants it needs (since
# October 2025 a NONE-auth URL needs lambda:InvokeFunction as well as lambda:InvokeFunctionUrl).
FUNCTION_URL_AUTH_TYPE = "NONE"
URL_PERMISSION_SID = "iotbutton-function-url"
URL_INVOKE_PERMISSION_SID = "iotbutton-function-url-invoke"


def receipts_possible(lambda_document: dict[str, Any]) -> bool:
    """Twilio signs its callbacks with the account's auth token: with an API key stored
    instead, the function could not tell Twilio's receipts from anyone's."""
    return lambda_document.get("api_key_sid") is None


def environment(
    bucket: str,
    config_key: str,
    secret_version: int,
    twilio_api_base: str | None,
    callback_url: str | None = None,
    owner_topic: str | None = None,
    loopback_hooks: bool = False,
    data_endpoint: str | None = None,
) -> dict[str, str]:
    # The secret is named by its parameter version, so a new secret reaches warm containers (a
    # new environment starts fresh ones).
    variables = {
        ALARM_TABLE_ENV: ALARM_TABLE,
        CONFIG_BUCKET_ENV: bucket,
        CONFIG_KEY_ENV: config_key,
        SECRET_PARAMETER_ENV: secret_reference(secret_version),
        TWILIO_TIMEOUT_ENV: TWILIO_TIMEOUT_SECONDS,
    }
    if twilio_api_base:
        variables[TWILIO_API_BASE_ENV] = twilio_api_base
    if callback_url:
        variables[CALLBACK_URL_ENV] = callback_url
    if owner_topic:
        variables[OWNER_TOPIC_ENV] = owner_topic
    if loopback_hooks:
        variables[LOOPBACK_HOOKS_ENV] = "1"
    if data_endpoint:  # where each click is reported on its thing's shadow
        variables[DATA_ENDPOINT_ENV] = data_endpoint
    return variables


def secret_reference(version: int) -> str:
    return f"{SECRET_PARAMETER}:{version}"


def function_config(role: str, variables: dict[str, str], handler: str) -> dict[str, Any]:
    """The function's settings as ``UpdateFunctionConfiguration`` takes them."""
    return {
        "Role": role,
        "Handler": handler,
        "Runtime": RUNTIME,
        "MemorySize": MEMORY_MB,
        "Timeout": TIMEOUT_SECONDS,
        "Environment": {"Variables": variables},
    }
