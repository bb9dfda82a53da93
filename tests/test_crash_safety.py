"""Crash safety: SIGKILL an ``iotbutton`` command after each of its AWS calls, then recover.

For every command under test the harness first runs it uncut through :mod:`chaosproxy` to count
its AWS calls (T). Then, for every N, a fresh run is SIGKILLed

- on the *arrival* of call N+1 (N = 1 … T-1): call N was answered and the client ran on;
- right after the proxy wrote the *response* to call N (N = 1 … T): AWS acted and answered, but
  the client had no time to record it.

After each kill: the registry file still parses; re-running the same command succeeds without
duplicates and leaves every resource in moto recorded; ``clean --yes`` then leaves nothing in moto.
Crash points are split into shards so xdist can spread them over workers. The command killed
is forked from the test process (:class:`awsinventory.Forked`), a real process without a new
interpreter's start; the harness's own check kills a freshly started one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from awsinventory import (
    Forked,
    aws_env,
    clients,
    compare,
    inventory,
    leftovers,
    recorded,
    reset_moto,
    shared_botocore_loader,
    spawn,
    thing_principals,
)
from chaosproxy import ChaosProxy
from support import TWILIO_SECRET, notify_init_args

pytestmark = pytest.mark.slow

SERIAL = "G030JF0553648RUH"
SHARDS = 4
KILL_TIMEOUT = 180


class Home:
    """One crash point's world: an IOTBUTTON_HOME, and ``iotbutton`` run in-process on moto."""

    def __init__(self, moto: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="iotbutton-crash-"))
        self.moto = moto
        self.env = aws_env(self.path, moto, TWILIO_AUTH_TOKEN=TWILIO_SECRET)
        self.runner = CliRunner()

    def cli(self, *args: str) -> Any:
        from iotbutton_cli.cli.app import app

        return self.runner.invoke(app, list(args), env=self.env, catch_exceptions=True)

    def must(self, *args: str) -> Any:
        result = self.cli(*args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
        return result

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def outcome(result: Any) -> str:
    """How an in-process run ended, for a crash point's report (a traceback counts too)."""
    text = (result.stdout + result.stderr).strip()[-400:]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f" {type(result.exception).__name__}: {result.exception}"
    return f"exit {result.exit_code}: {text}"


OWNER_SMS = "+15551230009"


def notify_init(home: Home) -> None:
    """notify.yaml with one recipient and an owner, whose SNS subscription a kill must not
    duplicate."""
    home.must(*notify_init_args())
    config = home.path / "config" / "notify.yaml"
    config.write_text(config.read_text() + f'\nowner:\n  sms: "{OWNER_SMS}"\n')


# -- what each command must leave after a kill and a re-run ------------------------------------


def check_things_create(home: Home) -> tuple[list[str], int]:
    """Everything in moto is recorded; resuming each recorded serial gives 1 thing : 1 cert."""
    problems = []
    before = compare(home.moto, home.path)
    if before.unrecorded:
        problems.append(f"after the re-run: {before}")
    for serial in unfinished_buttons(home):
        result = home.cli("things", "create", serial)
        if result.exit_code != 0:
            problems.append(f"resuming {serial}: {outcome(result)}")
    after = compare(home.moto, home.path)
    if after.unrecorded or after.gone:
        problems.append(f"after resuming every recorded serial: {after}")
    moto = inventory(home.moto)
    things = recorded(home.path).get("things", {})
    certificates = recorded(home.path).get("certificates", {})
    duplicates = max(0, len(moto["certificates"]) - len(moto["things"]))
    for serial in moto["things"]:
        principals = thing_principals(home.moto, serial)
        current = certificates.get(things.get(serial, {}).get("certificate") or "", {})
        if principals != [current.get("arn")]:
            problems.append(f"{serial}: principals {principals}, recorded {current.get('arn')}")
            duplicates += max(0, len(principals) - 1)
    if duplicates:
        problems.append(
            f"{duplicates} duplicate certificate(s): {len(moto['certificates'])} "
            f"certificates for {len(moto['things'])} things"
        )
    return problems, duplicates


def unfinished_buttons(home: Home) -> list[str]:
    """Recorded serials whose thing, certificate, files or attachments are not all recorded."""
    registry = recorded(home.path)
    certificates = registry.get("certificates", {})
    unfinished = []
    for serial, record in sorted(registry.get("things", {}).items()):
        cert = certificates.get(record.get("certificate") or "", {})
        done = cert.get("thing_attached") and cert.get("policies") and cert.get("files")
        if record.get("pending") or not done:
            unfinished.append(serial)
    return unfinished


def check_certs_rotate(home: Home) -> tuple[list[str], int]:
    problems = []
    comparison = compare(home.moto, home.path)
    if comparison.unrecorded or comparison.gone:
        problems.append(f"after the re-run: {comparison}")
    moto = inventory(home.moto)
    duplicates = max(0, len(moto["certificates"]) - 1) + max(0, len(moto["things"]) - 1)
    if duplicates:
        problems.append(f"duplicates: {moto['things']} {moto['certificates']}")
    registry = recorded(home.path)
    current = registry.get("things", {}).get(SERIAL, {}).get("certificate")
    record = registry.get("certificates", {}).get(current or "", {})
    if thing_principals(home.moto, SERIAL) != [record.get("arn")]:
        problems.append(f"{SERIAL} is not attached to its recorded certificate {current}")
    status = clients(home.moto)["iot"].describe_certificate(certificateId=current)
    if status["certificateDescription"]["status"] != "ACTIVE":
        problems.append(f"current certificate {current} is not ACTIVE")
    if not all(Path(path).is_file() for path in record.get("files", {}).values()):
        problems.append("the current certificate's key files are missing")
    return problems, duplicates


NOTIFIER_COUNTS = {
    "functions": 2,
    "roles": 2,
    "buckets": 1,
    "parameters": 1,
    "log_groups": 3,
    "topic_rules": 1,
    "tables": 1,
    "topics": 1,
    "metric_alarms": 2,
}
# The function's policy: the default rule's permission and the function URL's two public grants.
NOTIFIER_STATEMENTS = 3


def check_notify_deploy(home: Home) -> tuple[list[str], int]:
    problems = []
    comparison = compare(home.moto, home.path)
    if comparison.unrecorded or comparison.gone:
        problems.append(f"after the re-run: {comparison}")
    moto = inventory(home.moto)
    duplicates = sum(max(0, len(moto[kind]) - n) for kind, n in NOTIFIER_COUNTS.items())
    missing = [kind for kind, n in NOTIFIER_COUNTS.items() if len(moto[kind]) < n]
    c = clients(home.moto)
    statements = json.loads(c["lambda"].get_policy(FunctionName="iotbutton-notifier")["Policy"])
    duplicates += max(0, len(statements["Statement"]) - NOTIFIER_STATEMENTS)
    for bucket in moto["buckets"]:
        objects = c["s3"].list_objects_v2(Bucket=bucket).get("Contents", [])
        duplicates += max(0, len(objects) - 1)
    sns = clients(home.moto)["sns"]
    for topic in sns.list_topics()["Topics"]:
        found = sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]
        duplicates += max(0, len(found) - 1)
        if [s["Endpoint"] for s in found][:1] != [OWNER_SMS]:
            missing.append("the owner's subscription")
    if duplicates or missing:
        problems.append(f"{duplicates} duplicate(s), missing {missing}: {moto}")
    return problems, duplicates


