"""``iotbutton paths``: where iotbutton keeps its files, so people can back up or inspect them."""

from __future__ import annotations

import typer

from iotbutton_cli.cli import output
from iotbutton_cli.cli.common import JsonOption, app_context


def paths(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the registry, key, config and cache locations ($IOTBUTTON_HOME overrides them)."""
    from iotbutton_cli import paths as dirs
    from iotbutton_cli.registry.store import default_path

    app_context(ctx, json)
    result = {
        "registry": str(default_path()),
        "keys": str(dirs.data_dir() / "keys"),
        "config": str(dirs.config_dir()),
        "cache": str(dirs.cache_dir()),
        "state": str(dirs.state_dir()),
    }
    if json:
        output.emit_json(result)
    else:
        output.table(None, ["what", "where"], [[k, v] for k, v in result.items()])
