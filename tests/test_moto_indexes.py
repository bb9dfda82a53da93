"""The sandbox's indexed moto lookups answer as moto's scans did: same records, same order,
same refusals, and the index never drifts from the dict it indexes."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError

from iotbutton_cli.sandbox import moto_indexes

POLICY = '{"Version": "2012-10-17", "Statement": []}'


def error_code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return str(raised.value.response["Error"]["Code"])


def test_the_scanning_methods_are_replaced(aws):
    from moto.iot.models import IoTBackend

    for name in ("describe_thing", "delete_thing", "_validation_delete", "list_thing_principals"):
        assert getattr(getattr(IoTBackend, name), "_iotbutton", False), name


def test_attachments_are_listed_and_guard_deletion_as_in_aws(iot):
    things = [f"button-{n}" for n in range(3)]
    for name in things:
        iot.create_thing(thingName=name)
    certs = [iot.create_keys_and_certificate(setAsActive=True) for _ in range(3)]
    arns = [c["certificateArn"] for c in certs]
    for policy in ("p1", "p2"):
        iot.create_policy(policyName=policy, policyDocument=POLICY)
    # cert 0 on things 0 and 1 (attached 1 first), cert 1 on thing 1, cert 2 on nothing
    iot.attach_thing_principal(thingName=things[1], principal=arns[0])
    iot.attach_thing_principal(thingName=things[0], principal=arns[0])
    iot.attach_thing_principal(thingName=things[1], principal=arns[1])
    iot.attach_policy(policyName="p2", target=arns[0])
    iot.attach_policy(policyName="p1", target=arns[0])
    iot.attach_policy(policyName="p1", target=arns[1])

    assert iot.list_principal_things(principal=arns[0])["things"] == [things[1], things[0]]
    assert iot.list_principal_things(principal=arns[2])["things"] == []
    assert iot.list_thing_principals(thingName=things[1])["principals"] == arns[:2]
    assert iot.list_thing_principals(thingName=things[2])["principals"] == []
    assert error_code(iot.list_thing_principals, thingName="nobody") == "ResourceNotFoundException"
    attached = iot.list_attached_policies(target=arns[0])["policies"]
    assert [p["policyName"] for p in attached] == ["p2", "p1"]
    assert iot.list_targets_for_policy(policyName="p1")["targets"] == arns[:2]
    assert iot.describe_thing(thingName=things[2])["thingName"] == things[2]
    assert error_code(iot.describe_thing, thingName="nobody") == "ResourceNotFoundException"

    # Refusals while attached, exactly where moto's scans refused.
    assert error_code(iot.delete_thing, thingName=things[0]) == "InvalidRequestException"
    assert error_code(iot.delete_policy, policyName="p1") == "DeleteConflictException"
    cert_id = certs[1]["certificateId"]
    iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    assert error_code(iot.delete_certificate, certificateId=cert_id) == "DeleteConflictException"
    iot.detach_thing_principal(thingName=things[1], principal=arns[1])
    # Things detached, a policy still attached: refused unless forced.
    assert error_code(iot.delete_certificate, certificateId=cert_id) == "DeleteConflictException"
    iot.delete_certificate(certificateId=cert_id, forceDelete=True)
    gone = error_code(iot.describe_certificate, certificateId=cert_id)
    assert gone == "ResourceNotFoundException"

    iot.detach_thing_principal(thingName=things[0], principal=arns[0])
    iot.delete_thing(thingName=things[0])
    assert error_code(iot.describe_thing, thingName=things[0]) == "ResourceNotFoundException"
    assert iot.list_principal_things(principal=arns[0])["things"] == [things[1]]
    # A thing made again under a deleted name is found, and has no principals of the old one.
    iot.create_thing(thingName=things[0])
    assert iot.list_thing_principals(thingName=things[0])["principals"] == []


def brute(pairs: dict[tuple[str, str], Any], field: int, value: str) -> list[tuple[str, str]]:
    return [key for key in pairs if key[field] == value]


def test_the_index_follows_every_kind_of_write():
    plain: dict[tuple[str, str], int] = {}
    index = moto_indexes.IndexedDict(moto_indexes._pair)
    rng = random.Random(18)
    names = [f"n{i}" for i in range(6)]
    for step in range(3000):
        key = (rng.choice(names), rng.choice(names))
        action = rng.randrange(6)
        if action == 0:
            plain[key] = index[key] = step
        elif action == 1 and key in plain:
            del plain[key]
            del index[key]
        elif action == 2:
            assert index.pop(key, None) == plain.pop(key, None)
        elif action == 3:
            assert index.setdefault(key, step) == plain.setdefault(key, step)
        elif action == 4:
            batch = {(rng.choice(names), rng.choice(names)): step for _ in range(3)}
            plain.update(batch)
            index.update(batch)
        elif action == 5 and plain and rng.random() < 0.05:
            assert index.popitem() == plain.popitem()
        if step % 1000 == 999:
            plain.clear()
            index.clear()
        assert dict(index) == plain
        for name in names:
            assert index.keys_where("first", name) == brute(plain, 0, name)
            assert index.keys_where("second", name) == brute(plain, 1, name)


def test_a_backend_made_before_the_index_is_indexed_when_first_met():
    class Backend:
        principal_things = {("arn:a", "t1"): 1, ("arn:b", "t1"): 2, ("arn:a", "t2"): 3}

    backend = Backend()
    assert moto_indexes.principals_of_thing(backend, "t1") == ["arn:a", "arn:b"]
    assert moto_indexes.things_of_principal(backend, "arn:a") == ["t1", "t2"]
    converted = backend.principal_things
    assert isinstance(converted, moto_indexes.IndexedDict)
    assert moto_indexes.indexed(backend, "principal_things") is converted