def check_clean(home: Home) -> tuple[list[str], int]:
    return [], 0


@dataclass(frozen=True)
class Scenario:
    name: str
    argv: tuple[str, ...]
    setup: Callable[[Home], None]
    check: Callable[[Home], tuple[list[str], int]]


def _no_setup(home: Home) -> None:
    pass


def _one_button(home: Home) -> None:
    home.must("things", "create", SERIAL)


def _notifier_config(home: Home) -> None:
    notify_init(home)


def _everything(home: Home) -> None:
    home.must("things", "create", SERIAL)
    notify_init(home)
    home.must("notify", "deploy")


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "things-create", ("things", "create", "--count", "3"), _no_setup, check_things_create
        ),
        Scenario("certs-rotate", ("certs", "rotate", SERIAL), _one_button, check_certs_rotate),
        Scenario("notify-deploy", ("notify", "deploy"), _notifier_config, check_notify_deploy),
        Scenario("clean", ("clean", "--yes"), _everything, check_clean),
    )
}


# -- the harness ---------------------------------------------------------------------------------


@dataclass
class CrashPoint:
    where: str
    number: int
    fired: bool = False
    at: str = ""
    problems: list[str] = field(default_factory=list)
    orphans: int = 0
    duplicates: int = 0


@pytest.fixture(scope="module")
def proxy_for(moto_server: str) -> Any:
    proxy = ChaosProxy(moto_server)
    url = proxy.start()
    yield proxy, url
    proxy.stop()


