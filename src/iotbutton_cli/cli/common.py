"""Options and helpers every command group shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from iotbutton_cli.cli.output import Output

if TYPE_CHECKING:
    from iotbutton_cli.context import AppContext

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
YesOption = Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")]
KeepLocalOption = Annotated[
    bool, typer.Option("--keep-local", help="Keep the local certificate and key files.")
]


def command_context(ctx: typer.Context, json: bool = False) -> tuple[AppContext, Output]:
    """The resolved global options and this command's :class:`Output`.

    The Output is made first and attached to the click context, so every error from here on
    (the folder check below included) prints as JSON with ``--json``; then iotbutton's folders
    are checked before the command touches a file."""
    from iotbutton_cli.context import AppContext  # not for --help: it brings the registry
    from iotbutton_cli.paths import check_home

    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    settings = root.obj.settings
    out = Output(json, sandbox_flag=settings.sandbox_flag_needed).attach(ctx)
    if settings.query is not None:
        from iotbutton_cli.cli.query import compile_query

        out.query = compile_query(settings.query, json)
    check_home()
    return root.obj, out


def app_context(ctx: typer.Context, json: bool = False) -> AppContext:
    """:func:`command_context` for code that needs no Output of its own (errors still print as
    JSON with ``--json``)."""
    return command_context(ctx, json)[0]
