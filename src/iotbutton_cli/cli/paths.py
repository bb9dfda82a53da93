"""``iotbutton paths``: where iotbutton keeps its files, so people can back up or inspect them."""

from __future__ import annotations

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, command_context


def paths(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the registry, key, config and cache locations ($IOTBUTTON_HOME overrides them)."""
    from iotbutton_cli import paths as dirs
    from iotbutton_cli.registry.store import default_path

    _, out = command_context(ctx, json)
    result = views.paths_view(
        registry=default_path(),
        keys=dirs.data_dir() / "keys",
        config=dirs.config_dir(),
        cache=dirs.cache_dir(),
        state=dirs.state_dir(),
    )
    out.result(
        result,
        human=lambda: out.table(None, ["what", "where"], [[k, v] for k, v in result.items()]),
    )
