"""How ``clean --discover`` finds the resources of each kind (bound in ``kinds_table.py``).

Only resources that carry iotbutton's own marks are taken, never anything else (see
``discover.py``). Each finder makes read-only calls and adds what it finds to a :class:`Found`;
some find another kind along the way (a thing's certificates, a function's permissions).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.aws.calls import absent_ok
from iotbutton_cli.aws.errors import error_code
from iotbutton_cli.aws.tags import THING_ATTRIBUTE
from iotbutton_cli.context import AppContext
from iotbutton_cli.device import simulator
from iotbutton_cli.notify import resources as notifier_resources
from iotbutton_cli.notify import rules
from iotbutton_cli.notify.current import schedule_group_tags, table_tags
from iotbutton_cli.provisioning import policies, things
from iotbutton_cli.provisioning.ownership import tagged
from iotbutton_cli.registry import kinds
from iotbutton_cli.registry.records import (
    AnyRecord,
    BucketRecord,
    CertificateRecord,
    FunctionRecord,
    LambdaPermissionRecord,
    LogGroupRecord,
    MetricAlarmRecord,
    ParameterRecord,
    PolicyRecord,
    RoleRecord,
    ScheduleGroupRecord,
    ScheduleRecord,
    TableRecord,
    ThingRecord,
    ThingTypeRecord,
    TopicRecord,
    TopicRuleRecord,
)

# S3's answer for a bucket of that name that another account owns (ExpectedBucketOwner).
FOREIGN_BUCKET_CODES = frozenset({"403", "AccessDenied"})


@dataclass
class Found:
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(self, kind: kinds.KindName, resource_id: str, record: AnyRecord) -> None:
        fields: Mapping[str, Any] = record
        self.resources.setdefault(kind, {}).setdefault(resource_id, {}).update(fields)

    def count(self) -> int:
        return sum(len(items) for items in self.resources.values())


Finder = Callable[[AppContext, Found], None]


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    for page in client.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key, []))
    return items


def _cert_id(principal: str) -> str | None:
    return principal.rsplit("/", 1)[1] if ":cert/" in principal else None


def find_things(ctx: AppContext, found: Found) -> None:
    """Things with iotbutton's attribute, and the certificates attached to them."""
    iot = ctx.client("iot")
    attribute, value = next(iter(THING_ATTRIBUTE.items()))
    for thing in _pages(
        iot, "list_things", "things", attributeName=attribute, attributeValue=value
    ):
        name = thing["thingName"]
        found.add(
            kinds.THINGS,
            name,
            ThingRecord(arn=thing["thingArn"], thing_type=thing.get("thingTypeName")),
        )
        for principal in _pages(iot, "list_thing_principals", "principals", thingName=name):
            cert_id = _cert_id(principal)
            if cert_id:
                found.add(
                    kinds.CERTIFICATES,
                    cert_id,
                    CertificateRecord(arn=principal, thing=name, thing_attached=True),
                )
                found.add(kinds.THINGS, name, ThingRecord(certificate=cert_id))


def find_policies(ctx: AppContext, found: Found) -> None:
    """iotbutton's policies whose document is exactly iotbutton's for this account and region,
    and the certificates attached to them."""
    iot = ctx.client("iot")
    for name, wanted in policies.documents(ctx).items():
        policy = absent_ok(iot.get_policy, policyName=name)
        if policy is None or json.loads(policy["policyDocument"]) != wanted:
            continue  # gone, or same name with someone else's document: not ours
        found.add(kinds.POLICIES, name, PolicyRecord(arn=policy["policyArn"]))
        for target in _pages(iot, "list_targets_for_policy", "targets", policyName=name):
            cert_id = _cert_id(target)
            if cert_id:
                record = CertificateRecord(arn=target, policies=[name])
                if name == policies.MONITOR_POLICY:
                    record["role"] = simulator.MONITOR_ROLE
                    record["thing"] = None
                found.add(kinds.CERTIFICATES, cert_id, record)


def find_thing_types(ctx: AppContext, found: Found) -> None:
    """Thing types with iotbutton's description."""
    for thing_type in _pages(ctx.client("iot"), "list_thing_types", "thingTypes"):
        description = thing_type.get("thingTypeProperties", {}).get("thingTypeDescription")
        if description == things.THING_TYPE_DESCRIPTION:
            found.add(
                kinds.THING_TYPES,
                thing_type["thingTypeName"],
                ThingTypeRecord(arn=thing_type["thingTypeArn"]),
            )


def find_topic_rules(ctx: AppContext, found: Found) -> None:
    """Rules with iotbutton's prefix and description that invoke the notifier."""
    iot = ctx.client("iot")
    function_arn = ctx.arn("lambda", f"function:{notifier_resources.FUNCTION_NAME}")
    for summary in _pages(iot, "list_topic_rules", "rules"):
        if not summary["ruleName"].startswith(rules.RULE_PREFIX):
            continue  # not iotbutton's: not even read (the IAM policy allows only its own)
        rule = iot.get_topic_rule(ruleName=summary["ruleName"])["rule"]
        targets = [a.get("lambda", {}).get("functionArn") for a in rule.get("actions", [])]
        if rule.get("description") == rules.RULE_DESCRIPTION and function_arn in targets:
            found.add(
                kinds.TOPIC_RULES,
                summary["ruleName"],
                TopicRuleRecord(
                    arn=summary["ruleArn"],
                    function=notifier_resources.FUNCTION_NAME,
                    sql=rule.get("sql", ""),
                ),
            )


