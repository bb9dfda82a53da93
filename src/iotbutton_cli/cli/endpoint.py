"""``iotbutton endpoint``: where buttons and MQTT tools connect."""

from __future__ import annotations

import typer

from iotbutton_cli.cli import output
from iotbutton_cli.cli.common import JsonOption, app_context


def endpoint(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the account's MQTT endpoint (iot:Data-ATS), port and CA file."""
    from iotbutton_cli.provisioning.endpoint import data_endpoint

    result = data_endpoint(app_context(ctx, json))
    if json:
        output.emit_json(result)
    else:
        output.table(
            None, ["host", "port", "CA file"], [[result.host, result.port, result.ca_file]]
        )
