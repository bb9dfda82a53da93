"""The notifier bundle: reproducible bytes, fixed metadata, and a zip that runs alone."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from iotbutton_cli.notify import bundle as bundles

MAX_BUNDLE_BYTES = 80 * 1024  # 67.4 KB with escalation, battery, buttons, webhooks and shadow

PROBE = """
import importlib, importlib.util, json, sys
sys.path.insert(0, {zip!r})
module_name, function_name = {handler!r}.rsplit(".", 1)
module = importlib.import_module(module_name)
event = module.parse_event("not an event")
try:
    getattr(module, function_name)("not an event", None)
except module.ConfigError as exc:  # an alarm needs the config: none is deployed here
    problem = str(exc)
print(json.dumps({{
    "event": [event.serial, event.click, event.battery],
    "problem": problem,
    "file": module.__file__,
    "path": sys.path,
    "boto3_imported": "boto3" in sys.modules,
    "ours_importable": importlib.util.find_spec("iotbutton_cli") is not None,
}}))
"""


def package_source(name: str) -> bytes:
    return resources.files("iotbutton_cli.notifier_lambda").joinpath(name).read_bytes()


PACKAGE_FILES = sorted(
    f"notifier_lambda/{entry.name}"
    for entry in resources.files("iotbutton_cli.notifier_lambda").iterdir()
    if entry.name.endswith(".py")
)


def test_two_builds_give_identical_bytes(tmp_path):
    first = bundles.build_bundle(tmp_path / "one")
    second = bundles.build_bundle(tmp_path / "two")

    assert first.data == second.data
    assert first.path.read_bytes() == second.path.read_bytes() == first.data
    assert first.sha256_hex == second.sha256_hex
    assert first.code_sha256 == second.code_sha256
    assert first.path.name == second.path.name == f"notifier-{first.sha256_hex[:12]}.zip"
    assert first.path.parent != second.path.parent
    assert bundles.bundle_bytes() == first.data


def test_hashes_size_and_name(tmp_path):
    folder = tmp_path / "bundles"
    built = bundles.build_bundle(folder)
    data = built.path.read_bytes()

    assert built.size == len(data) == built.path.stat().st_size
    assert built.size < MAX_BUNDLE_BYTES
    assert built.sha256_hex == hashlib.sha256(data).hexdigest()
    assert base64.b64decode(built.code_sha256) == hashlib.sha256(data).digest()
    assert built.code_sha256 == bundles.lambda_code_sha256(data)
    assert "data=" not in repr(built) and len(repr(built)) < 400
    assert [p.name for p in folder.iterdir()] == [built.path.name]  # no temp file left


def test_entries_timestamps_and_modes_are_fixed(tmp_path):
    built = bundles.build_bundle(tmp_path)

    with zipfile.ZipFile(built.path) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [info.filename for info in infos] == PACKAGE_FILES
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.create_system == 3
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.comment == b"" and info.extra == b""
        for name in PACKAGE_FILES:
            assert archive.read(name) == package_source(name.split("/", 1)[1])
        assert not any(
            "__pycache__" in name or name.endswith(".pyc") for name in archive.namelist()
        )


def test_default_folder_is_the_cache_and_a_damaged_copy_is_replaced(isolated_env):
    built = bundles.build_bundle()
    assert built.path.parent == isolated_env / "cache"

    built.path.write_bytes(b"truncated")
    again = bundles.build_bundle()
    assert again.path == built.path
    assert again.path.read_bytes() == built.data


def test_handler_string_names_the_package_module_in_the_zip():
    assert bundles.HANDLER == "notifier_lambda.handler.lambda_handler"
    assert sorted(bundles.BUNDLE_FILES) == PACKAGE_FILES, "every module of the package, no other"


def test_the_zip_runs_alone_in_isolated_mode(tmp_path):
    built = bundles.build_bundle(tmp_path / "cache")

    completed = subprocess.run(
        # -I: no environment, no user site, no script folder; -S: not even site-packages.
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            PROBE.format(zip=str(built.path), handler=bundles.HANDLER),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )

    report = json.loads(completed.stdout)
    assert report["event"] == ["unknown", "SINGLE", "unknown"], "an odd event is still an alarm"
    assert report["problem"].startswith("environment variable(s) not set")
    assert report["file"] == str(built.path / "notifier_lambda" / "handler.py")
    assert report["path"][0] == str(built.path)
    assert not [entry for entry in report["path"] if "site-packages" in entry]
    assert report["ours_importable"] is False
    assert report["boto3_imported"] is False


def test_notify_bundle_command(cli, isolated_env):
    report = cli.json("notify", "bundle")

    assert set(report) == {"path", "size", "sha256", "code_sha256", "handler"}
    path = Path(report["path"])
    assert path.parent == isolated_env / "cache"
    assert report["size"] == path.stat().st_size
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["handler"] == "notifier_lambda.handler.lambda_handler"

    human = cli("notify", "bundle")
    assert str(path) in human.stdout
    assert report["sha256"] in human.stdout
    assert f"{report['size']} bytes" in human.stdout


@pytest.mark.parametrize("attempt", range(3))
def test_bundle_is_stable_across_processes(tmp_path, attempt):
    """A fresh interpreter (new hash seed, new import order) builds the same bytes."""
    here = bundles.bundle_bytes()
    script = (
        "import sys, hashlib; from iotbutton_cli.notify.bundle import bundle_bytes; "
        "sys.stdout.write(hashlib.sha256(bundle_bytes()).hexdigest())"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={
            "PYTHONHASHSEED": str(attempt + 1),
            "PATH": "/usr/bin:/bin",
            # The iotbutton_cli under test, not whichever one is installed.
            "PYTHONPATH": str(Path(bundles.__file__).parents[2]),
        },
        cwd=tmp_path,
    )
    assert completed.stdout == hashlib.sha256(here).hexdigest()


def test_a_deploy_moves_a_function_to_the_packaged_handler(aws):
    """A function deployed before the package layout names ``handler.lambda_handler``, which
    the new zip does not have: the next deploy sets the function's Handler to the new one."""
    import boto3

    from iotbutton_cli.context import AppContext
    from iotbutton_cli.notify import deploy as notifier_deploy
    from iotbutton_cli.notify.resources import FUNCTION_NAME

    document = {
        "version": 1,
        "account_sid": "AC" + "a" * 32,
        "api_key_sid": None,
        "from": "+15005550006",
        "person": "Grandma",
        "clicks": {"SINGLE": {"sms": ["+15551230001"], "call": [], "message": "{person}"}},
    }
    data = bundles.bundle_bytes()

    def deploy(handler: str) -> notifier_deploy.DeployReport:
        source = notifier_deploy.DeployInput(
            document, "s3cret", data, bundles.lambda_code_sha256(data), handler=handler
        )
        return notifier_deploy.deploy(AppContext(), source)

    deploy("handler.lambda_handler")
    report = deploy(bundles.HANDLER)

    function = boto3.client("lambda", region_name="us-east-1").get_function(
        FunctionName=FUNCTION_NAME
    )["Configuration"]
    assert function["Handler"] == "notifier_lambda.handler.lambda_handler"
    actions = {step.resource: step.action for step in report.steps}
    assert actions["Lambda function"] == "updated"
    assert deploy(bundles.HANDLER).up_to_date
