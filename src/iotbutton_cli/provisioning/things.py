"""Provision, list, show and delete buttons: an IoT thing plus its certificate and key files.

Provisioning is resumable: each step is recorded when AWS confirms it, and a re-run finishes
whatever an interrupted run left half done instead of creating duplicates.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from iotbutton_cli.aws import bulk
from iotbutton_cli.aws.calls import absent_ok, deleted
from iotbutton_cli.aws.errors import error_code, error_message
from iotbutton_cli.aws.retry import retry_while
from iotbutton_cli.aws.tags import THING_ATTRIBUTE, aws_tags
from iotbutton_cli.context import AppContext, clean_error
from iotbutton_cli.errors import IotButtonError, not_ours, usage_error
from iotbutton_cli.provisioning import certs, ownership
from iotbutton_cli.provisioning.devicekeys import DEFAULT_KEY_TYPE, KEY_TYPES, DeviceCsr
from iotbutton_cli.provisioning.endpoint import device_ca_file
from iotbutton_cli.provisioning.keysupply import KeySupply
from iotbutton_cli.provisioning.overlap import ALONE, Overlap
from iotbutton_cli.provisioning.policies import ensure_button_policy
from iotbutton_cli.provisioning.serials import not_found
from iotbutton_cli.registry import keyfiles, kinds
from iotbutton_cli.registry.store import utc_now

KIND = kinds.THINGS
TYPE_KIND = kinds.THING_TYPES
DEFAULT_THING_TYPE = "iotbutton"
THING_TYPE_DESCRIPTION = "AWS IoT buttons provisioned by iotbutton"
DEFAULT_WORKERS = 8


@dataclass
class ProvisionResult:
    serial: str
    action: str  # created | unchanged | resumed | failed
    certificate_id: str | None = None
    error: dict[str, Any] | None = None
    key_on_device: bool = False  # its certificate is for the device's own key (a CSR)
    certificate_file: str | None = None  # where the certificate is, for a device's own key


@dataclass
class ProvisionReport:
    policy: str
    thing_type: str
    buttons: list[ProvisionResult] = field(default_factory=list)
    half_done_left: int = 0  # recorded buttons still half done after the run (any thing type)

    @property
    def failed(self) -> list[ProvisionResult]:
        return [button for button in self.buttons if button.action == "failed"]

    @property
    def resumed(self) -> list[ProvisionResult]:
        """The half-done buttons (of an earlier, interrupted run) this run finished."""
        return [button for button in self.buttons if button.action == "resumed"]


@dataclass
class Button:
    serial: str
    thing_arn: str
    thing_type: str | None
    created: str
    certificate_id: str | None
    certificate_arn: str | None
    certificate_status: str | None
    files: dict[str, str]
    root_ca: str
    half_done: bool = False  # an interrupted run left it unfinished (see :func:`half_done`)


def provision(
    ctx: AppContext,
    serials: list[str],
    thing_type: str = DEFAULT_THING_TYPE,
    workers: int = DEFAULT_WORKERS,
    on_done: Callable[[ProvisionResult], None] | None = None,
    *,
    finish_half_done: bool = False,
    key_type: str = DEFAULT_KEY_TYPE,
    device_csr: DeviceCsr | None = None,
) -> ProvisionReport:
    """Provision ``serials`` concurrently; one button's failure never loses the others' records.

    With ``finish_half_done``, ``serials`` are generated ones (``things create --count N``):
    the buttons of this thing type that an interrupted run left half done take the place of as
    many of them, oldest first, so a re-run finishes them instead of leaving them behind, and
    the run still ends with ``len(serials)`` buttons (reported ``resumed`` and ``created``).

    New certificates are for keys made here of ``key_type`` (``rsa``, ``ec``), or with
    ``device_csr`` for the device's own key: then ``serials`` is one button (a CSR is one
    device's), never half-done ones (``csr-one-button``).

    Ctrl-C stops it at once: no new button is started, the ones in flight stop after their
    current step (everything made so far is recorded), and the KeyboardInterrupt goes on.
    """
    if key_type not in KEY_TYPES:
        raise ValueError(f"unknown key type {key_type!r}")
    if device_csr is not None and len(serials) != 1:
        raise usage_error(
            "csr-one-button",
            f"A CSR is one device's: --csr provisions one button, not {len(serials)}.",
            "Run `iotbutton things create SERIAL --csr FILE` once per device, each with its "
            "own CSR.",
        )
    finish_half_done = finish_half_done and device_csr is None
    workers = max(1, min(workers, len(serials)))
    ctx.before_changes(ahead=("iot",))
    with contextlib.ExitStack() as cleanup:
        beside = cleanup.enter_context(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="beside")
        )
        overlap = Overlap(beside, _key_supply(ctx, serials, key_type, device_csr, cleanup))
        # Certificates an interrupted run made but could not record go first (none: no AWS call).
        certs.reclaim_quietly(ctx)
        policy, _ = overlap.together(
            lambda: ensure_button_policy(ctx), lambda: ensure_thing_type(ctx, thing_type)
        )
        keyfiles.amazon_root_ca()
        report = ProvisionReport(policy=policy.name, thing_type=thing_type)
        if finish_half_done:
            serials = _with_half_done_first(ctx, serials, thing_type)

        def done(serial: str, future: Future[ProvisionResult]) -> None:
            result = _result_of(ctx, serial, future)
            report.buttons.append(result)
            if on_done:
                on_done(result)

        bulk.run(
            serials,
            lambda serial, stopping: provision_button(
                ctx,
                serial,
                thing_type,
                stopping,
                key_type=key_type,
                device_csr=device_csr,
                overlap=overlap,
            ),
            done,
            workers=workers,
        )
    # A CreateCertificateFromCsr that was retried may have made a certificate whose answer was
    # lost; with no call of ours running any more, such certificates can be told apart.
    certs.reclaim_quietly(ctx)
    report.buttons.sort(key=lambda button: button.serial)
    report.half_done_left = len(half_done(ctx))
    return report


def _key_supply(
    ctx: AppContext,
    serials: list[str],
    key_type: str,
    device_csr: DeviceCsr | None,
    cleanup: contextlib.ExitStack,
) -> KeySupply | None:
    """Keys made ahead for the buttons nothing records yet (their certificates are new), while
    the policy and thing type are made; none for one button, or for a device's own key."""
    if device_csr is not None:
        return None
    new = sum(ctx.namespace.get(KIND, serial) is None for serial in serials)
    if new < 2:
        return None
    keys = KeySupply(key_type, new)
    cleanup.callback(keys.close)
    return keys


