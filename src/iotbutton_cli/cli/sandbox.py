"""``iotbutton sandbox``: the offline stand-in for AWS IoT, Lambda and Twilio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, command_context

if TYPE_CHECKING:
    from iotbutton_cli.cli.output import Output

app = typer.Typer(
    help="Run AWS IoT, Lambda and Twilio offline on this machine (no account needed).",
    no_args_is_help=True,
)


@app.command("start")
def start(
    ctx: typer.Context,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Run here until Ctrl-C, logging to stderr.")
    ] = False,
    aws_port: Annotated[
        int, typer.Option("--aws-port", min=0, max=65535, help="AWS API port (0: any free one).")
    ] = 0,
    mqtt_port: Annotated[
        int, typer.Option("--mqtt-port", min=0, max=65535, help="MQTT/TLS port (0: any free one).")
    ] = 0,
    twilio_port: Annotated[
        int, typer.Option("--twilio-port", min=0, max=65535, help="Twilio stand-in port (0: any).")
    ] = 0,
    json: JsonOption = False,
) -> None:
    """Start the sandbox in the background (or in the foreground) on loopback."""
    from iotbutton_cli.sandbox import client as sandbox_control

    app_ctx, out = command_context(ctx, json)
    if foreground:
        _run_in_foreground(aws_port, mqtt_port, twilio_port, app_ctx.settings.verbose > 0)
        return
    result = sandbox_control.start(
        aws_port, mqtt_port, twilio_port, verbose=app_ctx.settings.verbose > 0
    )
    info = result.info

    def render() -> None:
        state = "Started the sandbox" if result.started else "The sandbox is already running"
        out.say(f"{state} (pid {info.pid}).")
        if result.forgotten:
            out.say(result.forgotten_line())
        _print_status(out, info)

    out.result(views.sandbox_started_view(result), human=render)


def _run_in_foreground(aws_port: int, mqtt_port: int, twilio_port: int, verbose: bool) -> None:
    from iotbutton_cli.errors import IotButtonError
    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox import server
    from iotbutton_cli.sandbox.protocol import server_args

    current = sandbox_control.running()
    if current is not None:
        raise IotButtonError(
            "sandbox-running",
            f"The sandbox is already running in the background (pid {current.pid}).",
            "Stop it first with `iotbutton sandbox stop`.",
        )
    args = server_args(sandbox_control.sandbox_dir(), aws_port, mqtt_port, twilio_port, verbose)
    status = server.main(args)
    if status:
        raise typer.Exit(status)


@app.command("stop")
def stop(ctx: typer.Context, json: JsonOption = False) -> None:
    """Stop the sandbox (its AWS state is lost; the registry's sandbox namespace is emptied)."""
    from iotbutton_cli.sandbox import client as sandbox_control

    _, out = command_context(ctx, json)
    stopped = sandbox_control.stop_and_forget()
    found, forgotten = stopped.found, stopped.forgotten_records
    info = found.info

    def render() -> None:
        if info is not None:
            out.say(f"Stopped the sandbox (pid {info.pid}).")
        elif found.stale_pid is not None:
            out.say(f"The sandbox is not running. {_stale_note(found.stale_pid)}")
        else:
            out.say("The sandbox is not running.")

    out.result(views.sandbox_stopped_view(info, found.stale_pid, forgotten), human=render)


@app.command("status")
def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show whether the sandbox runs, and where its AWS, MQTT and Twilio endpoints are."""
    from iotbutton_cli.errors import ExitStatus
    from iotbutton_cli.sandbox import client as sandbox_control

    _, out = command_context(ctx, json)
    found = sandbox_control.find()
    info = found.info

    def render() -> None:
        if info is not None:
            out.say(f"The sandbox is running (pid {info.pid}).")
            _print_status(out, info)
        elif found.stale_pid is not None:
            out.say(
                f"The sandbox is not running. {_stale_note(found.stale_pid)} "
                "Start it with `iotbutton sandbox start`."
            )
        else:
            out.say("The sandbox is not running. Start it with `iotbutton sandbox start`.")

    out.result(views.sandbox_status_view(info, found.stale_pid), human=render)
    if info is None:
        raise typer.Exit(int(ExitStatus.FAILED))


def _stale_note(pid: int) -> str:
    return (
        f"Its state file was stale: pid {pid} now belongs to another process, which was left "
        "alone. Removed the state file."
    )


@app.command("env")
def env(ctx: typer.Context, json: JsonOption = False) -> None:
    """Print shell lines that point AWS tools at the sandbox (use with eval)."""
    import shlex

    from iotbutton_cli.sandbox import client as sandbox_control

    _, out = command_context(ctx, json)
    variables = sandbox_control.aws_environment()

    def render() -> None:
        for name, value in variables.items():
            typer.echo(f"export {name}={shlex.quote(value)}")
        typer.echo("unset " + " ".join(sandbox_control.UNSET_FOR_SANDBOX))

    out.result(views.environment_view(variables), human=render)


def _print_status(out: Output, info: Any) -> None:
    out.table(
        None,
        ["service", "where"],
        [
            ["AWS API (moto)", info.aws_url],
            ["AWS access key id", info.access_key_id],
            ["MQTT over TLS", f"{info.mqtt_host}:{info.mqtt_port}"],
            ["CA file for devices", info.ca_file],
            ["Twilio stand-in", info.twilio_url],
            ["region / account", f"{info.region} / {info.account}"],
        ],
    )
    out.info("Use it: `iotbutton --sandbox things create` (or set IOTBUTTON_SANDBOX=1).")
    out.info('Other AWS tools: eval "$(iotbutton sandbox env)" (it prints the secret key).')


@app.command("outbox")
def outbox(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones.")] = False,
    wait: Annotated[
        int | None,
        typer.Option("--wait", min=1, help="First wait until it holds N entries."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="How long --wait waits, in seconds.")
    ] = 30.0,
    json: JsonOption = False,
) -> None:
    """Show the SMS and calls the Twilio stand-in received (with --json: one list)."""
    import time

    from iotbutton_cli.sandbox import client as sandbox_control

    _, out = command_context(ctx, json)
    if wait is not None:
        from iotbutton_cli.sandbox import outbox as sandbox_outbox

        entries = sandbox_outbox.wait_for(wait, timeout=timeout)
    else:
        entries = sandbox_control.outbox()
    if out.json and not follow:
        out.write_json(views.outbox_view(entries))
        return
    for entry in views.outbox_view(entries):
        _print_entry(out, entry)
    if not follow:
        if not entries:
            out.info("The outbox is empty: no SMS or call yet.")
        return
    shown = len(entries)
    try:
        # Always on stderr, --json too: a script can wait for this line, as for `sim
        # subscribe`'s; said inside the try, so a Ctrl-C the moment it is read still stops.
        out.stderr_console().print("Following the outbox (Ctrl-C to stop)…", highlight=False)
        while True:
            time.sleep(0.5)
            entries = sandbox_control.outbox()
            for entry in views.outbox_view(entries[shown:]):
                _print_entry(out, entry)
            shown = len(entries)
    except KeyboardInterrupt:
        out.info("Stopped.")  # following only reads: nothing to finish, nothing to record


def _print_entry(out: Output, entry: dict[str, Any]) -> None:
    if out.json:
        out.json_line(entry)
        return
    if entry.get("kind") == "callback":  # a status callback the stand-in made
        answer = entry.get("http_status") or f"no answer ({entry.get('error', '?')})"
        status = entry.get("status", "?")
        if entry.get("event") not in (None, status):  # a call's event names what it reports
            status = f"{entry['event']}: {status}"
        typer.echo(
            f"{entry.get('time', '')}  CALLBACK {entry.get('sid', '?')} {status} -> {answer} "
            f"{entry.get('method', '')} {entry.get('url', '')}"
        )
        return
    fields = entry.get("fields", {})
    what = fields.get("Body") or fields.get("Twiml") or ""
    kind = "SMS " if entry.get("resource") == "Messages" else "CALL"
    answer = entry.get("status") or entry.get("error", {}).get("code")
    typer.echo(
        f"{entry.get('time', '')}  {kind} {fields.get('From', '?')} -> "
        f"{fields.get('To', '?')} [{answer}] {what}"
    )
