"""``iotbutton notify``: the notifier's config file, its Lambda bundle, and (later) its deployment.

Services load inside each command, so ``iotbutton notify --help`` imports neither PyYAML nor
boto3 nor Rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, command_context

if TYPE_CHECKING:
    from iotbutton_cli.cli.output import Output

app = typer.Typer(
    help="Deploy and test the notifier that turns clicks into SMS and calls.",
    no_args_is_help=True,
)


@app.command("init")
def init(
    ctx: typer.Context,
    account_sid: Annotated[
        str | None, typer.Option("--account-sid", help="Twilio Account SID (AC + 32 hex digits).")
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Twilio number to send and call from (E.164, e.g. +1555...)."),
    ] = None,
    person: Annotated[
        str | None,
        typer.Option("--person", help="Who the button belongs to ({person} in messages)."),
    ] = None,
    sms: Annotated[
        list[str] | None,
        typer.Option(
            "--sms",
            metavar="<str>",  # not <list[str]>, whatever the Typer version
            help="Number to text on every click type (E.164); repeatable.",
        ),
    ] = None,
    call: Annotated[
        list[str] | None,
        typer.Option(
            "--call",
            metavar="<str>",  # not <list[str]>, whatever the Typer version
            help="Number to call on every click type (E.164); repeatable.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing config with a fresh template.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Write a commented notify.yaml to edit: numbers and messages per click (no secrets)."""
    from iotbutton_cli.notify import config as notify_config

    _, out = command_context(ctx, json)
    path = notify_config.write_template(
        notify_config.config_path(),
        account_sid=account_sid,
        from_=from_,
        person=person,
        sms=sms or [],
        call=call or [],
        force=force,
    )
    out.result(
        views.config_written_view(path),
        human=lambda: _print_next_steps(out, path, account_sid, from_, person, bool(sms or call)),
    )


def _print_next_steps(
    out: Output,
    path: Any,
    account_sid: str | None,
    from_: str | None,
    person: str | None,
    has_numbers: bool,
) -> None:
    from rich.markup import escape

    out.say(f"Wrote the notifier config to {escape(str(path))}")
    missing = [
        name
        for name, value in (("account_sid", account_sid), ("from", from_), ("person", person))
        if not value
    ]
    if not has_numbers:
        missing.append("the numbers to text (sms) or call (call) per click type")
    edit = f"fill in {', '.join(missing)}" if missing else "adjust numbers and messages"
    out.info(
        "Next steps:\n"
        f"  1. Edit {escape(str(path))}: {edit}.\n"
        "  2. Keep the Twilio secret out of the file: set TWILIO_AUTH_TOKEN (or TWILIO_API_KEY "
        "and TWILIO_API_SECRET), or let `iotbutton notify deploy` ask for it.\n"
        "  3. Check it with `iotbutton notify check`, then run `iotbutton notify deploy`."
    )


@app.command("check")
def check(ctx: typer.Context, json: JsonOption = False) -> None:
    """Validate notify.yaml without calling AWS, and show who gets what per click."""
    from iotbutton_cli.notify import config as notify_config

    _, out = command_context(ctx, json)
    found = notify_config.check()
    summary = views.config_check_view(found.config, found.secret, found.problem)
    out.result(summary, human=lambda: _print_check(out, summary))


def _owner_line(owner: dict[str, Any] | None) -> str:
    """Who hears of an alarm that could not be delivered (SNS)."""
    if not owner:
        return "- (nobody is told of an alarm that could not be delivered)"
    return ", ".join(f"{key} {value}" for key, value in owner.items() if value)


def _print_hooks(out: Output, summary: dict[str, Any]) -> None:
    """Each click type's webhooks and Slack posts, and any secret they need that is not set."""
    from rich.markup import escape

    for click, item in summary["clicks"].items():
        for hook in item.get("webhooks", []):
            out.say(
                f"{click} posts to {escape(hook['url'])} ({hook['auth']}, secret from "
                f"${hook['secret_env']})."
            )
        for post in item.get("slack", []):
            out.say(f"{click} posts to Slack (webhook URL from ${post['webhook_url_env']}).")
    for secret in summary["hook_secrets"]:
        if not secret["available"]:
            out.say(
                f"PROBLEM: {secret['name']} is not set; {escape(secret['for'])} needs it, and "
                "`notify deploy` will refuse without it."
            )


