"""How long the notifier itself takes to move an escalation on, in the sandbox.

    python benchmarks/escalation.py [--runs 5]

A LONG click escalates Alice (rings out), then Bob (rings out), then Carol (presses 1). The
Twilio stand-in's clock sets how long phones ring; what is measured here is what the notifier
adds on top, from the sandbox's outbox timestamps:

* click -> first call: the rule's clickedAt to Twilio answering the create for Alice's call;
* per invocation: Lambda's reported duration of each invocation of the notifier (the click, and
  each callback: a call's end, which places the next step's call, or a key press, which sends
  everyone the "acknowledged" SMS and hangs up): what one step of the escalation costs.

Everything runs on loopback in a temporary IOTBUTTON_HOME; no AWS or Twilio account is used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ACCOUNT = "AC" + "e" * 32
SECRET = "escalation-benchmark-secret"
ALICE, BOB, CAROL, TEXTED = "+15551230001", "+15551230002", "+15551230003", "+15551230009"
CONFIG = f"""\
account_sid: "{ACCOUNT}"
from: "+15005550006"
person: "Grandma"
debounce: 0
clicks:
  LONG:
    sms: ["{TEXTED}"]
    message: "Grandma needs help."
    escalation:
      ring: 20
      steps:
        - call: "{ALICE}"
        - call: "{BOB}"
        - call: "{CAROL}"
      exhausted: "Nobody acknowledged."
"""


def iotbutton(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "iotbutton_cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout) if done.stdout.strip() else None


def ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


def one_run(env: dict[str, str], since: int) -> dict[str, float]:
    iotbutton(env, "--sandbox", "sim", "click", "--long")
    deadline = time.monotonic() + 60
    while True:
        alarms = iotbutton(env, "--sandbox", "notify", "history")
        last = alarms[-1] if alarms else {}
        if (last.get("escalation") or {}).get("state") == "acknowledged":
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the escalation did not end: {last}")
        time.sleep(0.2)
    time.sleep(1.0)  # the acknowledged notices
    entries = iotbutton(env, "sandbox", "outbox")[since:]
    creates = {
        e["fields"]["To"]: ms(e["time"])
        for e in entries
        if e.get("path", "").endswith("/Calls.json") and e.get("http_status") == 201
    }
    ends = {
        e["params"]["To"]: ms(e["time"])
        for e in entries
        if e.get("kind") == "callback" and e.get("event") == "completed"
    }
    assert set(ends) == {ALICE, BOB, CAROL}, ends
    return {"click_to_first_call_ms": creates[ALICE] - ms(last["clicked_at"])}


def invocation_durations(env: dict[str, str]) -> list[float]:
    """Every REPORT line's Duration in the notifier's log (ms)."""
    lines = subprocess.run(
        [sys.executable, "-m", "iotbutton_cli", "--sandbox", "notify", "logs", "--since", "30"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [float(m) for m in re.findall(r"REPORT RequestId: \S+\s+Duration: ([0-9.]+) ms", lines)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iotbutton-bench-") as scratch:
        home = Path(scratch)
        env = dict(os.environ, IOTBUTTON_HOME=str(home), TWILIO_AUTH_TOKEN=SECRET)
        env.pop("IOTBUTTON_SANDBOX", None)
        iotbutton(env, "sandbox", "start")
        try:
            iotbutton(env, "--sandbox", "things", "create", "G030JF0553648RUH")
            config = home / "config" / "notify.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(CONFIG)
            iotbutton(env, "--sandbox", "notify", "deploy")
            for number in (ALICE, BOB):
                iotbutton(env, "sandbox", "phone", number, "--call", "no-answer")
            results = []
            for _ in range(args.runs):
                since = len(iotbutton(env, "sandbox", "outbox"))
                results.append(one_run(env, since)["click_to_first_call_ms"])
            durations = invocation_durations(env)
        finally:
            iotbutton(env, "sandbox", "stop")
    for name, values in (("click -> first call (ms)", results), ("invocation (ms)", durations)):
        values = sorted(values)
        print(
            f"{name:26} median {statistics.median(values):6.0f}  "
            f"p90 {values[int(0.9 * (len(values) - 1))]:6.0f}  max {values[-1]:6.0f}  "
            f"(n={len(values)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
