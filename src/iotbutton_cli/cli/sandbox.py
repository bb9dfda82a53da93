"""``iotbutton sandbox``: the offline stand-in for AWS IoT, Lambda, Twilio and webhooks."""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, command_context

if TYPE_CHECKING:
    from collections.abc import Callable

    from iotbutton_cli.cli.output import Output
    from iotbutton_cli.errors import IotButtonError
    from iotbutton_cli.sandbox.twilio_phones import PhoneBehaviour
    from iotbutton_cli.sandbox.webhook_sink import Controls


class SmsOutcome(str, enum.Enum):
    """twilio_phones.SMS_OUTCOMES (tests/sandbox/test_phones_standin.py checks they agree)."""

    delivered = "delivered"
    undelivered = "undelivered"
    failed = "failed"


class CallOutcome(str, enum.Enum):
    """twilio_phones.CALL_OUTCOMES."""

    completed = "completed"
    hangup = "hangup"
    no_answer = "no-answer"
    busy = "busy"
    failed = "failed"
    machine = "machine"


E164 = re.compile(r"\+[1-9][0-9]{1,14}")  # [0-9], not \d: no other scripts' digits
KEYS = re.compile(r"[0-9*#]{0,32}")  # twilio_phones.KEYPAD, MAX_PRESS_CHARS
TIME_SCALE_ENV = "IOTBUTTON_SANDBOX_TIME_SCALE"

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
    hooks_port: Annotated[
        int, typer.Option("--hooks-port", min=0, max=65535, help="Webhook sink port (0: any).")
    ] = 0,
    time_scale: Annotated[
        str | None,
        typer.Option(
            "--time-scale",
            envvar=TIME_SCALE_ENV,
            metavar="F",
            help="Multiply the Twilio stand-in's call timings by F, 0 < F <= 1 (default 0.05).",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Start the sandbox in the background (or in the foreground) on loopback."""
    from iotbutton_cli.sandbox import client as sandbox_control

    app_ctx, out = command_context(ctx, json)
    scale = _time_scale(time_scale)
    verbose = app_ctx.settings.verbose > 0
    if foreground:
        _run_in_foreground(aws_port, mqtt_port, twilio_port, verbose, scale, hooks_port)
        return
    result = sandbox_control.start(
        aws_port, mqtt_port, twilio_port, verbose=verbose, time_scale=scale, hooks_port=hooks_port
    )
    info = result.info

    if not result.started and scale is not None and scale != info.time_scale:
        out.info(
            f"The running sandbox keeps its time scale {info.time_scale:g}, not {scale:g}: "
            "`iotbutton sandbox stop` first to change it."
        )

    def render() -> None:
        state = "Started the sandbox" if result.started else "The sandbox is already running"
        out.say(f"{state} (pid {info.pid}).")
        if result.forgotten:
            out.say(result.forgotten_line())
        _print_status(out, info)

    out.result(_with_time_scale(views.sandbox_started_view(result), info), human=render)


def _time_scale(given: str | None) -> float | None:
    """``--time-scale`` (or its variable) as a number in (0, 1]; None when not given."""
    import math

    from iotbutton_cli.errors import usage_error

    if given is None or given == "":
        return None
    try:
        scale = float(given)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and 0 < scale <= 1):
        shown = repr(given) if len(given) <= 40 else repr(given[:40]) + "…"
        raise usage_error(
            "sandbox-bad-time-scale",
            f"--time-scale (or {TIME_SCALE_ENV}) {shown} is not a number > 0 and <= 1.",
            "Give a fraction of real time, e.g. `--time-scale 0.05` (a 30 s ring takes 1.5 s) "
            "or 1 for real time.",
        )
    return scale


def _with_time_scale(view: dict[str, Any], info: Any) -> dict[str, Any]:
    """The Twilio stand-in's time scale, after the sandbox's other facts."""
    if info is not None:
        view["time_scale"] = info.time_scale
    return view


def _run_in_foreground(
    aws_port: int,
    mqtt_port: int,
    twilio_port: int,
    verbose: bool,
    time_scale: float | None,
    hooks_port: int,
) -> None:
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
    args = server_args(
        sandbox_control.sandbox_dir(),
        aws_port,
        mqtt_port,
        twilio_port,
        verbose,
        time_scale,
        hooks_port,
    )
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
    phones_left = sandbox_control.reset_phones()  # every number is on again in the next one
    if phones_left:
        out.info(f"Warning: the phone table was left: {phones_left}")
    hooks_left = sandbox_control.reset_hook_controls()  # every name answers as usual again
    if hooks_left:
        out.info(f"Warning: the webhook sink's controls were left: {hooks_left}")

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
    """Show whether the sandbox runs, and where its AWS, MQTT, Twilio and webhook endpoints
    are."""
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

    view = _with_time_scale(views.sandbox_status_view(info, found.stale_pid), info)
    out.result(view, human=render)
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
    scale = info.time_scale
    out.table(
        None,
        ["service", "where"],
        [
            ["AWS API (moto)", info.aws_url],
            ["AWS access key id", info.access_key_id],
            ["MQTT over TLS", f"{info.mqtt_host}:{info.mqtt_port}"],
            ["CA file for devices", info.ca_file],
            ["Twilio stand-in", info.twilio_url],
            ["Twilio time scale", f"{scale:g} (a 30 s ring takes {30 * scale:g} s)"],
            ["Webhook sink", info.hooks_url or "none (an older sandbox: restart it)"],
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
    """Show what the Twilio stand-in and the webhook sink received (with --json: one list)."""
    import time

    from iotbutton_cli.sandbox import client as sandbox_control

    _, out = command_context(ctx, json)
    info = sandbox_control.require_running()
    if wait is not None:
        from iotbutton_cli.sandbox import outbox as sandbox_outbox

        entries = sandbox_outbox.wait_for(wait, timeout=timeout, info=info)
    else:
        entries = sandbox_control.outbox(info)
    hooks = sandbox_control.hooks(info)
    if out.json and not follow:
        out.write_json(views.outbox_view(entries, hooks))
        return
    for entry in views.outbox_view(entries, hooks):
        _print_entry(out, entry)
    if not follow:
        if not entries and not hooks:
            out.info("The outbox is empty: no SMS, call or webhook post yet.")
        return
    shown, last_seq = len(entries), _last_seq(hooks)
    try:
        # Always on stderr, --json too: a script can wait for this line, as for `sim
        # subscribe`'s; said inside the try, so a Ctrl-C the moment it is read still stops.
        out.stderr_console().print("Following the outbox (Ctrl-C to stop)…", highlight=False)
        while True:
            time.sleep(0.5)
            info = sandbox_control.require_running()
            entries = sandbox_control.outbox(info)
            hooks = [hook for hook in sandbox_control.hooks(info) if hook["seq"] > last_seq]
            for entry in views.outbox_view(entries[shown:], hooks):
                _print_entry(out, entry)
            shown, last_seq = len(entries), max(last_seq, _last_seq(hooks))
    except KeyboardInterrupt:
        out.info("Stopped.")  # following only reads: nothing to finish, nothing to record


def _last_seq(hooks: list[dict[str, Any]]) -> int:
    return int(hooks[-1]["seq"]) if hooks else 0


SINK_LABELS = {"webhook": "HOOK ", "slack": "SLACK", "oauth-token": "TOKEN"}
BODY_SHOWN = 120  # characters of a webhook's body on its line


def _print_sink_entry(entry: dict[str, Any]) -> None:
    """``<time>  HOOK  crm [200, bearer issued] {"clickType": "SINGLE", ...}``."""
    kind = str(entry.get("kind"))
    notes = [str(entry.get("http_status", "?"))]
    if entry.get("forced"):
        notes.append("set by sandbox hook")
    if entry.get("bearer"):
        notes.append(f"bearer {entry['bearer']}")
    if kind == "oauth-token":
        who = entry.get("client_id") or "?"
        what = f"grant_type={entry.get('grant_type')}"
        what += f" scope={entry['scope']}" if entry.get("scope") else ""
    else:
        who = entry.get("name") or "?"
        what = " ".join(str(entry.get("body", "")).split())
        what = what if len(what) <= BODY_SHOWN else what[: BODY_SHOWN - 1] + "…"
    line = f"{entry.get('time', '')}  {SINK_LABELS[kind]} {who} [{', '.join(notes)}] {what}"
    typer.echo("".join(c if c.isprintable() else "?" for c in line.rstrip()))


def _print_entry(out: Output, entry: dict[str, Any]) -> None:
    if out.json:
        out.json_line(entry)
        return
    if entry.get("kind") in SINK_LABELS:  # what the webhook sink received
        _print_sink_entry(entry)
        return
    if entry.get("kind") == "callback":  # a status callback (or a Gather's request) it made
        answer = entry.get("http_status") or f"no answer ({entry.get('error', '?')})"
        status = entry.get("status", "?")
        if entry.get("event") == "gather":
            status = f"gather: pressed {entry.get('digits') or 'nothing'}"
        elif entry.get("event") not in (None, status):  # a call's event names what it reports
            status = f"{entry['event']}: {status}"
        typer.echo(
            f"{entry.get('time', '')}  CALLBACK {entry.get('sid', '?')} {status} -> {answer} "
            f"{entry.get('method', '')} {entry.get('url', '')}"
        )
        return
    if entry.get("kind") == "sns":  # what SNS would have brought a person
        subject = f"[{entry['subject']}] " if entry.get("subject") else ""
        body = " ".join(str(entry.get("body", "")).split())
        typer.echo(
            f"{entry.get('time', '')}  SNS  {entry.get('protocol', '?')} -> "
            f"{entry.get('to', '?')}: {subject}{body}"
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


@app.command("phone")
def phone(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="The phone number, in E.164 (+15551230001).")],
    sms: Annotated[
        SmsOutcome | None, typer.Option("--sms", help="What becomes of an SMS to it.")
    ] = None,
    sms_error: Annotated[
        int | None,
        typer.Option(
            "--sms-error",
            min=1,
            help="Error code of an SMS that does not arrive (30003 undelivered, 30008 failed).",
        ),
    ] = None,
    call: Annotated[
        CallOutcome | None, typer.Option("--call", help="What becomes of a call to it.")
    ] = None,
    press: Annotated[
        str | None,
        typer.Option(
            "--press",
            metavar="DIGITS",
            help='Keys a person presses when a call asks (0-9 * #; "" for none; default 1).',
        ),
    ] = None,
    hold: Annotated[
        str | None,
        typer.Option(
            "--hold",
            metavar="SECONDS",
            help="Twilio takes this long to answer an SMS or call to it (default 0).",
        ),
    ] = None,
    outage: Annotated[
        bool | None,
        typer.Option(
            "--outage/--no-outage",
            help="Twilio down for it: every SMS and call to it gets 503 (error 20503).",
            show_default=False,
        ),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Forget what was set: it behaves as any number again."),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Set how the Twilio stand-in treats one number (SMS, calls, outage), or show it."""
    import dataclasses

    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox.twilio_phones import DEFAULT_BEHAVIOUR

    _, out = command_context(ctx, json)
    _check_number(number)
    _check_press(press)
    hold_seconds = _hold_seconds(hold)
    info = sandbox_control.require_running()
    options: dict[str, Any] = {
        "sms": sms.value if sms is not None else None,
        "sms_error": sms_error,
        "call": call.value if call is not None else None,
        "press": press,
        "hold": hold_seconds,
        "outage": outage,
    }
    given = {key: value for key, value in options.items() if value is not None}
    if sms is not None and sms_error is None:
        given["sms_error"] = None  # the new outcome's own code

    def change(table: dict[str, PhoneBehaviour]) -> None:
        base = DEFAULT_BEHAVIOUR if reset else table.get(number, DEFAULT_BEHAVIOUR)
        behaviour = dataclasses.replace(base, **given)
        if sms_error is not None and behaviour.sms == "delivered":
            raise _sms_error_needs_a_failure(number)
        if behaviour.is_default:
            table.pop(number, None)
        else:
            table[number] = behaviour

    if given or reset:
        table = sandbox_control.change_phones(info, change)
    else:
        table = sandbox_control.read_phones(info)
    behaviour = table.get(number, DEFAULT_BEHAVIOUR)
    out.result(
        views.phones_view({number: behaviour}),
        human=lambda: typer.echo(_phone_line(number, behaviour)),
    )


@app.command("phones")
def phones(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the numbers the Twilio stand-in treats otherwise than as on and answered."""
    from iotbutton_cli.sandbox import client as sandbox_control

    _, out = command_context(ctx, json)
    table = sandbox_control.read_phones(sandbox_control.require_running())

    def render() -> None:
        for number, behaviour in sorted(table.items()):
            typer.echo(_phone_line(number, behaviour))
        if not table:
            out.info(
                "Every number is on and answers: SMS delivered, calls completed. "
                "Set one with `iotbutton sandbox phone NUMBER`."
            )

    out.result(views.phones_view(table), human=render)


@app.command("hook")
def hook(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            help="A webhook or Slack name: NAME in /hooks/NAME and /slack/NAME.",
            show_default=False,
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="CODE",
            help="Answer the next posts to NAME with this HTTP status (200: as usual again).",
        ),
    ] = None,
    times: Annotated[
        str | None,
        typer.Option("--times", metavar="N", help="How many posts get --status (default 1)."),
    ] = None,
    token_lifetime: Annotated[
        str | None,
        typer.Option(
            "--token-lifetime",
            metavar="SECONDS",
            help="Lifetime of the tokens /oauth/token issues from now on (default 3600).",
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Set how the webhook sink answers a name's next posts (or its tokens' lifetime), or show
    it."""
    from iotbutton_cli.sandbox import client as sandbox_control

    _, out = command_context(ctx, json)
    if name is not None:
        _check_hook_name(name)
    code = _whole_number("--status", status, 200, 599, "sandbox-bad-hook-status")
    count = _whole_number("--times", times, 1, 1000, "sandbox-bad-hook-times")
    from iotbutton_cli.sandbox.webhook_sink import MAX_TOKEN_LIFETIME

    lifetime = _whole_number(
        "--token-lifetime", token_lifetime, 1, MAX_TOKEN_LIFETIME, "sandbox-bad-token-lifetime"
    )
    if name is None and (code is not None or count is not None):
        raise _hook_needs_a_name("--status" if code is not None else "--times")
    if count is not None and code is None:
        raise _times_needs_a_status(str(name))
    info = sandbox_control.require_sink(sandbox_control.require_running())

    def change(controls: Controls) -> None:
        if name is not None and code is not None:
            controls.set_answer(name, code, count or 1)
        if lifetime is not None:
            controls.token_lifetime = lifetime

    if code is not None or lifetime is not None:
        controls = sandbox_control.change_hook_controls(info, change)
    else:
        controls = sandbox_control.read_hook_controls(info)
    view = views.hooks_view(controls, name)

    def render() -> None:
        for answer in view["hooks"]:
            typer.echo(_hook_line(answer["name"], answer["status"], answer["times"]))
        if name is None and not view["hooks"]:
            out.info(
                "Every webhook and Slack name answers as usual. Set one with "
                "`iotbutton sandbox hook NAME --status CODE`."
            )
        if name is None or lifetime is not None:
            typer.echo(f"Tokens from {info.hooks_url}/oauth/token live {view['token_lifetime']} s.")

    out.result(view, human=render)


def _check_hook_name(name: str) -> None:
    from iotbutton_cli.errors import usage_error
    from iotbutton_cli.sandbox.webhook_sink import NAME

    if not NAME.fullmatch(name):
        shown = repr(name) if len(name) <= 40 else repr(name[:40]) + "…"
        raise usage_error(
            "sandbox-bad-hook-name",
            f"{shown} is not a webhook name: 1 to 64 letters, digits, '.', '_' or '-'.",
            "Give the last part of the URL the notifier posts to, e.g. `crm` for "
            "`/hooks/crm`: `iotbutton sandbox hook crm --status 503`.",
        )


def _whole_number(option: str, given: str | None, low: int, high: int, code: str) -> int | None:
    """``given`` as a whole number from ``low`` to ``high``; None when not given."""
    from iotbutton_cli.errors import usage_error

    if given is None:
        return None
    text = given.strip()
    if text.isdigit() and text.isascii() and low <= int(text) <= high:
        return int(text)
    shown = repr(given) if len(given) <= 40 else repr(given[:40]) + "…"
    examples = {
        "--status": "`--status 503` (Service Unavailable), or `--status 200` to answer as usual",
        "--times": "`--times 2` for the next two posts",
        "--token-lifetime": "`--token-lifetime 60` for tokens that expire after a minute",
    }
    raise usage_error(
        code,
        f"{option} {shown} is not a whole number from {low} to {high}.",
        f"Give e.g. {examples[option]}.",
    )


def _hook_needs_a_name(option: str) -> IotButtonError:
    from iotbutton_cli.errors import usage_error

    return usage_error(
        "sandbox-hook-needs-name",
        f"{option} needs the NAME of the webhook or Slack URL it is for.",
        "Give it first, e.g. `iotbutton sandbox hook crm --status 503 --times 2`.",
    )


def _times_needs_a_status(name: str) -> IotButtonError:
    from iotbutton_cli.errors import usage_error

    return usage_error(
        "sandbox-hook-times-needs-status",
        f"--times says how many posts to {name} get --status, which is not given.",
        f"Add the status, e.g. `iotbutton sandbox hook {name} --status 503 --times 2`.",
    )


def _hook_line(name: str, status: int, times: int) -> str:
    """``crm  answers 503 to the next 2 posts`` / ``crm  answers as usual (200)``."""
    if not times:
        return f"{name}  answers as usual (200)"
    posts = "post" if times == 1 else f"{times} posts"
    return f"{name}  answers {status} to the next {posts}"


def _check_number(number: str) -> None:
    from iotbutton_cli.errors import usage_error

    if not E164.fullmatch(number):
        shown = repr(number) if len(number) <= 40 else repr(number[:40]) + "…"
        raise usage_error(
            "sandbox-bad-number",
            f"{shown} is not an E.164 phone number.",
            "Give it in E.164: a plus, the country code and the number, no spaces or dashes, "
            "e.g. `iotbutton sandbox phone +15551230001 --sms undelivered`.",
        )


def _check_press(press: str | None) -> None:
    from iotbutton_cli.errors import usage_error

    if press is not None and not KEYS.fullmatch(press):
        shown = repr(press) if len(press) <= 40 else repr(press[:40]) + "…"
        raise usage_error(
            "sandbox-bad-press",
            f"--press {shown} is not up to 32 keys of a phone's keypad.",
            "Give digits 0-9, * and #, e.g. `--press 1`, or `--press ''` for a person who "
            "presses nothing.",
        )


def _hold_seconds(hold: str | None) -> float | None:
    import math

    from iotbutton_cli.errors import usage_error

    if hold is None:
        return None
    try:
        seconds = float(hold)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        shown = repr(hold) if len(hold) <= 40 else repr(hold[:40]) + "…"
        raise usage_error(
            "sandbox-bad-hold",
            f"--hold {shown} is not a number of seconds >= 0.",
            "Give how long Twilio takes to answer, e.g. `--hold 5`, or `--hold 0` for at once.",
        )
    return int(seconds) if seconds.is_integer() else seconds


def _sms_error_needs_a_failure(number: str) -> IotButtonError:
    from iotbutton_cli.errors import usage_error

    return usage_error(
        "sandbox-sms-error-delivered",
        f"--sms-error needs an SMS to {number} that does not arrive; it is delivered.",
        "Add --sms undelivered or --sms failed.",
    )


def _phone_line(number: str, behaviour: PhoneBehaviour) -> str:
    """``+15551230001  sms undelivered (30003), call busy, outage (503)``."""
    from iotbutton_cli.sandbox.twilio_phones import DEFAULT_BEHAVIOUR

    code = behaviour.sms_error_code
    line = f"{number}  sms {behaviour.sms}{f' ({code})' if code else ''}, call {behaviour.call}"
    if behaviour.press != DEFAULT_BEHAVIOUR.press:
        line += f", presses {behaviour.press}" if behaviour.press else ", presses nothing"
    if behaviour.hold:
        line += f", Twilio holds creates {behaviour.hold:g} s"
    if behaviour.outage:
        line += ", outage: Twilio answers 503 (20503)"
    if behaviour.is_default:
        line += " (as any number)"
    return "".join(c if c.isprintable() else "?" for c in line)  # a planted file's escapes


schedules_app = typer.Typer(invoke_without_command=True)
app.add_typer(schedules_app, name="schedules")


@schedules_app.callback()
def schedules(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the running sandbox's EventBridge Scheduler schedules and their next runs, or run
    one now (`run`)."""
    if ctx.invoked_subcommand is not None:
        return
    from datetime import datetime, timezone

    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox.scheduler import schedule_rows

    _, out = command_context(ctx, json)
    info = sandbox_control.require_running()
    rows = schedule_rows(_sandbox_clients(info), datetime.now(timezone.utc))

    def render() -> None:
        for row in rows:
            typer.echo(_schedule_line(row))
        if not rows:
            typer.echo("No schedules.")

    out.result(rows, human=render)


@schedules_app.command("run")
def run_schedule(
    ctx: typer.Context,
    schedule: Annotated[
        str,
        typer.Argument(
            help="GROUP/NAME, as `sandbox schedules` lists it (e.g. iotbutton/release-held).",
            show_default=False,
        ),
    ],
    json: JsonOption = False,
) -> None:
    """Run a schedule now, as if the clock had reached its next run."""
    from datetime import datetime, timezone

    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox.scheduler import run_now

    _, out = command_context(ctx, json)
    group, name = _schedule_id(schedule)
    info = sandbox_control.require_running()
    ran = run_now(_sandbox_clients(info), group, name, datetime.now(timezone.utc))
    out.result(
        ran,
        human=lambda: typer.echo(
            f"Ran {ran['schedule']} as at {ran['scheduled_time']}: invoked "
            f"{_target_name(ran['target'])}."
        ),
    )


def _schedule_id(given: str) -> tuple[str, str]:
    """``GROUP/NAME`` as its two names, each as Scheduler allows them."""
    from iotbutton_cli.errors import usage_error
    from iotbutton_cli.sandbox.scheduler import NAME

    group, slash, name = given.partition("/")
    if slash and NAME.fullmatch(group) and NAME.fullmatch(name):
        return group, name
    shown = repr(given) if len(given) <= 80 else repr(given[:80]) + "…"
    raise usage_error(
        "sandbox-bad-schedule-name",
        f"{shown} is not GROUP/NAME: a schedule group and a schedule name, each 1 to 64 "
        "letters, digits, '.', '_' or '-'.",
        "Give it as `iotbutton sandbox schedules` lists it, e.g. "
        "`iotbutton sandbox schedules run iotbutton/release-held`.",
    )


def _sandbox_clients(info: Any) -> Callable[[str], Any]:
    """boto3 clients for the running sandbox's AWS API, with its own key pair."""
    import boto3
    from botocore.config import Config

    from iotbutton_cli.aws.errors import after_call

    session = boto3.Session(
        aws_access_key_id=info.access_key_id,
        aws_secret_access_key=info.secret_access_key,
        region_name=info.region,
    )
    session.events.register("after-call", after_call)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5)
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = session.client(service, endpoint_url=info.aws_url, config=config)
        return made[service]

    return client


def _target_name(arn: str) -> str:
    """A Lambda function's name, or the whole ARN of any other target."""
    return arn.split(":function:", 1)[1].split(":")[0] if ":function:" in arn else arn


def _schedule_line(row: dict[str, Any]) -> str:
    """``iotbutton/release-held  cron(0 7 * * ? *) Europe/London  ENABLED  next
    2026-12-07T07:00:00Z  -> iotbutton-notifier``."""
    next_run = row["next_run"] or ("none" if row["state"] == "ENABLED" else "none (disabled)")
    line = (
        f"{row['group']}/{row['name']}  {row['expression']} {row['timezone']}  {row['state']}  "
        f"next {next_run}  -> {_target_name(row['target']) or '(no target)'}"
    )
    return "".join(c if c.isprintable() else "?" for c in line)