def _print_check(out: Output, summary: dict[str, Any]) -> None:
    from rich.markup import escape

    secret = summary["twilio_secret"]
    if secret["available"]:
        credential_line = f"from {secret['source']} (user {secret['username']})"
    elif secret["problem_code"] == "twilio-no-secret":
        credential_line = (
            "not in the environment; `notify deploy` asks for it "
            "(or set TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET)"
        )
    else:
        credential_line = f"PROBLEM: {secret['problem']}"
    out.say(f"{escape(summary['path'])} is valid.")
    out.table(
        None,
        ["setting", "value"],
        [
            ["account SID", summary["account_sid"]],
            ["API key SID", summary["api_key_sid"] or "-"],
            ["from", summary["from"]],
            ["person", escape(summary["person"])],
            ["owner", _owner_line(summary.get("owner"))],
            ["Twilio secret", escape(credential_line)],
        ],
    )
    out.table(
        None,
        ["click", "sms", "call", "message"],
        [
            [
                click,
                "\n".join(item["sms"]) or "-",
                "\n".join(item["call"]) or "-",
                escape(item["message"]),
            ]
            for click, item in summary["clicks"].items()
        ],
    )
    _print_hooks(out, summary)
    for click, item in summary["clicks"].items():
        escalation = item.get("escalation")
        if escalation:
            steps = " then ".join(
                " + ".join(step["call"]) + f" ({step['ring_seconds']} s)"
                for step in escalation["steps"]
            )
            out.say(
                f"{click} escalates: {steps}, {escalation['rounds']} round(s), until someone "
                f"presses 1. Unanswered, it takes up to {escalation['worst_case_seconds']} s, "
                f"{escalation['calls']} calls and {escalation['billed_minutes_at_most']} billed "
                "call minutes at most, then everyone gets the exhausted text."
            )
    buttons = summary.get("buttons") or {}
    if buttons:
        out.table(
            None,
            ["button", "person", "click", "sms", "call"],
            [
                [
                    serial,
                    escape(button["person"]),
                    click,
                    "\n".join(item["sms"]) or "-",
                    "\n".join(
                        item["call"]
                        + (
                            [f"escalates ({item['escalation']['calls']} calls)"]
                            if item.get("escalation")
                            else []
                        )
                    )
                    or "-",
                ]
                for serial, button in buttons.items()
                for click, item in button["clicks"].items()
            ],
        )
        if summary.get("unlisted") == "refuse":
            out.info("Buttons not listed above send nothing (unlisted: refuse).")
            return
    quiet = [
        click
        for click, item in summary["clicks"].items()
        if not item["sms"] + item["call"] and not item.get("escalation")
    ]
    if quiet:
        out.info(f"{', '.join(quiet)}: no numbers, so these clicks do nothing.")


@app.command("bundle")
def bundle(ctx: typer.Context, json: JsonOption = False) -> None:
    """Build the notifier's Lambda zip (same code, same bytes) into the cache folder."""
    from iotbutton_cli.notify import bundle as bundles

    _, out = command_context(ctx, json)
    built = bundles.build_bundle()

    def render() -> None:
        from rich.markup import escape

        out.say(f"Built {escape(str(built.path))} ({built.size} bytes)")
        out.say(f"SHA-256     {built.sha256_hex}")
        out.say(f"CodeSha256  {built.code_sha256}")
        out.say(f"handler     {bundles.HANDLER}")

    out.result(views.bundle_view(built, bundles.HANDLER), human=render)


TwilioBaseOption = Annotated[
    str | None,
    typer.Option(
        "--twilio-api-base",
        hidden=True,
        help="Send Twilio requests here instead of https://api.twilio.com (the sandbox's).",
    ),
]
ClickOption = Annotated[str, typer.Option("--click", help="SINGLE, DOUBLE or LONG.")]


def _sandbox_twilio(app_ctx: Any) -> str | None:
    """In the sandbox, Twilio is its stand-in."""
    return str(app_ctx.sandbox_info.twilio_url) if app_ctx.sandbox else None


