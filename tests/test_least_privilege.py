"""Least privilege, checked: parliament finds nothing in the IAM policies iotbutton writes or
documents, and the IoT policies grant exactly what the design needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from parliament import analyze_policy_string

from iotbutton_cli.context import AppContext
from iotbutton_cli.notify import resources as notifier_resources
from iotbutton_cli.provisioning import policies

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def ctx(aws):
    return AppContext()


def findings(document: dict) -> list[tuple[str, object]]:
    analysis = analyze_policy_string(json.dumps(document))
    return [(finding.issue, finding.detail) for finding in analysis.findings]


def test_the_notifier_roles_pass_parliament(ctx):
    names = notifier_resources.Names.for_context(ctx)
    assert findings(notifier_resources.function_policy(ctx, names)) == []
    assert findings(notifier_resources.rule_error_policy(ctx)) == []


def test_parliament_would_flag_a_broad_policy():
    """The check can fail: a read-all S3 grant is reported."""
    broad = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    assert findings(broad) != []


# parliament's bundled permission data says (Attach|Detach|List)ThingPrincipal(s) take no resource;
# AWS's current service authorization data scopes them (docs/iam-policy.md says so).
# That one disagreement is accepted; any other finding fails.
KNOWN_DATA_GAP = {"iot:AttachThingPrincipal", "iot:DetachThingPrincipal", "iot:ListThingPrincipals"}


def test_the_documented_user_policy_passes_parliament():
    text = (DOCS / "iam-policy.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    # IAM documents only: the IoT policy shown for contrast uses IoT policy variables.
    documents = [
        json.loads(b)
        for b in blocks
        if '"Statement"' in b and '"Version"' in b and "${iot:" not in b
    ]
    assert documents, "docs/iam-policy.md has no policy document"
    for document in documents:
        for issue, detail in findings(document):
            actions = {item["action"] for item in detail} if issue == "RESOURCE_MISMATCH" else set()
            assert actions and actions <= KNOWN_DATA_GAP, (issue, detail)


def test_iot_policies_grant_only_what_the_design_needs(ctx):
    arn = "arn:aws:iot:us-east-1:123456789012"
    thing = "${iot:Connection.Thing.ThingName}"
    button = policies.button_policy_document(ctx)["Statement"]
    assert {(s["Action"], s["Resource"]) for s in button} == {
        ("iot:Connect", f"{arn}:client/{thing}"),
        ("iot:Publish", f"{arn}:topic/iotbutton/{thing}"),
    }
    monitor = policies.monitor_policy_document(ctx)["Statement"]
    assert {(s["Action"], s["Resource"]) for s in monitor} == {
        ("iot:Connect", f"{arn}:client/iotbutton-monitor-*"),
        ("iot:Subscribe", f"{arn}:topicfilter/iotbutton/*"),
        ("iot:Receive", f"{arn}:topic/iotbutton/*"),
    }
    for statement in button + monitor:
        assert statement["Effect"] == "Allow"
        assert "*" not in statement["Action"] and statement["Resource"] != "*"


def test_the_notifier_may_write_the_buttons_shadows_and_no_other_things(ctx):
    names = notifier_resources.Names.for_context(ctx)
    serials = ["G030JF0553648RUH", "G030RQ9940375SLS"]
    policy = notifier_resources.function_policy(ctx, names, serials)
    [statement] = [s for s in policy["Statement"] if "iot:UpdateThingShadow" in s["Action"]]
    assert statement["Action"] == ["iot:GetThingShadow", "iot:UpdateThingShadow"]
    assert statement["Resource"] == [
        f"arn:aws:iot:us-east-1:123456789012:thing/{serial}" for serial in serials
    ]
    assert findings(policy) == []
    # No button, no grant (IAM takes no empty Resource list); never a wildcard either way.
    bare = notifier_resources.function_policy(ctx, names)
    assert all("iot:UpdateThingShadow" not in s["Action"] for s in bare["Statement"])
    assert "thing/*" not in json.dumps(policy)


def test_the_shadow_grant_stays_within_iams_role_policy_limit(ctx):
    names = notifier_resources.Names.for_context(ctx)
    few = notifier_resources.shadow_grant(ctx, names, ["B", "A", "A"])
    assert few.granted == ("A", "B") and few.left_out == ()
    many = [f"G030{n:012d}" for n in range(400)]
    grant = notifier_resources.shadow_grant(ctx, names, reversed(many))
    assert grant.granted == tuple(many[: len(grant.granted)])  # sorted, the first that fit
    assert grant.left_out == tuple(many[len(grant.granted) :])
    assert 100 < len(grant.granted) < 400
    fitted = notifier_resources.function_policy(ctx, names, grant.granted)
    assert notifier_resources.policy_chars(fitted) <= notifier_resources.ROLE_POLICY_MAX_CHARS
    one_more = notifier_resources.function_policy(ctx, names, many[: len(grant.granted) + 1])
    assert notifier_resources.policy_chars(one_more) > notifier_resources.ROLE_POLICY_MAX_CHARS


def test_the_registrys_buttons_come_first_and_no_wildcard_is_ever_granted(ctx):
    names = notifier_resources.Names.for_context(ctx)
    marked = [f"0000{i:012d}" for i in range(400)]  # foreign things that copied the mark
    mine = ["G030JF0553648RUH", "G030RQ9940375SLS"]
    grant = notifier_resources.shadow_grant(ctx, names, [*marked, *mine, "*"], first=[*mine, "*"])
    assert grant.granted[:2] == tuple(mine)
    assert grant.left_out and set(grant.left_out) <= set(marked)
    assert "*" not in grant.granted + grant.left_out
