"""Every command's ``--json`` keys are the ones docs/reference.md shows, no more and no fewer.

The whole command surface runs once against the sandbox (the real background process, so
``sim``, ``notify test`` and the outbox work too); each command's JSON is reduced to the set of
key paths it holds (``buttons[].certificate_id``), recursively, and compared with the key paths of
the examples under that command's heading in the reference. A key the output has and the docs do
not, or the docs show and the output lacks, fails, naming the command and the key.

Values are not compared: the reference's are from another run. Under a few keys the keys are data,
not the shape (AWS attributes, paths, a payload the user chose); those are listed in OPAQUE.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from support import TWILIO_SECRET, notify_init_args, wait_for_outbox

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
SERIAL = "G030JF0553648RUH"
OTHER = "G030RQ9940375SLS"
TAKEN = "TAKEN1"
WATCH_ONE = ("--count", "1", "--duration", "30", "--json")

# Where the keys below a path are the data itself, compared as one opaque value.
OPAQUE = {
    "things show": {"aws.attributes"},  # the thing's attributes in AWS
    "things delete": {"files_left", "certificates_left"},  # path / certificate id -> why
    "sim send": {"payload"},  # whatever the user published
    # The form the notifier posted (Body, or Twiml for a call); the form a status callback posted;
    # the headers a webhook, Slack or token request came with.
    "sandbox outbox": {"[].fields", "[].params", "[].headers"},
    "demo": {"outbox[].fields"},
}


def key_paths(value: Any, prefix: str = "", opaque: frozenset[str] = frozenset()) -> set[str]:
    """``{"a": [{"b": 1}]}`` -> ``{"a", "a[].b"}``; list items are merged."""
    found: set[str] = set()
    if prefix in opaque:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            found.add(path)
            found |= key_paths(item, path, opaque)
    elif isinstance(value, list):
        for item in value:
            found |= key_paths(item, f"{prefix}[]", opaque)
    return found


# -- what the reference documents -------------------------------------------------------------


def _sections(text: str) -> dict[str, str]:
    """``## `iotbutton X``` and ``### `iotbutton X Y``` sections by command ("things create")."""
    sections: dict[str, str] = {}
    current: str | None = None
    in_code = False
    for line in text.splitlines(keepends=True):
        in_code ^= line.startswith("```")
        heading = None if in_code else re.match(r"#{2,3} `iotbutton ([a-z ]+)`\s*$", line)
        if heading:
            current = heading.group(1)
            sections[current] = ""
        elif not in_code and re.match(r"#{1,3} ", line):
            current = None
        elif current is not None:
            sections[current] += line
    return sections


def _json_examples(section: str) -> list[Any]:
    """The section's JSON examples: ```json blocks, and after "#### JSON output" the plain
    blocks that are JSON (one document, or JSON Lines). Error examples are left out: the error
    shape is the same for every command (tests/test_errors.py)."""
    examples: list[Any] = []
    in_output = False
    for part in re.split(r"(^#### [^\n]*$|^```[a-z]*\n.*?^```$)", section, flags=re.M | re.S):
        if part.startswith("#### "):
            in_output = part.strip() == "#### JSON output"
            continue
        block = re.match(r"```([a-z]*)\n(.*)```$", part, flags=re.S)
        if block is None or not (block.group(1) == "json" or in_output):
            continue
        body = block.group(2)
        try:
            documents = [json.loads(body)]
        except ValueError:
            try:
                documents = [json.loads(line) for line in body.splitlines() if line.strip()]
            except ValueError:
                continue  # a table or a shell session
        examples += [d for d in documents if not (isinstance(d, dict) and set(d) == {"error"})]
    return examples


def documented() -> tuple[dict[str, list[Any]], set[str]]:
    """The JSON examples per command, and the commands whose usage offers --json."""
    sections = _sections(REFERENCE.read_text())
    offers_json = {
        command
        for command, body in sections.items()
        if re.search(rf"Usage: iotbutton {command} .*?```", body, flags=re.S)
        and "--json" in re.search(rf"Usage: iotbutton {command} .*?```", body, flags=re.S)[0]
    }
    return {c: _json_examples(body) for c, body in sections.items()}, offers_json


# Commands that print a stream of events (JSON Lines), each with an "event" kind: the keys are
# compared per kind, for the kinds this run makes happen; tests/test_device_run.py makes every
# documented kind happen (a refused connection, a full queue, ...) and compares them all.
EVENT_STREAMS = {"device run"}


