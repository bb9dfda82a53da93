"""Where iotbutton keeps its files: one function per kind of directory, one override for all.

``IOTBUTTON_HOME`` puts everything (registry, keys, config, cache, sandbox state) under one folder,
so tests and parallel setups never collide. Otherwise the platform's conventional places are used.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

APP_NAME = "iotbutton"
HOME_ENV = "IOTBUTTON_HOME"


def _home_override() -> Path | None:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """Registry, certificates and private keys."""
    home = _home_override()
    if home is not None:
        return home
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """Files the user edits, such as the notifier config."""
    home = _home_override()
    if home is not None:
        return home / "config"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Things that can be rebuilt at any time, such as the Lambda bundle."""
    home = _home_override()
    if home is not None:
        return home / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def state_dir() -> Path:
    """Runtime state such as the sandbox's pid and ports."""
    home = _home_override()
    if home is not None:
        return home / "state"
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700, without a window where they are more open.

    (``Path.mkdir(parents=True)`` gives the parents default permissions, hence the loop.)
    """
    missing = []
    for folder in [path, *path.parents]:
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


def write_private_file(path: Path, text: str, mode: int = 0o600, flush_folder: bool = True) -> None:
    """Write a new file created with ``mode`` from the start (no chmod after the fact).

    The file is written to a temporary name and renamed, so a crash never leaves half a key.
    ``flush_folder=False`` leaves making the rename durable to the caller (:func:`sync_folder`),
    who writes several files into one folder, or wants that flush outside a lock.
    """
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        if flush_folder:
            sync_folder(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sync_folder(path: Path) -> None:
    """Make renames into ``path`` durable: on POSIX the directory entry must be flushed too."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
