"""Read what AWS has of the notifier: reads only (Get, List, Describe, Head), never a change.

:func:`read` gathers the state :func:`iotbutton_cli.notify.plan.plan` compares with the wanted
one, and checks that every existing resource with iotbutton's name is iotbutton's, so a deploy
that would refuse refuses before it changes anything, and a dry run shows the same refusal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from iotbutton_cli.aws.calls import absent_ok
from iotbutton_cli.aws.errors import error_code
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.notify import rules
from iotbutton_cli.notify.plan import ROLE, SCHEDULE, SCHEDULE_GROUP_STEP, Current, Wanted
from iotbutton_cli.notify.resources import (
    BUCKET_KIND,
    FAILURES_FUNCTION_NAME,
    FUNCTION_KIND,
    FUNCTION_NAME,
    LOG_GROUP_KIND,
    METRIC_ALARM_KIND,
    OWNER_TOPIC,
    PARAMETER_KIND,
    RELEASE_SCHEDULE,
    RELEASE_SCHEDULE_ID,
    ROLE_KIND,
    RULE_ERROR_LOG_GROUP,
    SCHEDULE_GROUP_KIND,
    SCHEDULE_KIND,
    SECRET_PARAMETER,
    TABLE_KIND,
    TOPIC_KIND,
    URL_INVOKE_PERMISSION_SID,
    URL_PERMISSION_SID,
    owner_topic_arn,
    subscription_key,
)
from iotbutton_cli.provisioning import ownership

Tags = list[dict[str, str]] | dict[str, str]


def read(ctx: AppContext, wanted: Wanted, *, forget_pending: bool = True) -> Current:
    """The notifier as AWS and the registry have it. ``forget_pending=False`` (a dry run) leaves
    the registry as it is even when a resource turns out not to be ours."""
    namespace = ctx.namespace
    iam, logs, s3 = ctx.client("iam"), ctx.client("logs"), ctx.client("s3")
    roles: dict[str, dict[str, Any] | None] = {}
    for name in wanted.roles:
        roles[name] = role(iam, name)
        if roles[name] is not None:
            require_ours(
                ctx, ROLE_KIND, name, partial(iam_tags, iam, name), "IAM role", forget_pending
            )
    log_groups: dict[str, dict[str, Any] | None] = {}
    for name in wanted.log_groups:
        log_groups[name] = log_group(logs, name)
        if log_groups[name] is not None:
            tags = partial(log_group_tags, logs, name)
            require_ours(ctx, LOG_GROUP_KIND, name, tags, "log group", forget_pending)
    bucket = bucket_state(ctx, wanted.bucket)
    if bucket is not None:
        require_ours(
            ctx,
            BUCKET_KIND,
            wanted.bucket,
            lambda: bucket_tags(s3, wanted.bucket, ctx.account_id),
            "S3 bucket",
            forget_pending,
        )
    ssm, lam = ctx.client("ssm"), ctx.client("lambda")
    secret = parameter(ssm)
    if secret is not None:
        require_ours(
            ctx,
            PARAMETER_KIND,
            SECRET_PARAMETER,
            lambda: parameter_tags(ssm, SECRET_PARAMETER),
            "SSM parameter",
            forget_pending,
        )
    dynamodb = ctx.client("dynamodb")
    table = table_state(dynamodb, wanted.table)
    if table is not None:
        arn = table["TableArn"]
        require_ours(
            ctx,
            TABLE_KIND,
            wanted.table,
            lambda: table_tags(dynamodb, arn),
            "DynamoDB table",
            forget_pending,
        )
    function = our_function(ctx, lam, FUNCTION_NAME, forget_pending)
    url = function_url(lam) if function is not None and wanted.receipts else None
    failures = topic = metric_filter_found = None
    invoke_configs: dict[str, dict[str, Any] | None] = {}
    metric_alarms: dict[str, dict[str, Any] | None] = {}
    if wanted.failures_function:
        failures = our_function(ctx, lam, FAILURES_FUNCTION_NAME, forget_pending)
        existing = {FUNCTION_NAME: function, FAILURES_FUNCTION_NAME: failures}
        invoke_configs = {
            name: invoke_config(lam, name) if existing.get(name) is not None else None
            for name in wanted.invoke_configs
        }
        sns = ctx.client("sns")
        topic_arn = owner_topic_arn(ctx)
        topic = topic_state(sns, topic_arn)
        if topic is not None:
            require_ours(
                ctx,
                TOPIC_KIND,
                OWNER_TOPIC,
                lambda: topic_tags(sns, topic_arn),
                "SNS topic",
                forget_pending,
            )
        if log_groups.get(RULE_ERROR_LOG_GROUP) is not None:
            name = wanted.metric_filter.get("filterName", "")
            metric_filter_found = metric_filter(logs, RULE_ERROR_LOG_GROUP, name)
        cloudwatch = ctx.client("cloudwatch")
        for name in wanted.metric_alarms:
            metric_alarms[name] = metric_alarm(cloudwatch, name)
            if metric_alarms[name] is not None:
                arn = metric_alarms[name]["AlarmArn"]  # type: ignore[index]
                require_ours(
                    ctx,
                    METRIC_ALARM_KIND,
                    name,
                    partial(metric_alarm_tags, cloudwatch, arn),
                    "CloudWatch alarm",
                    forget_pending,
                )
    rule, permission = None, False
    if wanted.rule_payload is not None:
        rule = rules.current_rule(ctx, wanted.rule_name, FUNCTION_NAME, forget_pending)
        permission = function is not None and rules.has_permission(
            ctx, wanted.rule_name, FUNCTION_NAME
        )
    group = schedule = None
    if wanted.schedule is not None:  # without quiet hours that hold, no scheduler call at all
        group, schedule = release_schedule_state(ctx, wanted.schedule_group, forget_pending)
    record = namespace.get(BUCKET_KIND, wanted.bucket) or {}
    return Current(
        roles=roles,
        log_groups=log_groups,
        bucket=bucket,
        config_object=bucket is not None and object_exists(s3, wanted.bucket, wanted.config_key),
        secret=secret,
        table=table,
        function=function,
        function_url=url,
        failures_function=failures,
        invoke_configs=invoke_configs,
        topic=topic,
        metric_filter=metric_filter_found,
        metric_alarms=metric_alarms,
        rule=rule,
        rule_permission=permission,
        default_rule_recorded=namespace.get(rules.KIND, wanted.rule_name) is not None,
        config_objects=tuple(record.get("objects", [])),
        schedule_group=group,
        schedule=schedule,
        release_recorded=release_recorded(ctx, wanted),
    )


def release_recorded(ctx: AppContext, wanted: Wanted) -> frozenset[str]:
    """Which of the release schedule, its group and the scheduler role the registry records:
    what a deploy removes once no quiet hours hold clicks."""
    namespace = ctx.namespace
    recorded = {
        SCHEDULE: namespace.get(SCHEDULE_KIND, RELEASE_SCHEDULE_ID),
        SCHEDULE_GROUP_STEP: namespace.get(SCHEDULE_GROUP_KIND, wanted.schedule_group),
        ROLE: namespace.get(ROLE_KIND, wanted.scheduler_role) if wanted.scheduler_role else None,
    }
    return frozenset(step for step, record in recorded.items() if record is not None)


def require_ours(
    ctx: AppContext,
    kind: str,
    name: str,
    tags: Callable[[], Tags],
    label: str,
    forget_pending: bool = True,
) -> None:
    """An existing resource is ours if recorded, or tagged by us (a run that stopped early, or
    another machine). Tags are fetched only when the registry does not know the resource (a
    record still pending proves nothing: our create may never have happened)."""
    recorded = ctx.namespace.get(kind, name)
    if recorded is not None and not recorded.get("pending"):
        return
    if ownership.tagged(tags()):
        return
    if forget_pending:
        ctx.namespace.forget_pending(kind, name)
    raise IotButtonError(
        "resource-not-ours",
        f"The {label} {name} exists but was not made by iotbutton.",
        "Delete or rename it; iotbutton never changes resources it did not make.",
    )


# --- IAM ---------------------------------------------------------------------------------------


def role(iam: Any, name: str) -> dict[str, Any] | None:
    """``{"Arn", "policy"}`` (the inline policy named like the role, or None), or None."""
    found = absent_ok(iam.get_role, RoleName=name)
    if found is None:
        return None
    policy = absent_ok(iam.get_role_policy, RoleName=name, PolicyName=name)
    return {"Arn": found["Role"]["Arn"], "policy": policy["PolicyDocument"] if policy else None}


def iam_tags(iam: Any, name: str) -> list[dict[str, str]]:
    return list(iam.list_role_tags(RoleName=name).get("Tags", []))


# --- CloudWatch Logs ---------------------------------------------------------------------------


def log_group(logs: Any, name: str) -> dict[str, Any] | None:
    groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == name), None)
    return None if group is None else {"retentionInDays": group.get("retentionInDays")}


def log_group_tags(logs: Any, name: str) -> dict[str, str]:
    return dict(logs.list_tags_log_group(logGroupName=name).get("tags", {}))


# --- S3 ----------------------------------------------------------------------------------------


def bucket_state(ctx: AppContext, bucket: str) -> dict[str, Any] | None:
    """The bucket's settings, or None; a bucket of that name in another account is refused."""
    s3 = ctx.client("s3")
    try:
        found = absent_ok(s3.head_bucket, Bucket=bucket, ExpectedBucketOwner=ctx.account_id)
    except Exception as exc:
        if error_code(exc) == "403":
            raise IotButtonError(
                "bucket-not-ours",
                f"The S3 bucket {bucket} belongs to another account.",
                "S3 bucket names are global; this one is taken.",
            ) from exc
        raise
    if found is None:
        return None
    return bucket_settings(ctx, bucket)


