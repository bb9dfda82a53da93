"""``iotbutton things``: provision, list, show and delete buttons."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, KeepLocalOption, YesOption, command_context
from iotbutton_cli.errors import ExitStatus

if TYPE_CHECKING:
    from iotbutton_cli.cli.output import Output
    from iotbutton_cli.notify.shadow_grant import Refreshed
    from iotbutton_cli.provisioning.shadows import ShadowReading

app = typer.Typer(
    help="Provision and manage buttons (IoT things with their certificates).", no_args_is_help=True
)

SerialArgument = Annotated[str, typer.Argument(help="The button's serial (its thing name).")]


class KeyType(str, enum.Enum):
    """provisioning.devicekeys.KEY_TYPES (tests/test_device_keys.py checks they agree)."""

    rsa = "rsa"
    ec = "ec"


KeyTypeOption = Annotated[
    KeyType | None,
    typer.Option(
        "--key-type", help="Key to make here: rsa (RSA-2048, the default) or ec (EC P-256)."
    ),
]
CsrOption = Annotated[
    Path | None,
    typer.Option(
        "--csr",
        exists=True,
        dir_okay=False,
        readable=True,
        help="The device's own CSR (PEM): sign its key; no private key is stored here.",
    ),
]


@app.command("create")
def create(
    ctx: typer.Context,
    serial: Annotated[
        str | None, typer.Argument(help="Serial, e.g. G030JF0553648RUH; omit to generate one.")
    ] = None,
    count: Annotated[
        int, typer.Option("--count", "-n", help="Generate and provision N buttons.")
    ] = 1,
    thing_type: Annotated[str, typer.Option("--type", help="Thing type for the buttons.")] = (
        "iotbutton"
    ),
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=32, help="Buttons provisioned at once.")
    ] = 8,
    key_type: KeyTypeOption = None,
    csr: CsrOption = None,
    json: JsonOption = False,
) -> None:
    """Create buttons: thing, certificate and keys, policy; re-running changes nothing."""
    from iotbutton_cli.provisioning import things
    from iotbutton_cli.provisioning.serials import resolve_serials

    app_ctx, out = command_context(ctx, json)
    serials = resolve_serials(serial, count)
    device_csr = device_csr_of(csr, key_type)
    with out.progress() as bar:
        task = bar.add_task("Provisioning buttons", total=len(serials))
        report = things.provision(
            app_ctx,
            serials,
            thing_type=thing_type,
            workers=workers,
            on_done=lambda result: bar.advance(task),
            finish_half_done=serial is None,
            key_type=key_type.value if key_type else "rsa",
            device_csr=device_csr,
        )
    made = any(button.action != "failed" for button in report.buttons)
    granted = _refresh_shadow_grant(app_ctx) if made else None

    def render() -> None:
        columns = ["serial", "result", "certificate"]
        rows = [[b.serial, b.action, (b.certificate_id or "")[:12]] for b in report.buttons]
        if report.failed:
            columns.append("error")
            for row, button in zip(rows, report.buttons, strict=True):
                row.append((button.error or {}).get("message", ""))
        out.table(None, columns, rows)
        for button in report.buttons:
            if button.key_on_device and button.certificate_file:
                out.info(
                    f"The certificate of {button.serial} for its device: "
                    f"{button.certificate_file} (the private key stays on the device)."
                )
        if report.resumed:
            done = len(report.resumed)
            out.info(f"Finished {done} half-done button{_s(done)} from an earlier run.")
        changed = [b for b in report.buttons if b.action != "unchanged"]
        if not changed:
            out.info("Nothing to do: every button already exists.")
        if report.half_done_left:
            left = report.half_done_left
            out.info(
                f"{left} button{'s are' if left != 1 else ' is'} still half done (HALF-DONE in "
                f"`iotbutton things list`); `iotbutton things create --count {left}` finishes "
                f"{'them' if left != 1 else 'it'}."
            )
        _say_shadow_grant(out, granted)

    out.result(views.provision_report_view(report), human=render)
    if report.failed:
        raise typer.Exit(int(ExitStatus.FAILED))


def device_csr_of(csr: Path | None, key_type: KeyType | None) -> Any:
    """The device's checked CSR (``bad-csr`` for a bad one), or None without ``--csr``."""
    if csr is None:
        return None
    from iotbutton_cli.errors import usage_error
    from iotbutton_cli.provisioning.devicekeys import read_device_csr

    if key_type is not None:
        raise usage_error(
            "csr-and-key-type",
            "--csr and --key-type cannot be combined: with a CSR the device made its key.",
            "Drop --key-type (the CSR's key is used as it is).",
        )
    return read_device_csr(csr)


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the buttons recorded for this account and region, with each one's last click and
    battery (from its shadow)."""
    from iotbutton_cli.provisioning import shadows, things

    app_ctx, out = command_context(ctx, json)
    buttons = things.list_buttons(app_ctx)
    with out.progress() as bar:
        task = bar.add_task("Reading shadows", total=len(buttons))
        readings = shadows.read_last_clicks(
            app_ctx, [b.serial for b in buttons], on_done=lambda serial: bar.advance(task)
        )

    def render() -> None:
        from rich.markup import escape

        if not buttons:
            out.info("No buttons yet. Create one with `iotbutton things create`.")
            return
        rows = [
            [
                b.serial,
                (b.certificate_id or "-")[:12],
                "HALF-DONE" if b.half_done else b.certificate_status or "-",
                _files_state(b.files),
                escape(_last_click_text(readings.get(b.serial))),
                escape(_battery_text(readings.get(b.serial))),
            ]
            for b in buttons
        ]
        # When each was created is in --json and `things show`: the last click matters more.
        columns = ["serial", "certificate", "status", "files", "last click", "battery"]
        out.table(None, columns, rows)
        if any(b.half_done for b in buttons):
            out.info(
                "HALF-DONE: an interrupted run left the button unfinished; "
                "`iotbutton things create SERIAL` (or --count N) finishes it."
            )
        unreadable = [r.error for r in readings.values() if r.error]
        if unreadable:
            out.info(
                f"{len(unreadable)} shadow{_s(len(unreadable))} could not be read "
                f"({unreadable[0]}); their last click shows -."
            )

    out.result([views.button_view(b, readings.get(b.serial)) for b in buttons], human=render)


@app.command("show")
def show(ctx: typer.Context, serial: SerialArgument, json: JsonOption = False) -> None:
    """Show a button: its thing, certificate status (asked of AWS), file paths, and its last
    click and battery (from its shadow)."""
    from iotbutton_cli.provisioning import shadows, things

    app_ctx, out = command_context(ctx, json)
    button, live = things.show_button(app_ctx, serial)
    reading = shadows.read_last_click(app_ctx, serial)
    out.result(
        views.button_detail_view(button, live, reading),
        human=lambda: _print_button(out, button, live, reading),
    )


def _print_button(out: Output, button: Any, live: dict[str, Any], reading: ShadowReading) -> None:
    from rich.markup import escape

    from iotbutton_cli.registry.keyfiles import key_on_device

    state = (
        f"HALF-DONE (`iotbutton things create {button.serial}` finishes it)"
        if button.half_done
        else "complete"
    )
    files = [[name.replace("_", " ") + " file", path] for name, path in button.files.items()]
    if key_on_device(button.files):
        files.append(views.DEVICE_KEY_ROW)
    rows: list[list[Any]] = [
        ["serial", button.serial],
        ["state", state],
        ["thing ARN", button.thing_arn],
        ["thing type", button.thing_type],
        ["in AWS", "yes" if live["exists"] else "NO (deleted outside iotbutton?)"],
        ["certificate", button.certificate_id],
        ["certificate status", button.certificate_status],
        ["created", button.created],
        *(files or [["key files", None]]),
        ["root CA", button.root_ca],
        ["last click", escape(_last_click_detail(reading))],
        ["battery", escape(_battery_text(reading))],
    ]
    # Nothing recorded shows as "none", never as a blank cell that looks like a display fault.
    out.table(None, ["field", "value"], [[name, value or "none"] for name, value in rows])


@app.command("delete")
def delete(
    ctx: typer.Context,
    serial: SerialArgument,
    keep_local: KeepLocalOption = False,
    yes: YesOption = False,
    json: JsonOption = False,
) -> None:
    """Delete a button: detach, deactivate and delete its certificates, then the thing."""
    from iotbutton_cli.provisioning import things

    app_ctx, out = command_context(ctx, json)
    out.confirm(f"Delete button {serial} and its certificates?", yes)
    report = things.delete_button(app_ctx, serial, keep_local=keep_local)
    granted = _refresh_shadow_grant(app_ctx)

    def render() -> None:
        deleted = len(report.certificates)
        if deleted:
            out.say(f"Deleted button {serial} and {deleted} certificate{_s(deleted)}.")
        else:
            out.say(f"Deleted button {serial}; it had no certificate to delete.")
        if report.already_gone:
            gone = len(report.already_gone)
            out.info(
                f"{gone} recorded certificate{_s(gone)} {'was' if gone == 1 else 'were'} already "
                "gone from AWS; the registry no longer lists "
                f"{'it' if gone == 1 else 'them'}."
            )
        for cert_id, why in report.certificates_left.items():
            out.info(f"Left certificate {cert_id[:12]}… in AWS: {why}.")
        for reason in report.files_left.values():
            out.info(f"Left on disk: {reason}. `iotbutton clean` tries again.")
        _say_shadow_grant(out, granted)

    out.result(views.button_deleted_view(serial, report), human=render)
    if report.files_left:
        raise typer.Exit(int(ExitStatus.PARTIAL))


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _files_state(files: dict[str, str]) -> str:
    """'ok' when the certificate and both keys are on disk (paths: `things show`); 'device'
    when the private key is on the device and the certificate and public key are here."""
    if not files:
        return "none"
    from iotbutton_cli.errors import IotButtonError
    from iotbutton_cli.registry.keyfiles import KeyFiles

    key_files = KeyFiles(**files)
    try:
        if not key_files.complete():
            return "MISSING"
    except IotButtonError:
        return "UNREADABLE"
    return "device" if key_files.key_on_device else "ok"


def _refresh_shadow_grant(app_ctx: Any) -> Refreshed | None:
    """Buttons came or went: the deployed notifier's role names the buttons' things now. With
    no role recorded here there is no notifier to update, and its modules (0.13 s to import)
    stay unloaded."""
    from iotbutton_cli.registry import kinds

    if not app_ctx.namespace.items(kinds.ROLES):
        return None
    from iotbutton_cli.notify import shadow_grant

    return shadow_grant.refresh(app_ctx)


def _say_shadow_grant(out: Output, granted: Refreshed | None) -> None:
    if granted is None:
        return
    if granted.error:
        out.info(
            f"Could not update the notifier's role for the buttons' shadows: {granted.error} "
            "`iotbutton notify deploy` tries again; the clicks themselves are not affected."
        )
    if granted.left_out:
        left = len(granted.left_out)
        out.info(
            f"The clicks of {left} button{_s(left)} are not written to "
            f"{'their shadows' if left != 1 else 'its shadow'}: the notifier's role names as "
            "many things as IAM's 10,240-character limit for a role's policy allows "
            "(docs/notifier.md, The thing shadow)."
        )


def _last_click_text(reading: ShadowReading | None) -> str:
    """``SINGLE sent 2026-11-21 23:04 UTC``, or ``-`` (never clicked, or unreadable)."""
    click = reading.last_click if reading else None
    if click is None:
        return "-"
    when = _minute(click.time)
    return " ".join(part for part in (click.type, click.outcome, when) if part) or "-"


def _last_click_detail(reading: ShadowReading) -> str:
    if reading.error:
        return f"- (could not read the shadow: {reading.error})"
    click = reading.last_click
    if click is None:
        return "-"
    detail = f"{click.type or '?'} at {_minute(click.time) or '?'}: {click.outcome or '?'}"
    return f"{detail} (alarm {click.alarm})" if click.alarm else detail


def _battery_text(reading: ShadowReading | None) -> str:
    click = reading.last_click if reading else None
    return (click.battery if click else None) or "-"


def _minute(time: str | None) -> str | None:
    """``2026-11-21T23:04:00.123Z`` as the messages tell it: ``2026-11-21 23:04 UTC``."""
    from datetime import datetime, timezone

    if not time:
        return None
    try:
        moment = datetime.fromisoformat(time.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            return time
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError):
        return time  # whatever else wrote the shadow
