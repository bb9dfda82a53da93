"""Is it iotbutton's? The marks iotbutton leaves on what it makes, checked before it changes or
deletes anything.

A registry entry alone proves nothing: the file can be damaged, restored from another machine, or
edited. So before ``clean`` (or ``things delete``, ``certs rotate``) touches a resource the
registry names, it looks for the same marks ``clean --discover`` goes by:

- a thing: the attribute ``createdBy=iotbutton-cli``;
- a certificate: the subject iotbutton writes into its requests (organization ``iotbutton-cli``,
  provisioning/devicekeys.py); for one a device's own CSR asked for, the public key recorded from
  that CSR; or, for one made before iotbutton signed its own keys, being attached to one of
  iotbutton's things or to one of its policies;
- a thing type: iotbutton's description;
- a policy: exactly the document iotbutton writes (provisioning/policies.py);
- the notifier's role, function, bucket, parameter and log groups: the ``managed-by=iotbutton`` tag.

Each check answers True (ours), False (someone else's: left alone) or None (already gone).
"""

from __future__ import annotations

from typing import Any

from iotbutton_cli.aws.calls import absent_ok
from iotbutton_cli.aws.tags import MANAGED_BY_KEY, MANAGED_BY_VALUE, THING_ATTRIBUTE
from iotbutton_cli.context import AppContext
from iotbutton_cli.provisioning import devicekeys
from iotbutton_cli.registry import keyfiles


def thing(ctx: AppContext, name: str) -> bool | None:
    described = absent_ok(ctx.client("iot").describe_thing, thingName=name)
    if described is None:
        return None
    attributes = described.get("attributes") or {}
    return all(attributes.get(key) == value for key, value in THING_ATTRIBUTE.items())


def certificate(ctx: AppContext, cert_id: str, record: dict[str, Any]) -> bool | None:
    iot = ctx.client("iot")
    described = absent_ok(iot.describe_certificate, certificateId=cert_id)
    if described is None:
        return None
    description = described["certificateDescription"]
    marks = devicekeys.certificate_marks(description.get("certificatePem", ""))
    if marks is not None and marks.made_by_iotbutton:
        return True
    if marks is not None and _device_key_recorded(record, marks.public_key_sha256):
        return True
    return _attached_to_ours(ctx, description["certificateArn"])


def _device_key_recorded(record: dict[str, Any], public_key_sha256: str) -> bool:
    """A certificate for a device's own key (``things create --csr``) carries no mark of ours:
    the device wrote its subject. What proves it is the public key iotbutton read from that CSR
    and recorded, a SHA-256 no damaged or restored file names by accident."""
    recorded = record.get("public_key_sha256")
    on_device = keyfiles.key_on_device(record.get("files"))
    return bool(recorded) and on_device and recorded == public_key_sha256


def _attached_to_ours(ctx: AppContext, arn: str) -> bool:
    """A certificate from before iotbutton made its own keys is ours while it is attached to
    iotbutton's thing or policy (detaching it is the last thing iotbutton does before the delete,
    and a retried delete of an INACTIVE, detached certificate finds it gone or refuses)."""
    from iotbutton_cli.provisioning import policies

    iot = ctx.client("iot")
    for name in iot.list_principal_things(principal=arn).get("things", []):
        if thing(ctx, name):
            return True
    attached = iot.list_attached_policies(target=arn).get("policies", [])
    return any(
        policy["policyName"] in policies.documents(ctx)
        and policies.is_ours(ctx, policy["policyName"])
        for policy in attached
    )


def thing_type(ctx: AppContext, name: str) -> bool | None:
    from iotbutton_cli.provisioning.things import THING_TYPE_DESCRIPTION

    described = absent_ok(ctx.client("iot").describe_thing_type, thingTypeName=name)
    if described is None:
        return None
    properties = described.get("thingTypeProperties") or {}
    return bool(properties.get("thingTypeDescription") == THING_TYPE_DESCRIPTION)


def tagged(tags: list[dict[str, str]] | dict[str, str]) -> bool:
    """True if ``tags`` (AWS's list of Key/Value pairs, or a mapping) carry iotbutton's tag."""
    if isinstance(tags, dict):
        return tags.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE
    return {"Key": MANAGED_BY_KEY, "Value": MANAGED_BY_VALUE} in tags
