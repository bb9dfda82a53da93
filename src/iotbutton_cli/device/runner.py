"""Be the button on a Raspberry Pi: presses of a real button (or Enter) become clicks published
over mutual TLS, with no click lost to a dropped connection.

Every click goes to the on-disk queue first (:mod:`.click_queue`, fsync'd), then a sender thread
publishes the queue, oldest first, at QoS 1, and deletes each click once the broker acknowledged
it. So a click made while the Wi-Fi is down, the broker restarts, or before the first connection
ever succeeded is sent, in order, when the connection is back, and one made just before a power
cut is sent by the next run.

Connecting is the simulator's (``simulator._connect``: the same awsiotsdk client, client id = the
serial, the button's certificate and key). A connection that was up and drops is brought back by
awscrt itself (every 1 to 5 s); a first connection that fails is retried here, with a backoff
from 1 s doubling up to :data:`BACKOFF_MAX_SECONDS`, for as long as the runner runs.

Stopping (Ctrl-C, SIGTERM, the end of the keyboard's input) decides a SINGLE still in its double
-click window, then sends what it can for :data:`FLUSH_SECONDS`; what is left stays queued for the
next run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

from iotbutton_cli.context import AppContext, clean_error, sandbox_gone_error
from iotbutton_cli.device import simulator
from iotbutton_cli.device.click_queue import DEFAULT_LIMIT, ClickQueue, QueuedClick, Skipped
from iotbutton_cli.device.clicks import ButtonClicks, Click, Timings
from iotbutton_cli.errors import ExitStatus, IotButtonError
from iotbutton_cli.notifier_lambda.contract import DEFAULT_BATTERY_MV, button_payload
from iotbutton_cli.provisioning.endpoint import MQTT_PORTS, Endpoint, data_endpoint
from iotbutton_cli.provisioning.policies import TOPIC_PREFIX

# The click's own time in the payload, as AWS IoT 1-Click's button events carry it
# (``deviceEvent.buttonClicked.reportedTime``): a click sent late still says when it happened.
REPORTED_TIME_FIELD = "reportedTime"
QUEUE_FOLDER = "clicks"
BACKOFF_MIN_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# How long a publish may wait for its PUBACK while connected before it is sent again.
PUBACK_SECONDS = 10.0
FLUSH_SECONDS = 3.0
SANDBOX_CHECK_SECONDS = 5.0
POLL_SECONDS = 0.2

GPIOZERO_HINT = (
    "Install it: `pipx inject iotbutton-cli gpiozero` (or `pip install 'iotbutton-cli[pi]'`); "
    "--keyboard needs no GPIO."
)


# -- what the runner tells ------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One thing that happened, for the CLI to print. ``kind`` is one of: ``ready``,
    ``connected``, ``disconnected``, ``connect-failed``, ``queued`` (a click kept while
    offline), ``sent`` (a click the broker acknowledged), ``dropped`` (pushed out of a full
    queue), ``skipped`` (a queue file that is not a click), ``note``, ``stopped``."""

    kind: str
    entry: QueuedClick | None = None
    endpoint: str | None = None
    reason: str | None = None
    error: IotButtonError | None = None
    retry_in: float | None = None
    queued: int | None = None  # how many clicks are in the queue
    again: bool = False  # connected: after a loss (not the first time)
    alpn: bool = False  # connected: the TLS handshake offered ALPN x-amzn-mqtt-ca (port 443)
    was_queued: bool = False  # sent: it had waited in the queue (offline, or an earlier run)
    skipped: Skipped | None = None
    serial: str | None = None
    source: str | None = None
    folder: Path | None = None
    timings: Timings | None = None


@dataclass
class Stopped:
    """How the run ended: clicks still queued in ``folder`` go first next time."""

    serial: str
    folder: Path
    queued: int


class Source(Protocol):
    """Where presses come from: ``open`` takes hold of the input (or fails with a one-line
    error), ``start`` begins telling ``runner`` of presses."""

    label: str

    def open(self) -> None: ...

    def start(self, runner: Runner) -> None: ...

    def close(self) -> None: ...


# -- input sources ----------------------------------------------------------------------------