def _config_and_secret(out: Output) -> tuple[Any, Any]:
    """The config and the Twilio secret; asks for the secret only when a person can answer
    (never with --json)."""
    from iotbutton_cli.notify import config as notify_config

    config = notify_config.load_config(notify_config.config_path())
    prompt = (
        None if out.json else (lambda question: typer.prompt(question, hide_input=True, err=True))
    )
    secret = notify_config.resolve_secret(config, prompt=prompt)
    from iotbutton_cli.logsetup import register_secret

    register_secret(secret.value)
    return config, secret


def _stored_secret(config: Any, secret: Any, sandbox: bool) -> str:
    """The Twilio secret, with the secrets the webhooks and Slack posts name (from the
    environment), as the SSM parameter holds them."""
    from iotbutton_cli.logsetup import register_secret
    from iotbutton_cli.notify import hooks_config

    hooks = hooks_config.hook_secrets(config, sandbox=sandbox)
    for value in hooks.values():
        register_secret(value)
    return hooks_config.stored_secret(secret.value, hooks)


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    default_rule: Annotated[
        bool,
        typer.Option(
            "--default-rule/--no-default-rule",
            help="Route every button's clicks to the notifier (rule iotbutton_notifier); "
            "--no-default-rule leaves routing to your own `rules create`.",
        ),
    ] = True,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would change (AWS reads only); change nothing."),
    ] = False,
    twilio_api_base: TwilioBaseOption = None,
    json: JsonOption = False,
) -> None:
    """Deploy the notifier: role, config, secret, function, owner alerts and topic rule; only
    what changed."""
    from iotbutton_cli.notify import config as notify_config
    from iotbutton_cli.notify import deploy as notifier_deploy

    app_ctx, out = command_context(ctx, json)
    config, secret = _config_and_secret(out)
    notify_config.check_escalation_secret(config, secret)
    source = notifier_deploy.prepare(
        config.lambda_document(secret),
        _stored_secret(config, secret, app_ctx.sandbox),
        twilio_api_base=twilio_api_base or _sandbox_twilio(app_ctx),
        default_rule=default_rule,
        owner=config.owner_endpoints,
        loopback_hooks=app_ctx.sandbox,
    )
    if dry_run:
        _print_plan(out, app_ctx, notifier_deploy.plan_deploy(app_ctx, source))
        return

    def show_step(step: Any) -> None:
        mark = "·" if step.action == "unchanged" else "✓"
        out.info(f"{mark} {step.resource} {step.name}: {step.action}")

    report = notifier_deploy.deploy(app_ctx, source, on_step=show_step)

    def render() -> None:
        if report.up_to_date:
            out.say(f"The notifier is up to date ({report.function_arn}).")
            return
        changed = sum(step.action != "unchanged" for step in report.steps)
        out.say(f"Deployed the notifier: {changed} change(s). {report.function_arn}")
        if report.shadow_left_out:
            left = len(report.shadow_left_out)
            out.info(
                f"{left} button(s) beyond IAM's role policy limit are not granted their thing "
                "shadows: their clicks alarm, but `things list` shows no last click for them "
                "(docs/notifier.md, The thing shadow)."
            )
        if report.released_held:
            out.info(
                "No quiet hours hold clicks now: the release schedule is gone, and the notifier "
                "was asked to send the clicks they still held."
            )
        out.info("Try it: `iotbutton notify test --click SINGLE`.")

    out.result(views.deploy_view(report), human=render)


def _print_plan(out: Output, app_ctx: Any, plan: Any) -> None:
    from iotbutton_cli.notify.plan import releases_held

    def render() -> None:
        out.table(
            f"Would deploy (account {app_ctx.account_id}, {app_ctx.region})",
            ["#", "resource", "change"],
            [
                [
                    index,
                    f"{step.resource} {step.name}",
                    step.action + (f": {', '.join(step.changes)}" if step.changes else ""),
                ]
                for index, step in enumerate(plan.steps, 1)
            ],
        )
        if plan.up_to_date:
            out.say("The notifier is up to date: a deploy would change nothing.")
        else:
            out.say(f"A deploy would make {plan.change_count} change(s).")
        if releases_held(plan):
            out.info(
                "No quiet hours hold clicks now: the deploy would remove the release schedule "
                "and ask the notifier to send the clicks they still hold."
            )

    out.result(views.deploy_plan_view(plan), human=render)


