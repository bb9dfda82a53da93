"""`device export`: what a real device needs, written 0600 into a 0700 folder, never printed.

Each format is checked for its files, their modes and their contents (the real certificate, key,
CA and endpoint); the generated `secrets.h` goes through the C++ compiler and `config.py` through
Python's import; and a client we did not write (paho-mqtt) connects to the sandbox with nothing
but the exported files and publishes a click that the monitor sees arrive.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import ssl
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from support import Watcher, recorded

SERIAL = "G030JF0553648RUH"
CA_DATA = Path(__file__).resolve().parent.parent / "src/iotbutton_cli/data/AmazonRootCA1.pem"
FILES = {
    "files": ["certificate.pem.crt", "private.pem.key", "AmazonRootCA1.pem", "connection.json"],
    "arduino": ["secrets.h"],
    "micropython": ["config.py"],
    "json": ["device.json"],
}
SYNTAX_CHECK = ("-fsyntax-only", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-x", "c++")
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def button_files(home: Path) -> dict[str, str]:
    [record] = recorded(home, "certificates").values()
    return dict(record["files"])


def key_lines(home: Path) -> list[str]:
    """The private key's base64 lines: none of them may ever reach a terminal."""
    key = Path(button_files(home)["private_key"]).read_text()
    return [line for line in key.splitlines() if line and not line.startswith("-----")]


@pytest.fixture
def button(cli: Any, aws: None, isolated_env: Path) -> dict[str, str]:
    cli("things", "create", SERIAL)
    return button_files(isolated_env)


@pytest.mark.parametrize("format", list(FILES))
def test_each_format_writes_its_files_0600_in_a_new_0700_folder(cli, button, tmp_path, format):
    out = tmp_path / "export"
    result = cli.json("device", "export", SERIAL, "--format", format, "--out", str(out))

    assert sorted(p.name for p in out.iterdir()) == sorted(FILES[format])
    assert mode(out) == 0o700
    for path in out.iterdir():
        assert path.is_file() and not path.is_symlink()
        assert mode(path) == 0o600, path
    assert result["files"] == [str(out / name) for name in FILES[format]]
    assert result["folder"] == str(out) and result["format"] == format


def test_files_format_holds_the_real_certificate_key_ca_and_endpoint(cli, button, tmp_path):
    out = tmp_path / "export"
    result = cli.json("device", "export", SERIAL, "--out", str(out))  # files is the default

    assert (out / "certificate.pem.crt").read_text() == Path(button["certificate"]).read_text()
    assert (out / "private.pem.key").read_text() == Path(button["private_key"]).read_text()
    assert (out / "AmazonRootCA1.pem").read_bytes() == CA_DATA.read_bytes()
    connection = json.loads((out / "connection.json").read_text())
    assert connection == {
        "serial": SERIAL,
        "host": result["endpoint"]["host"],
        "port": 8883,
        "client_id": SERIAL,
        "topic": f"iotbutton/{SERIAL}",
        "ca_file": "AmazonRootCA1.pem",
        "certificate_file": "certificate.pem.crt",
        "private_key_file": "private.pem.key",
    }
    assert result["endpoint"]["host"].endswith("-ats.iot.us-east-1.amazonaws.com")


def test_json_prints_where_the_files_went_and_nothing_they_hold(cli, button, tmp_path):
    out = tmp_path / "export"
    result = cli("device", "export", SERIAL, "--out", str(out), "--json")
    shown = json.loads(result.stdout)

    assert set(shown) == {"serial", "format", "folder", "files", "endpoint", "client_id", "topic"}
    assert set(shown["endpoint"]) == {"host", "port"}
    assert shown["serial"] == shown["client_id"] == SERIAL
    assert shown["topic"] == f"iotbutton/{SERIAL}"
    assert "PRIVATE KEY" not in result.stdout and "CERTIFICATE" not in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("format", list(FILES))
@pytest.mark.parametrize("as_json", [False, True])
def test_the_private_key_never_reaches_the_terminal(
    cli, button, tmp_path, isolated_env, format, as_json
):
    out = tmp_path / "export"
    args = ["device", "export", SERIAL, "--format", format, "--out", str(out)]
    first = cli(*args, *(["--json"] if as_json else []))
    again = cli(*args, *(["--json"] if as_json else []), code=1)  # the error path too

    for result in (first, again):
        printed = result.stdout + result.stderr
        assert "PRIVATE KEY" not in printed
        for line in key_lines(isolated_env):
            assert line not in printed
    assert "PRIVATE KEY" in (out / FILES[format][0 if format != "files" else 1]).read_text()


