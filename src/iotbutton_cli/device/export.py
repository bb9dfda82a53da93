"""What a real device needs to connect as a button, written out for it.

A bundle is the button's endpoint (host and port), client id (its serial), topic, the CA that
signs the endpoint's certificate (Amazon Root CA 1, or in the sandbox the sandbox CA), its
certificate and its private key. It is rendered in one of four formats:

- ``files``: ``certificate.pem.crt``, ``private.pem.key``, ``AmazonRootCA1.pem`` (or
  ``sandbox-ca.pem``) and ``connection.json`` (host, port, client id, topic, the file names);
- ``arduino``: one ``secrets.h`` for an ESP32 sketch (WiFiClientSecure + an MQTT library);
- ``micropython``: one ``config.py``;
- ``json``: one ``device.json``.

The files hold a private key, so they are written as iotbutton writes its own keys: into a folder
created 0700 (or an existing one that is a real folder of the user's, writable by nobody else),
each file created 0600 from the start, through the folder's descriptor, never through a symbolic
link. An existing file is refused unless ``force``; then it is replaced atomically (a temporary
file in the same folder, renamed over it), and a link there is replaced, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError, usage_error
from iotbutton_cli.provisioning import certs
from iotbutton_cli.provisioning.endpoint import data_endpoint
from iotbutton_cli.provisioning.policies import TOPIC_PREFIX
from iotbutton_cli.provisioning.serials import not_found, validate_serial
from iotbutton_cli.registry import kinds
from iotbutton_cli.registry.keyfiles import ROOT_CA_NAME

FORMATS = ("files", "arduino", "micropython", "json")
CERTIFICATE_FILE = "certificate.pem.crt"
PRIVATE_KEY_FILE = "private.pem.key"
SANDBOX_CA_FILE = "sandbox-ca.pem"
CONNECTION_FILE = "connection.json"
ARDUINO_FILE = "secrets.h"
MICROPYTHON_FILE = "config.py"
JSON_FILE = "device.json"
FILE_MODE = 0o600
FOLDER_MODE = 0o700
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
WIFI_SSID_PLACEHOLDER = "YOUR-WIFI-SSID"
WIFI_PASSWORD_PLACEHOLDER = "YOUR-WIFI-PASSWORD"  # noqa: S105  # what the user replaces
# What a PEM block may hold: it then fits a C++ raw string and a Python triple-quoted literal.
PLAIN_PEM = re.compile(r"[A-Za-z0-9+/=:,. \n-]*")


@dataclass(frozen=True)
class Bundle:
    """Everything a device needs to connect as the button ``serial``."""

    serial: str
    host: str
    port: int
    client_id: str
    topic: str
    ca_name: str  # the CA's file name in the ``files`` format
    ca_pem: str
    certificate_pem: str
    private_key_pem: str = field(repr=False)
    certificate_status: str | None = None


@dataclass(frozen=True)
class Exported:
    bundle: Bundle
    format: str
    folder: Path
    files: list[Path]


def device_bundle(ctx: AppContext, serial: str) -> Bundle:
    """The button's bundle, read from its registry record, its key files and the endpoint."""
    from iotbutton_cli.device.simulator import button_identity

    validate_serial(serial)
    if ctx.namespace.get(kinds.THINGS, serial) is None:
        raise not_found(serial)
    _, record = certs.current_certificate(ctx, serial)
    if certs.key_on_device(record):  # its CSR was signed: the key stays on the device
        raise IotButtonError(
            "no-private-key",
            f"The private key of {serial} never left the device: its certificate was made from "
            "the device's own certificate request, so there is no key here to export.",
            "Give the device only its certificate and endpoint (`iotbutton things show "
            f"{serial}`, `iotbutton endpoint`); it keeps its own key.",
        )
    _, identity = button_identity(ctx, serial)
    endpoint = data_endpoint(ctx)
    return Bundle(
        serial=serial,
        host=endpoint.host,
        port=endpoint.port,
        client_id=identity.client_id,
        topic=f"{TOPIC_PREFIX}/{serial}",
        ca_name=SANDBOX_CA_FILE if ctx.sandbox else ROOT_CA_NAME,
        ca_pem=_read_text(endpoint.ca_file),
        certificate_pem=_read_text(identity.certificate),
        private_key_pem=_read_text(identity.private_key),
        certificate_status=record.get("status"),
    )


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


# -- formats ------------------------------------------------------------------------------------


