"""The ``iotbutton`` command: global options, the command groups, and error handling.

Group modules import only Typer and this package's light modules; boto3, Rich and friends load
inside the commands that need them, so ``iotbutton --help`` answers quickly.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from iotbutton_cli import __version__
from iotbutton_cli.cli import (
    certs,
    clean,
    demo,
    endpoint,
    notify,
    paths,
    rules,
    sandbox,
    sim,
    things,
)
from iotbutton_cli.context import AppContext, Settings, clean_error
from iotbutton_cli.errors import IotButtonError

INTERRUPTED = 130  # what shells report for Ctrl-C


class ErrorHandlingGroup(TyperGroup):
    """Turn every :class:`IotButtonError` (and botocore error) into one line and an exit status."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            from iotbutton_cli.cli.output import info

            info("Interrupted; everything created so far is recorded in the registry.")
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            error = clean_error(exc)  # None for Typer's own exits and for real bugs
            if error is None:
                raise
            root = ctx.find_root().obj
            if error.code == "unreachable" and isinstance(root, AppContext) and root.sandbox:
                error = IotButtonError(
                    "unreachable",
                    error.message.replace("Could not reach AWS", "Could not reach the sandbox"),
                    "Its process may have just died: run `iotbutton sandbox status`, then "
                    "`iotbutton sandbox start`.",
                )
            from iotbutton_cli.cli.output import render_error

            render_error(error)
            raise typer.Exit(int(error.exit_status)) from None


app = typer.Typer(
    name="iotbutton",
    cls=ErrorHandlingGroup,
    help="Wire an AWS IoT button to phone calls and SMS: provision, deploy, simulate, tear down.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(things.app, name="things")
app.add_typer(certs.app, name="certs")
app.add_typer(notify.app, name="notify")
app.add_typer(rules.app, name="rules")
app.command("endpoint")(endpoint.endpoint)
app.command("clean")(clean.clean)
app.command("paths")(paths.paths)
app.add_typer(sim.app, name="sim")
app.add_typer(sandbox.app, name="sandbox")
app.command("demo")(demo.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iotbutton {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    profile: Annotated[
        str | None, typer.Option("--profile", help="AWS profile (default: $AWS_PROFILE).")
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION)."),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--endpoint-url", help="Send AWS calls here, e.g. a moto server ($AWS_ENDPOINT_URL)."
        ),
    ] = None,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            envvar="IOTBUTTON_SANDBOX",
            help="Use the local offline sandbox instead of AWS (starts it if needed).",
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "-v",
            "--verbose",
            count=True,
            show_default=False,
            help="Log each AWS call to stderr; -vv adds botocore's debug log (secrets masked).",
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Global options go before the command: iotbutton --region eu-west-1 things list."""
    _configure_logging(verbose)
    ctx.obj = AppContext(Settings(profile, region, endpoint_url, verbose, sandbox))


def _configure_logging(verbose: int) -> None:
    if verbose or "iotbutton_cli.logsetup" in sys.modules:
        from iotbutton_cli import logsetup

        logsetup.configure(verbose)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
