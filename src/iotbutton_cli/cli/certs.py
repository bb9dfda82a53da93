"""``iotbutton certs``: list, show, rotate and revoke button certificates."""

from __future__ import annotations

from typing import Annotated

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, YesOption, command_context
from iotbutton_cli.cli.things import CsrOption, KeyTypeOption, device_csr_of

app = typer.Typer(help="Manage the buttons' X.509 certificates.", no_args_is_help=True)

SerialArgument = Annotated[str, typer.Argument(help="The button's serial (its thing name).")]


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """List every recorded certificate and the button it belongs to."""
    from iotbutton_cli.provisioning import certs

    app_ctx, out = command_context(ctx, json)
    rows = certs.list_certificates(app_ctx)

    def render() -> None:
        if not rows:
            out.info("No certificates yet. Create a button with `iotbutton things create`.")
            return
        out.table(
            None,
            ["certificate", "button", "status", "current", "created"],
            [
                [c.certificate_id[:12], c.serial, c.status, "yes" if c.current else "", c.created]
                for c in rows
            ],
        )

    out.result([views.certificate_view(c) for c in rows], human=render)


@app.command("show")
def show(ctx: typer.Context, serial: SerialArgument, json: JsonOption = False) -> None:
    """Show a button's current certificate, with its status as AWS sees it now."""
    from iotbutton_cli.provisioning import certs

    app_ctx, out = command_context(ctx, json)
    info = certs.show_certificate(app_ctx, serial)
    rows = [
        ["certificate", info.certificate_id],
        ["ARN", info.arn],
        ["button", info.serial],
        ["status (AWS)", info.status],
        ["created", info.created],
        *[[name.replace("_", " ") + " file", path] for name, path in info.files.items()],
    ]
    from iotbutton_cli.registry.keyfiles import key_on_device

    if key_on_device(info.files):
        rows.append(views.DEVICE_KEY_ROW)
    out.result(
        views.certificate_view(info), human=lambda: out.table(None, ["field", "value"], rows)
    )


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    serial: SerialArgument,
    key_type: KeyTypeOption = None,
    csr: CsrOption = None,
    json: JsonOption = False,
) -> None:
    """Issue a new certificate, attach it, then retire the old one (never certless)."""
    from iotbutton_cli.provisioning import certs

    app_ctx, out = command_context(ctx, json)
    device_csr = device_csr_of(csr, key_type)
    new_id, retired = certs.rotate_certificate(
        app_ctx, serial, key_type.value if key_type else None, device_csr
    )
    old = ", ".join(cert_id[:12] for cert_id in retired) or "none"

    def render() -> None:
        out.say(f"Button {serial} now uses certificate {new_id[:12]}; retired: {old}.")
        if device_csr is not None:
            path = certs.show_files(app_ctx, new_id).get("certificate")
            out.info(f"Give the device its new certificate: {path}.")

    out.result(views.certificate_rotated_view(serial, new_id, retired), human=render)


@app.command("revoke")
def revoke(
    ctx: typer.Context, serial: SerialArgument, yes: YesOption = False, json: JsonOption = False
) -> None:
    """Deactivate a button's certificate: the button can no longer connect."""
    from iotbutton_cli.provisioning import certs

    app_ctx, out = command_context(ctx, json)
    out.confirm(f"Deactivate the certificate of {serial}? The button will stop working.", yes)
    cert_id = certs.revoke_certificate(app_ctx, serial)
    out.result(
        views.certificate_revoked_view(serial, cert_id),
        human=lambda: out.say(
            f"Certificate {cert_id[:12]} of {serial} is INACTIVE. "
            f"`iotbutton certs rotate {serial}` issues a fresh one."
        ),
    )
