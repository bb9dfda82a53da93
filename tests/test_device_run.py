"""`device run`: a real button's presses (gpiozero's mock pins) become clicks at the broker, and
no click is lost while the broker is away.

The queue is tested on its own first (order, durability across a new queue object, its bound, a
damaged file). Then the runner runs in a thread of the test against the real sandbox: its button
is the real awsiotsdk client over mutual TLS, and the pins are gpiozero's own (its MockFactory:
the real library, simulated pins). The runner connects through a TCP relay of the test's, which
can drop its connections and refuse new ones, as a Wi-Fi drop would, while the broker and all it
knows stay up. A monitor connected straight to the broker sees what arrives.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from iotbutton_cli.device.click_queue import ClickQueue, QueuedClick
from iotbutton_cli.device.clicks import Timings
from iotbutton_cli.errors import IotButtonError
from relay import Relay

SERIAL = "G030JF0553648RUH"
TOPIC = f"iotbutton/{SERIAL}"
WAIT = 60.0  # seconds to wait for something that should happen much sooner
# Wide windows, so a test's "quick" second press is quick on the busiest machine too.
TIMINGS = Timings.from_ms(long_ms=3000, double_ms=1500, debounce_ms=30)


def payload(click: str) -> dict[str, Any]:
    return {"serialNumber": SERIAL, "batteryVoltage": "1650mV", "clickType": click}


# -- the queue ------------------------------------------------------------------------------------


def test_the_queue_keeps_clicks_in_order_in_private_files_across_a_new_queue(tmp_path):
    folder = tmp_path / "queue"
    queue = ClickQueue(folder)
    for index, click in enumerate(["SINGLE", "DOUBLE", "LONG"]):
        queue.append(click, f"2026-11-21T23:04:0{index}.000Z", TOPIC, payload(click))

    again = ClickQueue(folder)  # a new runner: nothing but the files

    assert [(e.seq, e.click, e.time) for e in again.items()] == [
        (1, "SINGLE", "2026-11-21T23:04:00.000Z"),
        (2, "DOUBLE", "2026-11-21T23:04:01.000Z"),
        (3, "LONG", "2026-11-21T23:04:02.000Z"),
    ]
    oldest = again.oldest()
    assert oldest is not None and oldest.payload == payload("SINGLE")
    again.remove(oldest)
    assert ClickQueue(folder).oldest() == QueuedClick(
        2, "DOUBLE", "2026-11-21T23:04:01.000Z", TOPIC, payload("DOUBLE")
    )
    # Numbers go on from the highest kept, so a new click sorts after the old ones.
    assert again.append("SINGLE", "2026-11-21T23:05:00.000Z", TOPIC, payload("SINGLE")).seq == 4
    assert sorted(path.name for path in folder.iterdir()) == [
        "000000000002.json",
        "000000000003.json",
        "000000000004.json",
    ]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()} == {0o600}


def test_a_click_is_fsynced_before_append_returns(tmp_path, monkeypatch):
    queue = ClickQueue(tmp_path / "queue")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if Path("/proc/self/fd").exists() else "")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    queue.append("SINGLE", "2026-11-21T23:04:00.000Z", TOPIC, payload("SINGLE"))

    assert synced, "nothing was fsync'd"
    if synced[0]:  # the file's data, and the folder that now names it
        assert any(".000000000001.json." in path for path in synced)
        assert str(queue.folder) in synced


def test_a_full_queue_drops_its_oldest_clicks_and_says_which(tmp_path):
    dropped: list[QueuedClick] = []
    queue = ClickQueue(tmp_path / "queue", limit=3, on_dropped=dropped.append)
    for index in range(5):
        queue.append("SINGLE", f"2026-11-21T23:04:0{index}.000Z", TOPIC, payload("SINGLE"))

    assert [entry.seq for entry in queue.items()] == [3, 4, 5]
    assert [entry.seq for entry in dropped] == [1, 2]
    assert len(list(queue.folder.glob("*.json"))) == 3


def test_a_damaged_file_is_set_aside_and_the_queue_goes_on(tmp_path):
    folder = tmp_path / "queue"
    queue = ClickQueue(folder)
    for click in ("SINGLE", "DOUBLE", "LONG", "SINGLE"):
        queue.append(click, "2026-11-21T23:04:00.000Z", TOPIC, payload(click))
    (folder / "000000000001.json").write_text('{"version": 1, "seq": 1, "cli')
    document = json.loads((folder / "000000000002.json").read_text())
    document["payload"]["clickType"] = "TRIPLE"
    (folder / "000000000002.json").write_text(json.dumps(document))
    (folder / ".000000000009.json.123.456.tmp").write_text("half a click")  # a crash mid-write
    skipped: list[Any] = []

    again = ClickQueue(folder, on_skipped=skipped.append)
    first = again.oldest()

    assert first is not None and (first.seq, first.click) == (3, "LONG")
    assert [(s.file, s.kept_as) for s in skipped] == [
        ("000000000001.json", "000000000001.json.corrupt"),
        ("000000000002.json", "000000000002.json.corrupt"),
    ]
    assert skipped[0].reason.startswith("not JSON")
    assert skipped[1].reason == "its payload is not the click's"
    assert len(again) == 2
    assert sorted(path.name for path in folder.iterdir()) == [
        "000000000001.json.corrupt",
        "000000000002.json.corrupt",
        "000000000003.json",
        "000000000004.json",
    ]
    assert ClickQueue(folder).append("LONG", "t", TOPIC, payload("LONG")).seq == 5


def test_one_runner_at_a_time_owns_a_queue(tmp_path):
    first = ClickQueue(tmp_path / "queue")
    first.lock()
    second = ClickQueue(tmp_path / "queue")
    with pytest.raises(IotButtonError) as raised:
        second.lock()
    assert raised.value.code == "queue-busy"
    first.unlock()
    second.lock()
    second.unlock()


# -- against the sandbox ------------------------------------------------------------------------


def sandbox_context() -> Any:
    from iotbutton_cli.context import AppContext, Settings

    return AppContext(Settings(sandbox=True))


class Monitor:
    """The repo's own monitor (its own identity), straight at the broker, collecting the
    button topic's messages until ``count`` have come."""

    def __init__(self, count: int) -> None:
        from iotbutton_cli.device import simulator

        self.messages: list[Any] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

        def watch() -> None:
            try:
                simulator.subscribe(
                    sandbox_context(),
                    "iotbutton/#",
                    self.messages.append,
                    duration=WAIT * 3,
                    count=count,
                    ready=self.ready.set,
                )
            except BaseException as exc:
                self.error = exc
            finally:
                self.done.set()

        threading.Thread(target=watch, daemon=True).start()
        assert self.ready.wait(WAIT), self.error

    def clicks(self) -> list[str]:
        return [message.payload["clickType"] for message in self.messages]

    def wait(self) -> list[Any]:
        assert self.done.wait(WAIT * 3), self.clicks()
        assert self.error is None, self.error
        return self.messages


