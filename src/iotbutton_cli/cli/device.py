"""``iotbutton device``: real devices as buttons.

``export`` (here) writes what a device needs to connect; other commands of the group register on
``app`` from their own modules.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotbutton_cli.cli.common import JsonOption, command_context

if TYPE_CHECKING:
    from iotbutton_cli.cli.output import Output
    from iotbutton_cli.device.export import Exported

app = typer.Typer(
    help="Real devices as buttons: an AWS IoT button, an ESP32, MicroPython, a Raspberry Pi.",
    no_args_is_help=True,
)


class ExportFormat(str, enum.Enum):
    """device.export.FORMATS (tests/test_device_export.py checks they agree)."""

    files = "files"
    arduino = "arduino"
    micropython = "micropython"
    json = "json"


NEXT_STEPS = {
    "files": "Give the device these files; it connects to {where} as {client_id} and publishes "
    "to {topic} (docs/devices.md).",
    "arduino": "Put secrets.h next to your sketch, fill in WIFI_SSID and WIFI_PASSWORD, and "
    "flash the board (docs/devices.md, An ESP32).",
    "micropython": "Fill in WIFI_SSID and WIFI_PASSWORD in config.py, then copy it to the board, "
    "e.g. with mpremote cp config.py : (docs/devices.md, MicroPython).",
    "json": "Hand device.json to your provisioning tool; it connects to {where} as {client_id} "
    "and publishes to {topic} (docs/devices.md).",
}


@app.command("export")
def export(
    ctx: typer.Context,
    serial: Annotated[str, typer.Argument(help="The button's serial (its thing name).")],
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="What to write.")
    ] = ExportFormat.files,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Folder to write into, created 0700 (default: ./SERIAL).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace files the folder already holds.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Write what a device needs to connect as the button: endpoint, client id, topic, CA,
    certificate and private key (files 0600; the key is never printed)."""
    from iotbutton_cli.device import export as device_export

    app_ctx, out = command_context(ctx, json)
    exported = device_export.export(app_ctx, serial, format.value, folder, force=force)
    out.result(export_view(exported), human=lambda: _print_exported(out, exported))


def export_view(exported: Exported) -> dict[str, Any]:
    """What ``device export --json`` prints: where the files went, never what they hold."""
    bundle = exported.bundle
    return {
        "serial": bundle.serial,
        "format": exported.format,
        "folder": str(exported.folder),
        "files": [str(path) for path in exported.files],
        "endpoint": {"host": bundle.host, "port": bundle.port},
        "client_id": bundle.client_id,
        "topic": bundle.topic,
    }


def _print_exported(out: Output, exported: Exported) -> None:
    from rich.markup import escape

    bundle = exported.bundle
    count = len(exported.files)
    out.say(
        escape(
            f"Wrote {count} file{'' if count == 1 else 's'} for {bundle.serial} "
            f"({exported.format}) to {exported.folder}:"
        )
    )
    for path in exported.files:
        out.say("  " + escape(str(path)))
    where = f"{bundle.host}:{bundle.port}"
    step = NEXT_STEPS[exported.format].format(
        where=where, client_id=bundle.client_id, topic=bundle.topic
    )
    out.info(escape(f"Next: {step}"))
    they, them = ("It holds", "it") if count == 1 else ("They hold", "them")
    out.info(
        f"{they} the button's private key: keep {them} out of version control and delete "
        f"{them} once the device has {them}."
    )
    if bundle.certificate_status not in (None, "ACTIVE"):
        out.info(
            escape(
                f"The certificate is {bundle.certificate_status}: the endpoint refuses it. "
                f"`iotbutton certs rotate {bundle.serial}` issues a new one; export again then."
            )
        )


def _register_run() -> None:
    """``device run`` lives in its own module (cli/device_run.py); it joins the group here."""
    from iotbutton_cli.cli.device_run import run

    app.command("run")(run)


_register_run()
