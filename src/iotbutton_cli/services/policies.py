"""The one least-privilege IoT policy every button's certificate gets.

Policy variables let one policy serve every button: a certificate may connect only with its own
thing's name as client id, and publish only to that thing's ``iotbutton/<serial>`` topic. Nothing
else: no subscribe, no receive, no shadow, and never ``iot:*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from iotbutton_cli.aws_errors import error_code, is_not_found
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.services.tags import aws_tags

BUTTON_POLICY_NAME = "iotbutton-button"
TOPIC_PREFIX = "iotbutton"
KIND = "policies"


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


@dataclass
class PolicyResult:
    name: str
    arn: str
    action: str  # created | unchanged | updated | adopted


def ensure_button_policy(ctx: AppContext) -> PolicyResult:
    """Create the button policy, or bring ours up to date; never take over someone else's."""
    iot = ctx.client("iot")
    wanted = button_policy_document(ctx)
    recorded = ctx.namespace.get(KIND, BUTTON_POLICY_NAME)
    try:
        current = iot.get_policy(policyName=BUTTON_POLICY_NAME)
    except Exception as exc:
        if not is_not_found(exc):
            raise
        return _create(ctx, wanted)
    arn = current["policyArn"]
    same = json.loads(current["policyDocument"]) == wanted
    if recorded is None:
        if not same:
            raise IotButtonError(
                "policy-not-ours",
                f"An IoT policy named {BUTTON_POLICY_NAME} exists that iotbutton did not create.",
                "Rename or delete that policy; iotbutton never changes resources it did not make.",
            )
        # Same document: ours, created by a run that stopped before recording it.
        ctx.namespace.put(KIND, BUTTON_POLICY_NAME, {"arn": arn})
        return PolicyResult(BUTTON_POLICY_NAME, arn, "adopted")
    if same:
        return PolicyResult(BUTTON_POLICY_NAME, arn, "unchanged")
    _replace_default_version(iot, wanted)
    return PolicyResult(BUTTON_POLICY_NAME, arn, "updated")


def _create(ctx: AppContext, document: dict[str, Any]) -> PolicyResult:
    iot = ctx.client("iot")
    try:
        response = iot.create_policy(
            policyName=BUTTON_POLICY_NAME, policyDocument=json.dumps(document), tags=aws_tags()
        )
    except Exception as exc:
        if error_code(exc) != "ResourceAlreadyExistsException":
            raise
        # Another iotbutton process created it a moment ago.
        response = iot.get_policy(policyName=BUTTON_POLICY_NAME)
    ctx.namespace.put(KIND, BUTTON_POLICY_NAME, {"arn": response["policyArn"]})
    return PolicyResult(BUTTON_POLICY_NAME, response["policyArn"], "created")


def _replace_default_version(iot: Any, document: dict[str, Any]) -> None:
    """AWS keeps at most five versions: drop the oldest non-default one first if needed."""
    versions = iot.list_policy_versions(policyName=BUTTON_POLICY_NAME)["policyVersions"]
    if len(versions) >= 5:
        oldest = min(
            (v for v in versions if not v["isDefaultVersion"]), key=lambda v: v["createDate"]
        )
        iot.delete_policy_version(
            policyName=BUTTON_POLICY_NAME, policyVersionId=oldest["versionId"]
        )
    iot.create_policy_version(
        policyName=BUTTON_POLICY_NAME, policyDocument=json.dumps(document), setAsDefault=True
    )


def delete_policy(ctx: AppContext, name: str) -> None:
    """Delete a policy we made: non-default versions first, as AWS requires. NotFound is done."""
    iot = ctx.client("iot")
    try:
        versions = iot.list_policy_versions(policyName=name)["policyVersions"]
        for version in versions:
            if not version["isDefaultVersion"]:
                iot.delete_policy_version(policyName=name, policyVersionId=version["versionId"])
        iot.delete_policy(policyName=name)
    except Exception as exc:
        if not is_not_found(exc):
            raise
    ctx.namespace.remove(KIND, name)
