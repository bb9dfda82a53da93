"""A button's X.509 certificate: issue, rotate, revoke and retire (in AWS's teardown order).

Every step is recorded in the registry as soon as AWS confirms it, so an interrupted command can be
re-run and a certificate is never left in AWS without the registry knowing.

One gap needs more than that: AWS makes up a certificate's id when it creates it, and certificates
take no name or tag. If the process dies between AWS's answer and the registry write (or an
answer is lost and botocore retries the call, making a second certificate), a certificate would
be in AWS with nobody knowing. So iotbutton makes each key pair itself, and before it asks AWS to
sign it (CreateCertificateFromCsr) it records a *certificate request*: the button, the time, the
process, the public key's fingerprint and the file the private key is written to. A request whose
call finished normally is closed together with recording its certificate. A request left open
(the process died, or the call was retried or failed) is *settled* once its call can no longer be
running; :func:`reclaim_lost_certificates` then looks at the unrecorded certificates AWS created
in the request's time window and retires those that carry the request's public key or the subject
iotbutton wrote into the request (see provisioning/devicekeys.py). Nothing else is touched: a
certificate that cannot be proven to be one of ours is another tool's.

A device that makes its own key (``things create --csr``) hands over a CSR instead: no private
key is written here, the certificate's record has no ``private_key`` file, and its request
names the CSR's public key, which is all a lost certificate needs to be found by.

A button's certificate is attached to its thing exclusively (``EXCLUSIVE_THING``): AWS then
attaches it to no other thing, and resolves ``${iot:Connection.Thing.ThingName}`` to that thing
whatever client id connects with it, so a stolen certificate can only ever act as its button.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

from iotbutton_cli.aws.calls import absent_ok, deleted
from iotbutton_cli.aws.errors import error_code, error_message
from iotbutton_cli.aws.retry import retry_while
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError, not_ours, usage_error
from iotbutton_cli.provisioning import devicekeys, ownership
from iotbutton_cli.provisioning.devicekeys import DEFAULT_KEY_TYPE, DeviceCsr
from iotbutton_cli.provisioning.overlap import ALONE, Overlap
from iotbutton_cli.provisioning.policies import BUTTON_POLICY_NAME
from iotbutton_cli.provisioning.serials import not_found
from iotbutton_cli.registry import keyfiles, kinds
from iotbutton_cli.registry.store import utc_now

log = logging.getLogger("iotbutton")

KIND = kinds.CERTIFICATES
REQUEST_KIND = kinds.CERTIFICATE_REQUESTS
LEFTOVER_KIND = kinds.LEFTOVER_FILES
# AWS stamps creationDate with its clock, requests use ours: SigV4 keeps the two within 5 minutes.
CLOCK_SKEW = timedelta(minutes=5)
# Longest a CreateCertificateFromCsr call of a process that died may have gone on (all retries).
REQUEST_WINDOW = timedelta(minutes=15)
# A button's certificate is its thing's alone (see the module docstring).
THING_PRINCIPAL_TYPE = "EXCLUSIVE_THING"


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
    return ctx.namespace.select(KIND, lambda record: record.get("thing") == serial)


def issue_certificate(
    ctx: AppContext,
    serial: str,
    key_type: str = DEFAULT_KEY_TYPE,
    device_csr: DeviceCsr | None = None,
    overlap: Overlap = ALONE,
) -> str:
    """Create an ACTIVE certificate, write its files, attach the policy and the thing."""
    response = create_certificate(ctx, {"thing": serial}, key_type, device_csr, overlap)
    cert_id = response["certificateId"]
    attach_certificate(ctx, cert_id, serial, overlap)
    return cert_id


def create_certificate(
    ctx: AppContext,
    record: dict[str, Any],
    key_type: str = DEFAULT_KEY_TYPE,
    device_csr: DeviceCsr | None = None,
    overlap: Overlap = ALONE,
) -> dict[str, Any]:
    """A new ACTIVE certificate for a key made here (``key_type`` ``rsa`` or ``ec``): the key is
    written first, under its certificate request's name, then AWS signs it
    (CreateCertificateFromCsr), then the certificate is recorded with ``record`` merged in
    (``thing``, or the ``role`` of a certificate that is no button's) and the key takes the
    certificate's name. With ``device_csr``, AWS signs the device's own key instead and no
    private key is written. The request (see the module docstring) guards every step: if the
    process dies in between, the certificate and the key are found and removed. Returns AWS's
    answer."""
    folder = _keys_folder(record)
    if folder is None:
        raise ValueError("a certificate belongs to a button (thing) or a role")
    request_id = secrets.token_hex(8)
    private_key_pem: str | None = None
    key_file: Path | None = None
    if device_csr is None:
        keys = devicekeys.new_key_request(folder, request_id, key_type, overlap.key(key_type))
        csr_pem, public_key_pem, fingerprint = (
            keys.csr_pem,
            keys.public_key_pem,
            keys.public_key_sha256,
        )
        private_key_pem = keys.private_key_pem
        key_file = keyfiles.request_key_file(ctx.namespace.key, folder, request_id)
    else:
        csr_pem, public_key_pem = device_csr.csr_pem, device_csr.public_key_pem
        fingerprint = device_csr.public_key_sha256
    _open_request(ctx, record, request_id, fingerprint, key_file)
    try:
        if private_key_pem is not None:
            keyfiles.write_request_key(ctx.namespace.key, folder, request_id, private_key_pem)
        response = ctx.client("iot").create_certificate_from_csr(
            certificateSigningRequest=csr_pem, setAsActive=True
        )
        files = keyfiles.write_key_files(
            ctx.namespace.key,
            folder,
            response["certificateId"],
            response["certificatePem"],
            public_key_pem,
            key_file,
        )
    except BaseException:
        # Whatever the failed call made, it made it by now: the request is settled.
        ctx.namespace.update(REQUEST_KIND, request_id, until=utc_now())
        raise
    retried = response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0

    def record_certificate(resources: dict[str, dict[str, Any]]) -> None:
        resources.setdefault(KIND, {})[response["certificateId"]] = {
            "arn": response["certificateArn"],
            "status": "ACTIVE",
            "policies": [],
            **record,
            "files": files.as_dict(),
            "public_key_sha256": fingerprint,
            "recorded": utc_now(),
        }
        requests = resources.get(REQUEST_KIND, {})
        if retried and request_id in requests:
            # An earlier attempt may have made a certificate whose answer was lost.
            requests[request_id]["until"] = utc_now()
            requests[request_id]["key_file"] = None  # the key now belongs to the certificate
        else:
            requests.pop(request_id, None)

    ctx.namespace.apply(record_certificate)
    return dict(response)


def attach_certificate(
    ctx: AppContext, cert_id: str, serial: str, overlap: Overlap = ALONE
) -> None:
    """Attach the button policy and the thing (both idempotent in AWS; at once, with
    ``overlap``), then record both, and the certificate as the button's current one, in one
    write. (Retiring a certificate detaches whatever is attached, recorded or not, so a crash in
    between loses nothing.)"""
    iot = ctx.client("iot")
    record = ctx.namespace.get(KIND, cert_id) or {}
    arn = record["arn"]
    steps = []
    if BUTTON_POLICY_NAME not in record.get("policies", []):
        steps.append(lambda: iot.attach_policy(policyName=BUTTON_POLICY_NAME, target=arn))
    if not record.get("thing_attached"):
        steps.append(
            lambda: iot.attach_thing_principal(
                thingName=serial, principal=arn, thingPrincipalType=THING_PRINCIPAL_TYPE
            )
        )
    overlap.together(*steps)

    def record_attached(resources: dict[str, dict[str, Any]]) -> None:
        certificate = resources.get(KIND, {}).get(cert_id)
        if certificate is not None:
            certificate.update(policies=[BUTTON_POLICY_NAME], thing_attached=True)
        thing = resources.get(kinds.THINGS, {}).get(serial)
        if thing is not None:
            thing["certificate"] = cert_id

    ctx.namespace.apply(record_attached)


def _keys_folder(record: dict[str, Any]) -> str | None:
    """The folder under keys/<namespace> a certificate's files go to: its button, or its role."""
    return record.get("thing") or record.get("role")


def _open_request(
    ctx: AppContext,
    record: dict[str, Any],
    request_id: str,
    public_key_sha256: str,
    key_file: Path | None,
) -> None:
    """Record that a certificate is about to be asked for: for the button ``thing`` (or the
    ``role`` named, e.g. the monitor), by this process, now, for this key."""
    request = {
        "thing": record.get("thing"),
        "since": utc_now(),
        "pid": os.getpid(),
        "host": _host(),
        "public_key_sha256": public_key_sha256,
        "key_file": str(key_file) if key_file else None,
    }
    if record.get("role"):
        request["role"] = record["role"]
    ctx.namespace.put(REQUEST_KIND, request_id, request)


def _host() -> str:
    import socket

    return socket.gethostname()


def _settled(request: dict[str, Any]) -> bool:
    """True once the request's call cannot be running any more: it ended, or its process did.

    A process on another host, or a pid that now belongs to another process, counts as running:
    its certificates are left alone rather than risked.
    """
    if request.get("until"):
        return True
    if request.get("host") != _host() or os.name != "posix":
        return False
    pid = request.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _provable(request: dict[str, Any]) -> bool:
    """Requests made before iotbutton signed its own keys name no key: nothing proves a
    certificate is theirs."""
    return bool(request.get("public_key_sha256"))


def _moment(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _window(request: dict[str, Any]) -> tuple[datetime, datetime]:
    """When a certificate made by this request's call can have been created (AWS's clock)."""
    since = _moment(request["since"])
    until = _moment(request["until"]) if request.get("until") else since + REQUEST_WINDOW
    # Timestamps are whole seconds: a second of slack on each side, plus the clock skew.
    return since - CLOCK_SKEW - timedelta(seconds=1), until + CLOCK_SKEW + timedelta(seconds=1)


def _owner(marks: devicekeys.CertificateMarks, requests: dict[str, dict[str, Any]]) -> str | None:
    """The request a certificate was made for, if it carries that request's key or subject."""
    for request_id, request in requests.items():
        if marks.public_key_sha256 == request.get("public_key_sha256") or (
            marks.made_by_iotbutton and marks.request_id == request_id
        ):
            return request_id
    return None


def reclaim_lost_certificates(ctx: AppContext, request_ids: set[str] | None = None) -> list[str]:
    """Retire certificates that settled requests made but nobody recorded; close the requests.

    Only when a settled request is open does this call AWS: it lists the certificates, and looks
    closer (DescribeCertificate) only at unrecorded ones created in a settled request's window.
    Returns the ids of the certificates retired.
    """
    resources = ctx.namespace.snapshot()
    settled = {
        request_id: request
        for request_id, request in resources.get(REQUEST_KIND, {}).items()
        if (request_ids is None or request_id in request_ids)
        and _settled(request)
        and _provable(request)
    }
    if not settled:
        return []
    iot = ctx.client("iot")
    windows = {request_id: _window(request) for request_id, request in settled.items()}
    known = set(resources.get(KIND, {}))
    lost: dict[str, tuple[str, str]] = {}
    for page in iot.get_paginator("list_certificates").paginate():
        for cert in page["certificates"]:
            created = _as_utc(cert["creationDate"])
            if cert["certificateId"] in known or not any(
                start <= created <= end for start, end in windows.values()
            ):
                continue
            owner = _made_for(iot, cert["certificateId"], settled)
            if owner is not None:
                lost[cert["certificateId"]] = (cert["certificateArn"], owner)
    for cert_id, (arn, request_id) in lost.items():
        request = settled[request_id]
        # Recorded first, so a crash while retiring it leaves it to `clean`; with the files its
        # key may have been written to before the run died, so they go too.
        folder = _keys_folder(request)
        files = keyfiles.key_files(ctx.namespace.key, folder, cert_id).as_dict() if folder else {}
        device_key = _fingerprint_of_device_key(request)
        if device_key:
            files.pop("private_key", None)  # the device's: never here
        ctx.namespace.put(
            KIND,
            cert_id,
            {
                "arn": arn,
                "thing": request.get("thing"),
                "role": request.get("role"),
                "status": "ACTIVE",
                "policies": [],
                "files": files,
                **device_key,
            },
        )
        retire_certificate(ctx, cert_id)
    for request_id, request in settled.items():
        _close_request(ctx, request_id, request)
    return sorted(lost)


def _fingerprint_of_device_key(request: dict[str, Any]) -> dict[str, Any]:
    """For a device's CSR (no key file here), the public key that proves the certificate ours."""
    if request.get("key_file") is None and request.get("public_key_sha256"):
        return {"public_key_sha256": request["public_key_sha256"]}
    return {}


def _made_for(iot: Any, cert_id: str, requests: dict[str, dict[str, Any]]) -> str | None:
    described = absent_ok(iot.describe_certificate, certificateId=cert_id)
    if described is None:
        return None
    marks = devicekeys.certificate_marks(described["certificateDescription"]["certificatePem"])
    return _owner(marks, requests) if marks else None


def _close_request(ctx: AppContext, request_id: str, request: dict[str, Any]) -> None:
    """Forget a settled request, and the private key it wrote if no certificate took it."""
    if request.get("key_file"):
        _remember_leftovers(ctx, keyfiles.remove_key_files(None, request["key_file"]))
    ctx.namespace.remove(REQUEST_KIND, request_id)


def reclaim_quietly(ctx: AppContext) -> None:
    """:func:`reclaim_lost_certificates` as housekeeping around issuing: an AWS error there (a
    user policy without iot:ListCertificates, throttling) must not fail the command. The
    requests stay recorded, and ``clean`` retries them and reports what stops it."""
    from iotbutton_cli.context import clean_error

    try:
        reclaim_lost_certificates(ctx)
    except Exception as exc:
        error = clean_error(exc)
        if error is None:
            raise
        log.info("left certificate requests open for `clean`: %s", error.message)


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(value), timezone.utc)


def reclaim_request(ctx: AppContext, request_id: str) -> None:
    """`clean`'s step for one open certificate request (see the module docstring)."""
    request = ctx.namespace.get(REQUEST_KIND, request_id)
    if request is None:
        return
    if not _settled(request):
        raise IotButtonError(
            "certificate-request-running",
            f"A certificate for {request.get('thing') or request.get('role')} is being issued by "
            f"a running iotbutton command (pid {request.get('pid')} on {request.get('host')}).",
            "Let it finish, then run `iotbutton clean` again.",
        )
    if not _provable(request):
        _close_request(ctx, request_id, request)
        raise not_ours(
            "certificate made by an interrupted request of an older iotbutton for",
            str(request.get("thing") or request.get("role")),
            f"it left no mark to tell it from another tool's; look for an unattached "
            f"certificate created at {request.get('since')}",
        )
    reclaim_lost_certificates(ctx, {request_id})


def usable(record: dict) -> bool:
    """A certificate a button can connect with: ACTIVE, with its private key still on disk; or
    ACTIVE, for a key that is on the device (the device holds what it needs: retiring the
    certificate for a lost copy here would cut it off)."""
    files = record.get("files") or {}
    if record.get("status") != "ACTIVE" or not files:
        return False
    key_files = keyfiles.KeyFiles(**files)
    return key_files.key_on_device or key_files.complete()


def key_on_device(record: dict) -> bool:
    """Whether the certificate is for a device's own key (``things create --csr``)."""
    return keyfiles.key_on_device(record.get("files"))


def fits(record: dict, device_csr: DeviceCsr | None) -> bool:
    """Whether a recorded certificate is for the key asked for: the device's (its CSR's public
    key), or one made here."""
    if device_csr is None:
        return not key_on_device(record)
    return key_on_device(record) and record.get("public_key_sha256") == device_csr.public_key_sha256


@dataclass
class Retired:
    """What retiring one certificate did."""

    deleted: bool  # DeleteCertificate removed it now (False: AWS had it no more, or never did)
    files_left: dict[str, str]  # path -> why that key file is still on disk


def retire_certificate(ctx: AppContext, cert_id: str, keep_local: bool = False) -> dict[str, str]:
    """:func:`retire`, for callers that only need the key files left on disk."""
    return retire(ctx, cert_id, keep_local).files_left


def retire(ctx: AppContext, cert_id: str, keep_local: bool = False) -> Retired:
    """Detach policy → INACTIVE → detach thing → delete, as AWS requires; NotFound means done.

    Only a certificate that carries iotbutton's marks is touched (see provisioning/ownership.py);
    one that does not is left in AWS and forgotten, with :class:`NotOurs`. Detaches are
    attempted even when the registry does not record the attachment: a run that was killed
    between AWS's answer and the registry write must still be cleaned up. So the steps need no
    record of their own: the certificate's record goes when it is deleted, and only a step that
    fails leaves what was reached recorded (a registry that is true). Says whether AWS still
    had the certificate to delete, and why any of its key files could not be deleted (they stay
    recorded as leftovers for the next `clean`).
    """
    record = ctx.namespace.get(KIND, cert_id)
    if record is None:
        return Retired(False, {})
    deleted_now = _retire_in_aws(ctx, cert_id, record)
    left = {} if keep_local else keyfiles.remove_key_files(record.get("files"))
    _remember_leftovers(ctx, left)
    ctx.namespace.remove(KIND, cert_id)
    return Retired(deleted_now, left)


def _retire_in_aws(ctx: AppContext, cert_id: str, record: dict[str, Any]) -> bool:
    """Whether DeleteCertificate removed the certificate (False: it was already gone)."""
    verdict = ownership.certificate(ctx, cert_id, record)
    if verdict is None:
        return False
    if not verdict:
        ctx.namespace.remove(KIND, cert_id)
        raise _not_ours(cert_id)
    iot = ctx.client("iot")
    arn, serial = record["arn"], record.get("thing")
    reached: dict[str, Any] = {}
    try:
        for policy in sorted({BUTTON_POLICY_NAME, *record.get("policies", [])}):
            deleted(iot.detach_policy, policyName=policy, target=arn)
        reached["policies"] = []
        if deleted(iot.update_certificate, certificateId=cert_id, newStatus="INACTIVE"):
            reached["status"] = "INACTIVE"
        if serial:
            deleted(iot.detach_thing_principal, thingName=serial, principal=arn)
            reached["thing_attached"] = False
        return retry_while(
            partial(deleted, iot.delete_certificate, certificateId=cert_id),
            _still_attached,
        )
    except BaseException:
        if reached:
            ctx.namespace.update(KIND, cert_id, **reached)
        raise


def other_things(ctx: AppContext, cert_id: str, serial: str) -> list[str]:
    """The things besides ``serial`` that the certificate is attached to in AWS (someone attached
    a button's certificate to a thing of theirs): retiring it would cut them off."""
    record = ctx.namespace.get(KIND, cert_id) or {}
    if not record.get("arn"):
        return []
    found = absent_ok(ctx.client("iot").list_principal_things, principal=record["arn"])
    return sorted(name for name in (found or {}).get("things", []) if name != serial)


def leave_to_others(ctx: AppContext, cert_id: str, serial: str, others: list[str]) -> str:
    """Detach the certificate from ``serial`` only and forget it, as one that is still used
    elsewhere; it stays in AWS, ACTIVE, for the ``others``. Returns why it was left."""
    record = ctx.namespace.get(KIND, cert_id) or {}
    if record.get("arn"):
        deleted(ctx.client("iot").detach_thing_principal, thingName=serial, principal=record["arn"])
    ctx.namespace.remove(KIND, cert_id)
    return (
        f"also attached to {', '.join(others)}; detached from {serial} only, left in AWS "
        "and forgotten"
    )


def _not_ours(cert_id: str) -> IotButtonError:
    return not_ours("certificate", cert_id[:12] + "…", "no iotbutton mark, no iotbutton thing")


def _remember_leftovers(ctx: AppContext, left: dict[str, str]) -> None:
    """Key files that could not be deleted stay recorded, so the next `clean` tries again."""
    for path, reason in left.items():
        ctx.namespace.put(LEFTOVER_KIND, path, {"reason": reason})


def remove_leftover(ctx: AppContext, path: str) -> None:
    """`clean`'s step for a key file an earlier run could not delete."""
    problem = keyfiles.remove_key_files(None, path).get(path)
    if problem:
        ctx.namespace.update(LEFTOVER_KIND, path, reason=problem)
        raise IotButtonError(
            "key-file-left",
            problem,
            "Delete it yourself (it is a private key iotbutton made), then run `iotbutton clean` "
            "again.",
        )
    ctx.namespace.remove(LEFTOVER_KIND, path)


def rotate_certificate(
    ctx: AppContext,
    serial: str,
    key_type: str | None = None,
    device_csr: DeviceCsr | None = None,
) -> tuple[str, list[str]]:
    """Issue and attach a new certificate first, then retire the old ones: never certless.

    A button whose key is on its device needs the device's new CSR (or a ``key_type``, to move
    it to a key made here): iotbutton cannot make its device a key (``csr-required``)."""
    things = ctx.namespace.items(kinds.THINGS)
    if serial not in things:
        raise not_found(serial)
    current = ctx.namespace.get(KIND, things[serial].get("certificate") or "") or {}
    if device_csr is None and key_type is None and key_on_device(current):
        raise usage_error(
            "csr-required",
            f"The private key of {serial} is on the device (its certificate came from a CSR): "
            "iotbutton cannot make the device a new key.",
            f"Make a new CSR on the device and run `iotbutton certs rotate {serial} --csr FILE`; "
            "or `--key-type rsa` to give the button a key made here instead.",
        )
    ctx.before_changes(ahead=("iot",))
    with ctx.namespace.lock(kinds.THINGS, serial):
        reclaim_quietly(ctx)
        old = list(certificates_of(ctx, serial))
        # Also recorded as the button's certificate.
        new_id = issue_certificate(ctx, serial, key_type or DEFAULT_KEY_TYPE, device_csr)
        for cert_id in old:
            retire_certificate(ctx, cert_id)
        reclaim_quietly(ctx)
    return new_id, old


def revoke_certificate(ctx: AppContext, serial: str) -> str:
    """Deactivate the button's certificate: AWS refuses its next TLS connection."""
    cert_id, record = current_certificate(ctx, serial)
    if ownership.certificate(ctx, cert_id, record) is False:
        raise _not_ours(cert_id)
    ctx.client("iot").update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    ctx.namespace.update(KIND, cert_id, status="INACTIVE")
    return cert_id


def current_certificate(ctx: AppContext, serial: str) -> tuple[str, dict]:
    """The id and record of the certificate the button uses now."""
    thing = ctx.namespace.get(kinds.THINGS, serial)
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
    description = absent_ok(ctx.client("iot").describe_certificate, certificateId=cert_id)
    if description is None:
        return "MISSING"
    return str(description["certificateDescription"]["status"])


def _still_attached(exc: BaseException) -> bool:
    code = error_code(exc)
    if code == "DeleteConflictException":
        return True
    return code == "CertificateStateException" and "ACTIVE" in error_message(exc)


def list_certificates(ctx: AppContext) -> list[CertificateInfo]:
    """Every recorded certificate, from the registry alone."""
    current = {rec.get("certificate") for rec in ctx.namespace.items(kinds.THINGS).values()}
    return [
        _info(cert_id, record, cert_id in current)
        for cert_id, record in sorted(
            ctx.namespace.items(KIND).items(),
            key=lambda item: (item[1].get("thing") or "", item[0]),
        )
    ]


def show_files(ctx: AppContext, cert_id: str) -> dict[str, str]:
    """The recorded files of a certificate, by role (registry only)."""
    return dict((ctx.namespace.get(KIND, cert_id) or {}).get("files") or {})


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
        serial=record.get("thing") or record.get("role") or "",
        status=record.get("status", ""),
        created=record.get("recorded", ""),
        files=record.get("files", {}),
        current=current,
    )
