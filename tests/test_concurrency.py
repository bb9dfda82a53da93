"""Several ``iotbutton`` processes provisioning at once, sharing one IOTBUTTON_HOME and one moto.

The registry is one JSON file under a file lock; every process records each resource the moment
AWS confirms it. With 4 processes x 5 buttons at once, none may lose another's records, and the
registry must end up exactly what moto holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from awsinventory import aws_env, compare, inventory, leftovers, recorded, run, spawn
from awsinventory import thing_principals as principals_of

PROCESSES = 4
BUTTONS_EACH = 5

pytestmark = pytest.mark.slow


def test_parallel_processes_lose_and_duplicate_nothing(moto_url: str, tmp_path: Path) -> None:
    env = aws_env(tmp_path / "home", moto_url)
    processes = [
        spawn("things", "create", "--count", str(BUTTONS_EACH), "--json", env=env)
        for _ in range(PROCESSES)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    reported = [button for out, _ in outputs for button in json.loads(out)["buttons"]]
    serials = {button["serial"] for button in reported}
    assert len(reported) == len(serials) == PROCESSES * BUTTONS_EACH
    assert {button["action"] for button in reported} == {"created"}

    things = recorded(tmp_path / "home")["things"]
    certificates = recorded(tmp_path / "home")["certificates"]
    moto = inventory(moto_url)
    print(
        f"\nconcurrency: {PROCESSES} processes x {BUTTONS_EACH} buttons: "
        f"{len(things)} recorded, {len(moto['things'])} things and "
        f"{len(moto['certificates'])} certificates in moto"
    )
    assert set(things) == serials == moto["things"]
    assert set(certificates) == moto["certificates"]
    assert len(certificates) == len(serials)
    comparison = compare(moto_url, tmp_path / "home")
    assert not comparison.unrecorded and not comparison.gone, comparison
    for serial, record in things.items():
        certificate = certificates[record["certificate"]]
        assert principals_of(moto_url, serial) == [certificate["arn"]]
        assert certificate["thing_attached"] and certificate["policies"] == ["iotbutton-button"]
        assert all(Path(path).is_file() for path in certificate["files"].values())
    assert moto["policies"] == {"iotbutton-button"} and moto["thing_types"] == {"iotbutton"}

    cleaned = run("clean", "--yes", "--json", env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout)["complete"] is True
    assert leftovers(moto_url) == {}
    assert recorded(tmp_path / "home") == {}


def test_parallel_processes_on_the_same_serial_make_one_button(
    moto_url: str, tmp_path: Path
) -> None:
    """Two people (or scripts) creating the same button at once get one thing, one certificate."""
    serial = "G030JF0553648RUH"
    env = aws_env(tmp_path / "home", moto_url)
    processes = [spawn("things", "create", serial, "--json", env=env) for _ in range(PROCESSES)]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    moto = inventory(moto_url)
    registry = recorded(tmp_path / "home")
    assert moto["things"] == set(registry["things"]) == {serial}
    assert moto["certificates"] == set(registry["certificates"]), (moto, registry)
    current = registry["certificates"][registry["things"][serial]["certificate"]]
    assert principals_of(moto_url, serial) == [current["arn"]]
    assert len(moto["certificates"]) == 1, moto["certificates"]

    cleaned = run("clean", "--yes", env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert leftovers(moto_url) == {}