def render(bundle: Bundle, format: str) -> dict[str, str]:
    """The files of ``format``: name -> text."""
    if format == "files":
        connection = {
            "serial": bundle.serial,
            "host": bundle.host,
            "port": bundle.port,
            "client_id": bundle.client_id,
            "topic": bundle.topic,
            "ca_file": bundle.ca_name,
            "certificate_file": CERTIFICATE_FILE,
            "private_key_file": PRIVATE_KEY_FILE,
        }
        return {
            CERTIFICATE_FILE: bundle.certificate_pem,
            PRIVATE_KEY_FILE: bundle.private_key_pem,
            bundle.ca_name: bundle.ca_pem,
            CONNECTION_FILE: json.dumps(connection, indent=2) + "\n",
        }
    if format == "arduino":
        return {ARDUINO_FILE: render_arduino(bundle)}
    if format == "micropython":
        return {MICROPYTHON_FILE: render_micropython(bundle)}
    check_format(format)
    return {JSON_FILE: render_json(bundle)}


def check_format(format: str) -> str:
    if format not in FORMATS:
        raise usage_error(
            "bad-export-format",
            f"Unknown export format {format!r}.",
            "Choose one of " + ", ".join(FORMATS) + ".",
        )
    return format


def render_json(bundle: Bundle) -> str:
    document = {
        "serial": bundle.serial,
        "host": bundle.host,
        "port": bundle.port,
        "client_id": bundle.client_id,
        "topic": bundle.topic,
        "ca_pem": bundle.ca_pem,
        "certificate_pem": bundle.certificate_pem,
        "private_key_pem": bundle.private_key_pem,
    }
    return json.dumps(document, indent=2) + "\n"


def render_arduino(bundle: Bundle) -> str:
    """``secrets.h``: C++11 (the Arduino cores' dialect); the PEMs as raw strings."""
    ca_label = "the sandbox CA" if bundle.ca_name == SANDBOX_CA_FILE else "Amazon Root CA 1"
    return f"""\
// secrets.h: AWS IoT button {bundle.serial}, written by `iotbutton device export`.
//
// This file holds the button's PRIVATE KEY. Keep it next to your sketch only, never in
// version control (add secrets.h to .gitignore), and delete it once the board is flashed.
// Fill in WIFI_SSID and WIFI_PASSWORD below; everything else is ready.
#pragma once

// ---- Wi-Fi: CHANGE THESE --------------------------------------------------------------
#define WIFI_SSID {_c_string(WIFI_SSID_PLACEHOLDER)}          // <-- CHANGE ME: your Wi-Fi's name
#define WIFI_PASSWORD {_c_string(WIFI_PASSWORD_PLACEHOLDER)}  // <-- CHANGE ME: its password

// ---- AWS IoT: the button's identity and where it connects -------------------------------
#define IOTBUTTON_SERIAL {_c_string(bundle.serial)}
#define AWS_IOT_ENDPOINT {_c_string(bundle.host)}
#define AWS_IOT_PORT {int(bundle.port)}
#define AWS_IOT_CLIENT_ID {_c_string(bundle.client_id)}
#define AWS_IOT_TOPIC {_c_string(bundle.topic)}

// The CA that signs the endpoint's certificate ({ca_label}).
static const char AWS_CERT_CA[] = {_c_raw_string(bundle.ca_pem)};

// The button's certificate.
static const char AWS_CERT_CRT[] = {_c_raw_string(bundle.certificate_pem)};

// The button's private key.
static const char AWS_CERT_PRIVATE[] = {_c_raw_string(bundle.private_key_pem)};
"""


def render_micropython(bundle: Bundle) -> str:
    """``config.py``: plain assignments; the PEMs as bytes (what MicroPython's ``ssl`` takes)."""
    return f'''\
"""AWS IoT button {bundle.serial}: connection settings, written by `iotbutton device export`.

This file holds the button's PRIVATE KEY. Copy it to the board only (`mpremote cp config.py :`),
never into version control, and delete this copy once the board has it. Fill in WIFI_SSID and
WIFI_PASSWORD below; everything else is ready.
"""

# ---- Wi-Fi: CHANGE THESE ----------------------------------------------------------------
WIFI_SSID = {json.dumps(WIFI_SSID_PLACEHOLDER)}  # <-- CHANGE ME: your Wi-Fi's name
WIFI_PASSWORD = {json.dumps(WIFI_PASSWORD_PLACEHOLDER)}  # <-- CHANGE ME: its password

# ---- AWS IoT: the button's identity and where it connects ---------------------------------
SERIAL = {json.dumps(bundle.serial)}
HOST = {json.dumps(bundle.host)}
PORT = {int(bundle.port)}
CLIENT_ID = {json.dumps(bundle.client_id)}
TOPIC = {json.dumps(bundle.topic)}

# PEM bytes for ssl.SSLContext: load_verify_locations(cadata=CA_PEM) and
# load_cert_chain(CERT_PEM, KEY_PEM).
CA_PEM = {_py_bytes(bundle.ca_pem)}

CERT_PEM = {_py_bytes(bundle.certificate_pem)}

KEY_PEM = {_py_bytes(bundle.private_key_pem)}
'''


def _c_string(text: str) -> str:
    """An ordinary C string literal (JSON's escapes are C's, for printable ASCII)."""
    return json.dumps(text, ensure_ascii=True)


