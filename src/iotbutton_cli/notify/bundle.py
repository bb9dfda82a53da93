"""Build the notifier Lambda's zip, byte for byte reproducible.

The zip holds the notifier's package whole, as ``notifier_lambda/`` (:data:`BUNDLE_FILES`; Lambda
handler string :data:`HANDLER`), read from the installed package's resources: its modules import
each other relatively, so the code the CLI imports is the code Lambda runs. Entries are sorted and
written with fixed 1980-01-01 timestamps, a fixed mode (0644), ``ZIP_DEFLATED`` at a fixed level
and no ``__pycache__``: the same code gives the same bytes, so a redeploy can compare
:attr:`Bundle.code_sha256` with what Lambda reports as ``CodeSha256`` and upload nothing when they
match. (Deflate output depends on the zlib build too, so two machines with different zlib libraries
may produce different, equally valid bytes.)
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from iotbutton_cli import paths
from iotbutton_cli.errors import IotButtonError

NOTIFIER_PACKAGE = "iotbutton_cli.notifier_lambda"
PACKAGE_DIR = "notifier_lambda"  # the package's folder in the zip
HANDLER = f"{PACKAGE_DIR}.handler.lambda_handler"
FAILURES_HANDLER = f"{PACKAGE_DIR}.failures.failure_handler"  # the on-failure destination
MODULES = (
    "__init__.py",
    "alarms.py",
    "battery.py",
    "contract.py",
    "escalation.py",
    "escalation_ledger.py",
    "failures.py",
    "handler.py",
    "hook_settings.py",
    "receipts.py",
    "release.py",
    "shadow.py",
    "text.py",
    "twilio.py",
    "webhooks.py",
)
BUNDLE_FILES = tuple(f"{PACKAGE_DIR}/{module}" for module in MODULES)
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can record
FILE_MODE = 0o644
COMPRESS_LEVEL = 9
UNIX = 3  # ZipInfo.create_system: the external attributes hold Unix mode bits


@dataclass(frozen=True)
class Bundle:
    """A built notifier zip: where it is, and its hashes as hex and as Lambda's CodeSha256."""

    path: Path
    size: int
    sha256_hex: str
    code_sha256: str  # base64 of the raw SHA-256 digest, as Lambda reports CodeSha256
    data: bytes = field(repr=False)


def build_bundle(target_dir: Path | None = None) -> Bundle:
    """Build the zip and write it as ``notifier-<sha12>.zip`` in ``target_dir`` (the cache)."""
    data = bundle_bytes()
    digest = hashlib.sha256(data).digest()
    folder = Path(target_dir) if target_dir is not None else paths.cache_dir()
    path = folder / f"notifier-{digest.hex()[:12]}.zip"
    try:
        _write_atomically(path, data)
    except OSError as exc:
        raise IotButtonError(
            "bundle-write-failed",
            f"Could not write the notifier bundle to {path}: {exc.strerror or exc}.",
            "Check that the cache folder is writable (`iotbutton paths` shows where it is).",
        ) from None
    return Bundle(
        path=path,
        size=len(data),
        sha256_hex=digest.hex(),
        code_sha256=lambda_code_sha256(data),
        data=data,
    )


def bundle_bytes() -> bytes:
    """The zip's bytes, built in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for module in sorted(MODULES):
            archive.writestr(
                _entry(f"{PACKAGE_DIR}/{module}"),
                _source(module),
                compress_type=zipfile.ZIP_DEFLATED,
                compresslevel=COMPRESS_LEVEL,
            )
    return buffer.getvalue()


def lambda_code_sha256(data: bytes) -> str:
    """What Lambda reports as ``CodeSha256`` for a zip: base64 of its raw SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
    info.create_system = UNIX
    info.external_attr = (0o100000 | FILE_MODE) << 16  # a regular file, rw-r--r--
    return info


def _source(name: str) -> bytes:
    try:
        return resources.files(NOTIFIER_PACKAGE).joinpath(name).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError):
        raise IotButtonError(
            "bundle-source-missing",
            f"The notifier's {name} is missing from the installed iotbutton package.",
            "Reinstall iotbutton-cli (pip install --force-reinstall iotbutton-cli).",
        ) from None


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: readers never see half a zip."""
    paths.ensure_private_dir(path.parent)
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
