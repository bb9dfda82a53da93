"""A registry entry does not prove ownership: `clean`, `things delete` and `certs revoke` check
iotbutton's marks on each resource first, leave (and forget) what is someone else's, and leave a
policy or thing type that another registry's buttons still use for that registry's last clean."""

from __future__ import annotations

import json

import boto3

from support import NAMESPACE, recorded

SERIAL = "G030JF0553648RUH"


def edit_registry(home, change) -> None:
    path = home / "registry.json"
    document = json.loads(path.read_text())
    change(document["namespaces"][NAMESPACE]["resources"])
    path.write_text(json.dumps(document))


def test_foreign_resources_written_into_the_registry_are_left_alone(cli, aws, isolated_env):
    iot = boto3.client("iot", region_name="us-east-1")
    cli("things", "create", SERIAL)
    iot.create_thing(thingName="THEIRS")  # no createdBy attribute
    theirs = iot.create_keys_and_certificate(setAsActive=True)  # no mark, attached to nothing
    theirs_csr = iot.create_policy(
        policyName="theirs-policy",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
            }
        ),
    )

    rule = {"sql": "SELECT * FROM 'theirs/+'", "actions": [], "description": "their own"}
    iot.create_topic_rule(ruleName="iotbutton_theirs", topicRulePayload=rule)

    def plant(resources):
        resources["topic_rules"] = {
            "iotbutton_theirs": {"arn": "arn:aws:iot:us-east-1:123456789012:rule/iotbutton_theirs"}
        }
        resources["things"]["THEIRS"] = {"arn": "arn:aws:iot:us-east-1:123456789012:thing/THEIRS"}
        resources["certificates"][theirs["certificateId"]] = {
            "arn": theirs["certificateArn"],
            "thing": "THEIRS",
            "status": "ACTIVE",
            "policies": [],
        }
        resources["policies"]["theirs-policy"] = {"arn": theirs_csr["policyArn"]}

    edit_registry(isolated_env, plant)
    result = cli.json("clean", "--yes")

    left = {s["id"]: s["detail"] for s in result["steps"] if s["status"] == "left"}
    assert set(left) == {
        "THEIRS",
        theirs["certificateId"],
        "theirs-policy",
        "iotbutton_theirs",
    }, result["steps"]
    assert iot.get_topic_rule(ruleName="iotbutton_theirs")["rule"]["sql"] == rule["sql"]
    assert result["complete"] is True
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["THEIRS"]
    certificate = iot.describe_certificate(certificateId=theirs["certificateId"])
    assert certificate["certificateDescription"]["status"] == "ACTIVE"  # not even deactivated
    assert [p["policyName"] for p in iot.list_policies()["policies"]] == ["theirs-policy"]
    assert recorded(isolated_env, "things") == {}  # forgotten: the registry was wrong


def test_revoke_refuses_a_certificate_that_is_not_ours(cli, aws, isolated_env):
    iot = boto3.client("iot", region_name="us-east-1")
    cli("things", "create", SERIAL)
    theirs = iot.create_keys_and_certificate(setAsActive=True)

    def swap(resources):
        resources["certificates"][theirs["certificateId"]] = {
            "arn": theirs["certificateArn"],
            "thing": SERIAL,
            "status": "ACTIVE",
        }
        resources["things"][SERIAL]["certificate"] = theirs["certificateId"]

    edit_registry(isolated_env, swap)
    result = cli("certs", "revoke", SERIAL, "--yes", code=1)
    assert "not iotbutton's" in result.stderr
    certificate = iot.describe_certificate(certificateId=theirs["certificateId"])
    assert certificate["certificateDescription"]["status"] == "ACTIVE"


def test_two_registries_on_one_account_can_both_finish_clean(cli, aws, tmp_path, monkeypatch):
    """Two machines share an account and region: the first clean removes its own buttons and
    leaves the shared policy and thing type, which the second one's clean then removes."""
    iot = boto3.client("iot", region_name="us-east-1")
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("IOTBUTTON_HOME", str(first))
    cli("things", "create", SERIAL)
    monkeypatch.setenv("IOTBUTTON_HOME", str(second))
    cli("things", "create", "G030AA0000000BBB")  # adopts the same policy and thing type

    monkeypatch.setenv("IOTBUTTON_HOME", str(first))
    result = cli.json("clean", "--yes")
    assert result["complete"] is True
    left = {s["kind"]: s["detail"] for s in result["steps"] if s["status"] == "left"}
    assert set(left) == {"policies", "thing_types"} and "last `iotbutton clean`" in left["policies"]
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["G030AA0000000BBB"]

    monkeypatch.setenv("IOTBUTTON_HOME", str(second))
    result = cli.json("clean", "--yes")
    assert result["complete"] is True
    assert all(s["status"] == "removed" for s in result["steps"])
    assert iot.list_policies()["policies"] == [] and iot.list_things()["things"] == []
