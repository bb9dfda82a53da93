"""The docs must keep up with the code: the IAM policy, the commands and the error codes.

docs/iam-policy.md is checked against the AWS calls a full lifecycle really makes (recorded with a
botocore hook while the CLI runs against moto), docs/reference.md against the Typer app and the
error codes in the source. A new command, option, error code or AWS call fails the build here
until the docs say what it is.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "iotbutton_cli"
ACCOUNT = "123456789012"
REGION = "us-east-1"

# Command groups and top-level commands that docs/reference.md covers. Extend these lists when a
# group (notify, rules, sim, sandbox...) is documented there.
DOCUMENTED_GROUPS = ["things", "certs"]
DOCUMENTED_COMMANDS = ["endpoint", "clean", "paths"]

# The source files whose error codes docs/reference.md explains. Add a file when its codes are
# documented.
DOCUMENTED_ERROR_SOURCES = [
    "aws_errors.py",
    "cli/output.py",
    "context.py",
    "errors.py",
    "paths.py",
    "registry.py",
    "services/certs.py",
    "services/endpoint.py",
    "services/keyfiles.py",
    "services/policies.py",
    "services/serials.py",
    "services/teardown.py",
    "services/things.py",
]
ERROR_FACTORIES = {"IotButtonError", "usage_error", "credentials_error"}

# AWS actions that do not support resource-level permissions: only these may use "Resource": "*".
ACCOUNT_LEVEL_ACTIONS = {
    "iot:CreateKeysAndCertificate",
    "iot:DescribeEndpoint",
    "sts:GetCallerIdentity",
}

SERIAL = "G030JF0553648RUH"


# --- docs/iam-policy.md ----------------------------------------------------------------------


class CallRecorder:
    """Every AWS call the CLI makes: the IAM action and the ARN IAM authorizes it against."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    @property
    def actions(self) -> set[str]:
        return {action for action, _ in self.calls}

    def register(self, session: Any) -> None:
        session.events.register("before-parameter-build", self._remember_params)
        session.events.register("before-call", self._record)

    @staticmethod
    def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["docs_test_params"] = dict(params)

    def _record(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        from iotbutton_cli.aws_errors import iam_action

        action = iam_action(model)
        resource = resource_arn(action, context.get("docs_test_params", {}))
        with self._lock:
            self.calls.append((action, resource))


def resource_arn(action: str, params: dict[str, Any]) -> str:
    """The resource IAM checks for ``action`` (per the AWS Service Authorization Reference)."""
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}"
    if action in ACCOUNT_LEVEL_ACTIONS:
        return "*"
    if action in ("iot:AttachPolicy", "iot:DetachPolicy"):
        return params["target"]  # the certificate, not the IoT policy
    if action in ("iot:AttachThingPrincipal", "iot:DetachThingPrincipal"):
        return params["principal"]  # the certificate ARN
    if action.endswith("ThingType"):
        return f"{arn}:thingtype/{params['thingTypeName']}"
    if "certificateId" in params:
        return f"{arn}:cert/{params['certificateId']}"
    if "policyName" in params:
        return f"{arn}:policy/{params['policyName']}"
    if "thingName" in params:
        return f"{arn}:thing/{params['thingName']}"
    raise AssertionError(f"tests/test_docs.py does not know which resource {action} acts on")


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> CallRecorder:
    """Hook every boto3 session the CLI's AppContext creates."""
    from iotbutton_cli.context import AppContext

    calls = CallRecorder()
    make_session = AppContext.__dict__["session"].func

    def session(self: AppContext) -> Any:
        created = make_session(self)
        calls.register(created)
        return created

    hooked = cached_property(session)
    hooked.__set_name__(AppContext, "session")
    monkeypatch.setattr(AppContext, "session", hooked)
    return calls


def run_lifecycle(cli: Any, iot: Any) -> None:
    """Every path of things, certs, endpoint and clean that talks to AWS."""
    cli("things", "create", "--count", "2")
    cli("things", "create", SERIAL)
    cli("things", "create", SERIAL)  # unchanged
    cli("things", "show", SERIAL)
    cli("things", "list")
    cli("certs", "list")
    cli("certs", "rotate", SERIAL)
    cli("certs", "revoke", SERIAL, "--yes")
    cli("certs", "show", SERIAL)
    cli("endpoint")
    cli("paths")
    # A button policy left by an older iotbutton, already at AWS's five versions: the next
    # `things create` replaces the default version (dropping the oldest) and `clean` deletes the
    # non-default versions before the policy.
    for version in range(4):
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"old-{version}"}
            ],
        }
        iot.create_policy_version(
            policyName="iotbutton-button", policyDocument=json.dumps(document), setAsDefault=True
        )
    cli("things", "create", "G030AA0000000BBB")
    serials = [b["serial"] for b in cli.json("things", "list")]
    cli("things", "delete", serials[0], "--yes")
    cli("clean", "--dry-run")
    cli("clean", "--yes")