class Running:
    """``runner.run`` in a thread, with a stop event; its events collected as they come."""

    def __init__(self, source: Any, endpoint: Any, queue_dir: Path, **options: Any) -> None:
        from iotbutton_cli.device import runner

        self.events: list[Any] = []
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

        def go() -> None:
            try:
                self.result = runner.run(
                    sandbox_context(),
                    SERIAL,
                    source,
                    self._event,
                    timings=TIMINGS,
                    queue_dir=queue_dir,
                    stop=self.stop,
                    endpoint=endpoint,
                    **options,
                )
            except BaseException as exc:
                self.error = exc
            finally:
                self._event(None)

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def _event(self, event: Any) -> None:
        with self.changed:
            if event is not None:
                self.events.append(event)
            self.changed.notify_all()

    def kinds(self, kind: str) -> list[Any]:
        return [event for event in self.events if event.kind == kind]

    def wait_for(self, kind: str, count: int = 1, **fields: Any) -> list[Any]:
        """Wait until ``count`` events of ``kind`` (with ``fields``) have come."""

        def matching() -> list[Any]:
            return [
                e
                for e in self.kinds(kind)
                if all(getattr(e, name) == value for name, value in fields.items())
            ]

        with self.changed:
            self.changed.wait_for(
                lambda: len(matching()) >= count or not self.thread.is_alive(), WAIT
            )
            found = matching()
        assert len(found) >= count, (self.error, [e.kind for e in self.events])
        return found

    def finish(self) -> Any:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def button(cli: Any, sandbox: dict[str, Any]) -> dict[str, Any]:
    cli("--sandbox", "things", "create", SERIAL)
    return sandbox


@pytest.fixture
def relay(button: dict[str, Any]) -> Iterator[Relay]:
    relay = Relay(button["mqtt_port"])
    yield relay
    relay.close()


@pytest.fixture
def endpoint(relay: Relay, button: dict[str, Any]) -> Any:
    """The sandbox broker, as the runner reaches it: through the relay."""
    from iotbutton_cli.provisioning.endpoint import Endpoint, device_ca_file

    return Endpoint("localhost", relay.port, device_ca_file(sandbox_context()))