def test_people_see_the_paths_and_the_next_step(cli, button, tmp_path):
    out = tmp_path / "export"
    result = cli("device", "export", SERIAL, "--format", "arduino", "--out", str(out))

    assert f"Wrote 1 file for {SERIAL} (arduino) to {out}:" in result.stdout
    assert str(out / "secrets.h") in result.stdout
    assert "fill in WIFI_SSID and WIFI_PASSWORD" in result.stderr
    assert "private key" in result.stderr


def test_default_folder_is_the_serial_in_the_current_folder(cli, button, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli.json("device", "export", SERIAL, "--format", "json")

    assert result["folder"] == str(tmp_path / SERIAL)
    assert (tmp_path / SERIAL / "device.json").is_file()
    assert mode(tmp_path / SERIAL) == 0o700


def test_refuses_to_overwrite_and_force_replaces(cli, button, tmp_path, isolated_env):
    out = tmp_path / "export"
    cli("device", "export", SERIAL, "--out", str(out))
    old_certificate = (out / "certificate.pem.crt").read_text()

    refused = cli.json("device", "export", SERIAL, "--out", str(out), code=1)
    assert refused["error"]["code"] == "export-exists"
    assert "--force" in refused["error"]["hint"]
    assert "certificate.pem.crt" in refused["error"]["message"]
    human = cli("device", "export", SERIAL, "--out", str(out), code=1)
    assert human.stdout == "" and "Error:" in human.stderr and "Traceback" not in human.stderr

    cli("certs", "rotate", SERIAL)
    cli("device", "export", SERIAL, "--out", str(out), "--force")
    new_certificate = (out / "certificate.pem.crt").read_text()
    assert new_certificate != old_certificate
    assert new_certificate == Path(button_files(isolated_env)["certificate"]).read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES["files"])  # no temp file left
    assert all(mode(path) == 0o600 for path in out.iterdir())


def test_an_existing_file_of_another_format_is_left_alone(cli, button, tmp_path):
    out = tmp_path / "export"
    cli("device", "export", SERIAL, "--format", "json", "--out", str(out))
    cli("device", "export", SERIAL, "--format", "arduino", "--out", str(out))

    assert sorted(p.name for p in out.iterdir()) == ["device.json", "secrets.h"]


@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_planted_at_a_target_file_is_never_followed(cli, button, tmp_path, dangling):
    out = tmp_path / "export"
    out.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text("not yours to overwrite\n")
    (out / "private.pem.key").symlink_to(victim)

    refused = cli.json("device", "export", SERIAL, "--out", str(out), code=1)
    assert refused["error"]["code"] == "export-exists"
    assert sorted(p.name for p in out.iterdir()) == ["private.pem.key"]  # nothing written

    cli("device", "export", SERIAL, "--out", str(out), "--force")
    assert not (out / "private.pem.key").is_symlink()
    assert "PRIVATE KEY" in (out / "private.pem.key").read_text()
    assert mode(out / "private.pem.key") == 0o600
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_text() == "not yours to overwrite\n"


