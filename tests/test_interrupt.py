"""Ctrl-C stops bulk work: no new button starts, the ones in flight are finished or recorded, and
the command exits 130 within seconds, leaving nothing in AWS that the registry does not know."""

from __future__ import annotations

import json
import signal
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
    assert json.loads(stdout)["error"]["code"] == "interrupted"
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