def half_done(ctx: AppContext, thing_type: str | None = None) -> list[str]:
    """The recorded buttons an interrupted run left half done, oldest first (registry only).

    Half done is what :func:`provision_button` would not report ``unchanged``: a thing recorded
    (or about to be created) without a certificate that is recorded, attached to it, holding the
    policy and its key files. With ``thing_type``, only the buttons of that type (or of none
    recorded)."""
    resources = ctx.namespace.snapshot()
    certificates = resources.get(certs.KIND, {})
    found = [
        (record.get("recorded", ""), serial)
        for serial, record in resources.get(KIND, {}).items()
        if not _finished(record, certificates)
        and (thing_type is None or record.get("thing_type") in (None, thing_type))
    ]
    return [serial for _recorded, serial in sorted(found)]


def _with_half_done_first(ctx: AppContext, generated: list[str], thing_type: str) -> list[str]:
    """``len(generated)`` serials: the half-done buttons of ``thing_type`` first, then new ones.

    A button another command is provisioning right now looks half done too: one whose lock is
    held is not taken, and one found finished once its lock is free is not either, so parallel
    `--count` runs never count each other's buttons as their own."""
    earlier = [serial for serial in half_done(ctx, thing_type) if _left_half_done(ctx, serial)][
        : len(generated)
    ]
    taken = set(earlier)
    fresh = [serial for serial in generated if serial not in taken]
    return earlier + fresh[: len(generated) - len(earlier)]


def _result_of(ctx: AppContext, serial: str, future: Future[ProvisionResult]) -> ProvisionResult:
    try:
        return future.result()
    except bulk.Stopped:
        return ProvisionResult(serial, "stopped")
    except Exception as exc:
        error = clean_error(exc, ctx)
        if error is None:
            raise
        return ProvisionResult(serial, "failed", error=error.as_dict())