def policy_from(markdown: str) -> dict[str, Any]:
    """The one ```json block under the heading "The policy"."""
    blocks = re.findall(r"```json\n(.*?)```", section(markdown, "The policy"), flags=re.S)
    assert len(blocks) == 1, "docs/iam-policy.md: put one ```json block under ## The policy"
    return json.loads(blocks[0])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def iam_match(pattern: str, value: str) -> bool:
    """IAM wildcard matching: ``*`` any run of characters, ``?`` one character."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, value) is not None


def test_iam_policy_covers_exactly_the_calls_the_code_makes(cli, iot, recorder):
    run_lifecycle(cli, iot)
    policy = policy_from((DOCS / "iam-policy.md").read_text(encoding="utf-8"))

    statements = policy["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    granted: dict[str, list[str]] = {}
    for statement in statements:
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, f"list actions explicitly: {action}"
            granted.setdefault(action, []).extend(as_list(statement["Resource"]))

    called = recorder.actions
    print("AWS actions called:", sorted(called))
    assert called - set(granted) == set(), "the code calls actions docs/iam-policy.md lacks"
    assert set(granted) - called == set(), "docs/iam-policy.md grants actions the code never calls"
    for action, resource in recorder.calls:
        allowed = any(iam_match(pattern, resource) for pattern in granted[action])
        assert allowed, f"docs/iam-policy.md does not allow {action} on {resource}"
    for action, resources in granted.items():
        if "*" in resources:
            assert action in ACCOUNT_LEVEL_ACTIONS, f"{action} supports resource ARNs; scope it"


def test_iam_doc_lists_every_action_in_its_table():
    text = (DOCS / "iam-policy.md").read_text(encoding="utf-8")
    prose = re.sub(r"```json\n.*?```", "", text, flags=re.S)
    for statement in policy_from(text)["Statement"]:
        for action in as_list(statement["Action"]):
            assert f"`{action}`" in prose, f"explain {action} in docs/iam-policy.md"


# --- docs/reference.md -----------------------------------------------------------------------


def reference() -> str:
    return (DOCS / "reference.md").read_text(encoding="utf-8")


def documented_commands() -> list[tuple[str, Any]]:
    """(``iotbutton things create``, click command) for every command the reference covers."""
    from typer.main import get_command

    from iotbutton_cli.cli.app import app

    root = get_command(app)
    commands = root.commands  # type: ignore[attr-defined]
    found = []
    for name in DOCUMENTED_GROUPS:
        assert name in commands, f"DOCUMENTED_GROUPS names {name}, which the app lacks"
        for sub_name, sub in commands[name].commands.items():
            found.append((f"iotbutton {name} {sub_name}", sub))
    for name in DOCUMENTED_COMMANDS:
        assert name in commands, f"DOCUMENTED_COMMANDS names {name}, which the app lacks"
        found.append((f"iotbutton {name}", commands[name]))
    return found


def section(markdown: str, heading: str) -> str:
    """The text under the heading that is exactly ``heading`` (in backticks or not)."""
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"(#+)\s+`?(.*?)`?\s*$", line)
        if match and match.group(2) == heading:
            level = len(match.group(1))
            body = []
            for following in lines[index + 1 :]:
                deeper = re.match(r"(#+)\s", following)
                if deeper and len(deeper.group(1)) <= level:
                    break
                body.append(following)
            return "\n".join(body)
    raise AssertionError(f"no heading `{heading}` in the document")


def test_reference_documents_every_command_and_option():
    text = reference()
    for path, command in documented_commands():
        body = section(text, path)
        for param in command.params:
            names = [opt for opt in param.opts if opt.startswith("--")] or param.opts
            if param.param_type_name == "argument":
                names = [param.name.upper()]
            for name in names:
                assert name in body, f"docs/reference.md: `{path}` does not mention {name}"


def test_reference_documents_the_global_options():
    from typer.main import get_command

    from iotbutton_cli.cli.app import app

    body = section(reference(), "Global options")
    for param in get_command(app).params:
        for name in param.opts:
            if name.startswith("--") and name not in ("--install-completion", "--show-completion"):
                assert f"`{name}" in body, f"docs/reference.md does not document {name}"


def error_codes(relative: str) -> set[str]:
    tree = ast.parse((SRC / relative).read_text(encoding="utf-8"))
    codes = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        first = node.args[0]
        if name in ERROR_FACTORIES and isinstance(first, ast.Constant):
            codes.add(str(first.value))
    return codes


def test_reference_explains_every_error_code():
    text = reference()
    codes = set().union(*(error_codes(path) for path in DOCUMENTED_ERROR_SOURCES))
    assert "access-denied" in codes and "bad-serial" in codes  # the scan itself works
    missing = sorted(code for code in codes if f"`{code}`" not in text)
    assert missing == [], f"docs/reference.md does not explain error codes {missing}"


def test_reference_lists_every_exit_status():
    from iotbutton_cli.errors import ExitStatus

    body = section(reference(), "Exit statuses")
    for status in ExitStatus:
        assert re.search(rf"^\|\s*{int(status)}\s*\|", body, flags=re.M), status


def test_json_examples_in_the_docs_are_valid_json():
    for path in sorted(DOCS.glob("*.md")):
        for block in re.findall(r"```json\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
            json.loads(block)
