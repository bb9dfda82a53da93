"""Options and helpers every command group shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from iotbutton_cli.cli.output import set_json_mode

if TYPE_CHECKING:
    from iotbutton_cli.context import AppContext

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
YesOption = Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")]
KeepLocalOption = Annotated[
    bool, typer.Option("--keep-local", help="Keep the local certificate and key files.")
]


def app_context(ctx: typer.Context, json: bool = False) -> AppContext:
    """The resolved global options; also switches error output to JSON when asked, and checks
    that iotbutton's folders can be trusted before the command touches a file."""
    from iotbutton_cli.context import AppContext  # not for --help: it brings the registry
    from iotbutton_cli.paths import check_home

    set_json_mode(json)
    check_home()
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj
