"""``iotbutton demo``: the whole story in a private sandbox, checked at every step.

The demo lives in its own home folder with its own sandbox process, so it never touches the
user's registry, keys, notify.yaml or sandbox: a fresh temporary folder (under ``$IOTBUTTON_HOME``
when that is set), deleted when the demo succeeded, or ``<data dir>/demo`` with ``--keep``. It
provisions two buttons and deploys the notifier with a demo config, all at once. It takes Twilio
down for Carol and clicks Grandpa's button, whose SMS goes to her: Lambda's retries of that click
run in the background, in an execution environment of their own, while Grandma's button clicks
SINGLE, DOUBLE and LONG (each checked for exactly the expected Twilio requests), Twilio's receipts
reach the notifier, and a LONG click whose first callee does not answer rings the second, who
presses 1. Then it checks that Grandpa's dropped click reached the owner and that `notify retry`
sends it once Twilio is back, and cleans up (unless kept). Events are yielded for the CLI to
render, story by story.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.paths import HOME_ENV, data_dir

DEMO_SERIAL = "G030JF0553648RUH"  # Grandma's button: every click type, then the escalation
GRANDPA_SERIAL = "G030JF0553648RUK"  # Grandpa's: the click Twilio cannot take, told to the owner
DEMO_FROM = "+15005550006"  # Twilio's test "From" number: valid, sends nothing
ALICE = "+15005550101"
BOB = "+15005550102"
CAROL = "+15005550103"  # Grandpa's SINGLE texts her; Twilio is down for her in the demo
OWNER = "+15005550109"  # told through SNS when an alarm could not be delivered
DEMO_ACCOUNT_SID = "AC" + "d" * 32
DEMO_SECRET = "demo-secret-that-only-the-sandbox-sees"  # noqa: S105 - the stand-in's, not Twilio's
OUTBOX_TIMEOUT_SECONDS = 20.0
DEMO_DEBOUNCE_SECONDS = 1
# Lambda's three attempts, each with the notifier's three tries at Twilio, then the failures
# function: about 7 s in the sandbox, while Grandma's stories run.
OWNER_TIMEOUT_SECONDS = 45.0
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "completed", "no-answer", "busy"})

DEMO_CONFIG = f"""\
account_sid: "{DEMO_ACCOUNT_SID}"
from: "{DEMO_FROM}"
person: "Grandma"
debounce: {DEMO_DEBOUNCE_SECONDS}
owner:
  sms: "{OWNER}"
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
    message: "Urgent: {{person}} pressed and held the button. Battery {{battery}}."
    escalation:
      ring: 20
      steps:
        - call: "{ALICE}"
        - call: "{BOB}"
      exhausted: "Nobody acknowledged {{person}}'s alarm. Call 911 or go there now."
buttons:
  {GRANDPA_SERIAL}:
    person: "Grandpa"
    clicks:
      SINGLE:
        sms: ["{CAROL}"]