def test_the_folder_must_be_a_real_folder_of_yours(cli, button, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    as_link = cli.json("device", "export", SERIAL, "--out", str(link), code=1)
    assert as_link["error"]["code"] == "export-folder-unsafe"
    assert "symbolic link" in as_link["error"]["message"]
    assert list(real.iterdir()) == []

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    open_to_all = cli.json("device", "export", SERIAL, "--out", str(shared), code=1)
    assert open_to_all["error"]["code"] == "export-folder-unsafe"
    assert "writable by other users (mode 777)" in open_to_all["error"]["message"]
    assert list(shared.iterdir()) == []

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    not_a_folder = cli.json("device", "export", SERIAL, "--out", str(a_file), code=1)
    assert not_a_folder["error"]["code"] == "export-folder-unsafe"
    assert "is a file" in not_a_folder["error"]["message"]


def test_an_unwritable_or_unreachable_folder_is_one_line(cli, button, tmp_path):
    missing_parent = cli.json(
        "device", "export", SERIAL, "--out", str(tmp_path / "no" / "such"), code=1
    )
    assert missing_parent["error"]["code"] == "export-write-failed"
    assert "No such file or directory" in missing_parent["error"]["message"]

    if os.geteuid() == 0:
        return  # root writes anywhere
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = cli("device", "export", SERIAL, "--out", str(locked), code=1)
    finally:
        locked.chmod(0o700)
    assert "Error: Cannot write" in result.stderr and "Permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(locked.iterdir()) == []


def test_unknown_serial_bad_format_and_stdout_are_usage_errors(cli, aws, tmp_path):
    unknown = cli.json("device", "export", "NOPE", "--out", str(tmp_path / "x"), code=2)
    assert unknown["error"]["code"] == "unknown-serial"
    assert not (tmp_path / "x").exists()

    bad = cli("device", "export", SERIAL, "--format", "yaml", code=2)
    assert "Invalid value for '--format' / '-f'" in bad.stderr
    bad_json = cli.json("device", "export", SERIAL, "--format", "yaml", code=2)
    assert bad_json["error"]["code"] == "usage"

    to_stdout = cli.json("device", "export", SERIAL, "--out", "-", code=2)
    assert to_stdout["error"]["code"] == "export-to-stdout"


def test_a_button_without_its_key_here_is_refused(cli, button, tmp_path, isolated_env):
    Path(button["private_key"]).unlink()
    missing = cli.json("device", "export", SERIAL, "--out", str(tmp_path / "a"), code=1)
    assert missing["error"]["code"] == "key-files-missing"
    assert not (tmp_path / "a").exists()


def test_a_key_that_never_left_the_device_is_no_private_key(cli, button, tmp_path):
    """A certificate made from the device's own request (`things create --csr`: its key stays on
    the device) is recorded with a certificate and a public key file only; export says there is
    no key here instead of writing half a bundle."""
    from iotbutton_cli.registry.store import Registry

    with Registry().transaction() as document:
        (namespace,) = document["namespaces"].values()
        for record in namespace["resources"]["certificates"].values():
            del record["files"]["private_key"]
    Path(button["private_key"]).unlink()

    result = cli("device", "export", SERIAL, "--out", str(tmp_path / "a"), code=1)
    assert "Error: The private key of G030JF0553648RUH never left the device" in result.stderr
    as_json = cli.json("device", "export", SERIAL, "--out", str(tmp_path / "a"), code=1)
    assert as_json["error"]["code"] == "no-private-key"
    assert not (tmp_path / "a").exists()


def test_the_cli_formats_are_the_librarys():
    from iotbutton_cli.cli.device import ExportFormat
    from iotbutton_cli.device.export import FORMATS

    assert tuple(item.value for item in ExportFormat) == FORMATS


# -- the generated sources, through their own tools ----------------------------------------------

SECRETS_USER = r"""
#include "secrets.h"
#include <cstdio>

// Every symbol a sketch uses, with the types the ESP32 libraries take.
static const char* const strings[] = {
    WIFI_SSID, WIFI_PASSWORD, IOTBUTTON_SERIAL, AWS_IOT_ENDPOINT, AWS_IOT_CLIENT_ID,
    AWS_IOT_TOPIC, AWS_CERT_CA, AWS_CERT_CRT, AWS_CERT_PRIVATE,
};
static const unsigned short port = AWS_IOT_PORT;

int main() {
    for (const char* text : strings) {
        std::fputs(text, stdout);
        std::fputc('\0', stdout);
    }
    std::printf("%u", port);
    return 0;
}
"""


@pytest.fixture
def arduino_export(cli: Any, button: dict[str, str], tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "sketch"
    result = cli.json("device", "export", SERIAL, "--format", "arduino", "--out", str(out))
    (out / "main.cpp").write_text(SECRETS_USER)
    return out, result


@pytest.mark.skipif(CXX is None, reason="no C++ compiler installed")
def test_secrets_h_compiles(arduino_export):
    out, _ = arduino_export
    compiled = subprocess.run(
        [CXX, *SYNTAX_CHECK, "main.cpp"],
        cwd=out,
        capture_output=True,
        text=True,
    )
    assert compiled.returncode == 0, compiled.stderr


@pytest.mark.skipif(CXX is None, reason="no C++ compiler installed")
def test_secrets_h_holds_the_real_certificate_key_ca_and_endpoint(arduino_export, button, tmp_path):
    out, result = arduino_export
    program = tmp_path / "secrets-user"
    built = subprocess.run(
        [CXX, "-std=c++11", "-o", str(program), "main.cpp"],
        cwd=out,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    printed = subprocess.run([str(program)], capture_output=True, check=True).stdout.decode()
    *strings, port = printed.split("\0")

    assert strings == [
        "YOUR-WIFI-SSID",
        "YOUR-WIFI-PASSWORD",
        SERIAL,
        result["endpoint"]["host"],
        SERIAL,
        f"iotbutton/{SERIAL}",
        CA_DATA.read_text(),
        Path(button["certificate"]).read_text(),
        Path(button["private_key"]).read_text(),
    ]
    assert port == "8883"
    header = (out / "secrets.h").read_text()
    assert "CHANGE ME" in header and "#pragma once" in header


def test_config_py_imports_with_the_real_certificate_key_ca_and_endpoint(cli, button, tmp_path):
    out = tmp_path / "board"
    result = cli.json("device", "export", SERIAL, "--format", "micropython", "--out", str(out))
    spec = importlib.util.spec_from_file_location("exported_config", out / "config.py")
    assert spec and spec.loader
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)

    settings = {name: value for name, value in vars(config).items() if name.isupper()}
    assert settings == {
        "WIFI_SSID": "YOUR-WIFI-SSID",
        "WIFI_PASSWORD": "YOUR-WIFI-PASSWORD",
        "SERIAL": SERIAL,
        "HOST": result["endpoint"]["host"],
        "PORT": 8883,
        "CLIENT_ID": SERIAL,
        "TOPIC": f"iotbutton/{SERIAL}",
        "CA_PEM": CA_DATA.read_bytes(),
        "CERT_PEM": Path(button["certificate"]).read_bytes(),
        "KEY_PEM": Path(button["private_key"]).read_bytes(),
    }
    # What MicroPython's ssl does with them, CPython's does too.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=config.CA_PEM.decode())


def test_device_json_holds_the_real_certificate_key_ca_and_endpoint(cli, button, tmp_path):
    out = tmp_path / "json"
    result = cli.json("device", "export", SERIAL, "--format", "json", "--out", str(out))
    document = json.loads((out / "device.json").read_text())

    assert document == {
        "serial": SERIAL,
        "host": result["endpoint"]["host"],
        "port": 8883,
        "client_id": SERIAL,
        "topic": f"iotbutton/{SERIAL}",
        "ca_pem": CA_DATA.read_text(),
        "certificate_pem": Path(button["certificate"]).read_text(),
        "private_key_pem": Path(button["private_key"]).read_text(),
    }


# -- a device we did not write, against the sandbox ------------------------------------------------


def publish_with_paho(folder: Path) -> int:
    """Connect and publish one click with exactly the exported files and connection.json; the
    PUBACK's reason code (0: the broker took it)."""
    import paho.mqtt.client as mqtt

    connection = json.loads((folder / "connection.json").read_text())
    acked = threading.Event()
    codes: list[int] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=connection["client_id"])
    client.tls_set(
        ca_certs=str(folder / connection["ca_file"]),
        certfile=str(folder / connection["certificate_file"]),
        keyfile=str(folder / connection["private_key_file"]),
        cert_reqs=ssl.CERT_REQUIRED,
    )

    def on_publish(_client: Any, _userdata: Any, _mid: int, reason: Any, _props: Any) -> None:
        codes.append(int(getattr(reason, "value", reason)))
        acked.set()

    client.on_publish = on_publish
    client.connect(connection["host"], connection["port"], keepalive=30)
    client.loop_start()
    try:
        payload = {"serialNumber": SERIAL, "batteryVoltage": "1650mV", "clickType": "LONG"}
        client.publish(connection["topic"], json.dumps(payload), qos=1)
        assert acked.wait(20), "no PUBACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


def test_the_exported_files_connect_a_device_to_the_sandbox(cli, sandbox, tmp_path):
    cli("--sandbox", "things", "create", SERIAL)
    out = tmp_path / "device"
    result = cli.json("--sandbox", "device", "export", SERIAL, "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["certificate.pem.crt", "private.pem.key", "sandbox-ca.pem", "connection.json"]
    )
    assert (out / "sandbox-ca.pem").read_text() == Path(sandbox["ca_file"]).read_text()
    assert result["endpoint"] == {"host": sandbox["mqtt_host"], "port": sandbox["mqtt_port"]}

    watcher = Watcher(duration=30)
    assert publish_with_paho(out) == 0
    [received] = watcher.received()
    assert received["topic"] == f"iotbutton/{SERIAL}"
    assert received["payload"] == {
        "serialNumber": SERIAL,
        "batteryVoltage": "1650mV",
        "clickType": "LONG",
    }
