"""``iotbutton demo``: see a click become phone messages, offline, in under a minute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, command_context

if TYPE_CHECKING:
    from iotbutton_cli.cli.output import Output


def demo(
    ctx: typer.Context,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the demo's sandbox and resources to explore.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Provision two buttons, deploy the notifier, click, show the messages and calls."""
    import shlex

    from rich.markup import escape

    from iotbutton_cli import demo as demos
    from iotbutton_cli.cli.sim import payload_text
    from iotbutton_cli.errors import ExitStatus

    _, out = command_context(ctx, json)
    outcome = demos.DemoOutcome()
    console = out.stdout_console()
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
            serial = escape(event.data["serial"])
            console.print(f"\n[bold]🔘 {escape(event.text)}[/] → iotbutton/{serial}")
        elif event.kind == "result":
            console.print(f"  [green]✓ {escape(event.text)}[/]")
        elif event.kind == "warning":
            console.print(f"  [bold red]✗ {escape(event.text)}[/]")
        elif event.kind == "traffic":
            console.print(f"\n[bold cyan]▶ {escape(event.text)}[/]")
            for message in event.data:
                text = payload_text(message.payload)
                console.print(f"  {escape(message.topic)} {escape(text)}")
        elif event.kind == "outbox":
            _print_outbox(out, event.text, event.data)

    def render() -> None:
        if not outcome.ok:
            if not keep:
                out.info(f"The demo's folder is kept for its logs: {outcome.home}")
            return
        console.print("\n[bold green]Every click produced exactly the configured messages.[/]")
        console.print(
            "Twilio's receipts reached the notifier, the LONG click Alice did not answer rang "
            "Bob until he pressed 1, and Grandpa's click Twilio could not take reached the "
            "owner, then Carol."
        )
        if keep:
            # Pasteable as printed: the demo's own IOTBUTTON_HOME, never the user's sandbox.
            home = f"IOTBUTTON_HOME={shlex.quote(outcome.home)}"
            explore = f"Explore: {home} iotbutton --sandbox things list"
            console.print(escape(explore), soft_wrap=True)
            console.print(escape(f"Stop it: {home} iotbutton sandbox stop"), soft_wrap=True)
        else:
            if outcome.removed:
                console.print("Removed the demo's folder: it left nothing on disk.")
            console.print(
                "Next: `iotbutton sandbox start`, then the same commands with "
                "--sandbox; or drop --sandbox to do it for real on AWS."
            )

    outbox: list[dict[str, Any]] = next((e.data for e in events if e.kind == "outbox"), [])
    out.result(views.demo_view(outcome, outbox), human=render)
    if not outcome.ok:
        raise typer.Exit(int(ExitStatus.FAILED))


def _print_outbox(out: Output, title: str, entries: list[dict]) -> None:
    from rich.markup import escape

    console = out.stdout_console()
    console.print(
        f"\n[bold cyan]▶ {escape(title)}[/] (each request checked against Twilio's "
        "OpenAPI description)"
    )
    rows: list[list[str]] = []
    repeats = 0
    for entry in entries:
        row = [
            "SMS" if entry["resource"] == "Messages" else "call",
            entry["fields"].get("To"),
            escape(entry["fields"].get("Body") or _spoken(entry["fields"].get("Twiml", ""))),
            f"{entry.get('http_status')} {entry.get('status') or ''}",
        ]
        if rows and row == rows[-1 - bool(repeats)]:
            repeats += 1  # the same request again (a retry): one line says how many
            if repeats > 1:
                rows.pop()
            rows.append(["", "", f"… {repeats} more like it", ""])
            continue
        repeats = 0
        rows.append(row)
    out.table(None, ["", "to", "text", "Twilio answered"], rows)


def _spoken(document: str) -> str:
    """What a call says, from its TwiML: the text of each <Say>, and the key it asks for."""
    import re
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(document)  # noqa: S314 - TwiML the notifier wrote
    except ElementTree.ParseError:
        return document
    said = []
    for element in root:
        said += [say.text or "" for say in element.iter("Say")]
        if element.tag == "Gather":
            said.append(f"[waits for {element.get('numDigits', '1')} key]")
    return re.sub(r"\s+", " ", " ".join(said)) if said else document