@app.command("show")
def show(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show what is deployed: function, code hash, config summary (no secrets), rules."""
    from iotbutton_cli.notify import ops as notifier_ops

    app_ctx, out = command_context(ctx, json)
    status = notifier_ops.status(app_ctx)
    out.result(views.notifier_status_view(status), human=lambda: _print_status(out, status))


def _print_status(out: Output, status: Any) -> None:
    from rich.markup import escape

    out.table(
        None,
        ["notifier", "value"],
        [
            ["function", status.function_arn],
            ["runtime / state", f"{status.runtime} / {status.state}"],
            ["code SHA-256", status.code_sha256],
            ["last modified", status.last_modified],
            ["config", status.config_object],
            ["secret", f"SSM SecureString {status.secret_parameter}"],
            [
                "from / person",
                f"{status.config.get('from')} / {escape(str(status.config.get('person')))}",
            ],
            ["rules", ", ".join(rule.name for rule in status.rules) or "-"],
        ],
    )
    out.table(
        None,
        ["click", "sms", "call", "message"],
        [
            [
                click,
                "\n".join(item["sms"]) or "-",
                "\n".join(item["call"]) or "-",
                escape(item["message"]),
            ]
            for click, item in status.config.get("clicks", {}).items()
        ],
    )


@app.command("test")
def test(
    ctx: typer.Context,
    serial: Annotated[
        str | None, typer.Argument(help="Serial in the event (default: your only button).")
    ] = None,
    click: ClickOption = "SINGLE",
    json: JsonOption = False,
) -> None:
    """Invoke the deployed function with a button event and show what it sent."""
    from iotbutton_cli.errors import ExitStatus
    from iotbutton_cli.notify import ops as notifier_ops

    app_ctx, out = command_context(ctx, json)
    result = notifier_ops.invoke_test(app_ctx, serial, click)
    out.result(views.test_invocation_view(result), human=lambda: _print_invocation(out, result))
    if not result.ok:
        raise typer.Exit(int(ExitStatus.FAILED))


def _escalation_calls(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls an escalation placed, as the function's result lists them."""
    placed = payload.get("escalation")
    return placed if isinstance(placed, list) else []


def _print_invocation(out: Output, result: Any) -> None:
    from rich.markup import escape

    out.say(f"Invoked with {escape(str(result.event))}")
    if result.function_error:
        out.say(
            f"[bold red]The function failed ({result.function_error}):[/] "
            f"{escape(str(result.payload))}"
        )
    elif isinstance(result.payload, dict) and result.payload.get("ignored"):
        out.say(f"The function ignored the event: {escape(str(result.payload['ignored']))}")
    elif isinstance(result.payload, dict):
        out.table(
            None,
            ["channel", "to", "status", "sid / error"],
            [
                [
                    r.get("channel"),
                    r.get("to"),
                    r.get("status"),
                    r.get("sid") or escape(str((r.get("error") or {}).get("message", ""))),
                ]
                for r in [
                    *result.payload.get("results", []),
                    *_escalation_calls(result.payload),
                ]
            ],
        )
        if _escalation_calls(result.payload):
            alarm = escape(str(result.payload.get("alarm", "ALARM_ID")))
            out.info(
                "The escalation is under way, calling real phones until someone presses 1: "
                "`iotbutton notify history` shows who answers; `iotbutton notify ack "
                f"{alarm}` stops it."
            )
    if result.log_tail:
        out.info("[dim]" + escape(result.log_tail.rstrip()) + "[/]")


@app.command("send")
def send(
    ctx: typer.Context,
    click: ClickOption = "SINGLE",
    serial: Annotated[str, typer.Option("--serial", help="Serial in the message.")] = (
        "iotbutton-test"
    ),
    twilio_api_base: TwilioBaseOption = None,
    json: JsonOption = False,
) -> None:
    """Send one click's messages from this machine, as the notifier would, to check numbers."""
    from iotbutton_cli.errors import ExitStatus
    from iotbutton_cli.notify import ops as notifier_ops

    app_ctx, out = command_context(ctx, json)
    config, secret = _config_and_secret(out)
    api_base = twilio_api_base or _sandbox_twilio(app_ctx)
    results = notifier_ops.send_from_here(config, secret, click, serial, api_base)
    out.result(
        [views.send_result_view(r) for r in results],
        human=lambda: out.table(
            None,
            ["channel", "to", "status", "sid / error"],
            [
                [
                    r.channel,
                    r.to,
                    r.status,
                    r.sid or f"{(r.error or {}).get('code')}: {(r.error or {}).get('message')}",
                ]
                for r in results
            ],
        ),
    )
    if any(r.status == "failed" for r in results):
        raise typer.Exit(int(ExitStatus.FAILED))


@app.command("logs")
def logs(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option("--since", help="How far back to start: minutes (90), or 90m, 2h, 3d."),
    ] = "60",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Print the function's CloudWatch logs (JSON lines with --json)."""
    import sys
    from datetime import datetime, timezone

    from iotbutton_cli.notify import ops as notifier_ops
    from iotbutton_cli.notify.durations import parse_duration
    from iotbutton_cli.notify.resources import LOG_RETENTION_DAYS

    app_ctx, out = command_context(ctx, json)
    seconds = parse_duration(since, "--since", "m", most_seconds=LOG_RETENTION_DAYS * 86400)
    for event in notifier_ops.function_logs(app_ctx, seconds, follow=follow):
        if out.json:
            out.json_line(views.log_line_view(event))
            continue
        moment = datetime.fromtimestamp(event.timestamp / 1000, timezone.utc)
        sys.stdout.write(f"{moment:%Y-%m-%d %H:%M:%S} {event.message}\n")
        sys.stdout.flush()


@app.command("history")
def history(
    ctx: typer.Context,
    serial: Annotated[
        str | None, typer.Argument(help="Only this button's alarms.", show_default=False)
    ] = None,
    since: Annotated[
        str,
        typer.Option("--since", help="How far back: minutes (90), or 90m, 2h, 3d (at most 30d)."),
    ] = "7d",
    json: JsonOption = False,
) -> None:
    """Show every alarm (click) the notifier handled, and what became of each delivery."""
    from rich.markup import escape

    from iotbutton_cli.notify import history as alarm_history
    from iotbutton_cli.notify.durations import parse_duration
    from iotbutton_cli.provisioning.serials import validate_serial

    app_ctx, out = command_context(ctx, json)
    if serial is not None:
        validate_serial(serial)
    seconds = parse_duration(since, "--since", "m", most_seconds=alarm_history.RETENTION_SECONDS)
    alarms = alarm_history.alarm_history(app_ctx, serial, seconds)

    def render() -> None:
        if not alarms:
            out.info(f"No alarms in the last {since}.")
            return
        out.table(
            None,
            ["clicked (UTC)", "button", "click", "alarm", "deliveries"],
            [
                [
                    views.iso_time(alarm.clicked_ms)[:19].replace("T", " ")
                    + ("" if alarm.click_time_known else " (run)"),
                    alarm.serial,
                    alarm.click,
                    _alarm_state(alarm),
                    "\n".join(
                        [views.delivery_line(d) for d in alarm.deliveries]
                        + (
                            [escape(views.escalation_summary(alarm.escalation))]
                            if alarm.escalation
                            else []
                        )
                    )
                    or "none",
                ]
                for alarm in alarms
            ],
        )
        for alarm in alarms:
            if alarm.joined_escalation:
                out.say(
                    f"\n{alarm.alarm_id} joined the escalation of {alarm.joined_escalation}, "
                    "which was still calling: its calls did not start over."
                )
            if alarm.escalation is not None:
                out.say(f"\nEscalation of {alarm.alarm_id} (UTC):")
                for line in views.escalation_lines(alarm.escalation):
                    out.say("  " + escape(line))
        failed = sum(len(alarm.failed) for alarm in alarms)
        if failed:
            out.info(f"{failed} deliveries did not get through.")

    out.result([views.alarm_view(alarm) for alarm in alarms], human=render)


def _alarm_state(alarm: Any) -> str:
    if alarm.state == "repeat":
        return f"repeat of {alarm.repeat_of}"
    if alarm.dropped:
        told = "owner topic told" if alarm.owner_told_ms is not None else "owner NOT told"
        return f"dropped ({alarm.dropped}); {told}"
    if alarm.joined_escalation:
        return "alarm (joined)"
    if alarm.state == "held":
        return f"held {alarm.held_until or ''}".strip()
    if alarm.released_ms is not None:
        return f"alarm (held, sent {views.iso_time(alarm.released_ms)[11:16]} UTC)"
    return str(alarm.state)


@app.command("ack")
def ack(
    ctx: typer.Context,
    alarm: Annotated[str, typer.Argument(help="The alarm's id (`notify history` shows it).")],
    by: Annotated[
        str | None,
        typer.Option(
            "--by", help="Who is coming, as the others' SMS names them.", show_default=False
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Acknowledge an escalating alarm: stop its calls and tell everyone who is coming."""
    from rich.markup import escape

    from iotbutton_cli.notify import ack as alarm_ack

    app_ctx, out = command_context(ctx, json)
    result = alarm_ack.acknowledge(app_ctx, alarm, by)

    def render() -> None:
        if result.function_error:
            out.say(f"The notifier failed: {result.function_error}")
        elif result.acknowledged:
            who = escape(str(result.by))
            out.say(f"Acknowledged by {who}: the calls stop and everyone is told.")
        elif result.state == "acknowledged":
            when = views.iso_time(result.at_ms)[11:19] if result.at_ms else "?"
            out.say(f"Already acknowledged by {escape(str(result.by))} at {when} UTC.")
        else:
            out.say(f"Not acknowledged: the escalation is {result.state}.")

    out.result(views.ack_view(result), human=render)
    if result.function_error or not (result.acknowledged or result.state == "acknowledged"):
        raise typer.Exit(1)


@app.command("release")
def release(ctx: typer.Context, json: JsonOption = False) -> None:
    """Send now what quiet hours hold, as SMS while they last, without waiting for their end."""
    from iotbutton_cli.notify import release as held_release

    app_ctx, out = command_context(ctx, json)
    result = held_release.release(app_ctx)

    def render() -> None:
        if result.function_error:
            out.say(f"The notifier failed: {result.function_error}")
            return
        if not result.released:
            out.say("No alarm is held.")
            return
        for alarm in result.released:
            if alarm.get("ignored"):
                out.say(f"{alarm.get('alarm')}: not sent ({alarm['ignored']})")
                continue
            sent = ", ".join(
                f"{item.get('channel')} {item.get('to')} {item.get('status')}"
                for item in alarm.get("results", [])
            )
            out.say(f"{alarm.get('alarm')}: {sent or 'nothing to send'}")

    out.result(views.release_view(result), human=render)
    if not result.ok:
        raise typer.Exit(1)


@app.command("retry")
def retry(
    ctx: typer.Context,
    alarm: Annotated[str, typer.Argument(help="The alarm's id (`notify history` shows it).")],
    json: JsonOption = False,
) -> None:
    """Send an alarm again to the recipients it did not reach, and only to them."""
    from iotbutton_cli.notify import retry as alarm_retry

    app_ctx, out = command_context(ctx, json)
    result = alarm_retry.retry(app_ctx, alarm)

    def render() -> None:
        if not result.asked:
            out.say(f"Nothing to resend: every delivery of {alarm} got through or is in progress.")
            return
        if result.function_error:
            out.say(f"The notifier failed: {result.function_error}")
            return
        for item in result.results:
            line = f"{item.get('channel')} {item.get('to')}: {item.get('status')}"
            if item.get("error"):
                line += f" (Twilio {item['error'].get('code')}: {item['error'].get('message')})"
            if item.get("note"):
                line += f" ({item['note']})"
            out.say(line)

    out.result(views.retry_view(result), human=render)
    if not result.ok:
        raise typer.Exit(1)
