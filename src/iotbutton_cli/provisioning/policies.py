"""The two least-privilege IoT policies iotbutton writes: one for every button, one for the monitor.

Policy variables let one policy serve every button: a certificate may connect only with its own
thing's name as client id, and publish only to that thing's ``iotbutton/<serial>`` topic. Nothing
else: no subscribe, no receive, no shadow, and never ``iot:*``. The monitor (``sim subscribe``)
may only subscribe to and receive the button topics.

AWS IoT policies take no tags that moto keeps, and their names are not unique to iotbutton, so a
policy is iotbutton's when its document is exactly the one iotbutton writes for this account and
region (what ``clean --discover`` looks for too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from iotbutton_cli.aws.calls import absent_is_fine, absent_ok
from iotbutton_cli.aws.errors import error_code
from iotbutton_cli.aws.tags import aws_tags
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError, not_ours
from iotbutton_cli.registry import kinds

BUTTON_POLICY_NAME = "iotbutton-button"
MONITOR_POLICY = "iotbutton-monitor"
MONITOR_CLIENT_PREFIX = "iotbutton-monitor-"
TOPIC_PREFIX = "iotbutton"
KIND = kinds.POLICIES


def button_policy_document(ctx: AppContext) -> dict[str, Any]:
    thing = "${iot:Connection.Thing.ThingName}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsOwnThing",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": ctx.arn("iot", f"client/{thing}"),
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Sid": "PublishOwnClicks",
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": ctx.arn("iot", f"topic/{TOPIC_PREFIX}/{thing}"),
            },
        ],
    }


def monitor_policy_document(ctx: AppContext) -> dict[str, Any]:
    """May connect as a monitor, subscribe to and receive button topics; may not publish."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": ctx.arn("iot", f"client/{MONITOR_CLIENT_PREFIX}*"),
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": ctx.arn("iot", f"topicfilter/{TOPIC_PREFIX}/*"),
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": ctx.arn("iot", f"topic/{TOPIC_PREFIX}/*"),
            },
        ],
    }


def documents(ctx: AppContext) -> dict[str, dict[str, Any]]:
    """Every policy iotbutton writes, by name."""
    return {
        BUTTON_POLICY_NAME: button_policy_document(ctx),
        MONITOR_POLICY: monitor_policy_document(ctx),
    }


@dataclass
class PolicyResult:
    name: str
    arn: str
    action: str  # created | unchanged | updated | adopted


def ensure_button_policy(ctx: AppContext) -> PolicyResult:
    """Create the button policy, or bring ours up to date; never take over someone else's."""
    return ensure_policy(ctx, BUTTON_POLICY_NAME)


def ensure_policy(ctx: AppContext, name: str) -> PolicyResult:
    """Create policy ``name`` with iotbutton's document, or bring ours up to date.

    It is recorded (as pending) before CreatePolicy, so a run killed between AWS's answer and
    the registry write still leaves it where `clean` finds it.
    """
    iot = ctx.client("iot")
    wanted = documents(ctx)[name]
    recorded = ctx.namespace.get(KIND, name)
    current = absent_ok(iot.get_policy, policyName=name)
    if current is None:
        return _create(ctx, name, wanted)
    arn = current["policyArn"]
    same = json.loads(current["policyDocument"]) == wanted
    if recorded is None or recorded.get("pending"):
        if not same:
            ctx.namespace.forget_pending(KIND, name)
            raise IotButtonError(
                "policy-not-ours",
                f"An IoT policy named {name} exists that iotbutton did not create.",
                "Rename or delete that policy; iotbutton never changes resources it did not make.",
            )
        # Same document: ours, created by a run that stopped before recording it.
        ctx.namespace.confirm(KIND, name, {"arn": arn})
        return PolicyResult(name, arn, "adopted")
    if same:
        return PolicyResult(name, arn, "unchanged")
    _replace_default_version(iot, name, wanted)
    return PolicyResult(name, arn, "updated")


def _create(ctx: AppContext, name: str, document: dict[str, Any]) -> PolicyResult:
    iot = ctx.client("iot")
    ctx.namespace.put(KIND, name, {"arn": ctx.arn("iot", f"policy/{name}"), "pending": True})
    try:
        response = iot.create_policy(
            policyName=name, policyDocument=json.dumps(document), tags=aws_tags()
        )
    except Exception as exc:
        if error_code(exc) != "ResourceAlreadyExistsException":
            raise
        # Another iotbutton process created it a moment ago (or someone else did: see above).
        return ensure_policy(ctx, name)
    ctx.namespace.confirm(KIND, name, {"arn": response["policyArn"]})
    return PolicyResult(name, response["policyArn"], "created")


def _replace_default_version(iot: Any, name: str, document: dict[str, Any]) -> None:
    """AWS keeps at most five versions: drop the oldest non-default one first if needed."""
    versions = iot.list_policy_versions(policyName=name)["policyVersions"]
    if len(versions) >= 5:
        oldest = min(
            (v for v in versions if not v["isDefaultVersion"]), key=lambda v: v["createDate"]
        )
        iot.delete_policy_version(policyName=name, policyVersionId=oldest["versionId"])
    iot.create_policy_version(
        policyName=name, policyDocument=json.dumps(document), setAsDefault=True
    )


def is_ours(ctx: AppContext, name: str) -> bool | None:
    """True if policy ``name`` has iotbutton's document, False if not, None if it is gone."""
    wanted = documents(ctx).get(name)
    current = absent_ok(ctx.client("iot").get_policy, policyName=name)
    if current is None:
        return None
    return wanted is not None and json.loads(current["policyDocument"]) == wanted


def delete_policy(ctx: AppContext, name: str) -> str | None:
    """Delete a policy of ours: non-default versions first, as AWS requires. NotFound is done.

    Another registry (another machine using the same account and region) may still have
    certificates attached to it: then it is left for the last one to delete, and forgotten here.
    Returns why it was left, or None once it is gone.
    """
    verdict = is_ours(ctx, name)
    if verdict is None:
        ctx.namespace.remove(KIND, name)
        return None
    if not verdict:
        ctx.namespace.remove(KIND, name)
        raise not_ours("IoT policy", name, "its document is not the one iotbutton writes")
    iot = ctx.client("iot")
    known = {record.get("arn") for record in ctx.namespace.items(kinds.CERTIFICATES).values()}
    users = [
        target
        for page in iot.get_paginator("list_targets_for_policy").paginate(policyName=name)
        for target in page.get("targets", [])
        if target not in known
    ]
    if users:
        ctx.namespace.remove(KIND, name)
        return (
            f"left in AWS: {len(users)} certificate(s) that this registry does not know still "
            "use it (another machine's buttons?); the last `iotbutton clean` removes it"
        )
    with absent_is_fine():
        versions = iot.list_policy_versions(policyName=name)["policyVersions"]
        for version in versions:
            if not version["isDefaultVersion"]:
                iot.delete_policy_version(policyName=name, policyVersionId=version["versionId"])
        iot.delete_policy(policyName=name)
    ctx.namespace.remove(KIND, name)
    return None