class GpioButton:
    """A push button between a GPIO pin (BCM numbering) and GND, read with gpiozero and the
    pin's internal pull-up: the pin reads low while the button is down. gpiozero's own debounce
    is off (``bounce_time=None``): the runner debounces, the same way on every pin factory."""

    def __init__(self, pin: int) -> None:
        self.pin = pin
        self.label = f"GPIO {pin}"
        self._button: Any = None

    def open(self) -> None:
        try:
            import gpiozero
        except ImportError:
            raise IotButtonError(
                "gpiozero-missing",
                f"Reading {self.label} needs gpiozero, which is not installed.",
                GPIOZERO_HINT,
                ExitStatus.USAGE,
            ) from None
        try:
            with warnings.catch_warnings():  # gpiozero warns of each pin library it falls past
                warnings.simplefilter("ignore")
                button = gpiozero.Button(self.pin, pull_up=True, bounce_time=None)
        except Exception as exc:
            raise IotButtonError(
                "gpio-unavailable",
                f"Cannot read {self.label} (gpiozero: {_one_line(exc)}).",
                "On a Raspberry Pi: is the pin free, is your user in the gpio group, and does "
                "gpiozero find a pin library (docs/raspberry-pi.md, Install)? Elsewhere, try "
                "--keyboard.",
            ) from None
        self._button = button

    def start(self, runner: Runner) -> None:
        self._button.when_pressed = lambda: runner.edge(True)
        self._button.when_released = lambda: runner.edge(False)

    def close(self) -> None:
        if self._button is not None:
            with contextlib.suppress(Exception):
                self._button.close()
            self._button = None


class Keyboard:
    """Enter is a press: one Enter a SINGLE, two within the double-click window a DOUBLE, and
    ``l`` then Enter a LONG. The end of the input (Ctrl-D) stops the runner."""

    label = "keyboard"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def open(self) -> None:
        """Nothing to take hold of: the input is there."""

    def start(self, runner: Runner) -> None:
        stream = self.stream if self.stream is not None else sys.stdin
        threading.Thread(
            target=self._read, args=(stream, runner), name="iotbutton-keyboard", daemon=True
        ).start()

    @staticmethod
    def _read(stream: IO[str], runner: Runner) -> None:
        try:
            for line in stream:
                word = line.strip().lower()
                if word == "":
                    runner.tap()
                elif word in ("l", "long"):
                    runner.hold()
                else:
                    runner.note(f"{word!r} is no press: Enter is one, l and Enter a long one.")
        except (OSError, ValueError):  # the input was closed under us
            pass
        runner.request_stop()

    def close(self) -> None:
        """The reading thread ends with its input (it is a daemon: it never holds up the exit)."""


# -- the runner ---------------------------------------------------------------------------------


@dataclass
class _Link:
    """The MQTT side, as the sender thread and awscrt's callbacks share it."""

    endpoint: Endpoint | None = None
    connection: Any = None
    connected: threading.Event = field(default_factory=threading.Event)


