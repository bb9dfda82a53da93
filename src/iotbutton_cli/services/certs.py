"""A button's X.509 certificate: issue, rotate, revoke and retire (in AWS's teardown order).

Every step is recorded in the registry as soon as AWS confirms it, so an interrupted command can be
re-run and a certificate is never left in AWS without the registry knowing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from iotbutton_cli.aws_errors import error_code, error_message, is_not_found
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.services import keyfiles
from iotbutton_cli.services.policies import BUTTON_POLICY_NAME
from iotbutton_cli.services.retry import retry_while
from iotbutton_cli.services.serials import not_found

KIND = "certificates"


@dataclass
class CertificateInfo:
    certificate_id: str
    arn: str
    serial: str
    status: str
    created: str
    files: dict[str, str]
    current: bool


def certificates_of(ctx: AppContext, serial: str) -> dict[str, dict]:
    return {
        cid: rec for cid, rec in ctx.namespace.items(KIND).items() if rec.get("thing") == serial
    }


def issue_certificate(ctx: AppContext, serial: str) -> str:
    """Create an ACTIVE certificate, write its files, attach the policy and the thing."""
    iot = ctx.client("iot")
    response = iot.create_keys_and_certificate(setAsActive=True)
    cert_id, arn = response["certificateId"], response["certificateArn"]
    ctx.namespace.put(
        KIND, cert_id, {"arn": arn, "thing": serial, "status": "ACTIVE", "policies": []}
    )
    files = keyfiles.write_key_files(
        ctx.namespace.key,
        serial,
        cert_id,
        response["certificatePem"],
        response["keyPair"]["PrivateKey"],
        response["keyPair"]["PublicKey"],
    )
    ctx.namespace.update(KIND, cert_id, files=files.as_dict())
    attach_certificate(ctx, cert_id, serial)
    return cert_id


def attach_certificate(ctx: AppContext, cert_id: str, serial: str) -> None:
    """Attach the button policy and the thing (both idempotent in AWS), recording each."""
    iot = ctx.client("iot")
    record = ctx.namespace.get(KIND, cert_id) or {}
    arn = record["arn"]
    if BUTTON_POLICY_NAME not in record.get("policies", []):
        iot.attach_policy(policyName=BUTTON_POLICY_NAME, target=arn)
        ctx.namespace.update(KIND, cert_id, policies=[BUTTON_POLICY_NAME])
    if not record.get("thing_attached"):
        iot.attach_thing_principal(thingName=serial, principal=arn)
        ctx.namespace.update(KIND, cert_id, thing_attached=True)


def usable(record: dict) -> bool:
    """A certificate a button can connect with: ACTIVE, with its private key still on disk."""
    files = record.get("files") or {}
    return (
        record.get("status") == "ACTIVE" and bool(files) and keyfiles.KeyFiles(**files).complete()
    )


def retire_certificate(ctx: AppContext, cert_id: str, keep_local: bool = False) -> None:
    """Detach policy → INACTIVE → detach thing → delete, as AWS requires; NotFound means done.

    Detaches are attempted even when the registry does not record the attachment: a run that
    was killed between AWS's answer and the registry write must still be cleaned up.
    """
    iot = ctx.client("iot")
    record = ctx.namespace.get(KIND, cert_id)
    if record is None:
        return
    arn, serial = record["arn"], record.get("thing")
    for policy in sorted({BUTTON_POLICY_NAME, *record.get("policies", [])}):
        _ignore_not_found(partial(iot.detach_policy, policyName=policy, target=arn))
    ctx.namespace.update(KIND, cert_id, policies=[])
    if _ignore_not_found(
        lambda: iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    ):
        ctx.namespace.update(KIND, cert_id, status="INACTIVE")
    if serial:
        _ignore_not_found(lambda: iot.detach_thing_principal(thingName=serial, principal=arn))
        ctx.namespace.update(KIND, cert_id, thing_attached=False)
    retry_while(
        lambda: _ignore_not_found(lambda: iot.delete_certificate(certificateId=cert_id)),
        _still_attached,
    )
    if not keep_local:
        keyfiles.remove_key_files(record.get("files"))
    ctx.namespace.remove(KIND, cert_id)


def rotate_certificate(ctx: AppContext, serial: str) -> tuple[str, list[str]]:
    """Issue and attach a new certificate first, then retire the old ones: never certless."""
    things = ctx.namespace.items("things")
    if serial not in things:
        raise not_found(serial)
    old = list(certificates_of(ctx, serial))
    new_id = issue_certificate(ctx, serial)
    ctx.namespace.update("things", serial, certificate=new_id)
    for cert_id in old:
        retire_certificate(ctx, cert_id)
    return new_id, old


def revoke_certificate(ctx: AppContext, serial: str) -> str:
    """Deactivate the button's certificate: AWS refuses its next TLS connection."""
    cert_id, _ = current_certificate(ctx, serial)
    ctx.client("iot").update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    ctx.namespace.update(KIND, cert_id, status="INACTIVE")
    return cert_id


def current_certificate(ctx: AppContext, serial: str) -> tuple[str, dict]:
    """The id and record of the certificate the button uses now."""
    thing = ctx.namespace.get("things", serial)
    if thing is None:
        raise not_found(serial)
    cert_id = thing.get("certificate") or ""
    record = ctx.namespace.get(KIND, cert_id)
    if record is None:
        raise IotButtonError(
            "no-certificate",
            f"Button {serial} has no certificate.",
            f"Run `iotbutton things create {serial}` to finish provisioning it.",
        )
    return cert_id, record


def live_status(ctx: AppContext, cert_id: str) -> str:
    """The certificate's status as AWS sees it now (``MISSING`` if AWS has no such certificate)."""
    try:
        description = ctx.client("iot").describe_certificate(certificateId=cert_id)
    except Exception as exc:
        if is_not_found(exc):
            return "MISSING"
        raise
    return str(description["certificateDescription"]["status"])


def _ignore_not_found(call: Callable[[], object]) -> bool:
    """Run ``call``; False if AWS says the resource is already gone."""
    try:
        call()
    except Exception as exc:
        if is_not_found(exc):
            return False
        raise
    return True


def _still_attached(exc: BaseException) -> bool:
    code = error_code(exc)
    if code == "DeleteConflictException":
        return True
    return code == "CertificateStateException" and "ACTIVE" in error_message(exc)


def list_certificates(ctx: AppContext) -> list[CertificateInfo]:
    """Every recorded certificate, from the registry alone."""
    current = {rec.get("certificate") for rec in ctx.namespace.items("things").values()}
    return [
        _info(cert_id, record, cert_id in current)
        for cert_id, record in sorted(
            ctx.namespace.items(KIND).items(), key=lambda item: (item[1].get("thing", ""), item[0])
        )
    ]


def show_certificate(ctx: AppContext, serial: str) -> CertificateInfo:
    """The button's current certificate, with its live status from AWS."""
    cert_id, record = current_certificate(ctx, serial)
    info = _info(cert_id, record, True)
    info.status = live_status(ctx, cert_id)
    return info


def _info(cert_id: str, record: dict, current: bool) -> CertificateInfo:
    return CertificateInfo(
        certificate_id=cert_id,
        arn=record["arn"],
        serial=record.get("thing", ""),
        status=record.get("status", ""),
        created=record.get("recorded", ""),
        files=record.get("files", {}),
        current=current,
    )
