"""Ctrl-C stops bulk work: no new button starts, the ones in flight are finished or recorded, and
the command exits 130 within seconds, leaving nothing in AWS that the registry does not know."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from awsinventory import aws_env, compare, leftovers, recorded, run, spawn

pytestmark = pytest.mark.slow

# Slow enough that a run of hundreds is still going when the signal comes: two certificates a
# second, paced by iotbutton's own rate limiter.
SLOW = {"IOTBUTTON_RATE_LIMITER": "on", "IOTBUTTON_RATE_LIMITS": "CreateCertificateFromCsr=2"}


@pytest.mark.parametrize("count", [200, 10_000])
def test_ctrl_c_stops_things_create_at_once(moto_url, tmp_path, count):
    home = tmp_path / "home"
    env = aws_env(home, moto_url, **SLOW)
    process = spawn("things", "create", "--count", str(count), "--json", env=env)
    deadline = time.monotonic() + 60
    while len(recorded(home).get("certificates", {})) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    took = time.monotonic() - interrupted

    assert process.returncode == 130, stderr
    error = json.loads(stdout)["error"]
    assert error["code"] == "interrupted"
    assert error["message"] == "Interrupted; everything created so far is recorded in the registry."
    assert "Traceback" not in stderr
    print(f"exited {took:.2f} s after SIGINT")
    made = recorded(home)
    assert 2 <= len(made.get("certificates", {})) < 20  # it stopped: at 2/s, far from `count`
    comparison = compare(moto_url, home)
    assert not comparison.unrecorded, comparison  # everything made is recorded

    cleaned = run("clean", "--yes", "--json", env=aws_env(home, moto_url))
    assert cleaned.returncode == 0, cleaned.stderr
    assert leftovers(moto_url) == {}
    assert not [path for path in home.rglob("*.pem.key")]  # no private key left either


def test_ctrl_c_stops_clean_at_once_and_says_what_is_left(moto_url, tmp_path):
    """`clean` removes in a thread pool; Ctrl-C must still stop it: nothing new starts, the
    removals in flight finish, and the registry holds exactly what was not removed."""
    home = tmp_path / "home"
    made = run("things", "create", "--count", "60", "--json", env=aws_env(home, moto_url))
    assert made.returncode == 0, made.stderr
    total = sum(len(ids) for ids in recorded(home).values())  # 60 + 60 + policy + thing type
    assert total == 122
    slow = {"IOTBUTTON_RATE_LIMITER": "on", "IOTBUTTON_RATE_LIMITS": "DeleteCertificate=2"}
    process = spawn("clean", "--yes", "--json", env=aws_env(home, moto_url, **slow))
    deadline = time.monotonic() + 60
    while len(recorded(home).get("certificates", {})) > 58 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    took = time.monotonic() - interrupted

    assert process.returncode == 130, stderr
    error = json.loads(stdout)["error"]
    assert error["code"] == "interrupted" and "Traceback" not in stderr
    said = re.fullmatch(
        r"Interrupted after removing (\d+) of 122 resources; run `iotbutton clean` again to "
        r"remove the rest\.",
        error["message"],
    )
    assert said, error["message"]
    assert error["hint"] == "What was not removed is still recorded in the registry."
    removed = int(said.group(1))
    left = sum(len(ids) for ids in recorded(home).values())
    print(f"exited {took:.2f} s after SIGINT, having removed {removed} of {total}")
    assert 2 <= removed < 40  # it stopped: at 2 certificates a second, far from 122
    assert left == total - removed  # the message tells the truth
    comparison = compare(moto_url, home)
    assert not comparison.unrecorded and not comparison.gone, comparison  # registry is true

    again = run("clean", "--yes", "--json", env=aws_env(home, moto_url))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["complete"] is True
    assert leftovers(moto_url) == {}


def test_ctrl_c_ends_outbox_follow_cleanly(cli, sandbox):
    """Following the outbox only reads: Ctrl-C is the way to stop it, not a failure, and there
    is nothing "created so far" to speak of."""
    process = subprocess.Popen(
        [sys.executable, "-m", "iotbutton_cli", "sandbox", "outbox", "--follow"],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert "Following the outbox (Ctrl-C to stop)" in process.stderr.readline()

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    assert stderr.strip() == "Stopped."
    assert "recorded" not in stderr and "Traceback" not in stderr
    assert stdout == ""


def test_ctrl_c_in_a_command_that_changes_nothing_says_only_that(moto_url, tmp_path):
    """`things show` only reads: Ctrl-C says it was interrupted, not that "everything created
    so far is recorded" (that line belongs to commands that had begun changing things)."""
    home = tmp_path / "home"
    made = run("things", "create", "G030JF0553648RUH", env=aws_env(home, moto_url))
    assert made.returncode == 0, made.stderr
    # One IoT call per 10 s: after DescribeThing, `show` waits for DescribeCertificate's turn.
    paced = {"IOTBUTTON_RATE_LIMITER": "on", "IOTBUTTON_RATE_LIMITS": "*=0.1"}
    process = spawn(
        "-v", "things", "show", "G030JF0553648RUH", env=aws_env(home, moto_url, **paced)
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "iot:DescribeThing" in line:
            break
    assert process.poll() is None, seen

    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 130, stderr
    assert "Error: Interrupted.\n" in stderr
    assert "recorded" not in stderr and "Traceback" not in stderr
