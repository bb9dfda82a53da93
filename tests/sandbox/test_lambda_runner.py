"""The sandbox's AWS endpoint runs deployed Lambda code: notifier deploy → invoke → Twilio."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile

import boto3
import pytest

from iotbutton_cli.context import AppContext, Settings
from iotbutton_cli.notify import bundle
from iotbutton_cli.notify import deploy as notifier_deploy
from support import TWILIO_ACCOUNT_SID as ACCOUNT_SID
from support import TWILIO_SECRET as SECRET

DOCUMENT = {
    "version": 1,
    "account_sid": ACCOUNT_SID,
    "api_key_sid": None,
    "from": "+15005550006",
    "person": "Grandma",
    "clicks": {
        "SINGLE": {"sms": ["+15551230001"], "call": [], "message": "{person}: single"},
        "DOUBLE": {"sms": ["+15551230001"], "call": ["+15551230002"], "message": "{person} x2"},
    },
}


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def source(
    data: bytes, twilio_base: str | None = None, handler: str = "handler.lambda_handler"
) -> notifier_deploy.DeployInput:
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return notifier_deploy.DeployInput(
        DOCUMENT, SECRET, data, sha, handler=handler, twilio_api_base=twilio_base
    )


def create_function(sandbox, name: str, code: bytes, **settings):
    """``name`` with ``code``, made through the sandbox's Lambda API; its Lambda client."""
    iam = boto3.client("iam", endpoint_url=sandbox.url, region_name="us-east-1")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda", endpoint_url=sandbox.url, region_name="us-east-1")
    lam.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="handler.lambda_handler",
        Code={"ZipFile": code},
        **settings,
    )
    return lam


@pytest.fixture
def sandbox(sandbox_aws):
    return sandbox_aws


@pytest.fixture
def twilio(twilio_standin):
    return twilio_standin


def test_deployed_notifier_runs_and_messages_twilio(sandbox, twilio):
    ctx = AppContext(Settings())
    notifier_deploy.deploy(ctx, source(bundle.bundle_bytes(), twilio.base_url, bundle.HANDLER))
    lam = boto3.client("lambda", endpoint_url=sandbox.url, region_name="us-east-1")

    event = {"serialNumber": "G030JF0553648RUH", "batteryVoltage": "1650mV", "clickType": "DOUBLE"}
    response = lam.invoke(
        FunctionName="iotbutton-notifier", Payload=json.dumps(event), LogType="Tail"
    )

    result = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, result
    assert sorted((r["channel"], r["to"], r["status"]) for r in result["results"]) == [
        ("call", "+15551230002", "queued"),
        ("sms", "+15551230001", "queued"),
    ]
    outbox = twilio.outbox()
    assert sorted(entry["resource"] for entry in outbox) == ["Calls", "Messages"]
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "START RequestId" in tail and SECRET not in tail

    # A second click reuses the warm worker; the function's log reaches CloudWatch Logs.
    lam.invoke(
        FunctionName="iotbutton-notifier", Payload=json.dumps({**event, "clickType": "SINGLE"})
    )
    assert [i.cold for i in sandbox.invocations] == [True, False]
    logs = boto3.client("logs", endpoint_url=sandbox.url, region_name="us-east-1")
    messages = [
        e["message"]
        for e in logs.filter_log_events(logGroupName="/aws/lambda/iotbutton-notifier")["events"]
    ]
    assert sum("START RequestId" in m for m in messages) == 2
    assert not any(SECRET in m for m in messages)


def test_new_code_gets_a_new_worker_and_errors_are_reported(sandbox):
    ctx = AppContext(Settings())
    first = zipped({"handler.py": "def lambda_handler(event, context):\n    return {'v': 1}\n"})
    notifier_deploy.deploy(ctx, source(first))
    lam = boto3.client("lambda", endpoint_url=sandbox.url, region_name="us-east-1")
    assert json.loads(lam.invoke(FunctionName="iotbutton-notifier")["Payload"].read()) == {"v": 1}

    broken = zipped(
        {"handler.py": "def lambda_handler(event, context):\n    raise ValueError('x')\n"}
    )
    notifier_deploy.deploy(AppContext(Settings()), source(broken))
    response = lam.invoke(FunctionName="iotbutton-notifier")
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "ValueError"
    assert [i.cold for i in sandbox.invocations] == [True, True]


