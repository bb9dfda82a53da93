"""The ``iotbutton`` command: global options, the command groups, and error handling.

Group modules import only Typer and this package's light modules; boto3, Rich and friends load
inside the commands that need them, so ``iotbutton --help`` answers quickly.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from iotbutton_cli import __version__
from iotbutton_cli.cli import (
    certs,
    clean,
    demo,
    device,
    endpoint,
    notify,
    paths,
    rules,
    sandbox,
    sim,
    things,
)
from iotbutton_cli.context import AppContext, Settings, clean_error
from iotbutton_cli.errors import ExitStatus, Interrupted, IotButtonError

INTERRUPTED = 130  # what shells report for Ctrl-C


class ErrorHandlingGroup(TyperGroup):
    """Turn every :class:`IotButtonError` (and botocore error, and failed file operation) into
    one line and an exit status; with ``--json``, usage errors too become a JSON error.

    Errors print through the command's :class:`~iotbutton_cli.cli.output.Output`, found in the
    click context's ``meta`` (shared by every context of one invocation). Usage errors come from
    click before any command has run, so :meth:`main` decides JSON from ``--json`` in argv."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return self._invoke(ctx)
        finally:
            _settle_registries()

    def _invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            from iotbutton_cli.cli.output import Output

            Output.of(ctx).error(_interrupted(interrupt, ctx.find_root().obj))
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            root = ctx.find_root().obj
            # None for Typer's own exits and for real bugs.
            error = clean_error(exc, root if isinstance(root, AppContext) else None)
            if error is None:
                raise
            from iotbutton_cli.cli.output import Output

            Output.of(ctx).error(error)
            raise typer.Exit(int(error.exit_status)) from None

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = hoist_global_options(list(sys.argv[1:] if args is None else args))
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_exceptions() as exc:
            _show_usage_error(exc, as_json="--json" in argv)
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write("Aborted.\n")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


# The global options as main_options declares them: name -> whether it takes a value.
GLOBAL_OPTIONS = {
    "--profile": True,
    "--region": True,
    "--endpoint-url": True,
    "--sandbox": False,
    "-v": False,
    "-vv": False,
    "-vvv": False,
    "--verbose": False,
    "--query": True,
    "--refresh": False,
}


def _settle_registries() -> None:
    """Write each registry this command changed whole, and drop its journal (see
    :mod:`iotbutton_cli.registry.store`), if the command loaded the registry at all."""
    store = sys.modules.get("iotbutton_cli.registry.store")
    if store is not None:
        store.Registry.settle_all()


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options given after the command (``iotbutton things create --sandbox``) to
    the front, where click looks for them, as the AWS CLI accepts them anywhere. No command
    has an option of the same name; ``--`` ends the options, as everywhere."""
    front: list[str] = []
    rest: list[str] = []
    seen_command = False
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            rest.extend(argv[index:])
            break
        name = word.split("=", 1)[0]
        if seen_command and name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name] and "=" not in word
            front.extend(argv[index : index + (2 if takes_value else 1)])
            index += 2 if takes_value else 1
            continue
        if not word.startswith("-"):
            if not seen_command and _is_option_value(rest):
                rest.append(word)
                index += 1
                continue
            seen_command = True
        rest.append(word)
        index += 1
    return front + rest


def _is_option_value(before: list[str]) -> bool:
    """Whether the word after ``before`` is the value of a global option given before the
    command (``--region eu-west-1 things list``), not the command."""
    if not before:
        return False
    last = before[-1]
    return GLOBAL_OPTIONS.get(last, False) is True


def _interrupted(interrupt: KeyboardInterrupt, root: Any) -> IotButtonError:
    """What a Ctrl-C leaves: the command's own account of it (``clean``: how far it got), or,
    for a command that had begun changing things, that what it made is recorded; otherwise
    just that it stopped."""
    if isinstance(interrupt, Interrupted):
        return interrupt.error
    if isinstance(root, AppContext) and root.began_changes:
        return IotButtonError(
            "interrupted",
            "Interrupted; everything created so far is recorded in the registry.",
            "Run the same command again to finish, or `iotbutton clean` to remove it.",
            ExitStatus.INTERRUPTED,
        )
    return IotButtonError(
        "interrupted",
        "Interrupted.",
        "Run the command again when you are ready.",
        ExitStatus.INTERRUPTED,
    )


def _click_exceptions() -> tuple[type[Any], ...]:
    """Click's exception base: Typer now carries its own copy of click, older ones use click."""
    found: list[type[Any]] = []
    try:
        from typer._click.exceptions import ClickException as Vendored

        found.append(Vendored)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException as Original

        found.append(Original)
    except ImportError:
        pass
    return tuple(found)


def _show_usage_error(exc: Any, as_json: bool) -> None:
    """Click's own message, or with ``--json`` the same as a JSON error on stdout."""
    if not as_json:
        exc.show()
        return
    from iotbutton_cli.cli.output import Output

    command = getattr(getattr(exc, "ctx", None), "command_path", None) or "iotbutton"
    Output(json_mode=True).error(
        IotButtonError("usage", exc.format_message(), f"See `{command} --help`.", ExitStatus.USAGE)
    )


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
app.add_typer(device.app, name="device")
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
    query: Annotated[
        str | None,
        typer.Option(
            "--query",
            metavar="JMESPATH",
            help="With --json: print only what this JMESPath expression selects, as the AWS "
            "CLI's --query.",
        ),
    ] = None,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Ask AWS again which account the credentials belong to (remembered per key).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Global options go before the command (iotbutton --region eu-west-1 things list) or
    after it."""
    _configure_logging(verbose)
    source = ctx.get_parameter_source("sandbox")
    from_env = sandbox and getattr(source, "name", "") == "ENVIRONMENT"
    settings = Settings(profile, region, endpoint_url, verbose, sandbox, from_env, query, refresh)
    ctx.obj = AppContext(settings, notice=_notice)


def _notice(line: str) -> None:
    """A line that is no command's result (such as "Started the sandbox"): stderr, always."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _configure_logging(verbose: int) -> None:
    if verbose or "iotbutton_cli.logsetup" in sys.modules:
        from iotbutton_cli import logsetup

        logsetup.configure(verbose)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
