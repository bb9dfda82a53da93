"""The certificate and key files a button (or any MQTT tool) needs to connect.

Layout under the data dir::

    AmazonRootCA1.pem
    keys/<namespace>/<serial>/<cert-id-12>-certificate.pem.crt
                              <cert-id-12>-private.pem.key     (0600, folders 0700)
                              <cert-id-12>-public.pem.key

Files are created with their final modes; the private key is never world- or group-readable, not
even for an instant.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from iotbutton_cli.paths import data_dir, ensure_private_dir, sync_folder, write_private_file

ROOT_CA_NAME = "AmazonRootCA1.pem"


@dataclass(frozen=True)
class KeyFiles:
    certificate: str
    private_key: str
    public_key: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def complete(self) -> bool:
        return all(Path(path).is_file() for path in asdict(self).values())


def namespace_slug(namespace_key: str) -> str:
    return namespace_key.replace(":", "-")


def button_dir(namespace_key: str, serial: str) -> Path:
    return data_dir() / "keys" / namespace_slug(namespace_key) / serial


def write_key_files(
    namespace_key: str,
    serial: str,
    certificate_id: str,
    certificate_pem: str,
    private_key: str,
    public_key: str,
) -> KeyFiles:
    folder = ensure_private_dir(button_dir(namespace_key, serial))
    files = key_files(namespace_key, serial, certificate_id)
    write_private_file(Path(files.private_key), private_key, mode=0o600, flush_folder=False)
    write_private_file(Path(files.public_key), public_key, mode=0o644, flush_folder=False)
    write_private_file(Path(files.certificate), certificate_pem, mode=0o644, flush_folder=False)
    sync_folder(folder)
    return files


def key_files(namespace_key: str, serial: str, certificate_id: str) -> KeyFiles:
    """Where a certificate's files go (named by its id, so they can be found without a record)."""
    folder = button_dir(namespace_key, serial)
    stem = certificate_id[:12]
    return KeyFiles(
        certificate=str(folder / f"{stem}-certificate.pem.crt"),
        private_key=str(folder / f"{stem}-private.pem.key"),
        public_key=str(folder / f"{stem}-public.pem.key"),
    )


def remove_key_files(files: dict[str, str] | None) -> None:
    """Delete one certificate's files, and the button's folder once it is empty."""
    if not files:
        return
    folders = set()
    for path in files.values():
        Path(path).unlink(missing_ok=True)
        folders.add(Path(path).parent)
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)


def remove_empty_namespace_dir(namespace_key: str) -> None:
    """After a clean, drop ``keys/<namespace>`` if no button folder is left in it."""
    folder = data_dir() / "keys" / namespace_slug(namespace_key)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def amazon_root_ca() -> Path:
    """Amazon Root CA 1, which signs the ATS endpoint's certificate, written once for devices."""
    path = data_dir() / ROOT_CA_NAME
    if not path.is_file():
        text = resources.files("iotbutton_cli.data").joinpath(ROOT_CA_NAME).read_text("ascii")
        write_private_file(path, text, mode=0o644)
    return path
