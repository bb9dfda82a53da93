"""More of `--help` staying fast: group and command help, and shell completion, load no Rich and
none of the SDKs; and (with a Typer that does not validate through pydantic) no pydantic either.

Measured on 2 cores: importing pydantic and building its validators for the global options costs
100-300 ms on every command but the top-level ``--help`` -- more than the rest of start-up.
Typer 0.29 made pydantic a dependency and runs every option value through a pydantic TypeAdapter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from test_startup import HEAVY

PROBE = """
import json, sys
from iotbutton_cli.cli.app import app
try:
    app(sys.argv[1:], prog_name="iotbutton", standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""
COMPLETION = {
    "_IOTBUTTON_COMPLETE": "complete_bash",
    "COMP_WORDS": "iotbutton things cr",
    "COMP_CWORD": "2",
}
CASES = [
    pytest.param(["things", "--help"], {}, id="group-help"),
    pytest.param(["notify", "deploy", "--help"], {}, id="command-help"),
    pytest.param(["sim", "click", "--help"], {}, id="sim-help"),
    pytest.param([], COMPLETION, id="completion"),
]
TYPER_VALIDATES_WITH_PYDANTIC = tuple(int(part) for part in version("typer").split(".")[:2]) >= (
    0,
    29,
)


def _loaded(args: list[str], env: dict[str, str], heavy: list[str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=heavy), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("args", "env"), CASES)
def test_help_and_completion_load_no_rich_and_no_sdk(args, env):
    assert _loaded(args, env, [*HEAVY, "rich"]) == []


@pytest.mark.xfail(
    TYPER_VALIDATES_WITH_PYDANTIC,
    reason="typer>=0.29 validates every option with pydantic (pin typer<0.29 to fix)",
    strict=True,
)
@pytest.mark.parametrize(("args", "env"), CASES)
def test_help_and_completion_load_no_pydantic(args, env):
    assert _loaded(args, env, ["pydantic", "pydantic_core"]) == []


def test_completion_still_completes():
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=[])],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **COMPLETION},
    )
    assert "create" in result.stdout.split()
