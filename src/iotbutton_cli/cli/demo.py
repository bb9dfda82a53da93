"""``iotbutton demo``: see a click become phone messages, offline, in under a minute."""

from __future__ import annotations

from typing import Annotated

import typer

from iotbutton_cli.cli import output
from iotbutton_cli.cli.common import JsonOption, app_context


def demo(
    ctx: typer.Context,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the demo's sandbox and resources to explore.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Provision a button, deploy the notifier, click SINGLE/DOUBLE/LONG, show the messages."""
    from rich.markup import escape

    from iotbutton_cli import demo as demos
    from iotbutton_cli.errors import ExitStatus

    app_context(ctx, json)
    outcome = demos.DemoOutcome()
    console = output.stdout_console()
    events = []
    for event in demos.run(keep, outcome):
        events.append(event)
        if json:
            continue
        if event.kind == "step":
            console.print(f"\n[bold cyan]▶ {escape(event.text)}[/]")
        elif event.kind == "detail":
            console.print(f"  [dim]{escape(event.text)}[/]")
        elif event.kind == "click":
            console.print(f"\n[bold]🔘 {escape(event.text)}[/] → iotbutton/{demos.DEMO_SERIAL}")
        elif event.kind == "result":
            console.print(f"  [green]✓ {escape(event.text)}[/]")
        elif event.kind == "warning":
            console.print(f"  [bold red]✗ {escape(event.text)}[/]")
        elif event.kind == "traffic":
            console.print(f"\n[bold cyan]▶ {escape(event.text)}[/]")
            for message in event.data:
                console.print(f"  {escape(message.topic)} {escape(str(message.payload))}")
        elif event.kind == "outbox":
            _print_outbox(event.text, event.data)
    if json:
        output.emit_json(
            {
                "ok": outcome.ok,
                "clicks": outcome.clicks,
                "home": outcome.home,
                "outbox": next((e.data for e in events if e.kind == "outbox"), []),
            }
        )
    elif outcome.ok:
        console.print("\n[bold green]Every click produced exactly the configured messages.[/]")
        if keep:
            console.print(
                f"Explore: IOTBUTTON_HOME={escape(outcome.home)} iotbutton --sandbox "
                "things list (stop with: … iotbutton sandbox stop)"
            )
        else:
            console.print(
                "Next: `iotbutton sandbox start`, then the same commands with "
                "--sandbox; or drop --sandbox to do it for real on AWS."
            )
    if not outcome.ok:
        raise typer.Exit(int(ExitStatus.FAILED))


def _print_outbox(title: str, entries: list[dict]) -> None:
    from rich.markup import escape

    console = output.stdout_console()
    console.print(
        f"\n[bold cyan]▶ {escape(title)}[/] (each request checked against Twilio's "
        "OpenAPI description)"
    )
    output.table(
        None,
        ["", "to", "text", "Twilio answered"],
        [
            [
                "SMS" if entry["resource"] == "Messages" else "call",
                entry["fields"].get("To"),
                escape(entry["fields"].get("Body") or entry["fields"].get("Twiml", "")),
                f"{entry.get('http_status')} {entry.get('status') or ''}",
            ]
            for entry in entries
        ],
    )