def bucket_settings(ctx: AppContext, bucket: str) -> dict[str, Any]:
    s3 = ctx.client("s3")
    block = absent_ok(s3.get_public_access_block, Bucket=bucket)
    return {
        "untagged": bool((ctx.namespace.get(BUCKET_KIND, bucket) or {}).get("untagged")),
        "public_access_block": dict(block["PublicAccessBlockConfiguration"]) if block else {},
        "encrypted": absent_ok(s3.get_bucket_encryption, Bucket=bucket) is not None,
    }


def bucket_tags(s3: Any, bucket: str, account: str) -> list[dict[str, str]]:
    """The bucket's tags; a missing bucket is an error here (the caller decides what it means)."""
    try:
        return list(s3.get_bucket_tagging(Bucket=bucket, ExpectedBucketOwner=account)["TagSet"])
    except Exception as exc:
        if error_code(exc) == "NoSuchTagSet":
            return []
        raise


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    return absent_ok(s3.head_object, Bucket=bucket, Key=key) is not None


# --- SSM ---------------------------------------------------------------------------------------


def parameter(ssm: Any) -> dict[str, Any] | None:
    """The secret parameter, decrypted to compare it with the secret; never shown."""
    found = absent_ok(ssm.get_parameter, Name=SECRET_PARAMETER, WithDecryption=True)
    return None if found is None else dict(found["Parameter"])