class Runner:
    """One button: input → clicks → queue → broker."""

    def __init__(
        self,
        ctx: AppContext,
        serial: str,
        identity: simulator.DeviceCredentials,
        folder: Path,
        source: Source,
        on_event: Callable[[Event], None],
        timings: Timings | None = None,
        endpoint: Endpoint | None = None,
        port: int | None = None,
        stop: threading.Event | None = None,
        limit: int = DEFAULT_LIMIT,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        battery_mv: int = DEFAULT_BATTERY_MV,
    ) -> None:
        self.ctx = ctx
        self.serial = serial
        self.identity = identity
        self.topic = f"{TOPIC_PREFIX}/{serial}"
        self.source = source
        self.timings = timings or Timings()
        self.clock = clock
        self.wall_clock = wall_clock
        self.battery_mv = battery_mv
        self.flush_seconds = flush_seconds
        self.port = port
        self._on_event = on_event
        self._emit_lock = threading.Lock()
        self._stop = stop if stop is not None else threading.Event()
        self._link = _Link(endpoint)
        self._input = threading.Condition()  # guards the classifier; wakes the ticker
        self._clicks = ButtonClicks(self.timings)
        self._input_closed = False
        self._wake = threading.Event()  # wakes the sender: a click, a (re)connection, stopping
        self._stopping = threading.Event()
        self._flush_until = 0.0
        self._waited: set[int] = set()  # seqs of clicks that had to wait in the queue
        self._fatal: BaseException | None = None
        self.queue = ClickQueue(
            folder,
            limit,
            on_dropped=lambda entry: self._emit(
                Event("dropped", entry=entry, queued=len(self.queue))
            ),
            on_skipped=lambda skipped: self._emit(Event("skipped", skipped=skipped)),
        )

    # -- input (gpiozero's callback thread, the keyboard's thread) ----------------------------

    def edge(self, pressed: bool) -> None:
        """The contact closed (``pressed``) or opened, now."""
        self._feed(lambda now: self._clicks.edge(pressed, now))

    def tap(self) -> None:
        self._feed(self._clicks.tap)

    def hold(self) -> None:
        self._feed(self._clicks.hold)

    def note(self, text: str) -> None:
        self._emit(Event("note", reason=text))

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _feed(self, step: Callable[[float], list[Click]]) -> None:
        with self._input:
            if self._input_closed:
                return
            self._record(step(self.clock()))
            self._input.notify_all()

    # -- running -------------------------------------------------------------------------------

    def run(self) -> Stopped:
        """Until the stop event (or Ctrl-C); the clicks still queued are in the result."""
        self.queue.lock()
        try:
            self.source.open()
            try:
                return self._run_started()
            finally:
                self.source.close()
        finally:
            self.queue.unlock()

    def _run_started(self) -> Stopped:
        self._waited.update(entry.seq for entry in self.queue.items())
        self._emit(
            Event(
                "ready",
                serial=self.serial,
                source=self.source.label,
                folder=self.queue.folder,
                queued=len(self.queue),
                timings=self.timings,
            )
        )
        ticker = threading.Thread(target=self._guarded(self._tick_loop), daemon=True)
        sender = threading.Thread(target=self._guarded(self._send_loop), daemon=True)
        ticker.name, sender.name = "iotbutton-clicks", "iotbutton-sender"
        ticker.start()
        sender.start()
        self.source.start(self)
        try:
            while not self._stop.wait(POLL_SECONDS):
                pass
        except KeyboardInterrupt:
            pass
        self._shutdown(ticker, sender)
        if self._fatal is not None:
            raise self._fatal
        stopped = Stopped(self.serial, self.queue.folder, len(self.queue))
        self._emit(Event("stopped", queued=stopped.queued, folder=stopped.folder))
        return stopped

    def _shutdown(self, ticker: threading.Thread, sender: threading.Thread) -> None:
        self.source.close()
        with self._input:
            self._input_closed = True
            self._record(self._clicks.finish(self.clock()))
            self._input.notify_all()
        ticker.join(timeout=2)
        self._flush_until = self.clock() + self.flush_seconds
        self._stopping.set()
        self._wake.set()
        # A first connection under way may take its full timeout to give up.
        sender.join(timeout=self.flush_seconds + simulator.CONNECT_TIMEOUT_SECONDS + 1)
        if self._link.connection is not None:
            simulator._disconnect(self._link.connection)

    def _guarded(self, loop: Callable[[], None]) -> Callable[[], None]:
        def guarded() -> None:
            try:
                loop()
            except BaseException as exc:  # said in the main thread, which stops now
                error = clean_error(exc, self.ctx) if isinstance(exc, Exception) else None
                self._fatal = error or exc
                self.request_stop()

        return guarded

    # -- clicks ----------------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        with self._input:
            while not self._input_closed:
                self._record(self._clicks.tick(self.clock()))
                deadline = self._clicks.next_deadline()
                wait = 1.0 if deadline is None else deadline - self.clock()
                self._input.wait(timeout=min(1.0, max(0.001, wait)))

    def _record(self, clicks: Iterable[Click]) -> None:
        """Keep each click on disk (under the input lock, so in the order they happened)."""
        for click in clicks:
            pressed = self.wall_clock() - (self.clock() - click.pressed_at)
            when = utc_text(pressed)
            payload: dict[str, Any] = button_payload(self.serial, click.type, self.battery_mv)
            payload[REPORTED_TIME_FIELD] = when
            entry = self.queue.append(click.type, when, self.topic, payload)
            if not self._link.connected.is_set():
                self._waited.add(entry.seq)
                self._emit(Event("queued", entry=entry, queued=len(self.queue)))
            self._wake.set()

    # -- sending -----------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        backoff = BACKOFF_MIN_SECONDS
        checked_sandbox = self.clock()
        while True:
            self._wake.clear()
            link = self._link
            if self._stopping.is_set():
                if not len(self.queue) or self.clock() >= self._flush_until:
                    return
                if link.connection is not None and not link.connected.is_set():
                    return  # lost: awscrt is at it, but the exit waits for nobody
            if link.connection is None:
                if self._stop.is_set() and not self._stopping.is_set():
                    self._wake.wait(POLL_SECONDS)  # the main thread decides the last clicks
                    continue
                if self._connect(backoff):
                    backoff = BACKOFF_MIN_SECONDS
                elif self._stopping.is_set():
                    return  # one try to send what is left; it stays queued
                else:
                    self._wake.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            if not link.connected.is_set():
                if self.clock() - checked_sandbox >= SANDBOX_CHECK_SECONDS:
                    checked_sandbox = self.clock()
                    gone = sandbox_gone_error(self.ctx)  # nothing will come back: say so
                    if gone is not None:
                        raise gone
                self._wake.wait(1.0)
                continue
            entry = self.queue.oldest()
            if entry is None:
                self._wake.wait(1.0)
                continue
            if self._publish(entry):
                self.queue.remove(entry)
                was_queued = entry.seq in self._waited
                self._waited.discard(entry.seq)
                self._emit(
                    Event("sent", entry=entry, was_queued=was_queued, queued=len(self.queue))
                )

    def _connect(self, backoff: float) -> bool:
        link = self._link
        try:
            if link.endpoint is None:
                link.endpoint = data_endpoint(self.ctx, self.port)
            connection = simulator._connect(
                link.endpoint,
                self.identity,
                on_connection_interrupted=self._interrupted,
                on_connection_resumed=self._resumed,
            )
        except Exception as exc:
            error = clean_error(exc, self.ctx)
            if error is None:
                raise
            gone = sandbox_gone_error(self.ctx)
            if gone is not None:
                raise gone from None
            if error.exit_status in (ExitStatus.USAGE, ExitStatus.CREDENTIALS):
                raise error from None  # waiting will not fix it
            self._emit(
                Event(
                    "connect-failed",
                    endpoint=self._where(),
                    error=error,
                    retry_in=backoff,
                    queued=len(self.queue),
                )
            )
            return False
        link.connection = connection
        link.connected.set()
        self._emit(
            Event(
                "connected",
                endpoint=self._where(),
                alpn=link.endpoint.alpn,
                queued=len(self.queue),
            )
        )
        return True

    def _publish(self, entry: QueuedClick) -> bool:
        """True once the broker acknowledged ``entry``; False to try it again (the connection
        went, or no PUBACK came for :data:`PUBACK_SECONDS` of being connected, or stopping)."""
        from awscrt import mqtt

        future, _ = self._link.connection.publish(
            entry.topic, json.dumps(entry.payload), mqtt.QoS.AT_LEAST_ONCE
        )
        waited = 0.0
        while True:
            try:
                future.result(timeout=POLL_SECONDS)
                return True
            except concurrent.futures.TimeoutError:
                pass
            except Exception:  # lost with the connection: sent again once it is back
                return False
            if self._stopping.is_set() and self.clock() >= self._flush_until:
                return False
            if self._link.connected.is_set():
                # Offline, awscrt keeps the publish and sends it again on reconnecting.
                waited += POLL_SECONDS
                if waited >= PUBACK_SECONDS:
                    return False

    def _interrupted(self, *_: Any, error: Any = None, **__: Any) -> None:
        self._link.connected.clear()
        self._wake.set()
        reason = getattr(error, "name", None) or str(error or "") or "no reason given"
        self._emit(
            Event("disconnected", endpoint=self._where(), reason=reason, queued=len(self.queue))
        )

    def _resumed(self, *_: Any, **__: Any) -> None:
        self._link.connected.set()
        self._wake.set()
        endpoint = self._link.endpoint
        self._emit(
            Event(
                "connected",
                endpoint=self._where(),
                again=True,
                alpn=bool(endpoint and endpoint.alpn),
                queued=len(self.queue),
            )
        )

    def _where(self) -> str | None:
        endpoint = self._link.endpoint
        return None if endpoint is None else f"{endpoint.host}:{endpoint.port}"

    def _emit(self, event: Event) -> None:
        with self._emit_lock:
            self._on_event(event)


