"""``iotbutton endpoint``: where buttons and MQTT tools connect."""

from __future__ import annotations

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, command_context


def endpoint(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the account's MQTT endpoint (iot:Data-ATS), port and CA file."""
    from iotbutton_cli.provisioning.endpoint import data_endpoint

    app_ctx, out = command_context(ctx, json)
    result = data_endpoint(app_ctx)
    out.result(
        views.endpoint_view(result),
        human=lambda: out.table(
            None, ["host", "port", "CA file"], [[result.host, result.port, result.ca_file]]
        ),
    )
