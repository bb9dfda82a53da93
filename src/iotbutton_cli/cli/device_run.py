"""``iotbutton device run``: be the button on a Raspberry Pi, or with the Enter key.

Registered on the ``device`` group as ``app.command("run")(device_run.run)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotbutton_cli.cli.common import JsonOption, command_context

if TYPE_CHECKING:
    from iotbutton_cli.cli.output import Output
    from iotbutton_cli.device.runner import Event


def run(
    ctx: typer.Context,
    serial: Annotated[
        str | None, typer.Argument(help="Button serial (default: your only button).")
    ] = None,
    gpio: Annotated[
        int | None,
        typer.Option(
            "--gpio",
            metavar="PIN",
            min=0,
            max=27,
            help="The GPIO pin (BCM number) the button connects to GND.",
        ),
    ] = None,
    keyboard: Annotated[
        bool, typer.Option("--keyboard", help="Enter is the button (no hardware needed).")
    ] = False,
    long_ms: Annotated[
        int, typer.Option("--long-ms", metavar="MS", help="A press held this long is LONG.")
    ] = 1500,
    double_ms: Annotated[
        int,
        typer.Option("--double-ms", metavar="MS", help="A second press within this is DOUBLE."),
    ] = 500,
    debounce_ms: Annotated[
        int,
        typer.Option(
            "--debounce-ms", metavar="MS", help="Ignore contact bounce shorter than this."
        ),
    ] = 30,
    queue_dir: Annotated[
        Path | None,
        typer.Option(
            "--queue-dir",
            metavar="DIR",
            help="Keep unsent clicks here (default: in the state folder).",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            help="8883 (default), or 443 with ALPN x-amzn-mqtt-ca (sandbox: ALPN on its port).",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Be the button: presses on a GPIO pin (or Enter) become clicks.

    Until Ctrl-C or SIGTERM; clicks made offline wait on disk and go in order.
    """
    import signal
    import threading

    from iotbutton_cli.device import runner
    from iotbutton_cli.device.clicks import Timings
    from iotbutton_cli.errors import usage_error

    app_ctx, out = command_context(ctx, json)
    if (gpio is None) == (not keyboard):
        raise usage_error(
            "choose-input",
            "Give one of --gpio PIN and --keyboard."
            if keyboard
            else "Which input is the button? Give --gpio PIN or --keyboard.",
            "For example `iotbutton device run --gpio 17` (a button between GPIO 17 and GND), "
            "or `iotbutton device run --keyboard` to try it with the Enter key.",
        )
    timings = Timings.from_ms(long_ms, double_ms, debounce_ms)
    source: runner.Source = runner.Keyboard() if gpio is None else runner.GpioButton(gpio)
    stop = threading.Event()
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        # systemd stops a service with SIGTERM: stop as Ctrl-C does, sending what it can.
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        runner.run(
            app_ctx,
            serial,
            source,
            lambda event: show(out, event),
            timings=timings,
            queue_dir=queue_dir,
            stop=stop,
            port=port,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def show(out: Output, event: Event) -> None:
    """One JSON line per event with --json; for people, clicks on stdout, the rest on stderr."""
    if out.json:
        out.json_line(event_view(event))
        return
    line = human_line(event)
    if line is None:
        return
    text, is_result = line
    if is_result:
        out.say(text)
    else:
        out.info(text)


def event_view(event: Event) -> dict[str, Any]:
    """One line of ``device run --json``."""
    from iotbutton_cli.cli.views import error_view

    view: dict[str, Any] = {"event": event.kind}
    if event.entry is not None:
        view.update(
            click=event.entry.click,
            time=_iso(event.entry.time),
            seq=event.entry.seq,
            topic=event.entry.topic,
            payload=event.entry.payload,
        )
    if event.kind == "ready":
        view.update(
            serial=event.serial,
            input=event.source,
            queue=str(event.folder),
            timings=event.timings.as_ms() if event.timings else None,
        )
    if event.kind in ("connected", "disconnected", "connect-failed"):
        view["endpoint"] = event.endpoint
    if event.kind == "connected":
        view.update(again=event.again, alpn=event.alpn)
    if event.kind == "disconnected":
        view["reason"] = event.reason
    if event.kind == "connect-failed" and event.error is not None:
        view.update(error=error_view(event.error), retry_in=event.retry_in)
    if event.kind == "sent":
        view["waited"] = event.was_queued
    if event.kind == "skipped" and event.skipped is not None:
        view.update(
            file=event.skipped.file, reason=event.skipped.reason, kept_as=event.skipped.kept_as
        )
    if event.kind == "note":
        view["message"] = event.reason
    if event.kind == "stopped":
        view["queue"] = str(event.folder)
    if event.queued is not None:
        view["queued"] = event.queued
    return view


def human_line(event: Event) -> tuple[str, bool] | None:
    """The line for people and whether it is a result (stdout), or None."""
    from rich.markup import escape

    kind = event.kind
    entry = event.entry
    if kind in ("queued", "sent") and entry is not None:
        when = _local_clock(entry.time)
        if kind == "queued":
            return f"{when} {entry.click} queued (offline)", True
        return f"{when} {entry.click} sent" + (
            " (waited offline)" if event.was_queued else ""
        ), True
    if kind == "ready":
        return escape(_ready_line(event)), False
    if kind == "connected":
        waiting = f" Sending {_clicks(event.queued, 'queued click')}." if event.queued else ""
        verb = "Reconnected" if event.again else "Connected"
        alpn = " (ALPN x-amzn-mqtt-ca)" if event.alpn else ""
        return escape(f"{verb} to {event.endpoint}{alpn}.{waiting}"), False
    if kind == "disconnected":
        return escape(
            f"Lost the connection to {event.endpoint} ({event.reason}); clicks are kept on "
            "disk and sent once it is back."
        ), False
    if kind == "connect-failed" and event.error is not None:
        return escape(
            f"Cannot connect yet: {event.error.message} Trying again in "
            f"{event.retry_in:.0f} s; clicks are kept on disk."
        ), False
    if kind == "dropped" and entry is not None:
        return escape(
            f"Warning: the click queue is full ({event.queued} clicks): dropped its oldest, "
            f"{entry.click} of {_local_clock(entry.time, date=True)}."
        ), False
    if kind == "skipped" and event.skipped is not None:
        skipped = event.skipped
        aside = f"set aside as {skipped.kept_as}" if skipped.kept_as else "left where it is"
        return escape(
            f"Warning: {skipped.file} in the click queue is no click ({skipped.reason}); "
            f"{aside}, never sent."
        ), False
    if kind == "note":
        return escape(event.reason or ""), False
    if kind == "stopped":
        if event.queued:
            return escape(
                f"Stopped; {_clicks(event.queued)} still queued in {event.folder}, sent "
                "first next time."
            ), False
        return "Stopped.", False
    return None


def _ready_line(event: Event) -> str:
    timings = event.timings
    long_s = f"{timings.long:g}" if timings else "1.5"
    double_s = f"{timings.double:g}" if timings else "0.5"
    if event.source == "keyboard":
        how = (
            f"Enter is a press (twice within {double_s} s: DOUBLE), l and Enter a long press "
            "(Ctrl-C or Ctrl-D to stop)."
        )
    else:
        how = (
            f"press it on {event.source} (twice within {double_s} s: DOUBLE, held {long_s} s: "
            "LONG; Ctrl-C to stop)."
        )
    line = f"Button {event.serial}: {how}"
    if event.queued:
        line += f" {_clicks(event.queued)} from an earlier run queued: they go first."
    return line


def _clicks(count: int, noun: str = "click") -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _iso(text: str) -> str:
    """The click's time as every --json time is written: ISO 8601 UTC, to the millisecond."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat(
            timespec="milliseconds"
        )
    except ValueError:
        return text


def _local_clock(text: str, date: bool = False) -> str:
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return text
    return moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
