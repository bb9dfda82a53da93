"""`clean --discover`: find what iotbutton made when the registry was lost or is incomplete.

Only resources that carry iotbutton's own marks are taken, never anything else:

- things with the attribute ``createdBy=iotbutton-cli``, and the certificates attached to them;
- IoT policies named ``iotbutton-button`` / ``iotbutton-monitor`` whose document is exactly the one
  iotbutton writes for this account and region, and the certificates they are attached to;
- the thing type with iotbutton's description;
- topic rules with iotbutton's description that invoke the notifier function;
- the notifier function, its roles, bucket, parameter and log groups, by name AND by the
  ``managed-by=iotbutton`` tag.

What is found is recorded in the registry, so the ordinary teardown removes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.aws.errors import error_code, is_not_found
from iotbutton_cli.aws.tags import THING_ATTRIBUTE
from iotbutton_cli.context import AppContext
from iotbutton_cli.device import simulator
from iotbutton_cli.notify import deploy as notifier_deploy
from iotbutton_cli.notify import rules
from iotbutton_cli.provisioning import policies, things
from iotbutton_cli.provisioning.ownership import tagged


@dataclass
class Found:
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(self, kind: str, resource_id: str, record: dict[str, Any]) -> None:
        self.resources.setdefault(kind, {}).setdefault(resource_id, {}).update(record)

    def count(self) -> int:
        return sum(len(items) for items in self.resources.values())


def discover(ctx: AppContext) -> Found:
    """Look for iotbutton's resources in this account and region (read-only calls)."""
    found = Found()
    _iot(ctx, found)
    _notifier(ctx, found)
    return found


def record(ctx: AppContext, found: Found) -> int:
    """Merge what was found into the registry; returns how many records are new."""
    new = 0
    with ctx.namespace.transaction() as resources:
        for kind, items in found.resources.items():
            known = resources.setdefault(kind, {})
            for resource_id, item in items.items():
                if resource_id not in known:
                    new += 1
                known[resource_id] = {**item, **known.get(resource_id, {}), "discovered": True}
    return new


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    for page in client.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key, []))
    return items


def _iot(ctx: AppContext, found: Found) -> None:
    iot = ctx.client("iot")
    attribute, value = next(iter(THING_ATTRIBUTE.items()))
    for thing in _pages(
        iot, "list_things", "things", attributeName=attribute, attributeValue=value
    ):
        name = thing["thingName"]
        found.add(
            "things", name, {"arn": thing["thingArn"], "thing_type": thing.get("thingTypeName")}
        )
        for principal in _pages(iot, "list_thing_principals", "principals", thingName=name):
            if ":cert/" in principal:
                cert_id = principal.rsplit("/", 1)[1]
                found.add(
                    "certificates",
                    cert_id,
                    {"arn": principal, "thing": name, "thing_attached": True},
                )
                found.add("things", name, {"certificate": cert_id})
    for name, wanted in policies.documents(ctx).items():
        try:
            policy = iot.get_policy(policyName=name)
        except Exception as exc:
            if is_not_found(exc):
                continue
            raise
        if json.loads(policy["policyDocument"]) != wanted:
            continue  # same name, someone else's document: not ours
        found.add("policies", name, {"arn": policy["policyArn"]})
        for target in _pages(iot, "list_targets_for_policy", "targets", policyName=name):
            if ":cert/" in target:
                cert_id = target.rsplit("/", 1)[1]
                role = (
                    {"role": simulator.MONITOR_ROLE, "thing": None}
                    if (name == policies.MONITOR_POLICY)
                    else {}
                )
                found.add("certificates", cert_id, {"arn": target, "policies": [name], **role})
    for thing_type in _pages(iot, "list_thing_types", "thingTypes"):
        description = thing_type.get("thingTypeProperties", {}).get("thingTypeDescription")
        if description == things.THING_TYPE_DESCRIPTION:
            found.add(
                "thing_types", thing_type["thingTypeName"], {"arn": thing_type["thingTypeArn"]}
            )
    function_arn = ctx.arn("lambda", f"function:{notifier_deploy.FUNCTION_NAME}")
    for summary in _pages(iot, "list_topic_rules", "rules"):
        if not summary["ruleName"].startswith(rules.RULE_PREFIX):
            continue  # not iotbutton's: not even read (the IAM policy allows only its own)
        rule = iot.get_topic_rule(ruleName=summary["ruleName"])["rule"]
        targets = [a.get("lambda", {}).get("functionArn") for a in rule.get("actions", [])]
        if rule.get("description") == rules.RULE_DESCRIPTION and function_arn in targets:
            found.add(
                "topic_rules",
                summary["ruleName"],
                {
                    "arn": summary["ruleArn"],
                    "function": notifier_deploy.FUNCTION_NAME,
                    "sql": rule.get("sql", ""),
                },
            )


