"""iotbutton's folders are trusted only as ssh trusts ~/.ssh, keys are never written through a
link, `clean` deletes only files inside its own folders, and a home that cannot record what a
command makes stops the command before its first AWS call."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from support import NAMESPACE, recorded, registry_document

SERIAL = "G030JF0553648RUH"


def things_in_aws() -> list[str]:
    return [t["thingName"] for t in boto3.client("iot").list_things()["things"]]


def test_a_planted_link_in_a_key_folder_never_receives_a_key(cli, aws, isolated_env, tmp_path):
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    keys = isolated_env / "keys" / NAMESPACE.replace(":", "-")
    keys.mkdir(parents=True, mode=0o700)
    (isolated_env / "keys").chmod(0o700)
    (keys / SERIAL).symlink_to(elsewhere)

    result = cli("things", "create", SERIAL, "--json", code=1)

    [button] = json.loads(result.stdout)["buttons"]
    assert button["action"] == "failed" and "symbolic link" in button["error"]["message"]
    assert list(elsewhere.iterdir()) == []  # no private key went through the link
    assert not list(isolated_env.rglob("*private.pem.key"))


def test_a_registry_someone_else_could_have_written_is_refused(cli, aws, isolated_env):
    cli("things", "create", SERIAL)
    registry = isolated_env / "registry.json"
    registry.chmod(0o666)
    result = cli("clean", "--yes", code=1)
    assert "writable by other users" in result.stderr
    assert things_in_aws() == [SERIAL]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_registry_of_another_user_is_refused(cli, aws, isolated_env):
    cli("things", "create", SERIAL)
    os.chown(isolated_env / "registry.json", 65534, 65534)
    result = cli("clean", "--yes", code=1)
    assert "belongs to another user" in result.stderr
    assert things_in_aws() == [SERIAL]


def test_clean_deletes_only_files_inside_its_own_folders(cli, aws, isolated_env, tmp_path):
    """A registry that names a file elsewhere (edited, or restored from another machine) does
    not make `clean` delete it."""
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    cli("things", "create", SERIAL)
    path = isolated_env / "registry.json"
    document = json.loads(path.read_text())
    certificates = document["namespaces"][NAMESPACE]["resources"]["certificates"]
    (record,) = certificates.values()
    record["files"]["public_key"] = str(victim)
    escape = isolated_env / "keys" / ".." / ".." / victim.name
    record["files"]["certificate"] = str(escape)
    path.write_text(json.dumps(document))

    result = cli.json("clean", "--yes", code=4)

    assert victim.read_text() == "keep me"
    [step] = [s for s in result["steps"] if s["kind"] == "certificates"]
    assert step["status"] == "files-left" and "not inside" in step["detail"]
    assert things_in_aws() == []


def test_a_key_file_that_cannot_be_deleted_does_not_stop_clean(cli, aws, isolated_env):
    cli("things", "create", SERIAL)
    cli("things", "create", "G030AA0000000BBB")
    keys = sorted(isolated_env.rglob(f"{SERIAL}/*-private.pem.key"))
    keys[0].unlink()
    keys[0].mkdir()  # a folder where the key file was: unlinking it fails

    result = cli.json("clean", "--yes", code=4)

    statuses = {s["label"]: s["status"] for s in result["steps"]}
    assert things_in_aws() == []  # everything else finished
    assert any(status == "files-left" for status in statuses.values()), statuses
    assert recorded(isolated_env, "leftover_files")  # remembered for the next clean
    keys[0].rmdir()  # the user deals with it
    assert cli.json("clean", "--yes")["complete"] is True
    assert registry_document(isolated_env)["namespaces"] == {}


def test_a_relative_home_is_recorded_as_an_absolute_path(cli, aws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IOTBUTTON_HOME", "relative-home")
    cli("things", "create", SERIAL)
    document = json.loads((tmp_path / "relative-home" / "registry.json").read_text())
    (record,) = document["namespaces"][NAMESPACE]["resources"]["certificates"].values()
    assert all(Path(path).is_absolute() for path in record["files"].values())
    assert all(Path(path).is_file() for path in record["files"].values())


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` on a read-only file system (root: a tmpfs remounted ro; others: chmod)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    try:
        yield
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True)


@pytest.fixture
def tmpfs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "tmpfs-home"
    home.mkdir(mode=0o700)
    mounted = False
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(home)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted = True
    monkeypatch.setenv("IOTBUTTON_HOME", str(home))
    yield home
    if mounted:
        subprocess.run(["umount", "-l", str(home)], check=False)


def test_a_read_only_home_stops_before_the_first_aws_call(cli, aws, tmpfs_home):
    """Nothing is made that the registry could not record: neither a button nor its policy."""
    cli("things", "create", SERIAL)
    registry_before = (tmpfs_home / "registry.json").read_bytes()
    with read_only(tmpfs_home):
        result = cli("things", "create", "--count", "3", code=1)
        for args in (["sandbox", "start"], ["notify", "init"], ["clean", "--yes"]):
            failed = cli(*args, "--json", code=None)
            assert failed.exit_code != 0 and "Traceback" not in failed.stdout + failed.stderr
            assert json.loads(failed.stdout)["error"]["hint"]
    assert "Cannot write in" in result.stderr and len(result.stderr.strip().splitlines()) == 2
    assert things_in_aws() == [SERIAL]
    assert (tmpfs_home / "registry.json").read_bytes() == registry_before


def test_an_unreadable_key_folder_is_one_line_not_a_lost_key(moto_url, tmp_path):
    """A key folder the command may not look into: `sim click` says so in one line, and
    `things create` does not take the keys for lost and retire a working certificate. (As root,
    the commands run without the capabilities that would let them read anything.)"""
    import shutil
    import sys

    from awsinventory import aws_env, run
    from awsinventory import recorded as recorded_in

    home = tmp_path / "home"
    env = aws_env(home, moto_url)
    assert run("things", "create", SERIAL, env=env).returncode == 0
    (folder,) = [path.parent for path in home.rglob("*-private.pem.key")]
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("as root, this needs setpriv to drop the capability to read anything")
        prefix = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--"]

    def iotbutton(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*prefix, sys.executable, "-m", "iotbutton_cli", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    folder.chmod(0)
    try:
        clicked = iotbutton("sim", "click", SERIAL)
        again = iotbutton("things", "create", SERIAL)
    finally:
        folder.chmod(0o700)
    lines = clicked.stderr.strip().splitlines()
    assert clicked.returncode == 1 and "Traceback" not in clicked.stderr
    assert len(lines) == 2 and "Cannot look at the key file" in lines[0], clicked.stderr
    assert "Traceback" not in again.stderr, again.stderr
    assert len(recorded_in(home)["certificates"]) == 1  # the working certificate stays