CALLS: dict[str, list[str]] = {}
# The local state (every file under the home) as each call of the uncut run arrived.
LOCAL_STATES: dict[str, list[str]] = {}
READ_PREFIXES = ("Get", "Describe", "List", "Head", "GET ", "HEAD ")


def is_read(call: str) -> bool:
    """A call that changes nothing in AWS. Killing the command on a read's arrival or on its
    answer leaves the same world: AWS unchanged, and the registry as it was while the command
    waited for the answer. So reads are killed on arrival only. (REST calls are named by
    method and path: GET and HEAD are reads.)"""
    return call.split(":", 1)[1].startswith(READ_PREFIXES)


def count_calls(scenario: Scenario, proxy: ChaosProxy, url: str, moto: str) -> list[str]:
    """Run the command uncut through the proxy (once per worker); its calls, in arrival order."""
    if scenario.name not in CALLS:
        CALLS[scenario.name], LOCAL_STATES[scenario.name] = _uncut_calls(scenario, proxy, url, moto)
    return CALLS[scenario.name]


def same_world_as_before(name: str, number: int) -> bool:
    """A kill on the arrival of call ``number + 1`` leaves what a kill on the arrival of call
    ``number`` leaves when call ``number`` is a read (AWS unchanged) and no file under the home
    changed in between: that crash point adds nothing."""
    calls, states = CALLS[name], LOCAL_STATES[name]
    return (
        2 <= number < len(states)
        and is_read(calls[number - 1])
        and (states[number] == states[number - 1])
    )


