"""The registry: atomic, locked, never silently replaced."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.registry.store import SCHEMA_VERSION, Registry

NAMESPACE = "aws:123456789012:us-east-1"


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
    ns.registry.settle()

    document = json.loads(path.read_text())
    assert document["schema"] == SCHEMA_VERSION
    record = document["namespaces"]["aws:123456789012:us-east-1"]
    assert record["account"] == "123456789012" and record["region"] == "us-east-1"
    assert record["resources"]["things"]["A"]["certificate"] == "c1"
    assert "MISSING" not in record["resources"]["things"]

    ns.remove("things", "A")
    assert not any(ns.snapshot().values())
    ns.registry.settle()
    assert json.loads(path.read_text())["namespaces"] == {}


def test_file_is_private_and_no_temporary_files_remain(tmp_path):
    path = tmp_path / "deep" / "registry.json"
    ns = make_namespace(path)
    ns.put("things", "A", {"arn": "arn:a"})
    journal = path.with_name("registry.json.journal")
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    ns.registry.settle()
    assert not journal.exists()
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


def _run_together(target, arguments: list[tuple]) -> None:
    """One spawned process per argument tuple, all let go at once (each gets the start event
    last); each must exit 0."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=target, args=(*args, start)) for args in arguments]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0


def test_two_processes_writing_at_once_never_lose_an_update(tmp_path):
    path = tmp_path / "registry.json"
    _run_together(_process_writer, [(str(path), prefix, 60) for prefix in ("P1-", "P2-", "P3-")])
    things = make_namespace(path).items("things")
    assert len(things) == 180
    assert {name[:3] for name in things} == {"P1-", "P2-", "P3-"}


def _process_counter(path: str, count: int, locked: bool, start: object) -> None:
    """Read-modify-write one record ``count`` times (the case a lock exists for)."""
    if not locked:
        from contextlib import nullcontext

        Registry._locked = lambda self: nullcontext()  # type: ignore[method-assign]
    start.wait()  # type: ignore[attr-defined]
    ns = make_namespace(Path(path))

    def increment(resources):
        record = resources.setdefault("things", {}).setdefault("COUNTER", {"arn": "x", "n": 0})
        seen = record["n"]
        time.sleep(0.005)  # time for another process to read the same value
        record["n"] = seen + 1

    for _ in range(count):
        try:
            ns.apply(increment)
        except Exception:
            if locked:  # without the lock, two processes may also trip over each other
                raise


def _count_with(path: Path, locked: bool) -> int:
    path.parent.mkdir(mode=0o700)
    _run_together(_process_counter, [(str(path), 40, locked)] * 3)
    return make_namespace(path).get("things", "COUNTER")["n"]


def test_the_lock_is_what_keeps_concurrent_updates(tmp_path):
    """With the lock three processes' 120 increments of one record all count; without it,
    processes read the same value and some increments vanish."""
    assert _count_with(tmp_path / "locked" / "registry.json", locked=True) == 120
    assert _count_with(tmp_path / "unlocked" / "registry.json", locked=False) < 120


# --- the journal -----------------------------------------------------------------------------


def _killed_writer(path: str, count: int) -> None:
    """Record ``count`` things, then die without the end-of-command rewrite."""
    ns = make_namespace(Path(path))
    for index in range(count):
        ns.put("things", f"K{index}", {"arn": f"arn:{index}"})
    os._exit(0)


def _kill_after_writing(path: Path, count: int) -> None:
    worker = multiprocessing.get_context("spawn").Process(
        target=_killed_writer, args=(str(path), count)
    )
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 0


def test_a_killed_command_leaves_a_journal_the_next_one_replays(tmp_path):
    path = tmp_path / "registry.json"
    ns = make_namespace(path)
    ns.put("things", "BEFORE", {"arn": "arn:before"})
    ns.registry.settle()
    _kill_after_writing(path, 5)
    journal = path.with_name("registry.json.journal")
    assert journal.exists() and "K4" not in path.read_text()
    ns.registry.close()
    assert sorted(make_namespace(path).items("things")) == ["BEFORE", *(f"K{i}" for i in range(5))]
    Registry(path).settle()
    assert not journal.exists()
    assert sorted(json.loads(path.read_text())["namespaces"][NAMESPACE]["resources"]["things"]) == [
        "BEFORE",
        *(f"K{i}" for i in range(5)),
    ]


def test_a_line_a_crash_cut_short_never_counts_and_is_cut_off(tmp_path):
    path = tmp_path / "registry.json"
    _kill_after_writing(path, 2)
    journal = path.with_name("registry.json.journal")
    whole = journal.read_bytes()
    with open(journal, "ab") as handle:
        handle.write(b'{"put":[["%s","things","TORN",{"arn"' % NAMESPACE.encode())
    ns = make_namespace(path)
    assert sorted(ns.items("things")) == ["K0", "K1"]
    ns.put("things", "AFTER", {"arn": "arn:after"})
    assert journal.read_bytes().startswith(whole)
    assert b"TORN" not in journal.read_bytes()
    ns.registry.close()
    assert sorted(make_namespace(path).items("things")) == ["AFTER", "K0", "K1"]


