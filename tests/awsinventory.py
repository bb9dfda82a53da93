"""What iotbutton made, as moto holds it and as the registry records it, and how they differ.

The crash, concurrency and fault tests all end with the same questions: is every resource in
AWS recorded (nothing the registry does not know, so nothing ``clean`` would miss), is anything
duplicated, and does ``clean`` leave nothing behind. The answers come from boto3 calls straight to
the moto server, never through the proxy under test.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from support import NAMESPACE, registry_document

# Registry kinds that stand for resources in AWS (lambda_permissions live inside a function).
KINDS = (
    "things",
    "certificates",
    "policies",
    "thing_types",
    "topic_rules",
    "functions",
    "roles",
    "buckets",
    "parameters",
    "log_groups",
    "tables",
    "topics",
    "metric_alarms",
)


@contextlib.contextmanager
def shared_botocore_loader() -> Iterator[None]:
    """Let every boto3 session created in this (test) process share one botocore data loader.

    Each ``iotbutton`` command run in-process makes a new session, and each new session parses
    the service models again: over a hundred crash points that is most of the harness's own CPU
    time. Within one session botocore already shares its loader between clients, so sharing it
    between sessions changes nothing but the time. Only this process is affected, and the
    commands it forks (:class:`Forked`): those started with :func:`spawn` run unpatched.
    """
    import botocore.loaders
    import botocore.session

    shared = functools.lru_cache(maxsize=None)(botocore.loaders.create_loader)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))


@functools.lru_cache(maxsize=8)
def clients(url: str) -> dict[str, Any]:
    """boto3 clients for the moto server at ``url`` (made once: creating them is slow)."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return {
        name: session.client(name, endpoint_url=url)
        for name in ("iot", "lambda", "iam", "s3", "ssm", "logs", "dynamodb", "sns", "cloudwatch")
    }


def inventory(url: str) -> dict[str, set[str]]:
    """Every resource of the kinds iotbutton makes (moto is emptied per test: all are ours)."""
    c = clients(url)
    iot = c["iot"]
    found: dict[str, set[str]] = {
        "things": {t["thingName"] for t in _pages(iot, "list_things", "things")},
        "certificates": {
            cert["certificateId"] for cert in _pages(iot, "list_certificates", "certificates")
        },
        "policies": {p["policyName"] for p in _pages(iot, "list_policies", "policies")},
        "thing_types": {t["thingTypeName"] for t in _pages(iot, "list_thing_types", "thingTypes")},
        "topic_rules": {r["ruleName"] for r in iot.list_topic_rules()["rules"]},
        "functions": {f["FunctionName"] for f in c["lambda"].list_functions()["Functions"]},
        "roles": {r["RoleName"] for r in c["iam"].list_roles()["Roles"]},
        "buckets": {b["Name"] for b in c["s3"].list_buckets().get("Buckets", [])},
        "parameters": {p["Name"] for p in c["ssm"].describe_parameters()["Parameters"]},
        "log_groups": {g["logGroupName"] for g in c["logs"].describe_log_groups()["logGroups"]},
        "tables": set(c["dynamodb"].list_tables()["TableNames"]),
        "topics": {t["TopicArn"].split(":")[-1] for t in c["sns"].list_topics()["Topics"]},
        "metric_alarms": {
            a["AlarmName"] for a in c["cloudwatch"].describe_alarms()["MetricAlarms"]
        },
    }
    return found


def _pages(client: Any, method: str, key: str) -> list[dict[str, Any]]:
    return [item for page in client.get_paginator(method).paginate() for item in page[key]]


def recorded(home: Path) -> dict[str, dict[str, Any]]:
    """The namespace's resources by kind (raises if the registry file is not valid JSON)."""
    namespace = registry_document(home)["namespaces"].get(NAMESPACE, {})
    return namespace.get("resources", {})


@dataclass
class Comparison:
    """moto against the registry, kind by kind."""

    unrecorded: dict[str, set[str]] = field(default_factory=dict)  # in AWS, not recorded
    gone: dict[str, set[str]] = field(default_factory=dict)  # recorded, not in AWS

    @property
    def orphan_count(self) -> int:
        return sum(len(ids) for ids in self.unrecorded.values())

    def __str__(self) -> str:
        return f"unrecorded={self.unrecorded or '{}'} recorded-but-gone={self.gone or '{}'}"


def compare(url: str, home: Path) -> Comparison:
    moto = inventory(url)
    registry = recorded(home)
    result = Comparison()
    for kind in KINDS:
        ids = set(registry.get(kind, {}))
        if moto[kind] - ids:
            result.unrecorded[kind] = moto[kind] - ids
        if ids - moto[kind]:
            result.gone[kind] = ids - moto[kind]
    return result


def leftovers(url: str) -> dict[str, set[str]]:
    """What is still in moto: after ``clean``, every entry is an orphan."""
    return {kind: ids for kind, ids in inventory(url).items() if ids}


def thing_principals(url: str, serial: str) -> list[str]:
    return clients(url)["iot"].list_thing_principals(thingName=serial)["principals"]


def aws_env(home: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The environment of an ``iotbutton`` subprocess: its own home, fake keys, this endpoint."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "IOTBUTTON_", "TWILIO_", "PYTEST_", "COV_"))
    }
    env.update(
        {
            "IOTBUTTON_HOME": str(home),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_ENDPOINT_URL": endpoint,
            **extra,
        }
    )
    return env


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "iotbutton_cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Forked:
    """``iotbutton ARGS`` in a child forked from this (test) process: a real process a SIGKILL
    can end at any instant, without a new interpreter's start, imports and service models
    (about 1 s each time, over the crash harness's ~250 points most of its run). The child
    waits for :meth:`go`, so a proxy can be armed with its pid before its first call.

    Like :class:`subprocess.Popen` where the harness uses it: ``pid``, ``communicate``,
    ``returncode``. Only for this process's own single-threaded use of the CLI: the threads a
    fork leaves behind (moto's, a proxy's) are never touched in the child.
    """

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self._output = [tempfile.TemporaryFile() for _ in range(2)]  # noqa: SIM115 (closed in communicate)
        start, self._go = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover (the child)
            os.close(self._go)
            self._child(args, env, start)
        os.close(start)
        self.returncode: int | None = None

    def _child(self, args: tuple[str, ...], env: dict[str, str], start: int) -> None:
        code = 1
        try:
            os.read(start, 1)
            for fd, out in zip((1, 2), self._output, strict=True):
                os.dup2(out.fileno(), fd)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
            sys.stdin = io.TextIOWrapper(io.FileIO(os.open(os.devnull, os.O_RDONLY), "r"))
            os.environ.clear()
            os.environ.update(env)
            sys.argv = ["iotbutton", *args]
            from iotbutton_cli.cli.app import main

            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def go(self) -> None:
        os.write(self._go, b"!")
        os.close(self._go)

    def communicate(self, timeout: float) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
                raise subprocess.TimeoutExpired(["iotbutton"], timeout)
            time.sleep(0.01)
        self.returncode = os.waitstatus_to_exitcode(status)
        texts = []
        for out in self._output:
            out.seek(0)
            texts.append(out.read().decode(errors="replace"))
            out.close()
        return texts[0], texts[1]


def run(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotbutton_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
