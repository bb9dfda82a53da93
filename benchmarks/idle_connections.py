"""How the sandbox's ports answer while idle connections sit on them.

    python benchmarks/idle_connections.py [--idle 1005] [--reps 5]

Starts a sandbox with the CLI in a temporary IOTBUTTON_HOME, creates one button, then times
`iotbutton --sandbox things list --json` (a new process each time, as a user runs it) with no idle
connection and with ``--idle`` idle TCP connections open to the AWS port; and one Twilio request
(with the deployed secret) with no idle connection and with ``--idle`` idle connections open to
the Twilio port. Before idle channels timed out and waitress polled instead of select()ing, 1,005
idle connections made `things list` hang. Prints medians (min-max) as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PYTHON = sys.executable
IOTBUTTON = shutil.which("iotbutton", path=str(Path(PYTHON).parent)) or "iotbutton"
ACCOUNT_SID = "AC" + "1" * 32
SECRET = "bench-secret-only-the-sandbox-sees"


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTBUTTON_"))}
    empty = home.parent / "aws-config-empty"
    empty.write_text("")
    env.update(
        IOTBUTTON_HOME=str(home),
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_MAX_ATTEMPTS="1",
    )
    return env


def iotbutton(env: dict[str, str], *args: str) -> tuple[float, Any]:
    started = time.perf_counter()
    result = subprocess.run(
        [IOTBUTTON, *args], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    return time.perf_counter() - started, json.loads(result.stdout) if "--json" in args else None


def idle(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]


def twilio_request(url: str) -> float:
    token = base64.b64encode(f"{ACCOUNT_SID}:{SECRET}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data=b"To=%2B15551230001&From=%2B15005550006&Body=bench",
        headers={
            "Authorization": f"Basic {token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201
    return time.perf_counter() - started


def figure(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1005)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * args.idle + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * args.idle + 1024), hard))
    results: dict[str, Any] = {"idle_connections": args.idle}
    with tempfile.TemporaryDirectory(prefix="iotbutton-idle-") as folder:
        home = Path(folder) / "home"
        home.mkdir()
        env = environment(home)
        _, info = iotbutton(env, "sandbox", "start", "--json")
        try:
            env.update(
                AWS_ACCESS_KEY_ID=info["access_key_id"],
                AWS_SECRET_ACCESS_KEY=info["secret_access_key"],
            )
            iotbutton(env, "--sandbox", "things", "create", "G030JF0553648RUH")
            import boto3

            boto3.client(
                "ssm",
                endpoint_url=info["aws_url"],
                region_name="us-east-1",
                aws_access_key_id=info["access_key_id"],
                aws_secret_access_key=info["secret_access_key"],
            ).put_parameter(Name="/iotbutton/twilio-secret", Value=SECRET, Type="SecureString")
            list_command = ("--sandbox", "things", "list", "--json")
            aws_port = int(urllib.parse.urlsplit(info["aws_url"]).port or 0)
            twilio_port = int(urllib.parse.urlsplit(info["twilio_url"]).port or 0)
            quiet = [iotbutton(env, *list_command)[0] for _ in range(args.reps)]
            sockets = idle(aws_port, args.idle)
            try:
                busy = [iotbutton(env, *list_command)[0] for _ in range(args.reps)]
            finally:
                for sock in sockets:
                    sock.close()
            results["things_list"] = {"no_idle": figure(quiet), "with_idle": figure(busy)}
            quiet = [twilio_request(info["twilio_url"]) for _ in range(args.reps)]
            sockets = idle(twilio_port, args.idle)
            try:
                busy = [twilio_request(info["twilio_url"]) for _ in range(args.reps)]
            finally:
                for sock in sockets:
                    sock.close()
            results["twilio_request"] = {"no_idle": figure(quiet), "with_idle": figure(busy)}
        finally:
            subprocess.run([IOTBUTTON, "sandbox", "stop"], env=env, capture_output=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
