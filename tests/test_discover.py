"""`clean --discover`: a lost registry does not mean orphans, and nothing foreign is touched."""

from __future__ import annotations

import json

import boto3

from support import TWILIO_SECRET, notify_init_args


def lose_registry(isolated_env) -> None:
    (isolated_env / "registry.json").unlink()


def test_discover_finds_and_removes_what_a_lost_registry_knew(cli, iot, isolated_env):
    cli("things", "create", "--count", "3")
    cli("certs", "rotate", cli.json("things", "list")[0]["serial"])
    # Someone else's resources in the same account: must survive.
    iot.create_thing(thingName="theirs", attributePayload={"attributes": {"owner": "me"}})
    theirs = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName="theirs", principal=theirs["certificateArn"])
    iot.create_policy(
        policyName="theirs",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
            }
        ),
    )
    iot.create_thing_type(thingTypeName="their-type")
    lose_registry(isolated_env)
    assert cli.json("clean", "--dry-run")["steps"] == []

    dry = cli.json("clean", "--dry-run", "--discover")
    kinds = sorted({step["kind"] for step in dry["steps"]})
    assert kinds == ["certificates", "policies", "thing_types", "things"]
    assert len([s for s in dry["steps"] if s["kind"] == "certificates"]) == 3
    assert not (isolated_env / "registry.json").exists()  # a dry run records nothing

    result = cli.json("clean", "--discover", "--yes")

    assert result["complete"] is True
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["theirs"]
    assert [c["certificateId"] for c in iot.list_certificates()["certificates"]] == [
        theirs["certificateId"]
    ]
    assert [p["policyName"] for p in iot.list_policies()["policies"]] == ["theirs"]
    assert [t["thingTypeName"] for t in iot.list_thing_types()["thingTypes"]] == ["their-type"]


def test_discover_ignores_a_policy_with_our_name_but_not_our_document(cli, iot, isolated_env):
    iot.create_policy(
        policyName="iotbutton-button",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"}],
            }
        ),
    )
    result = cli.json("clean", "--discover", "--yes")
    assert result["steps"] == []
    assert iot.get_policy(policyName="iotbutton-button")


def test_discover_finds_the_notifier(cli, sandbox_aws, twilio_standin, isolated_env, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    cli(*notify_init_args())
    cli("notify", "deploy", "--twilio-api-base", twilio_standin.base_url)
    cli(
        "rules",
        "create",
        "--name",
        "iotbutton_long_only",
        "--sql",
        "SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'",
    )
    lose_registry(isolated_env)

    result = cli.json("clean", "--discover", "--yes")

    assert result["complete"] is True
    kinds = {step["kind"] for step in result["steps"]}
    assert kinds == {
        "topic_rules",
        "lambda_permissions",
        "functions",
        "log_groups",
        "parameters",
        "buckets",
        "tables",
        "topics",
        "metric_alarms",
        "roles",
    }
    aws = {"endpoint_url": sandbox_aws.url, "region_name": "us-east-1"}
    assert boto3.client("sns", **aws).list_topics()["Topics"] == []
    assert boto3.client("cloudwatch", **aws).describe_alarms()["MetricAlarms"] == []
    assert boto3.client("lambda", **aws).list_functions()["Functions"] == []
    assert boto3.client("iam", **aws).list_roles()["Roles"] == []
    assert boto3.client("s3", **aws).list_buckets()["Buckets"] == []
    assert boto3.client("iot", **aws).list_topic_rules()["rules"] == []
    assert boto3.client("ssm", **aws).describe_parameters()["Parameters"] == []