@pytest.fixture
def pins() -> Iterator[Any]:
    """gpiozero's mock pin factory: the real library, pins the test drives."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = previous


def press(pin: Any, gap: float = 0.06) -> None:
    """Down, up, and a pause (longer than the debounce, as any finger's): a button to GND
    against the pull-up reads low while pressed."""
    import time

    pin.drive_low()
    time.sleep(gap)
    pin.drive_high()
    time.sleep(gap)


def keyboard() -> tuple[Any, Callable[[str], None]]:
    """A keyboard source reading a pipe, and a function that types into it."""
    from iotbutton_cli.device.runner import Keyboard

    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end, "r")
    writer = os.fdopen(write_end, "w")

    def type_in(text: str) -> None:
        if text:
            writer.write(text)
            writer.flush()
        else:
            writer.close()  # Ctrl-D

    return Keyboard(reader), type_in


def test_press_patterns_on_a_gpio_pin_become_clicks_at_the_broker(button, endpoint, pins, tmp_path):
    from iotbutton_cli.device.runner import GpioButton

    pin = pins.pin(17)
    monitor = Monitor(count=3)
    running = Running(GpioButton(17), endpoint, tmp_path / "queue")
    running.wait_for("connected")

    press(pin)
    running.wait_for("sent", 1)
    press(pin)
    press(pin)
    running.wait_for("sent", 2)
    pin.drive_low()
    # LONG fires at the threshold, with the button still held.
    [long_sent] = [e for e in running.wait_for("sent", 3) if e.entry.click == "LONG"]
    pin.drive_high()
    stopped = running.finish()

    messages = monitor.wait()
    assert monitor.clicks() == ["SINGLE", "DOUBLE", "LONG"]
    assert [e.entry.click for e in running.kinds("sent")] == ["SINGLE", "DOUBLE", "LONG"]
    assert running.kinds("queued") == []  # connected all along: sent at once
    for message, sent in zip(messages, running.kinds("sent"), strict=True):
        assert message.topic == TOPIC
        assert message.payload == {**payload(sent.entry.click), "reportedTime": sent.entry.time}
        assert sent.was_queued is False
    assert long_sent.entry.payload["clickType"] == "LONG"
    assert stopped.queued == 0 and list((tmp_path / "queue").glob("*.json")) == []


def test_clicks_made_while_the_broker_is_away_arrive_in_order_once_it_is_back(
    button, relay, endpoint, pins, tmp_path
):
    from iotbutton_cli.device.runner import GpioButton

    pin = pins.pin(17)
    monitor = Monitor(count=3)
    running = Running(GpioButton(17), endpoint, tmp_path / "queue")
    running.wait_for("connected")

    relay.cut(refuse=True)  # the Wi-Fi goes
    running.wait_for("disconnected")
    press(pin)
    running.wait_for("queued", 1)
    press(pin)
    press(pin)
    running.wait_for("queued", 2)
    pin.drive_low()
    running.wait_for("queued", 3)
    pin.drive_high()

    queued = [event.entry for event in running.kinds("queued")]
    assert [entry.click for entry in queued] == ["SINGLE", "DOUBLE", "LONG"]
    files = sorted((tmp_path / "queue").glob("*.json"))
    assert [json.loads(path.read_text())["click"] for path in files] == ["SINGLE", "DOUBLE", "LONG"]
    assert monitor.messages == []

    relay.refuse = False  # ... and comes back: awscrt reconnects by itself
    running.wait_for("connected", again=True)
    running.wait_for("sent", 3)
    running.finish()

    messages = monitor.wait()
    assert monitor.clicks() == ["SINGLE", "DOUBLE", "LONG"]
    # Each says when it was pressed, not when it was sent.
    assert [m.payload["reportedTime"] for m in messages] == [entry.time for entry in queued]
    for message in messages:
        pressed = datetime.fromisoformat(message.payload["reportedTime"].replace("Z", "+00:00"))
        assert pressed < message.time
    assert [e.was_queued for e in running.kinds("sent")] == [True, True, True]
    assert list((tmp_path / "queue").glob("*.json")) == []


def test_clicks_kept_by_a_run_that_never_connected_go_first_in_the_next(
    button, relay, endpoint, tmp_path
):
    relay.refuse = True  # the broker is away from the start
    source, type_in = keyboard()
    first = Running(source, endpoint, tmp_path / "queue")
    first.wait_for("connect-failed")
    type_in("\n")
    first.wait_for("queued", 1)
    type_in("l\n")
    first.wait_for("queued", 2)
    stopped = first.finish()
    assert stopped.queued == 2
    assert [e.entry.click for e in first.kinds("queued")] == ["SINGLE", "LONG"]
    assert first.kinds("sent") == []
    error = first.kinds("connect-failed")[0].error
    assert error.code in ("certificate-refused", "endpoint-unreachable", "endpoint-timeout")

    relay.refuse = False
    monitor = Monitor(count=3)
    source, type_in = keyboard()
    second = Running(source, endpoint, tmp_path / "queue")
    [ready] = second.wait_for("ready")
    assert ready.queued == 2
    second.wait_for("sent", 2)
    type_in("\n\n")  # two Enters at once: a double click
    second.wait_for("sent", 3)
    type_in("")  # Ctrl-D ends the keyboard's run
    second.thread.join(WAIT)
    assert not second.thread.is_alive() and second.error is None
    assert second.result.queued == 0

    monitor.wait()
    assert monitor.clicks() == ["SINGLE", "LONG", "DOUBLE"]
    assert [e.was_queued for e in second.kinds("sent")] == [True, True, False]


# -- the command ----------------------------------------------------------------------------------


def invoke(*args: str, input: str | None = None) -> Any:
    from iotbutton_cli.cli.app import app

    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_the_keyboard_run_prints_one_json_line_per_event(button, tmp_path):
    result = invoke(
        "--sandbox",
        "device",
        "run",
        "--keyboard",
        "--double-ms",
        "1500",
        "--long-ms",
        "3000",
        "--queue-dir",
        str(tmp_path / "queue"),
        "--json",
        input="\n\nl\n\n",
    )

    assert result.exit_code == 0, result.stdout + result.stderr
    events = json_lines(result.stdout)
    assert events[0] == {
        "event": "ready",
        "serial": SERIAL,
        "input": "keyboard",
        "queue": str(tmp_path / "queue"),
        "timings": {"long_ms": 3000, "double_ms": 1500, "debounce_ms": 30},
        "queued": 0,
    }
    sent = [event for event in events if event["event"] == "sent"]
    assert [event["click"] for event in sent] == ["DOUBLE", "LONG", "SINGLE"]
    assert [event["seq"] for event in sent] == [1, 2, 3]
    for event in sent:
        assert event["topic"] == TOPIC
        assert event["payload"]["clickType"] == event["click"]
        assert datetime.fromisoformat(event["time"]).utcoffset().total_seconds() == 0
    assert events[-1] == {"event": "stopped", "queue": str(tmp_path / "queue"), "queued": 0}
    assert result.stderr == ""


def test_people_get_a_line_per_click_and_state_changes_on_stderr(button, tmp_path):
    result = invoke(
        "--sandbox",
        "device",
        "run",
        "--keyboard",
        "--queue-dir",
        str(tmp_path / "queue"),
        input="l\n",
    )

    assert result.exit_code == 0, result.stdout + result.stderr
    *queued, sent = result.stdout.splitlines()
    clock, click, said = sent.split(" ", 2)
    assert click == "LONG"
    # Typed before the first connection was up: kept, then sent.
    if queued:
        assert queued == [f"{clock} LONG queued (offline)"] and said == "sent (waited offline)"
    else:
        assert said == "sent"
    datetime.strptime(clock, "%H:%M:%S")
    assert result.stderr.startswith(f"Button {SERIAL}: Enter is a press")
    assert "Connected to localhost:" in result.stderr
    assert result.stderr.rstrip().endswith("Stopped.")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], "choose-input", "Which input is the button? Give --gpio PIN or --keyboard."),
        (["--gpio", "17", "--keyboard"], "choose-input", "Give one of --gpio PIN and --keyboard."),
        (
            ["--keyboard", "--long-ms", "50"],
            "bad-timing",
            "--long-ms must be between 300 and 10000 ms, not 50.",
        ),
        (["--keyboard", "--port", "80"], "bad-port", None),  # data_endpoint's own words
    ],
)
def test_wrong_options_are_one_line_usage_errors(args, code, message):
    result = invoke("device", "run", *args, "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == code
    assert error["message"] == (message or error["message"])

    people = invoke("device", "run", *args)
    assert people.exit_code == 2
    assert people.stderr.splitlines()[0] == f"Error: {error['message']}"
    assert "Traceback" not in people.stderr


def test_port_443_offers_alpn_x_amzn_mqtt_ca(button, tmp_path):
    result = invoke(
        "--sandbox",
        "device",
        "run",
        "--keyboard",
        "--port",
        "443",
        "--queue-dir",
        str(tmp_path / "queue"),
        "--json",
        input="l\n",
    )

    assert result.exit_code == 0, result.stdout + result.stderr
    events = json_lines(result.stdout)
    [connected] = [event for event in events if event["event"] == "connected"]
    assert connected["alpn"] is True
    assert connected["endpoint"] == f"localhost:{button['mqtt_port']}"
    assert [event["click"] for event in events if event["event"] == "sent"] == ["LONG"]


def test_gpio_failures_are_one_line_errors(button, pins, tmp_path, monkeypatch):
    from gpiozero import Button

    queue = ["--queue-dir", str(tmp_path / "queue")]
    busy = Button(17)  # another program has the pin
    try:
        result = invoke("--sandbox", "device", "run", "--gpio", "17", *queue)
    finally:
        busy.close()
    assert result.exit_code == 1
    first, hint = result.stderr.splitlines()
    assert first.startswith("Error: Cannot read GPIO 17 (gpiozero: ")
    assert hint.startswith("Hint: On a Raspberry Pi:")

    monkeypatch.setitem(__import__("sys").modules, "gpiozero", None)  # not installed
    result = invoke("--sandbox", "device", "run", "--gpio", "17", *queue, "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "gpiozero-missing"
    assert error["message"] == "Reading GPIO 17 needs gpiozero, which is not installed."
    assert "pipx inject iotbutton-cli gpiozero" in error["hint"]
    assert "pip install 'iotbutton-cli[pi]'" in error["hint"]

    held = ClickQueue(tmp_path / "queue")
    held.lock()
    try:
        result = invoke("--sandbox", "device", "run", "--keyboard", *queue, "--json", input="")
    finally:
        held.unlock()
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "queue-busy"


def test_sigterm_stops_it_as_ctrl_c_does_with_exit_0(button, tmp_path):
    import queue as queues
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iotbutton_cli",
            "--sandbox",
            "device",
            "run",
            "--keyboard",
            "--queue-dir",
            str(tmp_path / "queue"),
            "--json",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert process.stdin is not None and process.stdout is not None
    lines: queues.Queue[str] = queues.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in iter(process.stdout.readline, "")],
        daemon=True,
    ).start()

    def next_event(kind: str) -> dict[str, Any]:
        while True:
            event = json.loads(lines.get(timeout=WAIT))
            if event["event"] == kind:
                return event

    try:
        next_event("connected")
        process.stdin.write("l\n")
        process.stdin.flush()
        assert next_event("sent")["click"] == "LONG"
        process.send_signal(signal.SIGTERM)
        assert next_event("stopped")["queued"] == 0
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in process.stderr.read()


def test_every_kind_of_event_prints_the_keys_the_reference_shows(button, relay, endpoint, tmp_path):
    """`device run --json` prints event_view of each event; tests/test_json_views.py runs the
    command for the everyday kinds, and this run makes every kind the reference documents
    happen (a damaged queue file, a refused connection, a full queue, a line that is no press,
    the connection coming and going) and compares each one's keys with the reference's."""
    from iotbutton_cli.cli.device_run import event_view
    from test_json_views import documented, key_paths

    folder = tmp_path / "queue"
    folder.mkdir(mode=0o700)
    (folder / "000000000001.json").write_text("not a click")
    relay.refuse = True
    source, type_in = keyboard()
    running = Running(source, endpoint, folder, limit=1)
    running.wait_for("connect-failed")
    type_in("\n")
    running.wait_for("queued", 1)
    running.wait_for("skipped")  # the damaged file made room for the SINGLE: set aside, not lost
    assert (folder / "000000000001.json.corrupt").read_text() == "not a click"
    type_in("l\n")
    running.wait_for("dropped")  # the SINGLE: the queue holds one click
    type_in("x\n")
    running.wait_for("note")
    relay.refuse = False
    running.wait_for("sent", 1)
    relay.cut(refuse=True)
    running.wait_for("disconnected")
    running.finish()

    examples, _ = documented()
    shown: dict[str, set[str]] = {}
    for example in examples["device run"]:
        shown.setdefault(example["event"], set()).update(key_paths(example, opaque={"payload"}))
    printed: dict[str, set[str]] = {}
    for event in running.events:
        view = event_view(event)
        printed.setdefault(view["event"], set()).update(key_paths(view, opaque={"payload"}))
    assert set(printed) == set(shown), "event kinds printed and documented differ"
    for kind, keys in printed.items():
        assert keys == shown[kind], kind