"""

# What each click must produce at Twilio: (resource, To) pairs. LONG calls Alice, who answers
# and presses 1 (the sandbox's phones answer so unless told otherwise), so Bob is told she is
# coming instead of being called.
EXPECTED = {
    "SINGLE": [("Messages", ALICE)],
    "DOUBLE": [("Calls", BOB), ("Messages", ALICE)],
    "LONG": [("Calls", ALICE), ("Messages", ALICE), ("Messages", BOB), ("Messages", BOB)],
}
# The last click: a LONG whose first callee does not answer and whose second presses 1.
ESCALATION_EXPECTED = [(ALICE, "no-answer"), (BOB, "acknowledged")]


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
    receipts: bool = False  # Twilio's receipts for the LONG click reached the notifier
    owner_told: bool = False  # a click Twilio never took reached the owner, then was resent
    escalated: bool = False  # a LONG Alice did not answer rang Bob, who acknowledged it


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
    # While the sandbox process starts (about 1 s, on the other core), import what comes next.
    threading.Thread(target=_import_ahead, daemon=True).start()
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
        dropped = yield from _take_twilio_down(ctx)
        clicked: dict[str, list[dict[str, Any]]] = {}
        for click in ("SINGLE", "DOUBLE", "LONG"):
            yield from _click(ctx, click, outcome, clicked)
        long_clicked = time.monotonic()
        yield from _receipts(outcome, clicked["LONG"])
        # Another LONG within the debounce window would be a repeat of the first.
        time.sleep(max(0.0, long_clicked + DEMO_DEBOUNCE_SECONDS + 0.3 - time.monotonic()))
        yield from _escalation(ctx, outcome)
        yield from _dropped_alarm(ctx, outcome, dropped)
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


# What the demo needs once its sandbox answers: the AWS SDK, provisioning, the notifier's deploy
# and the device SDK that clicks (about 0.8 s of imports on a 2-core machine).
IMPORTED_AHEAD = (
    "boto3",
    "iotbutton_cli.provisioning.things",
    "iotbutton_cli.notify.deploy",
    "iotbutton_cli.device.simulator",
)


def _import_ahead() -> None:
    import importlib

    for module in IMPORTED_AHEAD:
        with contextlib.suppress(Exception):  # the step that needs it imports it, and fails there
            importlib.import_module(module)


def _provision_and_deploy(ctx: Any) -> Iterator[DemoEvent]:
    from concurrent.futures import ThreadPoolExecutor

    from iotbutton_cli.notify import config as notify_config
    from iotbutton_cli.notify import deploy as notifier_deploy
    from iotbutton_cli.provisioning import things

    # The buttons and the notifier need nothing of each other: all are made at once.
    ctx.before_changes()  # once, before the two threads share the context
    with ThreadPoolExecutor(1, thread_name_prefix="demo-provision") as beside:
        provisioning = beside.submit(things.provision, ctx, [DEMO_SERIAL, GRANDPA_SERIAL])
        config = notify_config.parse_config_text(DEMO_CONFIG, Path("demo-notify.yaml"))
        source = notifier_deploy.prepare(
            config.lambda_document(),
            DEMO_SECRET,
            twilio_api_base=ctx.sandbox_info.twilio_url,
            owner=config.owner_endpoints,
        )
        try:
            deployed = notifier_deploy.deploy(ctx, source)
        finally:
            report = provisioning.result()  # its failure, if both failed, is the one to tell
    yield DemoEvent(
        "step",
        f"Provisioning Grandma's button {DEMO_SERIAL} and Grandpa's {GRANDPA_SERIAL}: things, "
        "certificates, keys, policy",
    )
    certificates = []
    for button in report.buttons:
        if button.action == "failed" or button.certificate_id is None:
            raise _provisioning_failed(button.serial, button.error)
        certificates.append(f"{button.certificate_id[:12]}…")
    yield DemoEvent(
        "detail",
        "certificates "
        + ", ".join(certificates)
        + f" ACTIVE, policy {report.policy} (each connects as itself, publishes to its topic "
        "only)",
    )
    yield DemoEvent("step", "Deploying the notifier Lambda with a demo config (at the same time)")
    yield DemoEvent(
        "detail",
        f"{len(deployed.steps)} resources: roles, logs, config in S3, secret in SSM, alarm "
        "table, function and its URL, owner alerts (SNS, CloudWatch), topic rule iotbutton/+ "
        "→ Lambda",
    )
    yield DemoEvent(
        "detail",
        "Grandma: SINGLE → SMS Alice · DOUBLE → SMS Alice + call Bob · LONG → SMS both, then "
        "call Alice, then Bob, until one presses 1 · Grandpa: SINGLE → SMS Carol",
    )


def _provisioning_failed(serial: str, error: dict[str, Any] | None) -> IotButtonError:
    """A demo button could not be made: say why (the provisioning error's own message)."""
    why = (error or {}).get("message") or "no certificate was issued"
    code = (error or {}).get("code")
    return IotButtonError(
        "demo-provisioning-failed",
        f"The demo could not provision its button {serial}: {why}" + (f" ({code})" if code else ""),
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
                ctx, "iotbutton/#", traffic.append, OUTBOX_TIMEOUT_SECONDS * 3, 4, ready.set
            )
        except Exception:  # the demo reports missing traffic instead
            ready.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(timeout=15)
    return thread


def _theirs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grandma's stories' requests: not Carol's, whose click is retried meanwhile."""
    return [entry for entry in entries if entry.get("fields", {}).get("To") != CAROL]


def _click(
    ctx: Any, click: str, outcome: DemoOutcome, clicked: dict[str, list[dict[str, Any]]]
) -> Iterator[DemoEvent]:
    from iotbutton_cli.device import simulator
    from iotbutton_cli.sandbox import client as sandbox_control

    info = sandbox_control.require_running()
    before = len(sandbox_control.outbox(info, requests_only=True))
    simulator.click(ctx, DEMO_SERIAL, click)
    yield DemoEvent("click", f"Clicked {click}", {"click": click, "serial": DEMO_SERIAL})
    expected = sorted(EXPECTED[click])
    deadline = time.monotonic() + OUTBOX_TIMEOUT_SECONDS
    while time.monotonic() < deadline:  # what did arrive is reported below
        if len(_theirs(sandbox_control.outbox(info, requests_only=True)[before:])) >= len(expected):
            break
        time.sleep(0.05)
    time.sleep(0.2)  # anything extra would show up now
    entries = _theirs(sandbox_control.outbox(info, requests_only=True)[before:])
    clicked[click] = entries
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


def _receipts(outcome: DemoOutcome, long_requests: list[dict[str, Any]]) -> Iterator[DemoEvent]:
    """Twilio's 201 only means queued: wait for the LONG click's receipts to reach the
    notifier's function URL (the stand-in posts them, signed as Twilio signs them)."""
    from iotbutton_cli.sandbox import client as sandbox_control

    yield DemoEvent("step", "Delivery receipts: what became of the LONG click's messages and calls")
    info = sandbox_control.require_running()
    wanted = {entry["sid"]: entry for entry in long_requests if "sid" in entry}
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + OUTBOX_TIMEOUT_SECONDS
    while len(final) < len(wanted) and time.monotonic() < deadline:
        for entry in sandbox_control.outbox(info):
            if (
                sandbox_control.is_callback(entry)
                and entry.get("sid") in wanted
                and entry.get("status") in FINAL_STATUSES
                and 200 <= (entry.get("http_status") or 0) < 300
            ):
                final[entry["sid"]] = entry
        time.sleep(0.1)
    names = {ALICE: "Alice", BOB: "Bob"}
    shown = [
        f"{'SMS to' if wanted[sid]['resource'] == 'Messages' else 'call to'} "
        f"{names.get(wanted[sid]['fields'].get('To', ''), '?')}: {entry['status']}"
        for sid, entry in final.items()
    ]
    outcome.receipts = len(final) == len(wanted) == len(EXPECTED["LONG"])
    outcome.ok = outcome.ok and outcome.receipts
    if outcome.receipts:
        yield DemoEvent("result", "receipts, verified by the function: " + ", ".join(shown), True)
    else:
        yield DemoEvent(
            "warning", f"{len(final)} of {len(wanted)} receipts arrived: {', '.join(shown)}", False
        )


@dataclass
class _Dropped:
    """Grandpa's click, left to Lambda's retries while the other stories run."""

    info: Any
    since: int  # the outbox's length before the click


def _take_twilio_down(ctx: Any) -> Generator[DemoEvent, None, _Dropped]:
    """Twilio down for Carol, then Grandpa's SINGLE, which only texts her: Lambda's attempts
    fail, in the background, until its failures function tells the owner by SNS."""
    from iotbutton_cli.device import simulator
    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox.twilio_phones import PhoneBehaviour

    yield DemoEvent(
        "step",
        "Twilio down for Carol: Grandpa's click nobody can deliver (Lambda retries it in the "
        "background, while Grandma's stories run)",
    )
    info = sandbox_control.require_running()
    sandbox_control.change_phones(
        info, lambda table: table.update({CAROL: PhoneBehaviour(outage=True)})
    )
    since = len(sandbox_control.outbox(info))
    simulator.click(ctx, GRANDPA_SERIAL, "SINGLE")
    yield DemoEvent(
        "click",
        "Clicked SINGLE (Twilio answers 503 for Carol)",
        {"click": "SINGLE", "serial": GRANDPA_SERIAL},
    )
    return _Dropped(info, since)


def _dropped_alarm(ctx: Any, outcome: DemoOutcome, dropped: _Dropped) -> Iterator[DemoEvent]:
    """Grandpa's click reached the owner; with Twilio back, `notify retry` sends it."""
    from iotbutton_cli.notify import retry as notify_retry
    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox import outbox

    yield DemoEvent("step", "Back to Grandpa's click: Lambda gave up on it, and the owner is told")
    info = dropped.info
    told = _owner_message(info, dropped.since)

    def twilio_back(table: dict[str, Any]) -> None:
        table.pop(CAROL, None)

    sandbox_control.change_phones(info, twilio_back)
    if told is None:
        outcome.ok = False
        yield DemoEvent("warning", "the owner was not told within the time allowed", False)
        return
    yield DemoEvent("result", f"SNS SMS to the owner: {told['body']}", True)
    alarm_id = told["body"].rsplit("notify retry ", 1)[-1].strip()
    before_retry = len(sandbox_control.outbox(info, requests_only=True))
    result = notify_retry.retry(ctx, alarm_id)
    with contextlib.suppress(IotButtonError):
        outbox.wait_for(1, since=before_retry, timeout=OUTBOX_TIMEOUT_SECONDS)
    resent = sandbox_control.outbox(info, requests_only=True)[before_retry:]
    sent = [(e["resource"], e["fields"].get("To")) for e in resent if e.get("http_status") == 201]
    outcome.owner_told = result.ok and sent == [("Messages", CAROL)]
    outcome.ok = outcome.ok and outcome.owner_told
    if outcome.owner_told:
        yield DemoEvent("result", f"Twilio is back: notify retry {alarm_id} → SMS to Carol", True)
    else:
        yield DemoEvent("warning", f"notify retry {alarm_id} sent {_describe(sent)}", False)


def _escalation(ctx: Any, outcome: DemoOutcome) -> Iterator[DemoEvent]:
    """Alice does not answer: the LONG click's escalation calls Bob, who presses 1, and Alice
    is told he is coming."""
    from iotbutton_cli.device import simulator
    from iotbutton_cli.notify import history
    from iotbutton_cli.sandbox import client as sandbox_control
    from iotbutton_cli.sandbox.twilio_phones import PhoneBehaviour

    yield DemoEvent("step", "Escalation: Alice does not answer, so Bob is called")
    info = sandbox_control.require_running()
    sandbox_control.change_phones(
        info, lambda table: table.update({ALICE: PhoneBehaviour(call="no-answer")})
    )
    before = len(sandbox_control.outbox(info, requests_only=True))
    earlier = {alarm.alarm_id for alarm in history.alarm_history(ctx, DEMO_SERIAL, 3600)}
    simulator.click(ctx, DEMO_SERIAL, "LONG")
    yield DemoEvent(
        "click", "Clicked LONG (Alice's phone rings out)", {"click": "LONG", "serial": DEMO_SERIAL}
    )
    deadline = time.monotonic() + OUTBOX_TIMEOUT_SECONDS
    alarm = None
    while time.monotonic() < deadline:
        alarms = history.alarm_history(ctx, DEMO_SERIAL, 3600)
        alarm = next((a for a in alarms if a.alarm_id not in earlier and a.click == "LONG"), None)
        if alarm and alarm.escalation and alarm.escalation.state != "ringing":
            break
        time.sleep(0.2)

    def alice_answers_again(table: dict[str, Any]) -> None:
        table.pop(ALICE, None)

    sandbox_control.change_phones(info, alice_answers_again)
    time.sleep(0.3)  # anything extra would show up now
    requests = _theirs(sandbox_control.outbox(info, requests_only=True)[before:])
    calls = [
        (e["fields"].get("To"), e["http_status"]) for e in requests if e["resource"] == "Calls"
    ]
    told = [
        e["fields"].get("To") for e in requests if "acknowledged" in e["fields"].get("Body", "")
    ]
    escalation = alarm.escalation if alarm else None
    sequence = [(c.to, c.outcome) for c in escalation.calls] if escalation else []
    outcome.escalated = (
        escalation is not None
        and escalation.state == "acknowledged"
        and escalation.ack_by == BOB
        and sequence == ESCALATION_EXPECTED
        and calls == [(ALICE, 201), (BOB, 201)]
        and told == [ALICE]
    )
    outcome.ok = outcome.ok and outcome.escalated
    if outcome.escalated:
        yield DemoEvent(
            "result",
            "called Alice: no answer · called Bob: pressed 1 · SMS to Alice: Bob is coming",
            True,
        )
    else:
        yield DemoEvent(
            "warning", f"expected Alice no-answer then Bob acknowledging, got {sequence}", False
        )


def _owner_message(info: Any, since: int) -> dict[str, Any] | None:
    from iotbutton_cli.sandbox import client as sandbox_control

    deadline = time.monotonic() + OWNER_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for entry in sandbox_control.outbox(info)[since:]:
            if sandbox_control.is_owner_message(entry) and entry.get("to") == OWNER:
                return entry
        time.sleep(0.2)
    return None


def _describe(requests: list[tuple[str, str]]) -> str:
    names = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol"}
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