def provision_button(
    ctx: AppContext,
    serial: str,
    thing_type: str,
    stopping: threading.Event | None = None,
    *,
    key_type: str = DEFAULT_KEY_TYPE,
    device_csr: DeviceCsr | None = None,
    overlap: Overlap = ALONE,
) -> ProvisionResult:
    """Thing → certificate and keys → policy → thing principal, skipping what is already done.
    With ``overlap``, a new button's thing and certificate are made at once, and so are its two
    attachments (see provisioning/overlap.py).

    One button at a time across processes: two commands provisioning the same serial at once
    would otherwise each issue it a certificate. ``stopping`` is checked between the steps.
    With ``device_csr``, a complete button whose certificate is for another key is refused
    (``has-certificate``: moving it to the device's key is `certs rotate --csr`).
    """

    def step() -> None:
        if stopping is not None and stopping.is_set():
            raise bulk.Stopped(serial)

    step()
    with ctx.namespace.lock(KIND, serial):
        recorded = ctx.namespace.get(KIND, serial)
        if recorded and _complete(ctx, serial, recorded):
            cert_id = recorded["certificate"]
            if device_csr is not None and not certs.fits(
                ctx.namespace.get(certs.KIND, cert_id) or {}, device_csr
            ):
                raise _has_certificate(serial, cert_id, device_csr)
            return _result(ctx, serial, "unchanged", cert_id)
        action = "resumed" if recorded or certs.certificates_of(ctx, serial) else "created"
        if action == "created":
            return _provision_new(ctx, serial, thing_type, key_type, device_csr, overlap, step)
        if recorded is None or recorded.get("pending"):
            _make_thing(ctx, serial, thing_type)
            step()
        cert_id = _reusable_certificate(ctx, serial, device_csr)
        if cert_id is None:
            # Records it as the button's, too.
            cert_id = certs.issue_certificate(ctx, serial, key_type, device_csr, overlap)
        else:
            certs.attach_certificate(ctx, cert_id, serial, overlap)
        return _result(ctx, serial, action, cert_id)


def _provision_new(
    ctx: AppContext,
    serial: str,
    thing_type: str,
    key_type: str,
    device_csr: DeviceCsr | None,
    overlap: Overlap,
    step: Callable[[], None],
) -> ProvisionResult:
    """A button nothing records yet: its thing and its certificate at once, then attached.

    The thing is recorded (pending) before either is asked for, so a run killed (or stopped by
    ``step``) at any point leaves a half-done button that a re-run finishes. A certificate made
    for a serial whose thing turns out to be someone else's is retired before the error is
    raised."""
    _record_pending_thing(ctx, serial, thing_type)
    try:
        _, response = overlap.together(
            lambda: _make_thing(ctx, serial, thing_type, pending_recorded=True),
            lambda: certs.create_certificate(ctx, {"thing": serial}, key_type, device_csr, overlap),
        )
    except IotButtonError as exc:
        if exc.code == "thing-not-ours":
            for cert_id in certs.certificates_of(ctx, serial):
                certs.retire_certificate(ctx, cert_id)
        raise
    step()
    cert_id = response["certificateId"]
    certs.attach_certificate(ctx, cert_id, serial, overlap)
    return _result(ctx, serial, "created", cert_id)


def _make_thing(
    ctx: AppContext, serial: str, thing_type: str, *, pending_recorded: bool = False
) -> None:
    """The thing, made (or adopted: see :func:`_create_thing`) and recorded."""
    response = _create_thing(ctx, serial, thing_type, pending_recorded=pending_recorded)

    def record_thing(resources: dict[str, dict[str, Any]]) -> None:
        record = resources.setdefault(KIND, {}).setdefault(serial, {"recorded": utc_now()})
        record.update(arn=response["thingArn"], thing_type=thing_type)
        record.pop("pending", None)

    ctx.namespace.apply(record_thing)


def _result(ctx: AppContext, serial: str, action: str, cert_id: str) -> ProvisionResult:
    record = ctx.namespace.get(certs.KIND, cert_id) or {}
    on_device = certs.key_on_device(record)
    return ProvisionResult(
        serial,
        action,
        cert_id,
        key_on_device=on_device,
        certificate_file=(record.get("files") or {}).get("certificate") if on_device else None,
    )


def _has_certificate(serial: str, cert_id: str, device_csr: DeviceCsr) -> IotButtonError:
    return IotButtonError(
        "has-certificate",
        f"Button {serial} already has a certificate ({cert_id[:12]}), for another key than the "
        f"one in {device_csr.source}.",
        f"To move the button to the device's key, run `iotbutton certs rotate {serial} --csr "
        f"{device_csr.source}`.",
    )


def _left_half_done(ctx: AppContext, serial: str) -> bool:
    """Whether ``serial`` is half done and no command is working on it now."""
    with ctx.namespace.lock_if_free(KIND, serial) as free:
        recorded = ctx.namespace.get(KIND, serial)
        return free and recorded is not None and not _complete(ctx, serial, recorded)


