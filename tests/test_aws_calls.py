"""What counts as "absent": every AWS spelling of it, and nothing else."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from iotbutton_cli.aws.calls import absent_is_fine, absent_ok, deleted, is_absent

REGION = "us-east-1"


@pytest.fixture
def iot():
    with mock_aws():
        yield boto3.client("iot", region_name=REGION)


def test_absent_ok_returns_none_for_a_missing_thing_and_the_answer_otherwise(iot) -> None:
    assert absent_ok(iot.describe_thing, thingName="nope") is None
    iot.create_thing(thingName="yes")
    assert absent_ok(iot.describe_thing, thingName="yes")["thingName"] == "yes"


def test_deleted_says_whether_something_was_removed(iot) -> None:
    iot.create_thing(thingName="yes")
    assert deleted(iot.delete_thing, thingName="yes") is True
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        assert deleted(iam.delete_role, RoleName="never-made") is False


def test_other_errors_propagate(iot) -> None:
    with pytest.raises(Exception) as caught:
        absent_ok(iot.describe_thing, thingName="")  # invalid, not absent
    assert not is_absent(caught.value)
    with pytest.raises(RuntimeError), absent_is_fine():
        raise RuntimeError("not an AWS answer")


@pytest.mark.parametrize(
    ("service", "method", "code", "params"),
    [
        ("iot", "get_topic_rule", "UnauthorizedException", {"ruleName": "r"}),
        ("s3", "head_bucket", "404", {"Bucket": "b"}),
        ("s3", "head_object", "404", {"Bucket": "b", "Key": "k"}),
        (
            "ssm",
            "list_tags_for_resource",
            "InvalidResourceId",
            {"ResourceType": "Parameter", "ResourceId": "p"},
        ),
    ],
)
def test_the_odd_spellings_of_absent(service, method, code, params) -> None:
    client = boto3.client(
        service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    with Stubber(client) as stub:
        stub.add_client_error(method, service_error_code=code, http_status_code=404)
        assert absent_ok(getattr(client, method), **params) is None


def test_an_odd_spelling_means_absent_only_for_its_own_operation() -> None:
    iot = boto3.client("iot", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(iot) as stub:
        stub.add_client_error("describe_thing", service_error_code="UnauthorizedException")
        with pytest.raises(Exception) as caught:
            absent_ok(iot.describe_thing, thingName="t")
    assert not is_absent(caught.value)