def _c_raw_string(pem: str) -> str:
    if PLAIN_PEM.fullmatch(pem) and ')EOF"' not in pem:
        return f'R"EOF({pem})EOF"'
    return _c_string(pem)  # never for a PEM block, but always a valid literal


def _py_bytes(pem: str) -> str:
    if PLAIN_PEM.fullmatch(pem):
        return f'b"""{pem}"""'
    return repr(pem.encode("ascii", "backslashreplace"))


# -- writing ------------------------------------------------------------------------------------


def export(
    ctx: AppContext, serial: str, format: str, out: Path | None = None, force: bool = False
) -> Exported:
    """Write the button's bundle in ``format`` into ``out`` (default ``./SERIAL``)."""
    check_format(format)
    if out is not None and str(out) == "-":
        raise usage_error(
            "export-to-stdout",
            "device export writes files, not standard output: the bundle holds a private key, "
            "which iotbutton never prints.",
            "Give a folder with --out DIR (default: ./SERIAL).",
        )
    bundle = device_bundle(ctx, serial)
    folder = Path(out if out is not None else Path.cwd() / serial).absolute()
    written = write_files(folder, render(bundle, format), force=force)
    return Exported(bundle, format, folder, written)


def write_files(folder: Path, files: dict[str, str], force: bool = False) -> list[Path]:
    """Write ``files`` (name -> text) into ``folder``, each 0600, the folder 0700 if new.

    Without ``force`` nothing is written if any of them exists (a link there included)."""
    folder_fd = open_export_folder(folder)
    try:
        if not force:
            existing = [name for name in files if _exists(folder_fd, name)]
            if existing:
                raise _exists_error(folder, existing)
        written = []
        for name, text in files.items():
            if force:
                _replace_file(folder_fd, folder, name, text)
            else:
                _create_file(folder_fd, folder, name, text)
            written.append(folder / name)
        with contextlib.suppress(OSError):
            os.fsync(folder_fd)
        return written
    finally:
        os.close(folder_fd)


def open_export_folder(folder: Path) -> int:
    """A descriptor for ``folder``, created 0700 if missing; an existing one must be a real
    folder (not a link) of the user's that nobody else may write to."""
    try:
        os.mkdir(folder, FOLDER_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _write_error(folder, exc, "create the folder") from None
    try:
        fd = os.open(folder, os.O_RDONLY | DIRECTORY | NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or folder.is_symlink():
            raise _unsafe_folder(
                folder, "is a symbolic link, which iotbutton does not follow"
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise _unsafe_folder(folder, "is a file, not a folder") from None
        raise _write_error(folder, exc, "open the folder") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise _unsafe_folder(folder, "belongs to another user")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            mode = stat.S_IMODE(info.st_mode)
            raise _unsafe_folder(folder, f"is writable by other users (mode {mode:o})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _exists(folder_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _create_file(folder_fd: int, folder: Path, name: str, text: str) -> None:
    """A new file, never one that is there (``O_EXCL``: a link there is not followed either)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW
    try:
        fd = os.open(name, flags, FILE_MODE, dir_fd=folder_fd)
    except FileExistsError:
        raise _exists_error(folder, [name]) from None
    except OSError as exc:
        raise _write_error(folder / name, exc, "write") from None
    try:
        _write_all(fd, text)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=folder_fd)
        raise _write_error(folder / name, exc, "write") from None


def _replace_file(folder_fd: int, folder: Path, name: str, text: str) -> None:
    """Write a temporary file beside ``name`` and rename it over it: a reader sees the old file
    or the new one, and a link at ``name`` is replaced, not written through."""
    tmp = f".{name}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder_fd)
        fd = os.open(tmp, flags, FILE_MODE, dir_fd=folder_fd)
        try:
            _write_all(fd, text)
            os.replace(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder_fd)
            raise
    except OSError as exc:
        raise _write_error(folder / name, exc, "write") from None


def _write_all(fd: int, text: str) -> None:
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _exists_error(folder: Path, names: list[str]) -> IotButtonError:
    shown = ", ".join(names)
    return IotButtonError(
        "export-exists",
        f"{folder} already holds {shown}; nothing was written.",
        "Pass --force to replace the files, or choose another folder with --out DIR.",
    )


def _unsafe_folder(folder: Path, why: str) -> IotButtonError:
    return IotButtonError(
        "export-folder-unsafe",
        f"{folder} {why}; a private key is written only into a folder of yours that nobody "
        "else can write to.",
        "Choose another folder with --out DIR (a missing one is created 0700).",
    )


def _write_error(path: Path, exc: OSError, doing: str) -> IotButtonError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EISDIR:
        reason = "a folder stands there"
    return IotButtonError(
        "export-write-failed",
        f"Cannot {doing} {path}: {reason}.",
        "Check that the folder above exists and is writable, or choose another with --out DIR.",
    )
