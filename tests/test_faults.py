"""Throttling and transient faults: AWS errors injected in front of moto at a meaningful rate.

:mod:`chaosproxy` fails a seeded-random 25 % of all requests, spread evenly over throttling (each
service's own throttling error), 500 InternalFailure, 503 ServiceUnavailable, connections closed
before AWS sees the request, and connections closed after AWS acted (the answer is lost, so a
retried create may make a second resource). ``things create --count 10``, ``certs rotate`` and
``clean`` must each finish, or stop with a one-line error and hint and no traceback; either way
the registry must stay true: everything iotbutton made that moto holds is recorded (a record of
something already gone is tolerated). A final ``clean`` without faults must then remove it all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from awsinventory import aws_env, compare, leftovers, recorded, run
from chaosproxy import ChaosProxy, FaultPlan

FAULT_RATE = 0.25
SEEDS = (7, 2024)

pytestmark = pytest.mark.slow


@pytest.fixture
def chaos(moto_url: str) -> Any:
    proxy = ChaosProxy(moto_url)
    url = proxy.start()
    yield proxy, url
    proxy.stop()


def run_step(name: str, args: list[str], env: dict[str, str], moto: str, home: Path) -> dict:
    """Run one command under faults; check how it ended and that the registry is still true."""
    result = run(*args, env=env)
    stderr = result.stderr.strip()
    outcome: dict[str, Any] = {"step": name, "exit": result.returncode}
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode != 0:
        errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
        hints = [line for line in stderr.splitlines() if line.startswith("Hint: ")]
        failed_rows = "failed" in result.stdout or '"failed"' in result.stdout
        assert errors or failed_rows, (
            f"{name}: exit {result.returncode} without a message:\n{stderr}"
        )
        assert errors == [] or hints, f"{name}: error without a hint:\n{stderr}"
        outcome["message"] = errors[0] if errors else "some buttons failed (see table)"
    comparison = compare(moto, home)
    assert not comparison.unrecorded, f"after {name}: not recorded: {comparison}"
    outcome["recorded_but_gone"] = sum(len(ids) for ids in comparison.gone.values())
    outcome["stdout"] = result.stdout
    return outcome


@pytest.mark.parametrize("seed", SEEDS)
def test_commands_survive_injected_faults(seed: int, chaos, moto_url: str, tmp_path: Path) -> None:
    proxy, url = chaos
    home = tmp_path / "home"
    env = aws_env(home, url)
    proxy.inject(FaultPlan(FAULT_RATE, seed))

    created = run_step(
        "things create --count 10",
        ["things", "create", "--count", "10", "--json"],
        env,
        moto_url,
        home,
    )
    serials = sorted(recorded(home).get("things", {}))
    rotated = None
    if serials:
        rotated = run_step(
            "certs rotate", ["certs", "rotate", serials[0], "--json"], env, moto_url, home
        )
    cleaned = run_step("clean", ["clean", "--yes", "--json"], env, moto_url, home)

    faults = proxy.fault_counts()
    calls = proxy.count
    injected = calls - faults.get("forwarded", 0)
    proxy.inject(None)
    steps = [step for step in (created, rotated, cleaned) if step]
    kinds = dict(sorted((k, v) for k, v in faults.items() if k != "forwarded"))
    print(
        f"\nfaults seed {seed}: {injected} of {calls} requests failed "
        f"({injected / calls:.0%}; {kinds}); "
        + "; ".join(
            f"{s['step']}: " + ("ok" if s["exit"] == 0 else f"exit {s['exit']} {s['message']}")
            for s in steps
        )
    )
    # The injected rate really was meaningful (the seeded draw is over every request).
    assert injected / calls > FAULT_RATE / 2, faults

    if created["exit"] == 0:
        buttons = json.loads(created["stdout"])["buttons"]
        assert len(buttons) == 10 and all(b["action"] == "created" for b in buttons)
    # Without faults, what is left (if anything) must go, and nothing may stay behind.
    final = run("clean", "--yes", "--json", env=aws_env(home, moto_url))
    assert final.returncode == 0, final.stderr
    assert leftovers(moto_url) == {}
    assert recorded(home) == {}


LOST_CREATES = (
    r"^iot:POST /policies/",
    r"^iot:POST /thing-types/",
    r"^iot:POST /things/",
    r"^iot:POST /certificates$",
)
LOST_DELETES = (
    r"^iot:DELETE /certificates/",
    r"^iot:DELETE /things/[^/]+$",
    r"^iot:DELETE /policies/",
    r"^iot:DELETE /thing-types/",
)


def test_lost_answers_are_neither_duplicated_nor_orphaned(chaos, moto_url, tmp_path) -> None:
    """AWS acts, the answer is lost, botocore retries: for every create and delete iotbutton
    makes on a button. CreateCertificateFromCsr is the dangerous one: its retry makes a second
    certificate, and only the first one's id was never seen."""
    proxy, url = chaos
    home = tmp_path / "home"
    env = aws_env(home, url)
    for pattern in LOST_CREATES:
        proxy.script(pattern, "lost", times=2)
    created = run("things", "create", "--count", "3", "--json", env=env)
    assert created.returncode == 0, created.stderr
    assert proxy.fault_counts()["lost"] == 8
    comparison = compare(moto_url, home)
    assert not comparison.unrecorded and not comparison.gone, comparison
    assert len(recorded(home)["certificates"]) == 3

    serial = sorted(recorded(home)["things"])[0]
    proxy.script(r"^iot:POST /certificates$", "lost", times=2)
    rotated = run("certs", "rotate", serial, "--json", env=env)
    assert rotated.returncode == 0, rotated.stderr
    comparison = compare(moto_url, home)
    assert not comparison.unrecorded and not comparison.gone, comparison
    assert len(recorded(home)["certificates"]) == 3

    for pattern in LOST_DELETES:
        proxy.script(pattern, "lost", times=2)
    cleaned = run("clean", "--yes", "--json", env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout)["complete"] is True
    assert leftovers(moto_url) == {}
    assert recorded(home) == {}


