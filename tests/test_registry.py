"""The registry: atomic, locked, never silently replaced."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.registry.store import SCHEMA_VERSION, Registry


def make_namespace(path: Path):
    return Registry(path).namespace(
        "aws:123456789012:us-east-1", account="123456789012", region="us-east-1"
    )


def test_put_update_remove_and_empty_namespace_disappears(tmp_path):
    path = tmp_path / "registry.json"
    ns = make_namespace(path)
    ns.put("things", "A", {"arn": "arn:a"})
    ns.update("things", "A", certificate="c1")
    ns.update("things", "MISSING", certificate="x")  # no resurrection of removed records

    document = json.loads(path.read_text())
    assert document["schema"] == SCHEMA_VERSION
    record = document["namespaces"]["aws:123456789012:us-east-1"]
    assert record["account"] == "123456789012" and record["region"] == "us-east-1"
    assert record["resources"]["things"]["A"]["certificate"] == "c1"
    assert "MISSING" not in record["resources"]["things"]

    ns.remove("things", "A")
    assert json.loads(path.read_text())["namespaces"] == {}
    assert not any(ns.snapshot().values())


def test_file_is_private_and_no_temporary_files_remain(tmp_path):
    path = tmp_path / "deep" / "registry.json"
    make_namespace(path).put("things", "A", {"arn": "arn:a"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["registry.json", "registry.json.lock"]


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        ('{"schema": 1, "namespaces": {', "registry-corrupt", "is not valid JSON (line 1)"),
        ("[1, 2]", "registry-foreign", "is not an iotbutton registry"),
        ('{"hello": "world"}', "registry-foreign", "is not an iotbutton registry"),
        ('{"schema": 99, "namespaces": {}}', "registry-newer", "has schema 99"),
        (
            '{"schema": 1, "namespaces": []}',
            "registry-corrupt",
            "namespaces is a list, not an object",
        ),
    ],
)
def test_bad_files_are_reported_with_their_path_and_never_replaced(
    tmp_path, content, code, message
):
    path = tmp_path / "registry.json"
    path.write_text(content)
    with pytest.raises(IotButtonError) as raised:
        make_namespace(path).put("things", "A", {"arn": "arn:a"})
    assert raised.value.code == code
    assert message in raised.value.message and str(path) in raised.value.message
    assert path.read_text() == content


def test_unreadable_file_is_reported(tmp_path):
    if os.geteuid() == 0:
        # root reads anything; a directory in the file's place is unreadable as a file for all.
        path = tmp_path / "registry.json"
        path.mkdir()
    else:
        path = tmp_path / "registry.json"
        path.write_text("{}")
        path.chmod(0)
    with pytest.raises(IotButtonError) as raised:
        Registry(path).read()
    assert raised.value.code == "registry-unreadable"
    assert str(path) in raised.value.message


def test_cli_reports_a_corrupt_registry_in_one_line(cli, aws, isolated_env):
    isolated_env.mkdir(parents=True)
    (isolated_env / "registry.json").write_text("{not json")
    result = cli("things", "list", code=1)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: The registry ") and "is not valid JSON" in lines[0]
    assert lines[1].startswith("Hint:") and len(lines) == 2
    assert (isolated_env / "registry.json").read_text() == "{not json"


def test_threads_never_lose_an_update(tmp_path):
    ns = make_namespace(tmp_path / "registry.json")

    def writer(prefix: str) -> None:
        for index in range(40):
            ns.put("things", f"{prefix}{index}", {"arn": "x"})

    threads = [threading.Thread(target=writer, args=(f"T{n}-",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ns.items("things")) == 160


def _process_writer(path: str, prefix: str, count: int, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    ns = make_namespace(Path(path))
    for index in range(count):
        ns.put("things", f"{prefix}{index}", {"arn": "x"})


def test_two_processes_writing_at_once_never_lose_an_update(tmp_path):
    path = tmp_path / "registry.json"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_process_writer, args=(str(path), prefix, 60, start))
        for prefix in ("P1-", "P2-", "P3-")
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    things = make_namespace(path).items("things")
    assert len(things) == 180
    assert {name[:3] for name in things} == {"P1-", "P2-", "P3-"}


def test_without_a_lock_updates_would_be_lost(tmp_path, monkeypatch):
    """The lock is what makes the concurrency test pass: without it, updates vanish."""
    from contextlib import nullcontext

    import iotbutton_cli.registry.store as registry_module

    monkeypatch.setattr(registry_module.Registry, "_locked", lambda self: nullcontext())
    ns = make_namespace(tmp_path / "registry.json")
    barrier = threading.Barrier(2)
    original_load = registry_module.Registry._load

    def slow_load(self):
        document = original_load(self)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=0.5)
        return document

    monkeypatch.setattr(registry_module.Registry, "_load", slow_load)
    threads = [
        threading.Thread(target=ns.put, args=("things", name, {"arn": "x"})) for name in ("A", "B")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ns.items("things")) == 1