# -- the service -------------------------------------------------------------------------------


def run(
    ctx: AppContext,
    serial: str | None,
    source: Source,
    on_event: Callable[[Event], None],
    timings: Timings | None = None,
    queue_dir: Path | None = None,
    stop: threading.Event | None = None,
    endpoint: Endpoint | None = None,
    port: int | None = None,
    limit: int = DEFAULT_LIMIT,
    flush_seconds: float = FLUSH_SECONDS,
) -> Stopped:
    """Be button ``serial`` (default: the only one) until ``stop`` is set or Ctrl-C.

    ``port``: 8883 (the default) or 443 (ALPN ``x-amzn-mqtt-ca``), as ``data_endpoint`` takes
    it. ``endpoint`` replaces the account's (or the sandbox's) MQTT endpoint: a relay, in tests.
    """
    if port is not None and port not in MQTT_PORTS:
        data_endpoint(ctx, port)  # says `bad-port` before anything is asked of the network
    serial, identity = simulator.button_identity(ctx, serial)
    folder = Path(queue_dir).absolute() if queue_dir else default_queue_dir(ctx, serial)
    runner = Runner(
        ctx,
        serial,
        identity,
        folder,
        source,
        on_event,
        timings=timings,
        endpoint=endpoint,
        port=port,
        stop=stop,
        limit=limit,
        flush_seconds=flush_seconds,
    )
    return runner.run()


def default_queue_dir(ctx: AppContext, serial: str) -> Path:
    """``<state>/clicks/<namespace>/<serial>``: per account and region (or the sandbox) and
    per button, as the key files are."""
    from iotbutton_cli.paths import state_dir
    from iotbutton_cli.registry.keyfiles import namespace_slug

    return state_dir() / QUEUE_FOLDER / namespace_slug(ctx.namespace.key) / serial


def utc_text(epoch: float) -> str:
    """``2026-11-21T23:04:00.123Z``."""
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