def parameter_tags(ssm: Any, name: str) -> list[dict[str, str]]:
    return list(ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"])


# --- DynamoDB --------------------------------------------------------------------------------


def table_state(dynamodb: Any, name: str) -> dict[str, Any] | None:
    """``{"TableArn", "status", "billing_mode", "ttl_attribute"}``, or None."""
    described = absent_ok(dynamodb.describe_table, TableName=name)
    if described is None:
        return None
    table = described["Table"]
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    enabled = ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    return {
        "TableArn": table["TableArn"],
        "status": table.get("TableStatus"),
        "billing_mode": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
        "ttl_attribute": ttl.get("AttributeName") if enabled else None,
    }


def table_tags(dynamodb: Any, arn: str) -> list[dict[str, str]]:
    return list(dynamodb.list_tags_of_resource(ResourceArn=arn).get("Tags", []))


# --- Lambda ------------------------------------------------------------------------------------


def function_configuration(lam: Any) -> dict[str, Any] | None:
    return function_named(lam, FUNCTION_NAME)


def function_url(lam: Any) -> dict[str, Any] | None:
    """The function URL's ``{"FunctionUrl", "AuthType", "public"}``, or None.
    ``public``: the function's policy grants both of iotbutton's statements for it."""
    found = absent_ok(lam.get_function_url_config, FunctionName=FUNCTION_NAME)
    if found is None:
        return None
    policy = absent_ok(lam.get_policy, FunctionName=FUNCTION_NAME)
    sids = set()
    if policy is not None:
        sids = {s.get("Sid") for s in json.loads(policy["Policy"]).get("Statement", [])}
    grants = sids & {URL_PERMISSION_SID, URL_INVOKE_PERMISSION_SID}
    return {
        "FunctionUrl": found["FunctionUrl"],
        "AuthType": found.get("AuthType"),
        "public": len(grants) == 2,
        "grants": sorted(grants),
    }


def function_tags(lam: Any, arn: str) -> dict[str, str]:
    return dict(lam.list_tags(Resource=arn).get("Tags", {}))


def our_function(
    ctx: AppContext, lam: Any, name: str, forget_pending: bool
) -> dict[str, Any] | None:
    """The function's ``Configuration``, or None; one of that name not iotbutton's is refused."""
    found = function_named(lam, name)
    if found is not None:
        arn = found["FunctionArn"]
        require_ours(
            ctx,
            FUNCTION_KIND,
            name,
            lambda: function_tags(lam, arn),
            "Lambda function",
            forget_pending,
        )
    return found


def function_named(lam: Any, name: str) -> dict[str, Any] | None:
    found = absent_ok(lam.get_function, FunctionName=name)
    return None if found is None else dict(found["Configuration"])


def invoke_config(lam: Any, name: str) -> dict[str, Any] | None:
    """The function's asynchronous invocation settings as PutFunctionEventInvokeConfig takes
    them, or None (Lambda's defaults: two retries, six hours, no destination)."""
    found = absent_ok(lam.get_function_event_invoke_config, FunctionName=name)
    if found is None:
        return None
    destinations = found.get("DestinationConfig") or {}
    return {
        "MaximumRetryAttempts": found.get("MaximumRetryAttempts"),
        "MaximumEventAgeInSeconds": found.get("MaximumEventAgeInSeconds"),
        "DestinationConfig": {
            key: {"Destination": value["Destination"]}
            for key, value in destinations.items()
            if isinstance(value, dict) and value.get("Destination")
        },
    }


# --- SNS ---------------------------------------------------------------------------------------


def topic_state(sns: Any, arn: str) -> dict[str, Any] | None:
    """``{"TopicArn", "subscriptions": {"<protocol>:<endpoint>": <subscription ARN or
    "PendingConfirmation">}}``, or None."""
    if absent_ok(sns.get_topic_attributes, TopicArn=arn) is None:
        return None
    subscriptions: dict[str, str] = {}
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn):
        for item in page.get("Subscriptions", []):
            key = subscription_key(item["Protocol"], item["Endpoint"])
            subscriptions[key] = item["SubscriptionArn"]
    return {"TopicArn": arn, "subscriptions": subscriptions}