def _complete(ctx: AppContext, serial: str, recorded: dict) -> bool:
    cert_id = recorded.get("certificate") or ""
    return _finished(recorded, {cert_id: ctx.namespace.get(certs.KIND, cert_id) or {}})


def _finished(record: dict, certificates: dict[str, dict]) -> bool:
    """The button's certificate is recorded, attached to the thing, with its policy and files."""
    cert = certificates.get(record.get("certificate") or "")
    return bool(cert and cert.get("thing_attached") and cert.get("policies") and cert.get("files"))


def _create_thing(
    ctx: AppContext, serial: str, thing_type: str, *, pending_recorded: bool = False
) -> dict:
    """Create the thing, or adopt one an interrupted run of ours created; never someone else's.

    DescribeThing comes first because CreateThing is silently idempotent in moto, and in AWS for
    identical arguments: only the ``createdBy`` attribute tells our thing from another.
    """
    iot = ctx.client("iot")
    existing = absent_ok(iot.describe_thing, thingName=serial)
    if existing is not None:
        if existing.get("attributes", {}) != THING_ATTRIBUTE:
            ctx.namespace.forget_pending(KIND, serial)
            raise IotButtonError(
                "thing-not-ours",
                f"A thing named {serial} already exists in this account and was not made by "
                "iotbutton.",
                "Pick another serial; iotbutton never changes resources it did not make.",
            )
        return existing
    if not pending_recorded:
        _record_pending_thing(ctx, serial, thing_type)
    return iot.create_thing(
        thingName=serial, thingTypeName=thing_type, attributePayload={"attributes": THING_ATTRIBUTE}
    )


def _record_pending_thing(ctx: AppContext, serial: str, thing_type: str) -> None:
    """Recorded (as pending) before it is asked for: a run killed between AWS's answer and the
    registry write must not leave a thing that nothing records (a generated serial is never
    seen again). A pending record of a thing that does not exist counts as already gone."""
    ctx.namespace.put(
        KIND,
        serial,
        {"arn": ctx.arn("iot", f"thing/{serial}"), "thing_type": thing_type, "pending": True},
    )


def _reusable_certificate(
    ctx: AppContext, serial: str, device_csr: DeviceCsr | None = None
) -> str | None:
    """A recorded certificate that can still be used; retire ones whose key was lost. With
    ``device_csr``, only a certificate for the CSR's key is used (any key will do without)."""
    reusable = None
    for cert_id, record in certs.certificates_of(ctx, serial).items():
        wanted = device_csr is None or certs.fits(record, device_csr)
        if reusable is None and certs.usable(record) and wanted:
            reusable = cert_id
        else:
            certs.retire_certificate(ctx, cert_id)
    return reusable


def ensure_thing_type(ctx: AppContext, name: str) -> str:
    """Create the thing type, or use an existing one (recording it only if iotbutton made it)."""
    iot = ctx.client("iot")
    description = absent_ok(iot.describe_thing_type, thingTypeName=name)
    if description is None:
        # Recorded (pending) first, so a run killed before the registry write leaves it findable.
        arn = ctx.arn("iot", f"thingtype/{name}")
        ctx.namespace.put(TYPE_KIND, name, {"arn": arn, "pending": True})
        try:
            response = iot.create_thing_type(
                thingTypeName=name,
                thingTypeProperties={"thingTypeDescription": THING_TYPE_DESCRIPTION},
                tags=aws_tags(),
            )
        except Exception as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
            return ensure_thing_type(ctx, name)  # another process made it a moment ago
        ctx.namespace.confirm(TYPE_KIND, name, {"arn": response["thingTypeArn"]})
        return "created"
    if description.get("thingTypeMetadata", {}).get("deprecated"):
        if ctx.namespace.get(TYPE_KIND, name) is not None:
            iot.deprecate_thing_type(thingTypeName=name, undoDeprecate=True)
            ctx.namespace.update(TYPE_KIND, name, deprecated_at=None)
            return "undeprecated"
        raise IotButtonError(
            "thing-type-deprecated",
            f"The thing type {name} is deprecated; AWS accepts no new things of it.",
            "Pass another --type, or undeprecate it in AWS.",
        )
    properties = description.get("thingTypeProperties", {})
    recorded = ctx.namespace.get(TYPE_KIND, name)
    if recorded is None or recorded.get("pending"):
        if properties.get("thingTypeDescription") == THING_TYPE_DESCRIPTION:
            # Ours, created by a run that stopped before recording it.
            ctx.namespace.confirm(TYPE_KIND, name, {"arn": description["thingTypeArn"]})
        else:
            ctx.namespace.forget_pending(TYPE_KIND, name)  # someone else's: used, never removed
    return "exists"