def compare(outputs: dict[str, list[Any]]) -> list[str]:
    examples, offers_json = documented()
    for command in EVENT_STREAMS & set(outputs):
        kinds = {event["event"] for event in outputs[command]}
        examples[command] = [e for e in examples.get(command, []) if e.get("event") in kinds]
    problems = [
        f"{command}: takes --json but the reference shows no JSON example"
        for command in sorted(offers_json)
        if not examples.get(command)
    ]
    problems += [
        f"{command}: takes --json but this test never ran it"
        for command in sorted(offers_json - set(outputs))
    ]
    for command, results in sorted(outputs.items()):
        opaque = frozenset(OPAQUE.get(command, ()))
        shown = set().union(*(key_paths(doc, opaque=opaque) for doc in examples.get(command, [])))
        printed = set().union(*(key_paths(result, opaque=opaque) for result in results))
        problems += [
            f"{command}: prints {key!r}, not in the reference" for key in sorted(printed - shown)
        ]
        problems += [
            f"{command}: reference shows {key!r}, not printed" for key in sorted(shown - printed)
        ]
    return problems


# -- what the commands print ------------------------------------------------------------------


class Recorder:
    """Runs ``iotbutton --sandbox ... --json`` and keeps each command's parsed JSON."""

    def __init__(self, cli: Any) -> None:
        self.cli = cli
        self.outputs: dict[str, list[Any]] = {}

    def __call__(self, command: str, *args: str, code: int | None = 0, lines: bool = False) -> Any:
        result = self.cli("--sandbox", *command.split(), *args, "--json", code=code)
        if lines:
            parsed: Any = [json.loads(line) for line in result.stdout.splitlines() if line]
            self.outputs.setdefault(command, []).extend(parsed)
        else:
            parsed = json.loads(result.stdout)
            self.outputs.setdefault(command, []).append(parsed)
        return parsed


