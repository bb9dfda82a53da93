"""The notifier runs alone: from a zip of just its package, under ``python -I``, like Lambda."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import iotbutton_cli.notifier_lambda as notifier_package

NOTIFIER_DIR = Path(notifier_package.__file__).parent

PROBE = """
import json, sys
sys.path[:0] = [{zip!r}]
sys.path.append({site!r})
from notifier_lambda import handler
event = handler.parse_event({{"serialNumber": 7, "clickType": "single"}})
try:
    handler.lambda_handler({{"serialNumber": 7, "clickType": "SINGLE"}}, None)
except handler.ConfigError as exc:  # no environment here: the deployment is incomplete
    problem = str(exc)
print(json.dumps({{
    "event": [event.serial, event.click, event.battery],
    "problem": problem,
    "handler_file": handler.__file__,
    "ours": sorted(name for name in sys.modules if name.startswith("iotbutton_cli")),
    "boto3_imported": "boto3" in sys.modules,
}}))
"""


def build_zip(target: Path) -> Path:
    """Lambda's layout: the notifier package, whole, in a ``notifier_lambda/`` folder."""
    with zipfile.ZipFile(target, "w") as bundle:
        for source in sorted(NOTIFIER_DIR.glob("*.py")):
            bundle.write(source, f"notifier_lambda/{source.name}")
    return target


def test_handler_runs_from_the_zip_alone_in_isolated_mode(tmp_path):
    bundle = build_zip(tmp_path / "notifier.zip")
    probe = PROBE.format(zip=str(bundle), site=sysconfig.get_paths()["purelib"])

    completed = subprocess.run(
        [sys.executable, "-I", "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # nowhere near the source tree
    )

    report = json.loads(completed.stdout)
    assert report["event"] == ["unknown", "SINGLE", "unknown"]
    assert "IOTBUTTON_CONFIG_BUCKET" in report["problem"]
    assert report["handler_file"].startswith(str(bundle))
    assert report["ours"] == []
    assert report["boto3_imported"] is False, "boto3 is imported only to read config/secret"


def test_notifier_source_imports_only_the_standard_library_and_boto3():
    """Every module of the package: the standard library, boto3, and each other (relatively,
    so the same code works as iotbutton_cli.notifier_lambda and as notifier_lambda in the zip)."""
    ours = {path.stem for path in NOTIFIER_DIR.glob("*.py")}
    imported = set()
    for path in sorted(NOTIFIER_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1, f"{path.name}: a relative import leaves the package"
                modules = [node.module] if node.module else [a.name for a in node.names]
                assert set(modules) <= ours, f"{path.name}: imports {modules}, not ours"
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])

    third_party = imported - set(sys.stdlib_module_names)
    assert third_party == {"boto3"}
    assert "iotbutton_cli" not in imported
