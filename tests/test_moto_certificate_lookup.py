"""The sandbox's certificate lookup by ARN answers as moto's scan did, without the scan."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError


def test_a_certificate_is_found_by_its_arn_and_only_by_its_own(iot):
    from moto.iot.models import IoTBackend

    assert getattr(IoTBackend._get_principal, "_iotbutton", False)
    made = [iot.create_keys_and_certificate(setAsActive=True) for _ in range(3)]
    iot.create_policy(policyName="p", policyDocument='{"Version": "2012-10-17", "Statement": []}')
    iot.attach_policy(policyName="p", target=made[1]["certificateArn"])
    assert [
        p["policyName"]
        for p in iot.list_attached_policies(target=made[1]["certificateArn"])["policies"]
    ] == ["p"]
    assert iot.list_attached_policies(target=made[0]["certificateArn"])["policies"] == []
    # The right id in another account's ARN is not this account's certificate.
    foreign = made[2]["certificateArn"].replace(":123456789012:", ":210987654321:")
    with pytest.raises(ClientError) as raised:
        iot.attach_policy(policyName="p", target=foreign)
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
