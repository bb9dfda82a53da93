"""``iotbutton demo``: the whole story in a private sandbox, checked at every step.

The demo lives in its own home folder with its own sandbox process, so it never touches the
user's registry, keys, notify.yaml or sandbox: a fresh temporary folder (under ``$IOTBUTTON_HOME``
when that is set), deleted when the demo succeeded, or ``<data dir>/demo`` with ``--keep``. It
provisions a button, deploys the notifier with a demo config, clicks SINGLE, DOUBLE and LONG,
checks that exactly the expected Twilio requests arrived, and cleans up (unless kept). Events are
yielded for the CLI to render.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.paths import HOME_ENV, data_dir

DEMO_SERIAL = "G030JF0553648RUH"
DEMO_FROM = "+15005550006"  # Twilio's test "From" number: valid, sends nothing
ALICE = "+15005550101"
BOB = "+15005550102"
DEMO_ACCOUNT_SID = "AC" + "d" * 32
DEMO_SECRET = "demo-secret-that-only-the-sandbox-sees"  # noqa: S105 - the stand-in's, not Twilio's
OUTBOX_TIMEOUT_SECONDS = 20.0

DEMO_CONFIG = f"""\
account_sid: "{DEMO_ACCOUNT_SID}"
from: "{DEMO_FROM}"
person: "Grandma"
clicks:
  SINGLE:
    sms: ["{ALICE}"]
    call: []
    message: "{{person}} says hello from button {{serial}} ({{time}})."
  DOUBLE:
    sms: ["{ALICE}"]
    call: ["{BOB}"]
    message: "{{person}} would like a call back, please."
  LONG:
    sms: ["{ALICE}", "{BOB}"]
    call: ["{ALICE}", "{BOB}"]
    message: "Urgent: {{person}} pressed and held the button. Battery {{battery}}."