def test_unknown_function_is_not_found(sandbox):
    lam = boto3.client("lambda", endpoint_url=sandbox.url, region_name="us-east-1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="nope")


def test_slow_function_times_out(sandbox):
    code = zipped({"handler.py": "import time\ndef lambda_handler(e, c):\n    time.sleep(30)\n"})
    lam = create_function(sandbox, "slow", code, Timeout=1)
    response = lam.invoke(FunctionName="slow")
    assert response["FunctionError"] == "Unhandled"
    assert "timed out" in json.loads(response["Payload"].read())["errorMessage"]


def marking_handler(mark: str, answer: str, sleep: float = 0) -> bytes:
    """A handler whose module appends ``mark`` to $MARKS when it is imported."""
    return zipped(
        {
            "handler.py": (
                "import os, time\n"
                f"with open(os.environ['MARKS'], 'a') as f:\n    f.write({mark!r} + '\\n')\n"
                "def lambda_handler(event, context):\n"
                f"    time.sleep({sleep})\n    return {answer!r}\n"
            )
        }
    )


def wait_for_lines(path, count: int, timeout: float = 20.0) -> list[str]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    return path.read_text().splitlines() if path.exists() else []


def test_a_changed_function_is_started_before_its_first_invocation(sandbox, tmp_path):
    marks = tmp_path / "imports.txt"
    lam = create_function(
        sandbox,
        "warm",
        marking_handler("v1", "one", sleep=1.5),
        Environment={"Variables": {"MARKS": str(marks)}},
    )
    # Nothing invoked it, yet its module was imported: the worker started on its own.
    assert wait_for_lines(marks, 1) == ["v1"]
    assert sandbox.invocations == []

    import threading

    answers: list[str] = []
    slow = threading.Thread(
        target=lambda: answers.append(lam.invoke(FunctionName="warm")["Payload"].read().decode())
    )
    slow.start()
    import time

    time.sleep(0.3)  # the slow invocation is under way; new code must not cut it short
    lam.update_function_code(FunctionName="warm", ZipFile=marking_handler("v2", "two"))
    assert wait_for_lines(marks, 2) == ["v1", "v2"]  # v2 warmed while v1 still ran
    slow.join(timeout=20)
    assert answers == ['"one"']
    assert json.loads(lam.invoke(FunctionName="warm")["Payload"].read()) == "two"
    # Each version was imported once; each version's first invocation is reported cold.
    assert marks.read_text().splitlines() == ["v1", "v2"]
    assert [i.cold for i in sandbox.invocations] == [True, True]
    assert all(i.error is None for i in sandbox.invocations)


@pytest.mark.parametrize(
    ("method", "path", "body", "name"),
    [
        ("POST", "/2015-03-31/functions", b'{"FunctionName": "f"}', "f"),
        ("POST", "/2015-03-31/functions/", b"not json", None),
        ("PUT", "/2015-03-31/functions/f/code", b"", "f"),
        ("PUT", "/2015-03-31/functions/f/configuration", b"", "f"),
        ("GET", "/2015-03-31/functions/f/configuration", b"", None),
        ("POST", "/2015-03-31/functions/f/invocations", b"{}", None),
        ("DELETE", "/2015-03-31/functions/f", b"", None),
    ],
)
def test_which_requests_change_a_function(method, path, body, name):
    from iotbutton_cli.sandbox import prewarm

    assert prewarm.changed_function(method, path, body) == name


def test_concurrent_events_run_in_workers_of_their_own(sandbox, tmp_path):
    """Each invocation waits for a file that only the other one writes: run one after the
    other, as a single worker would, the first would give up waiting."""
    code = zipped(
        {
            "handler.py": (
                "import os, time\n"
                "def lambda_handler(event, context):\n"
                "    folder = os.environ['MEETING']\n"
                "    open(os.path.join(folder, event['me']), 'w').close()\n"
                "    other = os.path.join(folder, event['other'])\n"
                "    deadline = time.monotonic() + 15\n"
                "    while not os.path.exists(other) and time.monotonic() < deadline:\n"
                "        time.sleep(0.02)\n"
                "    return os.path.exists(other)\n"
            )
        }
    )
    lam = create_function(
        sandbox, "meet", code, Timeout=30, Environment={"Variables": {"MEETING": str(tmp_path)}}
    )
    from concurrent.futures import ThreadPoolExecutor

    events = [{"me": "a", "other": "b"}, {"me": "b", "other": "a"}]
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda e: json.loads(
                    lam.invoke(FunctionName="meet", Payload=json.dumps(e))["Payload"].read()
                ),
                events,
            )
        )
    assert answers == [True, True]
    assert sorted(i.cold for i in sandbox.invocations) == [True, True]


def test_what_the_sandbox_prepares_ahead_exists(caplog):
    """A name moto no longer has would only be logged by the sandbox: catch it here."""
    from iotbutton_cli.sandbox import server

    with caplog.at_level("WARNING"):
        server.import_ahead()
    assert [r.getMessage() for r in caplog.records if "ahead" in r.getMessage()] == []
