"""How long a click takes to reach a signed webhook, an OAuth 2 webhook and Slack, beside its
SMS, in the sandbox.

    python benchmarks/webhooks.py [--runs 10]

Each run is one LONG click; the times are from the rule's clickedAt to the webhook sink
recording each post (and to the Twilio stand-in answering the SMS create). The first run's OAuth
post includes fetching the token; later runs use the token the container cached. Everything
runs on loopback in a temporary IOTBUTTON_HOME; no AWS or Twilio account is used.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ACCOUNT = "AC" + "e" * 32
SECRET = "webhook-benchmark-secret"
SIGNING = "whsec_" + base64.b64encode(b"b" * 32).decode()
TEXTED = "+15551230009"


def config(sink: str) -> str:
    return f"""\
account_sid: "{ACCOUNT}"
from: "+15005550006"
person: "Grandma"
debounce: 0
clicks:
  LONG:
    sms: ["{TEXTED}"]
    message: "Grandma needs help."
    webhook:
      - url: "{sink}/hooks/signed"
        secret: $BENCH_HOOK_SECRET
      - url: "{sink}/hooks/oauth"
        auth: oauth2
        token_url: "{sink}/oauth/token"
        client_id: "bench"
        client_secret: $BENCH_CLIENT_SECRET
    slack:
      webhook_url: $BENCH_SLACK_URL
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
        entries = [e for e in iotbutton(env, "sandbox", "outbox") if e.get("seq", 0) > since]
        hooks = {e.get("name"): e for e in entries if e.get("kind") in ("webhook", "slack")}
        if {"signed", "oauth", "family"} <= set(hooks):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"not every post arrived: {sorted(hooks)}")
        time.sleep(0.2)
    clicked = ms(iotbutton(env, "--sandbox", "notify", "history")[-1]["clicked_at"])
    sms = [
        ms(e["time"])
        for e in iotbutton(env, "sandbox", "outbox")
        if e.get("resource") == "Messages" and e.get("http_status") == 201
    ][-1]
    return {
        "sms": sms - clicked,
        "signed webhook": hooks["signed"]["received_at"] * 1000 - clicked,
        "oauth2 webhook": hooks["oauth"]["received_at"] * 1000 - clicked,
        "slack": hooks["family"]["received_at"] * 1000 - clicked,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="iotbutton-bench-") as scratch:
        home = Path(scratch)
        env = dict(os.environ, IOTBUTTON_HOME=str(home), TWILIO_AUTH_TOKEN=SECRET)
        env.pop("IOTBUTTON_SANDBOX", None)
        started = iotbutton(env, "sandbox", "start")
        sink = started["hooks_url"]
        env.update(
            BENCH_HOOK_SECRET=SIGNING,
            BENCH_CLIENT_SECRET="bench-client-secret",
            BENCH_SLACK_URL=f"{sink}/slack/family",
        )
        try:
            iotbutton(env, "--sandbox", "things", "create", "G030JF0553648RUH")
            path = home / "config" / "notify.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(config(sink))
            iotbutton(env, "--sandbox", "notify", "deploy")
            for _ in range(args.runs):
                entries = iotbutton(env, "sandbox", "outbox")
                since = max((e.get("seq", 0) for e in entries), default=0)
                for name, value in one_run(env, since).items():
                    results.setdefault(name, []).append(value)
        finally:
            iotbutton(env, "sandbox", "stop")
    print("click -> received (ms)")
    for name, values in results.items():
        ordered = sorted(values)
        print(
            f"  {name:16} median {statistics.median(ordered):6.0f}  "
            f"p90 {ordered[int(0.9 * (len(ordered) - 1))]:6.0f}  max {ordered[-1]:6.0f}  "
            f"first {values[0]:6.0f}  (n={len(values)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