LOST_DEPLOY_CREATES = (
    r"^iam:CreateRole",
    r"^logs:CreateLogGroup",
    r"^s3:PUT /iotbutton-config-[^/]+$",
    r"^ssm:PutParameter",
    r"^lambda:POST /2015-03-31/functions$",
    r"^iot:POST /rules/",
    r"^lambda:POST /2015-03-31/functions/[^/]+/policy$",
)


def test_lost_answers_during_notify_deploy(chaos, moto_url, tmp_path) -> None:
    """Each resource `notify deploy` creates, its answer lost once: the retry finds it there
    ("already exists") and the deploy goes on, recording it, instead of stopping with it made
    but unrecorded."""
    from support import TWILIO_ACCOUNT_SID, TWILIO_SECRET

    proxy, url = chaos
    home = tmp_path / "home"
    env = aws_env(home, url, TWILIO_AUTH_TOKEN=TWILIO_SECRET)
    init = ["notify", "init", "--account-sid", TWILIO_ACCOUNT_SID, "--from", "+15005550006"]
    init += ["--person", "P", "--sms", "+15551230001"]
    assert run(*init, env=env).returncode == 0
    for pattern in LOST_DEPLOY_CREATES:
        proxy.script(pattern, "lost")
    deployed = run("notify", "deploy", "--json", env=env)
    assert deployed.returncode == 0, deployed.stderr
    assert proxy.fault_counts()["lost"] == len(LOST_DEPLOY_CREATES)
    comparison = compare(moto_url, home)
    assert not comparison.unrecorded and not comparison.gone, comparison
    cleaned = run("clean", "--yes", "--json", env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert leftovers(moto_url) == {}
