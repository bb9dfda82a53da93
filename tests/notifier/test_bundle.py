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
import handler
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
    """Lambda's layout: the notifier package's files at the root of the zip."""
    with zipfile.ZipFile(target, "w") as bundle:
        for source in sorted(NOTIFIER_DIR.glob("*.py")):
            bundle.write(source, source.name)
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


def test_handler_source_imports_only_the_standard_library_and_boto3():
    tree = ast.parse((NOTIFIER_DIR / "handler.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the zip has no package around it"
            imported.add((node.module or "").split(".")[0])

    third_party = imported - set(sys.stdlib_module_names)
    assert third_party == {"boto3"}
    assert "iotbutton_cli" not in imported
