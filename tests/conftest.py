"""Shared fixtures: every test gets its own IOTBUTTON_HOME and fake AWS credentials."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
UNSET_ENV = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "IOTBUTTON_SANDBOX",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private home and fake credentials, so no test can touch a real account or the user's
    files; AWS's config files point at empty files so a developer's profiles never leak in."""
    home = tmp_path / "home"
    monkeypatch.setenv("IOTBUTTON_HOME", str(home))
    # Background sandboxes skip loading moto's deploy services ahead (about 1.5 s of CPU each,
    # most never deploy); test_lambda_runner checks what it loads, the README's demo uses it.
    monkeypatch.setenv("IOTBUTTON_SANDBOX_AHEAD", "0")
    for name in UNSET_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    from iotbutton_cli.aws import retry

    monkeypatch.setattr(retry, "BASE_DELAY_SECONDS", 0.01)
    return home


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's in-process AWS: every boto3 client in this process talks to it, with the sandbox's
    fixes of moto (a second PutFunctionEventInvokeConfig replaces the first, as AWS's does)."""
    from moto import mock_aws

    from iotbutton_cli.sandbox import moto_fixes

    moto_fixes.install()
    _serialize_in_process_moto()
    with mock_aws():
        yield


_MOTO_LOCK = threading.RLock()


def _serialize_in_process_moto() -> None:
    """moto's in-process backends are not thread-safe (a DeleteCertificate while another thread
    lists certificates raises "OrderedDict mutated during iteration"): handle one request at a
    time, as the sandbox's server does with its own lock. iotbutton's concurrency is unchanged;
    only moto's answers are serialised."""
    from moto.core import botocore_stubber

    call = botocore_stubber.BotocoreStubber.__call__
    if getattr(call, "_serialized", False):
        return

    def serialized(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _MOTO_LOCK:
            return call(self, *args, **kwargs)

    serialized._serialized = True  # type: ignore[attr-defined]
    botocore_stubber.BotocoreStubber.__call__ = serialized  # type: ignore[method-assign]


@pytest.fixture
def iot(aws: None) -> Any:
    import boto3

    return boto3.client("iot", region_name="us-east-1")


class Cli:
    """Run ``iotbutton`` in-process with Typer's CliRunner; stdout and stderr kept apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, code: int | None = 0) -> Any:
        from iotbutton_cli.cli.app import app

        result = self.runner.invoke(app, list(args), input=input, catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, (
                f"exit {result.exit_code} != {code}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}"
            )
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        result = self(*args, "--json", code=code)
        return json.loads(result.stdout)


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A standalone moto server on loopback, as a user would run with `moto_server`."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_url(moto_server: str) -> Iterator[str]:
    """The moto server, emptied before each test."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))
    yield moto_server


@pytest.fixture
def fault_proxy(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """AWS_ENDPOINT_URL points at a proxy that can answer chosen calls with AWS errors."""
    from awsfaults import FaultProxy

    proxy = FaultProxy(moto_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.start())
    yield proxy
    proxy.stop()


@pytest.fixture
def sandbox_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The sandbox's AWS endpoint (moto, Lambda Invoke run locally), empty, as AWS_ENDPOINT_URL,
    with its key pair as the environment's credentials (it accepts no other)."""
    from iotbutton_cli.sandbox.aws_server import SandboxAWS, reset_moto

    server = SandboxAWS(tmp_path / "sandbox-state")
    url = server.start()
    # moto's backends are process-wide: start each test from an empty account. (The server
    # does not serve /moto-api; it runs in this process, so moto is reset here directly.)
    reset_moto()
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.keys.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.keys.secret_access_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    import boto3

    # boto3.client() shares one session, which keeps the first credentials it found.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    yield server
    server.stop()


@pytest.fixture
def twilio_standin() -> Iterator[Any]:
    """Twilio's stand-in: checks every request against Twilio's OpenAPI description."""
    from iotbutton_cli.sandbox.twilio import TwilioStandIn
    from support import TWILIO_ACCOUNT_SID, TWILIO_SECRET

    with TwilioStandIn(credentials={TWILIO_ACCOUNT_SID: TWILIO_SECRET}) as stand_in:
        yield stand_in


@pytest.fixture
def sandbox(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh background sandbox, started through the CLI, that accepts the tests' Twilio
    secret once the notifier is deployed with it; stopped afterwards."""
    from support import TWILIO_SECRET

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_SECRET)
    info = cli.json("sandbox", "start")
    assert info["started"] is True
    yield info
    cli("sandbox", "stop")