"""

# What each click must produce at Twilio: (resource, To) pairs.
EXPECTED = {
    "SINGLE": [("Messages", ALICE)],
    "DOUBLE": [("Calls", BOB), ("Messages", ALICE)],
    "LONG": [("Calls", ALICE), ("Calls", BOB), ("Messages", ALICE), ("Messages", BOB)],
}


@dataclass
class DemoEvent:
    kind: str  # step | detail | click | outbox | traffic | result | warning
    text: str
    data: Any = None


@dataclass
class DemoOutcome:
    ok: bool = True
    clicks: dict[str, bool] = field(default_factory=dict)
    home: str = ""
    removed: bool = False  # the demo's folder is gone: nothing of it is left on disk


def demo_home() -> Path:
    """Where ``demo --keep`` keeps its sandbox and resources for the user to explore."""
    return data_dir() / "demo"


def fresh_home() -> Path:
    """A new empty folder for a demo that keeps nothing: in the system's temporary folder, so the
    user's data folder is never written, or under ``$IOTBUTTON_HOME`` when that is set (tests
    and parallel setups keep everything they write under it)."""
    parent = Path(os.environ[HOME_ENV]) if os.environ.get(HOME_ENV) else None
    if parent is not None:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="iotbutton-demo-", dir=parent))


@contextmanager
def _home(path: Path) -> Iterator[None]:
    """Point every iotbutton path at ``path`` for the demo (and its sandbox process)."""
    before = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = before


def run(keep: bool, outcome: DemoOutcome) -> Iterator[DemoEvent]:
    """Run the demo, yielding what happens; ``outcome`` says whether every click worked."""
    if keep:
        home = demo_home()
        with _home(home):
            from iotbutton_cli.sandbox import client as sandbox_control

            sandbox_control.stop()  # a kept demo from last time
        shutil.rmtree(home, ignore_errors=True)  # ... and its records: start from nothing
    else:
        home = fresh_home()
    outcome.home = str(home)
    finished = False
    try:
        with _home(home):
            yield from _run(keep, outcome)
        finished = True
    finally:
        if not keep and finished and outcome.ok:
            shutil.rmtree(home, ignore_errors=True)  # its CA, cache, locks and registry too
            outcome.removed = not home.exists()


def _run(keep: bool, outcome: DemoOutcome) -> Iterator[DemoEvent]:
    from iotbutton_cli.context import AppContext, Settings
    from iotbutton_cli.sandbox import client as sandbox_control

    yield DemoEvent("step", "Starting a private sandbox (AWS IoT, Lambda and Twilio, offline)")
    info = sandbox_control.start().info
    yield DemoEvent(
        "detail",
        f"AWS API {info.aws_url} · MQTT/TLS {info.mqtt_host}:"
        f"{info.mqtt_port} · Twilio {info.twilio_url}",
    )
    ctx = AppContext(Settings(sandbox=True))
    try:
        yield from _provision_and_deploy(ctx)
        traffic: list[Any] = []
        watcher = _watch(ctx, traffic)
        for click in ("SINGLE", "DOUBLE", "LONG"):
            yield from _click(ctx, click, outcome)
        watcher.join(timeout=OUTBOX_TIMEOUT_SECONDS)
        yield DemoEvent("traffic", "MQTT traffic seen by the monitor", traffic)
        yield DemoEvent(
            "outbox",
            "Everything Twilio received",
            sandbox_control.outbox(sandbox_control.require_running(), requests_only=True),
        )
    finally:
        if keep:
            yield DemoEvent("result", "Kept the sandbox and everything in it.")
        else:
            yield from _clean_up(ctx)


def _provision_and_deploy(ctx: Any) -> Iterator[DemoEvent]:
    from iotbutton_cli.notify import config as notify_config
    from iotbutton_cli.notify import deploy as notifier_deploy
    from iotbutton_cli.provisioning import things

    yield DemoEvent("step", f"Provisioning button {DEMO_SERIAL}: thing, certificate, keys, policy")
    report = things.provision(ctx, [DEMO_SERIAL])
    button = report.buttons[0]
    if button.action == "failed" or button.certificate_id is None:
        raise _provisioning_failed(button.error)
    yield DemoEvent(
        "detail",
        f"certificate {button.certificate_id[:12]}… ACTIVE, policy "
        f"{report.policy} (connect as itself, publish to its topic only)",
    )
    yield DemoEvent("step", "Deploying the notifier Lambda with a demo config")
    config = notify_config.parse_config_text(DEMO_CONFIG, Path("demo-notify.yaml"))
    source = notifier_deploy.prepare(
        config.lambda_document(), DEMO_SECRET, twilio_api_base=ctx.sandbox_info.twilio_url
    )
    deployed = notifier_deploy.deploy(ctx, source)
    yield DemoEvent(
        "detail",
        f"{len(deployed.steps)} resources: role, logs, config in S3, "
        "secret in SSM, function, topic rule iotbutton/+ → Lambda",
    )
    yield DemoEvent(
        "detail",
        "SINGLE → SMS Alice · DOUBLE → SMS Alice + call Bob · LONG → SMS and calls to both",
    )


def _provisioning_failed(error: dict[str, Any] | None) -> IotButtonError:
    """The demo's button could not be made: say why (the provisioning error's own message)."""
    why = (error or {}).get("message") or "no certificate was issued"
    code = (error or {}).get("code")
    return IotButtonError(
        "demo-provisioning-failed",
        f"The demo could not provision its button {DEMO_SERIAL}: {why}"
        + (f" ({code})" if code else ""),
        (error or {}).get("hint")
        or f"See the demo's sandbox log under {os.environ.get(HOME_ENV) or demo_home()} "
        "(kept for that; delete it when done), then run `iotbutton demo` again.",
    )


def _watch(ctx: Any, traffic: list[Any]) -> threading.Thread:
    from iotbutton_cli.device import simulator

    ready = threading.Event()

    def watch() -> None:
        try:
            simulator.subscribe(
                ctx, "iotbutton/#", traffic.append, OUTBOX_TIMEOUT_SECONDS * 3, 3, ready.set
            )
        except Exception:  # the demo reports missing traffic instead
            ready.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(timeout=15)
    return thread


def _click(ctx: Any, click: str, outcome: DemoOutcome) -> Iterator[DemoEvent]:
    from iotbutton_cli.device import simulator
    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox import outbox

    before = len(sandbox_control.outbox(sandbox_control.require_running(), requests_only=True))
    simulator.click(ctx, DEMO_SERIAL, click)
    yield DemoEvent("click", f"Clicked {click}", click)
    expected = sorted(EXPECTED[click])
    with contextlib.suppress(IotButtonError):  # what did arrive is reported below
        outbox.wait_for(len(expected), since=before, timeout=OUTBOX_TIMEOUT_SECONDS)
    time.sleep(0.2)  # anything extra would show up now
    entries = sandbox_control.outbox(sandbox_control.require_running(), requests_only=True)[before:]
    got = sorted((entry["resource"], entry["fields"].get("To", "")) for entry in entries)
    ok = got == expected and all(entry.get("http_status") == 201 for entry in entries)
    outcome.clicks[click] = ok
    outcome.ok = outcome.ok and ok
    if ok:
        yield DemoEvent("result", f"{click}: {_describe(got)} — as configured", True)
    else:
        yield DemoEvent(
            "warning",
            f"{click}: expected {_describe(expected)}, got {_describe(got) or 'nothing'}",
            False,
        )


def _describe(requests: list[tuple[str, str]]) -> str:
    names = {ALICE: "Alice", BOB: "Bob"}
    return ", ".join(
        f"{'SMS to' if kind == 'Messages' else 'call to'} {names.get(to, to)}"
        for kind, to in requests
    )


def _clean_up(ctx: Any) -> Iterator[DemoEvent]:
    from iotbutton_cli.lifecycle import teardown
    from iotbutton_cli.sandbox import client as sandbox_control

    yield DemoEvent("step", "Cleaning up: everything the demo created, in AWS's order")
    try:
        report = teardown.execute(ctx, teardown.plan(ctx))
        removed = len(report.with_status("removed"))
        yield DemoEvent("detail", f"removed {removed} resources")
    finally:
        sandbox_control.stop()