def local_state(home: Path) -> str:
    """A digest of every file under ``home`` (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(home.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(home)).encode() + b"\0")
            with contextlib.suppress(OSError):  # removed meanwhile
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _uncut_calls(
    scenario: Scenario, proxy: ChaosProxy, url: str, moto: str
) -> tuple[list[str], list[str]]:
    reset_moto(moto)
    home = Home(moto)
    try:
        scenario.setup(home)
        proxy.reset()
        states: list[str] = []
        proxy.on_arrival = lambda: states.append(local_state(home.path))
        process = Forked(*scenario.argv, env={**home.env, "AWS_ENDPOINT_URL": url})
        process.go()
        _, err = process.communicate(timeout=KILL_TIMEOUT)
        assert process.returncode == 0, err
        return [f"{call.service}:{call.operation}" for call in proxy.calls], states
    finally:
        home.remove()


def crash_and_recover(
    scenario: Scenario, point: CrashPoint, proxy: ChaosProxy, url: str, moto: str
) -> None:
    reset_moto(moto)
    home = Home(moto)
    try:
        scenario.setup(home)
        proxy.reset()
        process = Forked(*scenario.argv, env={**home.env, "AWS_ENDPOINT_URL": url})
        proxy.arm(process.pid, point.where, point.number)
        process.go()
        _, err = process.communicate(timeout=KILL_TIMEOUT)
        proxy.wait_idle()
        point.fired = proxy.killed is not None
        if point.fired:
            point.at = f"{proxy.killed.service}:{proxy.killed.operation}"
            assert process.returncode == -9, (process.returncode, err)
        elif process.returncode != 0:
            point.problems.append(f"uncut run failed: {err.strip()[-300:]}")
        try:
            recorded(home.path)
        except ValueError as exc:
            point.problems.append(f"registry does not parse after the kill: {exc}")
            return
        rerun = home.cli(*scenario.argv)
        if rerun.exit_code != 0:
            point.problems.append(f"re-run: {outcome(rerun)}")
        else:
            problems, point.duplicates = scenario.check(home)
            point.problems.extend(problems)
        cleaned = home.cli("clean", "--yes", "--json")
        if cleaned.exit_code != 0:
            point.problems.append(f"clean: {outcome(cleaned)}")
        left = leftovers(moto)
        point.orphans = sum(len(ids) for ids in left.values())
        if left:
            point.problems.append(f"orphans after clean: {left}")
        if recorded(home.path):
            point.problems.append(f"registry not empty after clean: {recorded(home.path)}")
        keys = sorted(str(path) for path in home.path.rglob("*private.pem.key"))
        if keys:
            point.problems.append(f"private keys left on disk after clean: {keys}")
    finally:
        home.remove()


TALLY: dict[str, int] = {"points": 0, "fired": 0, "orphans": 0, "duplicates": 0, "failed": 0}


@pytest.fixture(scope="module", autouse=True)
def tally() -> Any:
    with shared_botocore_loader():
        yield TALLY
    print(
        f"\ncrash safety (this worker): {TALLY['points']} crash points tried "
        f"({TALLY['fired']} killed), {TALLY['orphans']} orphans, "
        f"{TALLY['duplicates']} duplicates, {TALLY['failed']} points with problems"
    )


@pytest.mark.parametrize("shard", range(SHARDS))
@pytest.mark.parametrize("where", ["arrival", "response"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_kill_after_every_aws_call(name: str, where: str, shard: int, proxy_for, moto_url) -> None:
    proxy, url = proxy_for
    scenario = SCENARIOS[name]
    calls = count_calls(scenario, proxy, url, moto_url)
    total = len(calls)
    assert total > 0
    numbers = range(1, total) if where == "arrival" else range(1, total + 1)
    if where == "response":  # a kill after a read's answer is a kill on its arrival (below)
        numbers = [n for n in numbers if not is_read(calls[n - 1])]
    else:
        numbers = [n for n in numbers if not same_world_as_before(name, n)]
    points = [CrashPoint(where, n) for n in numbers if n % SHARDS == shard]
    for point in points:
        crash_and_recover(scenario, point, proxy, url, moto_url)
    bad = [p for p in points if p.problems]
    fired = sum(p.fired for p in points)
    TALLY["points"] += len(points)
    TALLY["fired"] += fired
    TALLY["orphans"] += sum(p.orphans for p in points)
    TALLY["duplicates"] += sum(p.duplicates for p in points)
    TALLY["failed"] += len(bad)
    print(
        f"\n{name} kill-on-{where} shard {shard}: {total} AWS calls uncut, "
        f"{len(points)} crash points ({fired} killed), "
        f"{sum(p.orphans for p in points)} orphans, {sum(p.duplicates for p in points)} duplicates"
    )
    report = "\n".join(
        f"  kill on {p.where} #{p.number} ({p.at or 'not reached'}): " + "; ".join(p.problems)
        for p in bad
    )
    assert not bad, f"{len(bad)} of {len(points)} crash points failed:\n{report}"
    # Most points must really kill (a run that never reaches call N is not a crash test).
    assert fired >= len(points) * 0.8, [(p.number, p.fired) for p in points]


def test_the_harness_can_see_kills_orphans_and_duplicates(proxy_for, moto_url) -> None:
    """The checks above can fail: planted orphans and duplicates are found, and a kill kills."""
    proxy, url = proxy_for
    home = Home(moto_url)
    try:
        home.must("things", "create", SERIAL)
        iot = clients(moto_url)["iot"]
        iot.create_thing(thingName="PLANTED")
        extra = iot.create_keys_and_certificate(setAsActive=True)
        iot.attach_thing_principal(thingName=SERIAL, principal=extra["certificateArn"])
        comparison = compare(moto_url, home.path)
        assert comparison.unrecorded == {
            "things": {"PLANTED"},
            "certificates": {extra["certificateId"]},
        }
        problems, duplicates = check_things_create(home)
        assert duplicates == 1 and len(problems) >= 2, problems
        assert leftovers(moto_url)["things"] == {SERIAL, "PLANTED"}

        proxy.reset()
        process = spawn(
            "things", "create", "--count", "3", env={**home.env, "AWS_ENDPOINT_URL": url}
        )
        proxy.arm(process.pid, "arrival", 3)
        process.communicate(timeout=KILL_TIMEOUT)
        assert process.returncode == -9
        assert proxy.killed is not None and proxy.killed.number == 4
        proxy.wait_idle()
        assert proxy.count == 4
    finally:
        home.remove()


# -- the certificate requests that close the gap of a lost CreateCertificateFromCsr answer ---------


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return int(done.stdout)


def _open_request(ctx: Any, request_id: str, **fields: Any) -> Any:
    """A request as `create_certificate` records it before its call: key made, key file written.
    Returns the key request, so the test can make the certificate the call would have made."""
    import socket

    from iotbutton_cli.provisioning import certs, devicekeys
    from iotbutton_cli.registry import keyfiles
    from iotbutton_cli.registry.store import utc_now

    keys = devicekeys.new_key_request(SERIAL, request_id)
    key_file = keyfiles.write_request_key(
        ctx.namespace.key, SERIAL, request_id, keys.private_key_pem
    )
    record = {
        "thing": SERIAL,
        "since": utc_now(),
        "host": socket.gethostname(),
        "public_key_sha256": keys.public_key_sha256,
        "key_file": str(key_file),
        **fields,
    }
    ctx.namespace.put(certs.REQUEST_KIND, request_id, record)
    return keys


def _certificate_for(iot: Any, keys: Any) -> dict[str, Any]:
    return dict(
        iot.create_certificate_from_csr(certificateSigningRequest=keys.csr_pem, setAsActive=True)
    )


def test_reclaim_retires_only_the_certificates_a_dead_request_lost(cli, iot) -> None:
    """What the call of a dead process made is found by the key and subject it asked for; every
    other certificate made at the same time is another tool's, however unattached and ACTIVE."""
    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning import certs, devicekeys

    cli("things", "create", SERIAL)
    ctx = AppContext()
    keys = _open_request(ctx, "0123456789abcdef", pid=_dead_pid())
    key_file = ctx.namespace.get(certs.REQUEST_KIND, "0123456789abcdef")["key_file"]
    lost = _certificate_for(iot, keys)
    unattached = iot.create_keys_and_certificate(setAsActive=True)  # another tool's, just made
    in_use = iot.create_keys_and_certificate(setAsActive=True)
    iot.create_thing(thingName="THEIRS")
    iot.attach_thing_principal(thingName="THEIRS", principal=in_use["certificateArn"])
    inactive = iot.create_keys_and_certificate(setAsActive=False)
    other_request = _certificate_for(iot, devicekeys.new_key_request("OTHER", "fedcba9876543210"))

    assert certs.reclaim_lost_certificates(ctx) == [lost["certificateId"]]
    remaining = {c["certificateId"] for c in iot.list_certificates()["certificates"]}
    assert lost["certificateId"] not in remaining
    theirs = [unattached, in_use, inactive, other_request]
    assert {cert["certificateId"] for cert in theirs} <= remaining
    assert ctx.namespace.items(certs.REQUEST_KIND) == {}
    assert lost["certificateId"] not in ctx.namespace.items(certs.KIND)
    assert not Path(key_file).exists()  # the private key written for the lost certificate