def find_roles(ctx: AppContext, found: Found) -> None:
    """The notifier's, the rule error action's and the release schedule's roles, by name and
    tag."""
    names = notifier_resources.Names.for_context(ctx)
    iam = ctx.client("iam")
    for role in (names.function_role, names.rule_error_role, names.scheduler_role):
        described = absent_ok(iam.get_role, RoleName=role)
        tags = absent_ok(iam.list_role_tags, RoleName=role) if described else None
        if described and tags is not None and tagged(tags.get("Tags", [])):
            found.add(
                kinds.ROLES, role, RoleRecord(arn=described["Role"]["Arn"], inline_policies=[role])
            )


def find_schedule_groups(ctx: AppContext, found: Found) -> None:
    """The release schedule's group, by name and tag, and the release schedule in it."""
    scheduler = ctx.client("scheduler")
    name = notifier_resources.SCHEDULE_GROUP
    group = absent_ok(scheduler.get_schedule_group, Name=name)
    if group is None or not tagged(schedule_group_tags(scheduler, group["Arn"])):
        return
    found.add(kinds.SCHEDULE_GROUPS, name, ScheduleGroupRecord(arn=group["Arn"]))
    schedule = absent_ok(
        scheduler.get_schedule, Name=notifier_resources.RELEASE_SCHEDULE, GroupName=name
    )
    if schedule is not None:
        found.add(
            kinds.SCHEDULES,
            notifier_resources.RELEASE_SCHEDULE_ID,
            ScheduleRecord(arn=schedule["Arn"], group=name),
        )


def find_functions(ctx: AppContext, found: Found) -> None:
    """The notifier and its failures function, by name and tag, and the rules' permissions to
    invoke the notifier."""
    lam = ctx.client("lambda")
    for name in (notifier_resources.FUNCTION_NAME, notifier_resources.FAILURES_FUNCTION_NAME):
        function = absent_ok(lam.get_function, FunctionName=name)
        if function is None:
            continue
        arn = function["Configuration"]["FunctionArn"]
        if not tagged(lam.list_tags(Resource=arn).get("Tags", {})):
            continue
        found.add(kinds.FUNCTIONS, name, FunctionRecord(arn=arn))
        policy = absent_ok(lam.get_policy, FunctionName=name)
        if policy is None:
            continue
        prefix = rules.statement_id("")
        for statement in json.loads(policy["Policy"]).get("Statement", []):
            sid = statement.get("Sid", "")
            if sid.startswith(prefix):
                found.add(
                    kinds.LAMBDA_PERMISSIONS,
                    sid,
                    LambdaPermissionRecord(function=name, rule=sid[len(prefix) :]),
                )


def find_topics(ctx: AppContext, found: Found) -> None:
    """The owner's topic, by name and tag (its subscriptions go with it)."""
    sns = ctx.client("sns")
    arn = notifier_resources.owner_topic_arn(ctx)
    listed = absent_ok(sns.list_tags_for_resource, ResourceArn=arn)
    if listed is not None and tagged(listed.get("Tags", [])):
        found.add(kinds.TOPICS, notifier_resources.OWNER_TOPIC, TopicRecord(arn=arn))


def find_metric_alarms(ctx: AppContext, found: Found) -> None:
    """The owner's CloudWatch alarms, by name and tag."""
    cloudwatch = ctx.client("cloudwatch")
    names = list(notifier_resources.metric_alarms(ctx))
    for alarm in cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", []):
        arn = alarm["AlarmArn"]
        if tagged(cloudwatch.list_tags_for_resource(ResourceARN=arn).get("Tags", [])):
            found.add(kinds.METRIC_ALARMS, alarm["AlarmName"], MetricAlarmRecord(arn=arn))


def find_buckets(ctx: AppContext, found: Found) -> None:
    """The config bucket, by name, owner and tag."""
    s3 = ctx.client("s3")
    bucket = notifier_resources.Names.for_context(ctx).bucket
    try:
        tagging = absent_ok(
            s3.get_bucket_tagging, Bucket=bucket, ExpectedBucketOwner=ctx.account_id
        )
    except Exception as exc:
        if error_code(exc) in FOREIGN_BUCKET_CODES:
            return  # a bucket of that name in another account: not ours
        raise
    if tagging is not None and tagged(tagging["TagSet"]):
        keys = [item["Key"] for item in _pages(s3, "list_objects_v2", "Contents", Bucket=bucket)]
        found.add(
            kinds.BUCKETS,
            bucket,
            BucketRecord(arn=f"arn:{ctx.partition}:s3:::{bucket}", objects=sorted(keys)),
        )


def find_tables(ctx: AppContext, found: Found) -> None:
    """The alarm table, by name and tag."""
    dynamodb = ctx.client("dynamodb")
    described = absent_ok(dynamodb.describe_table, TableName=notifier_resources.ALARM_TABLE)
    if described is None:
        return
    arn = described["Table"]["TableArn"]
    if tagged(table_tags(dynamodb, arn)):
        found.add(kinds.TABLES, notifier_resources.ALARM_TABLE, TableRecord(arn=arn))


def find_parameters(ctx: AppContext, found: Found) -> None:
    """The Twilio secret's parameter, by name and tag."""
    name = notifier_resources.SECRET_PARAMETER
    listed = absent_ok(
        ctx.client("ssm").list_tags_for_resource, ResourceType="Parameter", ResourceId=name
    )
    if listed is not None and tagged(listed["TagList"]):
        found.add(kinds.PARAMETERS, name, ParameterRecord())


def find_log_groups(ctx: AppContext, found: Found) -> None:
    """The functions' and the rule error action's log groups, by name and tag."""
    logs = ctx.client("logs")
    for group in notifier_resources.LOG_GROUPS:
        listed = absent_ok(logs.list_tags_log_group, logGroupName=group)
        if listed is not None and tagged(listed.get("tags", {})):
            found.add(
                kinds.LOG_GROUPS,
                group,
                LogGroupRecord(retention_days=notifier_resources.LOG_RETENTION_DAYS),
            )
