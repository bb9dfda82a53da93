"""No traceback, ever: damaged registries, untrustworthy or broken homes, bad topics, URLs, rates,
counts, durations and configs each get one line and a hint (or, with ``--json``, one JSON error on
stdout), the documented exit status, and change nothing: not the registry, not the files, not AWS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest

from support import NAMESPACE

SERIAL = "G030JF0553648RUH"
NS = json.dumps(NAMESPACE)


def registry(text: str | bytes):
    def setup(monkeypatch, home: Path) -> None:
        path = home / "registry.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


def namespace_with(resources: str) -> str:
    return (
        f'{{"schema": 1, "namespaces": {{{NS}: {{"account": "123456789012", '
        f'"region": "us-east-1", "resources": {resources}}}}}}}'
    )


def home_is_a_file(monkeypatch, home: Path) -> None:
    target = home.parent / "a-file"
    target.write_text("not a folder")
    monkeypatch.setenv("IOTBUTTON_HOME", str(target))


def home_is_a_dangling_link(monkeypatch, home: Path) -> None:
    link = home.parent / "dangling"
    link.symlink_to(home.parent / "nowhere")
    monkeypatch.setenv("IOTBUTTON_HOME", str(link))


def home_writable_by_all(monkeypatch, home: Path) -> None:
    home.chmod(0o777)


def home_of_another_user(monkeypatch, home: Path) -> None:
    other = home.parent / "theirs"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)  # nobody
    monkeypatch.setenv("IOTBUTTON_HOME", str(other))


def env(name: str, value: str):
    return lambda monkeypatch, home: monkeypatch.setenv(name, value)


def config(text: str):
    def setup(monkeypatch, home: Path) -> None:
        (home / "config").mkdir(exist_ok=True, mode=0o700)
        (home / "config" / "notify.yaml").write_text(text)

    return setup


YAML_HEAD = 'account_sid: "AC11111111111111111111111111111111"\nfrom: "+15005550006"\n'
MANY = ", ".join(f'"+1555123{n:04d}"' for n in range(51))

CASES = [
    # (id, setup, args, exit status, words in the message)
    ("schema-0", registry('{"schema": 0, "namespaces": {}}'), ["things", "list"], 1, "schema 0"),
    ("schema-negative", registry('{"schema": -3, "namespaces": {}}'), ["clean"], 1, "schema -3"),
    (
        "resources-list",
        registry(namespace_with("[]")),
        ["things", "list"],
        1,
        "resources is a list",
    ),
    (
        "thing-a-string",
        registry(namespace_with('{"things": {"S": "x"}}')),
        ["things", "list"],
        1,
        "things → S is text",
    ),
    (
        "thing-without-arn",
        registry(namespace_with('{"things": {"S": {}}}')),
        ["things", "create", SERIAL],
        1,
        "has no arn",
    ),
    (
        "files-not-a-mapping",
        registry(namespace_with('{"certificates": {"c": {"arn": "a", "files": "x"}}}')),
        ["certs", "list"],
        1,
        "files is text",
    ),
    (
        "namespace-a-list",
        registry(f'{{"schema": 1, "namespaces": {{{NS}: []}}}}'),
        ["things", "create", SERIAL],
        1,
        "is a list",
    ),
    (
        "namespace-null",
        registry(f'{{"schema": 1, "namespaces": {{{NS}: null}}}}'),
        ["things", "create", SERIAL],
        1,
        "is null",
    ),
    (
        "things-a-list",
        registry(namespace_with('{"things": []}')),
        ["things", "create", "--count", "2"],
        1,
        "things is a list",
    ),
    ("not-utf8", registry(b'{"schema": 1, "\xff": 1}'), ["things", "list"], 1, "not UTF-8"),
    ("nested-deep", registry("[" * 100_000), ["things", "list"], 1, "nested too deeply"),
    ("home-a-file", home_is_a_file, ["things", "list"], 1, "is a file"),
    ("home-a-file-paths", home_is_a_file, ["paths"], 1, "is a file"),
    ("home-a-file-sandbox", home_is_a_file, ["sandbox", "status"], 1, "is a file"),
    ("home-a-file-start", home_is_a_file, ["sandbox", "start"], 1, "is a file"),
    ("home-a-file-init", home_is_a_file, ["notify", "init"], 1, "is a file"),
    ("home-dangling", home_is_a_dangling_link, ["things", "list"], 1, "does not exist"),
    ("home-dangling-demo", home_is_a_dangling_link, ["demo"], 1, "does not exist"),
    ("home-open", home_writable_by_all, ["things", "create", SERIAL], 1, "writable by other"),
    ("home-open-stop", home_writable_by_all, ["sandbox", "stop"], 1, "writable by other"),
    ("topic-wildcard", None, ["sim", "send", "--topic", "iotbutton/+", "--message", "x"], 2, "+"),
    ("topic-control", None, ["sim", "send", "--topic", "a\x01b", "--message", "x"], 2, "control"),
    ("topic-huge", None, ["sim", "send", "--topic", "a" * 70_000, "--message", "x"], 2, "bytes"),
    ("filter-hash", None, ["sim", "subscribe", "--topic", "a/#/b"], 2, "# must be"),
    ("filter-plus", None, ["sim", "subscribe", "--topic", "a/b+/c"], 2, "+ must be"),
    ("endpoint-notaurl", None, ["--endpoint-url", "notaurl", "things", "list"], 2, "notaurl"),
    ("endpoint-ipv6", None, ["--endpoint-url", "http://[::1", "things", "list"], 2, "IPv6"),
    (
        "rate-scale-tiny",
        env("IOTBUTTON_RATE_SCALE", "1e-300"),
        ["things", "create", SERIAL],
        2,
        "IOTBUTTON_RATE_SCALE",
    ),
    (
        "rate-limit-tiny",
        env("IOTBUTTON_RATE_LIMITS", "CreateCertificateFromCsr=0.0001"),
        ["things", "create", SERIAL],
        2,
        "IOTBUTTON_RATE_LIMITS",
    ),
    ("count-huge", None, ["things", "create", "--count", "100000"], 2, "10,000"),
    ("since-word", None, ["notify", "logs", "--since", "yesterday"], 2, "--since"),
    ("since-huge", None, ["notify", "logs", "--since", "99999999999"], 2, "--since"),
    (
        "yaml-nested",
        config(YAML_HEAD + "person: " + "[" * 1000 + "]" * 1000 + "\n"),
        ["notify", "check"],
        2,
        "nested",
    ),
    (
        "yaml-huge",
        config(YAML_HEAD + "# " + "x" * 300_000 + "\n"),
        ["notify", "check"],
        2,
        "bytes",
    ),
    (
        "yaml-too-many",
        config(
            YAML_HEAD + f'person: "P"\nclicks:\n  SINGLE:\n    sms: [{MANY}]\n    message: "hi"\n'
        ),
        ["notify", "check"],
        2,
        "more than 50",
    ),
]
if os.geteuid() == 0:
    CASES.append(("home-theirs", home_of_another_user, ["things", "list"], 1, "another user"))


def aws_state() -> dict[str, object]:
    iot = boto3.client("iot", region_name="us-east-1")
    return {
        "things": iot.list_things()["things"],
        "certificates": [c["certificateId"] for c in iot.list_certificates()["certificates"]],
        "policies": iot.list_policies()["policies"],
    }


def files_of(home: Path) -> dict[str, bytes]:
    return {
        str(path): path.read_bytes()
        for path in home.parent.rglob("*")
        if path.is_file() and not path.is_symlink() and "cache" not in path.parts
    }


@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
@pytest.mark.parametrize(
    ("setup", "args", "status", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_no_traceback(cli, aws, isolated_env, monkeypatch, setup, args, status, words, as_json):
    cli("things", "create", SERIAL)
    aws_before = aws_state()
    with monkeypatch.context() as patch:  # undone before AWS is checked again below
        if setup is not None:
            setup(patch, isolated_env)
        before = files_of(isolated_env)
        result = cli(*args, *(["--json"] if as_json else []), code=status)
        after = files_of(isolated_env)
    isolated_env.chmod(0o700)

    assert "Traceback" not in result.stdout + result.stderr
    if as_json:
        error = json.loads(result.stdout)["error"]
        assert words in error["message"] and error["hint"] and error["exit_status"] == status
        assert result.stderr == ""
    else:
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("Error: ") and words in lines[0], result.stderr
        assert len(lines) == 2 and lines[1].startswith("Hint: ") and len(lines[1]) > 10
    assert after == before
    assert aws_state() == aws_before


def test_there_is_a_case_for_each_kind_of_damage():
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "args",
    [
        ["things", "list", "--bogus"],
        ["things", "create", "--count", "many"],
        ["sandbox", "start", "--aws-port", "70000"],
        ["sim", "click", "--battery", "-5"],
    ],
)
def test_typer_usage_errors_are_json_errors_with_json(cli, args):
    """Typer's own checks (unknown options, values of the wrong type or range) honour --json."""
    result = cli(*args, "--json", code=2)
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "usage" and error["exit_status"] == 2 and error["hint"]
    assert "Traceback" not in result.stdout + result.stderr


def test_unreachable_says_the_sandbox_on_every_row():
    """Per-button rows of `things create` and per-step rows of `clean` name the sandbox too, not
    "AWS", when the sandbox is what could not be reached."""
    from concurrent.futures import Future

    from botocore.exceptions import EndpointConnectionError

    from iotbutton_cli.context import AppContext, Settings
    from iotbutton_cli.lifecycle import kinds_table, teardown
    from iotbutton_cli.provisioning import things
    from iotbutton_cli.registry import kinds

    ctx = AppContext(Settings(sandbox=True))
    lost = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")
    future: Future = Future()
    future.set_exception(lost)
    row = things._result_of(ctx, SERIAL, future)
    assert row.action == "failed" and "Could not reach the sandbox" in row.error["message"]

    def unreachable(ctx, resource_id, keep_local):
        raise lost

    kind = kinds_table.Row(kinds.BY_NAME[kinds.THINGS], unreachable)
    step = teardown.Step(kinds.THINGS, SERIAL, f"thing {SERIAL}")
    outcome = teardown._run(ctx, kind, step, keep_local=False)
    assert outcome.status == "failed" and "Could not reach the sandbox" in outcome.detail