def list_buttons(ctx: AppContext) -> list[Button]:
    """The buttons the registry holds for this account and region (no AWS calls)."""
    things = ctx.namespace.items(KIND)
    certificates = ctx.namespace.items(certs.KIND)
    root_ca = device_ca_file(ctx)
    return [
        _button(serial, record, certificates, root_ca) for serial, record in sorted(things.items())
    ]


def show_button(ctx: AppContext, serial: str) -> tuple[Button, dict[str, Any]]:
    """The recorded button plus AWS's live view of the thing and its certificate."""
    record = ctx.namespace.get(KIND, serial)
    if record is None:
        raise not_found(serial)
    button = _button(serial, record, ctx.namespace.items(certs.KIND), device_ca_file(ctx))
    thing = absent_ok(ctx.client("iot").describe_thing, thingName=serial)
    if button.certificate_id:
        button.certificate_status = certs.live_status(ctx, button.certificate_id)
    live = {
        "exists": thing is not None,
        "attributes": (thing or {}).get("attributes", {}),
        "version": (thing or {}).get("version"),
    }
    return button, live


def _button(serial: str, record: dict, certificates: dict, root_ca: str) -> Button:
    cert_id = record.get("certificate")
    cert = certificates.get(cert_id or "", {})
    return Button(
        serial=serial,
        thing_arn=record["arn"],
        thing_type=record.get("thing_type"),
        created=record.get("recorded", ""),
        certificate_id=cert_id,
        certificate_arn=cert.get("arn"),
        certificate_status=cert.get("status"),
        files=cert.get("files", {}),
        root_ca=root_ca,
        half_done=not _finished(record, certificates),
    )


def delete_button(ctx: AppContext, serial: str, keep_local: bool = False) -> DeleteReport:
    """Retire every certificate of the button, then delete the thing."""
    ctx.before_changes()
    if ctx.namespace.get(KIND, serial) is None and not certs.certificates_of(ctx, serial):
        raise not_found(serial)
    report = DeleteReport(serial)
    with ctx.namespace.lock(KIND, serial):
        for cert_id in sorted(certs.certificates_of(ctx, serial)):
            others = certs.other_things(ctx, cert_id, serial)
            if others:
                report.certificates_left[cert_id] = certs.leave_to_others(
                    ctx, cert_id, serial, others
                )
                continue
            retired = certs.retire(ctx, cert_id, keep_local=keep_local)
            report.files_left.update(retired.files_left)
            (report.certificates if retired.deleted else report.already_gone).append(cert_id)
        delete_thing(ctx, serial)
    return report


@dataclass
class DeleteReport:
    """What ``things delete`` did with each of the button's recorded certificates."""

    serial: str
    certificates: list[str] = field(default_factory=list)  # deleted in AWS by this command
    already_gone: list[str] = field(default_factory=list)  # recorded, but AWS had them no more
    certificates_left: dict[str, str] = field(default_factory=dict)  # id -> why it stays in AWS
    files_left: dict[str, str] = field(default_factory=dict)  # path -> why it is still there


def delete_thing(ctx: AppContext, serial: str) -> None:
    """DeleteThing, retried while AWS still sees a principal attached (detach is asynchronous).

    Only a thing that carries iotbutton's attribute is deleted; a recorded name that turns out
    to be someone else's thing is forgotten and left alone (:class:`NotOurs`)."""
    iot = ctx.client("iot")
    verdict = ownership.thing(ctx, serial)
    if verdict is None:
        ctx.namespace.remove(KIND, serial)
        return
    if not verdict:
        pending = (ctx.namespace.get(KIND, serial) or {}).get("pending")
        ctx.namespace.remove(KIND, serial)
        if pending:
            return  # our CreateThing never happened; the thing of that name is another's
        raise not_ours("thing", serial, "it has no createdBy=iotbutton-cli attribute")

    def attempt() -> None:
        deleted(iot.delete_thing, thingName=serial)

    retry_while(attempt, _thing_still_attached)
    ctx.namespace.remove(KIND, serial)


def _thing_still_attached(exc: BaseException) -> bool:
    return error_code(exc) == "InvalidRequestException" and "attached" in error_message(exc)