def test_reclaim_leaves_what_a_running_request_may_own(cli, iot) -> None:
    import os

    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning import certs
    from iotbutton_cli.registry.store import utc_now

    cli("things", "create", SERIAL)
    ctx = AppContext()
    _open_request(ctx, "00000000000000de", pid=_dead_pid())  # died before its call
    running = _open_request(ctx, "00000000000000a1", pid=os.getpid())  # a call in flight
    made = _certificate_for(iot, running)

    assert certs.reclaim_lost_certificates(ctx) == []
    assert made["certificateId"] in {
        c["certificateId"] for c in iot.list_certificates()["certificates"]
    }
    assert set(ctx.namespace.items(certs.REQUEST_KIND)) == {"00000000000000a1"}
    result = cli.json("clean", "--yes", code=4)
    failed = {s["id"]: s["detail"] for s in result["steps"] if s["status"] == "failed"}
    assert "being issued by a running iotbutton command" in failed["00000000000000a1"]

    ctx.namespace.update(certs.REQUEST_KIND, "00000000000000a1", until=utc_now())  # it ended
    assert cli.json("clean", "--yes")["complete"] is True
    assert iot.list_certificates()["certificates"] == []


def test_a_request_of_an_older_iotbutton_is_left_alone(cli, iot) -> None:
    """A request recorded before iotbutton made its own keys names no key: nothing can prove a
    certificate is its own, so `clean` reports it and deletes nothing."""
    from iotbutton_cli.context import AppContext
    from iotbutton_cli.provisioning import certs
    from iotbutton_cli.registry.store import utc_now

    cli("things", "create", SERIAL)
    ctx = AppContext()
    ctx.namespace.put(
        certs.REQUEST_KIND,
        "0ld0ld0ld0ld0ld0",
        {"thing": SERIAL, "since": utc_now(), "until": utc_now()},
    )
    unattached = iot.create_keys_and_certificate(setAsActive=True)
    result = cli.json("clean", "--yes")
    left = {s["id"]: s["detail"] for s in result["steps"] if s["status"] == "left"}
    assert "older iotbutton" in left["0ld0ld0ld0ld0ld0"]
    assert [c["certificateId"] for c in iot.list_certificates()["certificates"]] == [
        unattached["certificateId"]
    ]
