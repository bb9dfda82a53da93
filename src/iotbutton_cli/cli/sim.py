"""``iotbutton sim``: be a button, or watch the buttons' MQTT traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, command_context

app = typer.Typer(help="Simulate a button and watch MQTT traffic.", no_args_is_help=True)

PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        help="8883 (default), or 443 with ALPN x-amzn-mqtt-ca (sandbox: ALPN on its port).",
        show_default=False,
    ),
]


def via(host: str, port: int, alpn: bool) -> str:
    """``localhost:43413``, and the ALPN protocol when one was offered."""
    return f"{host}:{port}" + (" (ALPN x-amzn-mqtt-ca)" if alpn else "")


def payload_text(payload: Any) -> str:
    """A payload as people read it: JSON as JSON (not a Python dict), text as it came."""
    import json

    if isinstance(payload, str):
        return payload
    return json.dumps(payload, ensure_ascii=False)


@app.command("click")
def click(
    ctx: typer.Context,
    serial: Annotated[
        str | None, typer.Argument(help="Button serial (default: your only button).")
    ] = None,
    single: Annotated[bool, typer.Option("--single", help="A single click (default).")] = False,
    double: Annotated[bool, typer.Option("--double", help="A double click.")] = False,
    long: Annotated[bool, typer.Option("--long", help="A long press.")] = False,
    battery: Annotated[
        int, typer.Option("--battery", min=0, max=5000, help="Battery voltage in mV.")
    ] = 1650,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="How many clicks.")] = 1,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Sandbox: wait until Twilio received the click's SMS/calls."),
    ] = False,
    port: PortOption = None,
    json: JsonOption = False,
) -> None:
    """Publish a click as the button does.

    Mutual TLS, client id = serial.
    """
    from iotbutton_cli.device import simulator
    from iotbutton_cli.errors import usage_error

    app_ctx, out = command_context(ctx, json)
    chosen = [
        name for name, flag in (("SINGLE", single), ("DOUBLE", double), ("LONG", long)) if flag
    ]
    if len(chosen) > 1:
        raise usage_error(
            "one-click-type",
            "Choose one of --single, --double, --long.",
            "Run the command once per click type; --count repeats one.",
        )
    click_type = (chosen or ["SINGLE"])[0]
    deliveries: list[dict[str, Any]] | None = None
    repeats, held = False, ""
    if wait and port is not None:
        raise usage_error(
            "port-with-wait",
            "--wait clicks on the default port: it cannot be combined with --port.",
            "Run `iotbutton sim click --port 443` and then `iotbutton sandbox outbox`.",
        )
    if wait:
        from iotbutton_cli.notify import delivery

        waited = delivery.click_and_wait(app_ctx, serial, click_type, battery, count)
        sent, deliveries, repeats = waited.sent, waited.deliveries, waited.repeats
        held = waited.held
    else:
        sent = simulator.click(app_ctx, serial, click_type, battery, count, port=port)

    def render() -> None:
        first = sent[0]
        times = f"{len(sent)} x " if len(sent) > 1 else ""
        out.say(
            f"Published {times}{first.payload['clickType']} to {first.topic} "
            f"via {via(first.host, first.port, first.alpn)}: {payload_text(first.payload)}"
        )
        if deliveries is not None:
            from rich.markup import escape

            out.say(escape(_delivered(deliveries, repeats, held)))

    out.result([views.published_view(one) for one in sent], human=render)


def _delivered(entries: list[dict[str, Any]], repeats: bool = False, held: str = "") -> str:
    if held:
        return (
            f"Quiet hours hold this click until {held}: nothing is sent until they end "
            "(`iotbutton notify history` shows it held, `iotbutton notify release` sends it now)."
        )
    if not entries and repeats:
        return (
            "This button's last alarm of that click type is within the debounce window: the "
            "click repeats it, and nothing more is sent (`iotbutton notify history` shows it)."
        )
    if not entries:
        return "The notifier's config names no SMS or call for this click: nothing to wait for."
    each = []
    for entry in entries:
        kind = "SMS" if entry.get("resource") == "Messages" else "call"
        answer = entry.get("status") or entry.get("error", {}).get("code")
        each.append(f"{kind} to {entry.get('fields', {}).get('To', '?')} [{answer}]")
    return "Twilio received: " + ", ".join(each) + " (`iotbutton sandbox outbox` shows them)."


@app.command("subscribe")
def subscribe(
    ctx: typer.Context,
    topic: Annotated[str, typer.Option("--topic", help="Topic filter to watch.")] = "iotbutton/#",
    duration: Annotated[
        float | None, typer.Option("--duration", min=0, help="Stop after S seconds.")
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="Stop after N messages.")
    ] = None,
    reconnect_for: Annotated[
        float,
        typer.Option(
            "--reconnect-for", min=0, help="After losing the connection, retry for S seconds."
        ),
    ] = 60.0,
    json: JsonOption = False,
) -> None:
    """Print the button topics' messages live.

    Until Ctrl-C, --duration or --count; a lost connection is retried for a while.
    """
    from iotbutton_cli.device import simulator

    app_ctx, out = command_context(ctx, json)

    def show(message: Any) -> None:
        if out.json:
            out.json_line(views.received_view(message))
        else:
            from rich.markup import escape

            arrived = message.time.astimezone().strftime("%H:%M:%S")
            out.say(
                f"[dim]{arrived}[/] [bold]{escape(message.topic)}[/] "
                f"{escape(payload_text(message.payload))}"
            )

    def ready() -> None:
        # Always on stderr, --json too: scripts wait for this line before they publish.
        out.stderr_console().print(f"Watching {topic} (Ctrl-C to stop)…", highlight=False)

    def status(text: str) -> None:
        out.stderr_console().print(text, highlight=False)

    try:
        simulator.subscribe(
            app_ctx, topic, show, duration, count, ready, status, reconnect_for=reconnect_for
        )
    except KeyboardInterrupt:
        out.info("Stopped.")


@app.command("send")
def send(
    ctx: typer.Context,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Topic (default: iotbutton/<serial>).")
    ] = None,
    message: Annotated[str | None, typer.Option("--message", help="Payload text.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", exists=True, dir_okay=False, help="Payload file.")
    ] = None,
    as_serial: Annotated[
        str | None, typer.Option("--as", help="Button to publish as (default: the only one).")
    ] = None,
    port: PortOption = None,
    json: JsonOption = False,
) -> None:
    """Publish any payload as a button.

    For example, to try a custom rule.
    """
    from iotbutton_cli.device import simulator
    from iotbutton_cli.errors import usage_error

    app_ctx, out = command_context(ctx, json)
    if (message is None) == (file is None):
        raise usage_error(
            "one-payload",
            "Give exactly one of --message and --file.",
            'For example: --message \'{"clickType": "LONG"}\'.',
        )
    payload = message.encode() if message is not None else file.read_bytes()  # type: ignore[union-attr]
    sent = simulator.send(app_ctx, topic, payload, as_serial, port=port)
    alpn = " with ALPN x-amzn-mqtt-ca" if sent.alpn else ""
    out.result(
        views.published_view(sent),
        human=lambda: out.say(
            f"Published {len(payload)} bytes to {sent.topic} as {sent.serial}{alpn}."
        ),
    )