def _notifier(ctx: AppContext, found: Found) -> None:
    names = notifier_deploy.Names.for_context(ctx)
    iam = ctx.client("iam")
    for role in (names.function_role, names.rule_error_role):
        try:
            arn = iam.get_role(RoleName=role)["Role"]["Arn"]
            tags = iam.list_role_tags(RoleName=role).get("Tags", [])
        except Exception as exc:
            if is_not_found(exc):
                continue
            raise
        if tagged(tags):
            found.add("roles", role, {"arn": arn, "inline_policies": [role]})
    _function(ctx, found)
    _bucket(ctx, found, names.bucket)
    _parameter(ctx, found)
    logs = ctx.client("logs")
    for group in (notifier_deploy.FUNCTION_LOG_GROUP, notifier_deploy.RULE_ERROR_LOG_GROUP):
        try:
            tags = logs.list_tags_log_group(logGroupName=group).get("tags", {})
        except Exception as exc:
            if is_not_found(exc):
                continue
            raise
        if tagged(tags):
            found.add("log_groups", group, {"retention_days": notifier_deploy.LOG_RETENTION_DAYS})


def _function(ctx: AppContext, found: Found) -> None:
    lam = ctx.client("lambda")
    name = notifier_deploy.FUNCTION_NAME
    try:
        arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    except Exception as exc:
        if is_not_found(exc):
            return
        raise
    if not tagged(lam.list_tags(Resource=arn).get("Tags", {})):
        return
    found.add("functions", name, {"arn": arn})
    try:
        policy = json.loads(lam.get_policy(FunctionName=name)["Policy"])
    except Exception as exc:
        if is_not_found(exc):
            return
        raise
    for statement in policy.get("Statement", []):
        sid = statement.get("Sid", "")
        if sid.startswith(rules.statement_id("")):
            found.add(
                "lambda_permissions",
                sid,
                {"function": name, "rule": sid[len(rules.statement_id("")) :]},
            )


def _bucket(ctx: AppContext, found: Found, bucket: str) -> None:
    s3 = ctx.client("s3")
    try:
        tags = s3.get_bucket_tagging(Bucket=bucket, ExpectedBucketOwner=ctx.account_id)["TagSet"]
    except Exception as exc:
        if error_code(exc) in ("NoSuchBucket", "NoSuchTagSet", "404", "403", "AccessDenied"):
            return
        raise
    if tagged(tags):
        keys = [item["Key"] for item in _pages(s3, "list_objects_v2", "Contents", Bucket=bucket)]
        found.add(
            "buckets",
            bucket,
            {"arn": f"arn:{ctx.partition}:s3:::{bucket}", "objects": sorted(keys)},
        )


def _parameter(ctx: AppContext, found: Found) -> None:
    ssm = ctx.client("ssm")
    name = notifier_deploy.SECRET_PARAMETER
    try:
        tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    except Exception as exc:
        if is_not_found(exc) or error_code(exc) == "InvalidResourceId":
            return
        raise
    if tagged(tags):
        found.add("parameters", name, {})
