"""The certificate and key files a button (or any MQTT tool) needs to connect.

Layout under the data dir::

    AmazonRootCA1.pem
    keys/<namespace>/<serial>/<cert-id-12>-certificate.pem.crt
                              <cert-id-12>-private.pem.key     (0600, folders 0700)
                              <cert-id-12>-public.pem.key
                              request-<request-id>-private.pem.key

The private key is made here before AWS is asked to certify it, and written under its certificate
request's name first (see provisioning/certs.py); once the certificate arrives it is renamed after
the certificate. A certificate for a key that never leaves its device (``things create --csr``) has
no private key file here: its files are the certificate and the public key. Files are created with
their final modes, so the private key is never world- or group-readable, not even for an instant,
and they are written and deleted only inside ``keys/`` without following a link (see paths.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.paths import (
    data_dir,
    open_private_dir,
    remove_file_within,
    write_private_file,
)

ROOT_CA_NAME = "AmazonRootCA1.pem"
KEYS_FOLDER = "keys"


def key_on_device(files: Mapping[str, str] | None) -> bool:
    """Whether recorded key files are a device's own key's: a certificate and a public key, and
    no private key (its CSR was signed, ``things create --csr``)."""
    return bool(files) and "private_key" not in (files or {})


@dataclass(frozen=True, kw_only=True)
class KeyFiles:
    certificate: str
    private_key: str | None = None  # None: the key is on the device (its CSR was signed)
    public_key: str

    def as_dict(self) -> dict[str, str]:
        return {name: path for name, path in asdict(self).items() if path is not None}

    @property
    def key_on_device(self) -> bool:
        return self.private_key is None

    def complete(self) -> bool:
        """True if all its files are there (both keys and the certificate, or without the private
        key for a device's own key), False if one is missing; an error if they cannot be looked
        at (a folder without permission), rather than a guess either way: a button whose keys
        are only unreadable must not be taken for one whose keys are lost."""
        for path in self.as_dict().values():
            try:
                if not Path(path).is_file():
                    return False
            except OSError as exc:
                raise IotButtonError(
                    "key-files-unreadable",
                    f"Cannot look at the key file {path}: {exc.strerror or exc}.",
                    "Check the permissions of the keys folder (`iotbutton paths`): it should "
                    "be yours, 0700.",
                ) from None
        return True


def keys_root() -> Path:
    return data_dir() / KEYS_FOLDER


def namespace_slug(namespace_key: str) -> str:
    return namespace_key.replace(":", "-")


def button_dir(namespace_key: str, serial: str) -> Path:
    return keys_root() / namespace_slug(namespace_key) / serial


def request_key_file(namespace_key: str, serial: str, request_id: str) -> Path:
    """Where a request's private key waits for its certificate."""
    return button_dir(namespace_key, serial) / f"request-{request_id}-private.pem.key"


def write_request_key(namespace_key: str, serial: str, request_id: str, private_key: str) -> Path:
    """The private key of a certificate request, durable before AWS is asked to sign it."""
    path = request_key_file(namespace_key, serial, request_id)
    write_private_file(path, private_key, mode=0o600)
    return path


def key_files(namespace_key: str, serial: str, certificate_id: str) -> KeyFiles:
    """Where a certificate's files go (named by its id, so they can be found without a record)."""
    folder = button_dir(namespace_key, serial)
    stem = certificate_id[:12]
    return KeyFiles(
        certificate=str(folder / f"{stem}-certificate.pem.crt"),
        private_key=str(folder / f"{stem}-private.pem.key"),
        public_key=str(folder / f"{stem}-public.pem.key"),
    )


def write_key_files(
    namespace_key: str,
    serial: str,
    certificate_id: str,
    certificate_pem: str,
    public_key: str,
    request_key: Path | None,
) -> KeyFiles:
    """Store a new certificate beside its private key, which takes the certificate's name
    (``request_key`` None: the key is on the device, and only the public files are written)."""
    files = key_files(namespace_key, serial, certificate_id)
    write_private_file(Path(files.public_key), public_key, mode=0o644, flush_folder=False)
    if request_key is None:
        write_private_file(Path(files.certificate), certificate_pem, mode=0o644)
        return KeyFiles(certificate=files.certificate, public_key=files.public_key)
    assert files.private_key is not None
    write_private_file(Path(files.certificate), certificate_pem, mode=0o644, flush_folder=False)
    folder_fd = open_private_dir(Path(files.private_key).parent)
    try:
        os.replace(
            request_key.name,
            Path(files.private_key).name,
            src_dir_fd=folder_fd,
            dst_dir_fd=folder_fd,
        )
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)
    return files


def remove_key_files(files: dict[str, str] | None, *extra: str | Path) -> dict[str, str]:
    """Delete one certificate's files (and ``extra`` ones), then its folder if it is empty.

    Only files inside ``keys/`` are touched, whatever a record says. Returns, for each file that
    could not be deleted, why; the rest are gone either way.
    """
    paths = [str(path) for path in [*((files or {}).values()), *extra]]
    left = {
        path: problem for path in paths if (problem := remove_file_within(Path(path), keys_root()))
    }
    for folder in {Path(path).parent for path in paths}:
        _remove_if_empty(folder)
    return left


def remove_empty_namespace_dir(namespace_key: str) -> None:
    """After a clean, drop ``keys/<namespace>`` if no button folder is left in it."""
    _remove_if_empty(keys_root() / namespace_slug(namespace_key))


def _remove_if_empty(folder: Path) -> None:
    if keys_root() not in folder.parents:
        return
    try:
        parent_fd = open_private_dir(folder.parent, create=False)
    except Exception:  # gone, or not a folder we would walk into: nothing to tidy
        return
    try:
        os.rmdir(folder.name, dir_fd=parent_fd)  # only ever removes an empty folder
    except OSError:
        pass
    finally:
        os.close(parent_fd)


def amazon_root_ca() -> Path:
    """Amazon Root CA 1, which signs the ATS endpoint's certificate, written once for devices."""
    path = data_dir() / ROOT_CA_NAME
    if not path.is_file():
        text = resources.files("iotbutton_cli.data").joinpath(ROOT_CA_NAME).read_text("ascii")
        write_private_file(path, text, mode=0o644)
    return path