def topic_tags(sns: Any, arn: str) -> list[dict[str, str]]:
    return list(sns.list_tags_for_resource(ResourceArn=arn).get("Tags", []))


# --- EventBridge Scheduler ----------------------------------------------------------------------


def release_schedule_state(
    ctx: AppContext, group_name: str, forget_pending: bool = True
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The release schedule's group and the schedule, each None if absent; a group of that
    name that is not iotbutton's is refused. Schedules carry no tags: one in iotbutton's group
    is iotbutton's."""
    scheduler = ctx.client("scheduler")
    group = schedule_group_state(scheduler, group_name)
    if group is None:
        return None, None
    tags = group.pop("tags")
    require_ours(
        ctx, SCHEDULE_GROUP_KIND, group_name, lambda: tags, "schedule group", forget_pending
    )
    return group, schedule_state(scheduler, group_name, RELEASE_SCHEDULE)


def schedule_group_state(scheduler: Any, name: str) -> dict[str, Any] | None:
    """``{"Arn", "tagged", "tags"}``, or None. A group still being deleted (DeleteScheduleGroup
    finishes later, on AWS) can take no schedule: the deploy stops, to be run again."""
    found = absent_ok(scheduler.get_schedule_group, Name=name)
    if found is None:
        return None
    if found.get("State") == "DELETING":
        raise IotButtonError(
            "schedule-group-deleting",
            f"The schedule group {name} is still being deleted (by the last deploy or clean).",
            "AWS takes a minute or so; run `iotbutton notify deploy` again then.",
        )
    tags = schedule_group_tags(scheduler, found["Arn"])
    return {"Arn": found["Arn"], "tagged": ownership.tagged(tags), "tags": tags}


def schedule_group_tags(scheduler: Any, arn: str) -> list[dict[str, str]]:
    return list(scheduler.list_tags_for_resource(ResourceArn=arn).get("Tags", []))


def schedule_state(scheduler: Any, group: str, name: str) -> dict[str, Any] | None:
    """The schedule as GetSchedule has it, or None."""
    found = absent_ok(scheduler.get_schedule, Name=name, GroupName=group)
    if found is None:
        return None
    found = dict(found)
    found.pop("ResponseMetadata", None)
    return found


# --- CloudWatch --------------------------------------------------------------------------------


def metric_filter(logs: Any, group: str, name: str) -> dict[str, Any] | None:
    """The filter as PutMetricFilter takes it (without the group), or None."""
    found = absent_ok(logs.describe_metric_filters, logGroupName=group, filterNamePrefix=name)
    for item in (found or {}).get("metricFilters", []):
        if item.get("filterName") == name:
            return {
                "filterName": name,
                "filterPattern": item.get("filterPattern", ""),
                "metricTransformations": [
                    {
                        key: value
                        for key, value in transformation.items()
                        if key in ("metricName", "metricNamespace", "metricValue")
                    }
                    for transformation in item.get("metricTransformations", [])
                ],
            }
    return None


def metric_alarm(cloudwatch: Any, name: str) -> dict[str, Any] | None:
    """The alarm as DescribeAlarms has it, or None."""
    found = cloudwatch.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
    return dict(found[0]) if found else None


def metric_alarm_tags(cloudwatch: Any, arn: str) -> list[dict[str, str]]:
    return list(cloudwatch.list_tags_for_resource(ResourceARN=arn).get("Tags", []))