def test_a_journal_already_folded_in_is_ignored_and_replaced(tmp_path):
    """A crash between writing registry.json and removing the journal: the journal's
    generation is older, so it is not replayed over the newer file (whose REMOVED is gone)."""
    path = tmp_path / "registry.json"
    _kill_after_writing(path, 1)
    journal = path.with_name("registry.json.journal")
    stale = journal.read_bytes()
    ns = make_namespace(path)
    ns.remove("things", "K0")
    ns.registry.settle()
    journal.write_bytes(stale)
    journal.chmod(0o600)
    assert make_namespace(path).items("things") == {}
    ns.put("things", "NEW", {"arn": "arn:new"})
    assert b"K0" not in journal.read_bytes()
    ns.registry.settle()
    assert sorted(make_namespace(path).items("things")) == ["NEW"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"not json\n", "line 3 is not valid JSON"),
        (b'{"put": [["ns", "things"]]}\n', "line 3 has a put that is not"),
        (b'{"put": [["%s", "things", "A", {"arn": 5}]]}\n', "line 3 is damaged: put"),
        (b'{"put": [["aws:other", "things", "A", {"arn": "x"}]]}\n', "never opened"),
    ],
)
def test_a_damaged_journal_is_reported_with_its_line_and_never_replaced(tmp_path, line, problem):
    path = tmp_path / "registry.json"
    _kill_after_writing(path, 1)
    journal = path.with_name("registry.json.journal")
    with open(journal, "ab") as handle:
        handle.write(line.replace(b"%s", NAMESPACE.encode()))
    content = journal.read_bytes()
    with pytest.raises(IotButtonError) as raised:
        make_namespace(path).put("things", "B", {"arn": "arn:b"})
    assert raised.value.code == "registry-corrupt"
    assert problem in raised.value.message and str(journal) in raised.value.message
    Registry(path).settle()
    assert journal.read_bytes() == content


def test_a_journal_others_could_write_or_a_link_is_refused(tmp_path):
    path = tmp_path / "registry.json"
    _kill_after_writing(path, 1)
    journal = path.with_name("registry.json.journal")
    journal.chmod(0o620)
    with pytest.raises(IotButtonError) as raised:
        make_namespace(path).items("things")
    assert raised.value.code == "registry-unsafe" and str(journal) in raised.value.message
    journal.chmod(0o600)
    journal.rename(tmp_path / "elsewhere")
    journal.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(IotButtonError) as raised:
        make_namespace(path).items("things")
    assert raised.value.code == "registry-unsafe" and "symbolic link" in raised.value.message


def test_a_change_costs_the_same_however_large_the_registry(tmp_path):
    """With 3,000 records, one more appends one short line: registry.json is not rewritten."""
    path = tmp_path / "registry.json"
    ns = make_namespace(path)

    def many(resources):
        things = resources.setdefault("things", {})
        for index in range(3000):
            things[f"T{index:04d}"] = {"arn": f"arn:aws:iot:us-east-1:123456789012:thing/T{index}"}

    ns.apply(many)
    ns.registry.settle()
    ns.put("things", "FIRST", {"arn": "arn:first"})
    journal = path.with_name("registry.json.journal")
    before = (path.stat().st_ino, path.stat().st_mtime_ns, journal.stat().st_size)
    ns.put("things", "ONE-MORE", {"arn": "arn:one-more"})
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == before[:2]
    assert journal.stat().st_size - before[2] < 200
    assert path.stat().st_size > 150_000


def test_another_process_sees_a_running_commands_changes(tmp_path):
    path = tmp_path / "registry.json"
    ns = make_namespace(path)
    assert ns.items("things") == {}
    _kill_after_writing(path, 3)
    assert sorted(ns.items("things")) == ["K0", "K1", "K2"]


def test_reads_are_copies(tmp_path):
    ns = make_namespace(tmp_path / "registry.json")
    ns.put("things", "A", {"arn": "arn:a"})
    ns.get("things", "A")["arn"] = "changed"
    ns.items("things")["A"]["arn"] = "changed"
    ns.snapshot()["things"]["A"]["arn"] = "changed"
    ns.registry.read()["namespaces"][NAMESPACE]["resources"]["things"]["A"]["arn"] = "changed"
    assert ns.get("things", "A")["arn"] == "arn:a"


def test_a_schema_1_registry_is_read_and_written_as_schema_2(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text('{"schema": 1, "namespaces": {}}')
    path.chmod(0o600)
    ns = make_namespace(path)
    ns.put("things", "A", {"arn": "arn:a"})
    ns.registry.settle()
    document = json.loads(path.read_text())
    assert document["schema"] == 2 and document["generation"] == 1