def test_every_commands_json_keys_are_the_documented_ones(cli, sandbox, monkeypatch):
    run = Recorder(cli)
    aws = boto3.Session(
        aws_access_key_id=sandbox["access_key_id"],
        aws_secret_access_key=sandbox["secret_access_key"],
        region_name="us-east-1",
    )
    run("sandbox start")  # already running: "started": false
    run("sandbox status")
    run("sandbox env")
    run("paths")
    run("endpoint")

    run("things create", SERIAL)
    aws.client("iot", endpoint_url=sandbox["aws_url"]).create_thing(thingName=TAKEN)
    failed = run("things create", TAKEN, code=1)
    assert failed["buttons"][0]["error"]["code"] == "thing-not-ours"
    run("things list")
    run("things show", SERIAL)
    run("certs list")
    run("certs show", SERIAL)
    run("certs rotate", SERIAL)
    exported = Path(os.environ["IOTBUTTON_HOME"]).parent / "device-export"
    run("device export", SERIAL, "--out", str(exported))
    queue = Path(os.environ["IOTBUTTON_HOME"]).parent / "device-queue"
    ran = cli(
        "--sandbox",
        "device",
        "run",
        "--keyboard",
        "--queue-dir",
        str(queue),
        "--json",
        input="\nl\n",
    )
    run.outputs["device run"] = [json.loads(line) for line in ran.stdout.splitlines() if line]

    run("notify init", *notify_init_args("Grandma")[2:], "--call", "+15551230002")
    run("notify check")
    run("notify bundle")
    run("notify deploy", "--dry-run")  # the plan: documented under notify deploy too
    run("notify deploy")
    run("rules create", "--serial", SERIAL)
    run("rules list")
    run("rules show", f"iotbutton_{SERIAL}")
    run("notify show")
    run("notify test", SERIAL)
    run("notify send")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "x" * 32)  # Twilio refuses: each result has an error
    run("notify send", code=1)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    run("notify logs", "--since", "10", lines=True)

    watcher = subprocess.Popen(
        [sys.executable, "-m", "iotbutton_cli", "--sandbox", "sim", "subscribe", *WATCH_ONE],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert "Watching" in watcher.stderr.readline()
    # The SMS of this click is not delivered (a phone that is off), so `notify retry` resends it.
    run("sandbox phone", "+15551230001", "--sms", "undelivered")
    run("sandbox phones")
    run("sim click", "--double")
    seen, _ = watcher.communicate(timeout=30)
    run.outputs["sim subscribe"] = [json.loads(line) for line in seen.splitlines() if line]
    run("sim send", "--message", '{"clickType": "LONG", "note": "custom"}')
    wait_for_outbox(cli, 4)
    # The webhook sink: a name that fails once, a token, a webhook with it, a Slack post.
    run("sandbox hook", "crm", "--status", "503")
    run("sandbox hook", "--token-lifetime", "60")
    run("sandbox hook")
    hooks_url = sandbox["hooks_url"]
    token = json.loads(
        _post(
            f"{hooks_url}/oauth/token",
            b"grant_type=client_credentials&client_id=svc&client_secret=s3cret",
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    _post(f"{hooks_url}/hooks/crm", b'{"clickType": "DOUBLE"}', bearer)
    _post(f"{hooks_url}/slack/family", b'{"text": "Grandma double-clicked"}')
    run("sandbox outbox")
    undelivered = None
    for _ in range(100):
        alarms = cli.json("--sandbox", "notify", "history")
        undelivered = next(
            (
                a
                for a in alarms
                if any(d["twilio_status"] == "undelivered" for d in a["deliveries"])
            ),
            None,
        )
        if undelivered:
            break
        time.sleep(0.3)
    assert undelivered is not None, "the undelivered receipt never arrived"
    run("notify history")
    run("sandbox phone", "+15551230001", "--reset")  # the phone is on again
    run("notify retry", undelivered["alarm"])
    # The clicks reached the button's shadow: things list and show print the last one too.
    wait_for_last_click(cli, SERIAL)
    run("things list")
    run("things show", SERIAL)

    # A LONG click that escalates to a phone that rings for 30 s: acknowledged from here.
    from iotbutton_cli.notify.config import config_path

    config = config_path()
    config.write_text(
        config.read_text().replace("debounce: 5", "debounce: 0")  # not a repeat of the last
        + '    escalation: {ring: 600, steps: [{call: "+15551230003"}], exhausted: "Nobody."}\n'
    )
    cli("--sandbox", "notify", "deploy")
    cli("sandbox", "phone", "+15551230003", "--call", "no-answer")
    cli("--sandbox", "sim", "click", "--long")
    escalating = None
    for _ in range(100):
        escalating = next(
            (a for a in cli.json("--sandbox", "notify", "history") if a["escalation"]), None
        )
        if escalating:
            break
        time.sleep(0.3)
    assert escalating is not None, "the LONG click never escalated"
    run("notify ack", escalating["alarm"], "--by", "Dana")

    # Quiet hours that hold: a SINGLE waits, and `notify release` sends it now.
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    start, end = ((now + timedelta(minutes=m)).strftime("%H:%M") for m in (-60, 60))
    config.write_text(
        config.read_text() + f'quiet_hours: {{from: "{start}", to: "{end}", then: hold}}\n'
    )
    cli("--sandbox", "notify", "deploy")
    cli("--sandbox", "sim", "click", "--single", "--wait")
    held = None
    for _ in range(100):
        held = next(
            (a for a in cli.json("--sandbox", "notify", "history") if a["state"] == "held"), None
        )
        if held:
            break
        time.sleep(0.3)
    assert held is not None, "the SINGLE click was never held"
    run("notify release")
    # The release schedule that deploy made for the hold: listed, and run now (nothing is held).
    run("sandbox schedules")
    run("sandbox schedules run", "iotbutton/release-held")

    run("things create", OTHER)
    run("certs revoke", OTHER, "--yes")
    run("things delete", OTHER, "--yes")
    run("rules delete", f"iotbutton_{SERIAL}", "--yes")
    run("clean", "--dry-run")
    run("clean", "--yes")
    run("clean", "--yes")  # nothing left: the empty result
    run("sandbox stop")

    demo = cli.json("demo")
    assert demo["ok"] is True
    run.outputs["demo"] = [demo]

    problems = compare(run.outputs)
    assert not problems, "\n".join(problems)


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:  # the 503 the sink was told to answer
        with error:
            return bytes(error.read())


def wait_for_last_click(cli: Any, serial: str) -> None:
    deadline = time.monotonic() + 30
    while cli.json("--sandbox", "things", "show", serial)["last_click"] is None:
        assert time.monotonic() < deadline, f"no click of {serial} reached its shadow"
        time.sleep(0.3)


def test_json_mode_belongs_to_one_invocation(cli, aws):
    """--json lives on the invocation's Output: the next command in the same process, without
    --json, prints its error for people again (stderr, nothing on stdout)."""
    as_json = cli("things", "show", "NOPE", "--json", code=2)
    assert json.loads(as_json.stdout)["error"]["code"] == "unknown-serial"

    for_people = cli("things", "show", "NOPE", code=2)
    assert for_people.stdout == ""
    assert "Error: No button 'NOPE'" in for_people.stderr
