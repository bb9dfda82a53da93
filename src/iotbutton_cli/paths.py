"""Where iotbutton keeps its files, and how it writes and deletes them without being tricked.

``IOTBUTTON_HOME`` puts everything (registry, keys, config, cache, sandbox state) under one folder,
so tests and parallel setups never collide. Otherwise the platform's conventional places are used.

The folders hold private keys and a registry that ``clean`` acts on, so they are trusted only if
nobody else could have written them, as ssh trusts ``~/.ssh``: each of iotbutton's folders must be
owned by the user and writable by nobody else, and every folder above it must belong to the user
or root and be writable by others only if it is sticky (``/tmp``). Below its top folders iotbutton
never follows a symbolic link: files are written and deleted through folder descriptors opened
one level at a time with ``O_NOFOLLOW``, so a link planted anywhere on the way is refused rather
than followed, and a file is deleted only if it lies inside the folder the caller names.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path

from iotbutton_cli.errors import IotButtonError

APP_NAME = "iotbutton"
HOME_ENV = "IOTBUTTON_HOME"
FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
FOLDER_MODE = 0o700
WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def _home_override() -> Path | None:
    value = os.environ.get(HOME_ENV)
    # Absolute at once: a path recorded in the registry must not depend on the current folder.
    return Path(value).expanduser().absolute() if value else None


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


def app_dirs() -> list[Path]:
    """iotbutton's top folders, outermost first (with IOTBUTTON_HOME the others are inside it)."""
    folders = [data_dir(), config_dir(), cache_dir(), state_dir()]
    return sorted(dict.fromkeys(folders), key=lambda folder: len(folder.parts))


# -- trust -------------------------------------------------------------------------------------


def check_home() -> None:
    """Refuse to work with folders that are not a folder, or that another user could have
    written. Called before a command touches any file; folders that do not exist yet are fine
    (iotbutton creates them 0700) as long as what is above them is sound."""
    for folder in app_dirs():
        _check_top_folder(folder)


def _check_top_folder(folder: Path) -> None:
    if folder.is_symlink() and not folder.exists():
        raise IotButtonError(
            "home-dangling-link",
            f"{folder} is a symbolic link to {os.readlink(folder)}, which does not exist.",
            f"Create the folder it points to, or set {HOME_ENV} to an existing folder.",
        )
    try:
        info = folder.stat()
    except FileNotFoundError:
        _check_ancestors(folder)
        return
    if not stat.S_ISDIR(info.st_mode):
        raise IotButtonError(
            "home-not-a-folder",
            f"{folder} is a file, not a folder.",
            f"Move the file aside, or set {HOME_ENV} to a folder (it is created if missing).",
        )
    _check_own_folder(folder, info)
    _check_ancestors(folder)


def _check_own_folder(folder: Path, info: os.stat_result) -> None:
    if info.st_uid != os.geteuid():
        raise IotButtonError(
            "folder-not-yours",
            f"{folder} belongs to another user ({_user_name(info.st_uid)}); iotbutton keeps "
            "private keys there and trusts only folders that are yours.",
            f"Set {HOME_ENV} to a folder of your own.",
        )
    if info.st_mode & WRITABLE_BY_OTHERS:
        raise IotButtonError(
            "folder-writable-by-others",
            f"{folder} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}), so "
            "they could plant files there.",
            f"Run `chmod go-w {folder}` (iotbutton makes its folders 0700), or set {HOME_ENV} "
            "to another folder.",
        )


def _check_ancestors(folder: Path) -> None:
    """Every existing folder above ``folder`` belongs to the user or root, and is writable by
    others only if sticky: otherwise someone could swap iotbutton's folder for their own."""
    for ancestor in folder.parents:
        try:
            info = ancestor.stat()
        except FileNotFoundError:
            continue
        except PermissionError:
            raise IotButtonError(
                "folder-unreadable",
                f"Cannot look into {ancestor}: permission denied.",
                f"Set {HOME_ENV} to a folder you can reach.",
            ) from None
        if info.st_uid not in (0, os.geteuid()):
            raise IotButtonError(
                "folder-not-yours",
                f"{ancestor}, above {folder}, belongs to another user "
                f"({_user_name(info.st_uid)}), who could replace iotbutton's folder.",
                f"Set {HOME_ENV} to a folder under your own home.",
            )
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            raise IotButtonError(
                "folder-writable-by-others",
                f"{ancestor}, above {folder}, is writable by every user and not sticky, so "
                "anyone could replace iotbutton's folder.",
                f"Run `chmod o-w {ancestor}`, or set {HOME_ENV} to a folder under your own home.",
            )


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def _check_descriptor(fd: int, path: Path) -> None:
    _check_own_folder(path, os.fstat(fd))


# -- folders, opened without following links -----------------------------------------------------


def _root_for(path: Path) -> Path:
    """The top folder ``path`` lies in (links are never followed below it), else ``path``."""
    for top in reversed(app_dirs()):
        if path == top or top in path.parents:
            return top
    return path


def open_private_dir(path: Path, create: bool = True) -> int:
    """A descriptor for the folder ``path``, made 0700 where missing (``create``).

    Walks from the top folder ``path`` lies in, one level at a time with ``O_NOFOLLOW``, and
    checks each level is the user's and writable by nobody else: a symbolic link or a foreign
    folder on the way is refused, never followed. The caller closes the descriptor.
    """
    path = Path(path).absolute()
    root = _root_for(path)
    if create:
        _make_folders(root)
    fd = os.open(root, FOLDER_FLAGS)
    current = root
    try:
        _check_descriptor(fd, root)
        for part in path.relative_to(root).parts:
            current = current / part
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, FOLDER_MODE, dir_fd=fd)
            child = _open_child_folder(part, fd, current)
            os.close(fd)
            fd = child
            _check_descriptor(fd, current)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child_folder(name: str, parent_fd: int, path: Path) -> int:
    try:
        return os.open(name, FOLDER_FLAGS | NOFOLLOW, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(path):
            raise IotButtonError(
                "folder-is-a-link",
                f"{path} is a symbolic link; iotbutton never follows one inside its folders.",
                f"Remove the link (a real folder is made in its place), or set {HOME_ENV} "
                "to another folder.",
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise IotButtonError(
                "home-not-a-folder",
                f"{path} is a file, not a folder.",
                "Move the file aside; iotbutton needs a folder there.",
            ) from None
        exc.filename = str(path)
        raise


def _make_folders(path: Path) -> None:
    """``path`` and any missing parents as 0700, without a window where they are more open.

    (``Path.mkdir(parents=True)`` gives the parents default permissions, hence the loop.)
    """
    missing = []
    for folder in [path, *path.parents]:
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=FOLDER_MODE, exist_ok=True)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (0700, as :func:`open_private_dir` checks it) and return it."""
    os.close(open_private_dir(path))
    return path


# -- files ----------------------------------------------------------------------------------------


def write_private_file(path: Path, text: str, mode: int = 0o600, flush_folder: bool = True) -> None:
    """Write a new file created with ``mode`` from the start (no chmod after the fact).

    The file is written to a temporary name and renamed, so a crash never leaves half a key;
    both happen inside the folder's descriptor, so no link on the way is followed. A link at
    ``path`` itself is replaced, not written through. ``flush_folder=False`` leaves making the
    rename durable to the caller (:func:`sync_folder`), who writes several files into one folder,
    or wants that flush outside a lock.
    """
    path = Path(path).absolute()
    folder_fd = open_private_dir(path.parent)
    tmp = f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW
        fd = os.open(tmp, flags, mode, dir_fd=folder_fd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder_fd)
            raise
        if flush_folder:
            _fsync_quietly(folder_fd)
    except OSError as exc:
        exc.filename = exc.filename if isinstance(exc.filename, str) and exc.filename else str(path)
        raise
    finally:
        os.close(folder_fd)


def remove_file_within(path: Path, within: Path) -> str | None:
    """Delete ``path`` if it lies inside the folder ``within``; None when it is gone, else why
    it was left (a path outside ``within``, a link on the way, a file that cannot be deleted).

    A registry names the files ``clean`` deletes, so a path is taken only if it is inside
    ``within`` once made absolute and normal, and the folders on the way are walked without
    following links. A link at ``path`` itself is removed, never what it points to.
    """
    target = Path(os.path.normpath(Path(path).absolute()))
    within = Path(os.path.normpath(Path(within).absolute()))
    if within not in target.parents:
        return f"{target} is not inside {within}; iotbutton deletes only its own files"
    try:
        folder_fd = open_private_dir(target.parent, create=False)
    except FileNotFoundError:
        return None
    except IotButtonError as error:
        return error.message
    try:
        os.unlink(target.name, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return f"{target} is a folder, not a key file"
    except OSError as exc:
        return f"cannot delete {target}: {exc.strerror or exc}"
    finally:
        os.close(folder_fd)
    return None


def sync_folder(path: Path) -> None:
    """Make renames into ``path`` durable: on POSIX the directory entry must be flushed too."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        _fsync_quietly(fd)
    finally:
        os.close(fd)


def _fsync_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(fd)


# -- file errors as one line ----------------------------------------------------------------------


def file_error(exc: OSError) -> IotButtonError | None:
    """The one-line error for a failed file operation (one that names its file), else None.

    Network errors are OSErrors too, but name no file: they are left to their own handlers.
    """
    filename = exc.filename
    if not filename:
        return None
    where = os.fsdecode(filename)
    reason = exc.strerror or str(exc)
    hints = {
        errno.EROFS: f"The file system is read-only: set {HOME_ENV} to a writable folder.",
        errno.EACCES: f"Check the permissions of {where} (iotbutton's folders are yours, 0700).",
        errno.EPERM: f"Check the permissions of {where} (iotbutton's folders are yours, 0700).",
        errno.ENOSPC: "Free some disk space, then run the command again.",
        errno.EDQUOT: "Free some disk space, then run the command again.",
        errno.ENOTDIR: f"A file stands where iotbutton needs a folder: move it aside or set "
        f"{HOME_ENV}.",
        errno.ELOOP: "Remove the symbolic link; iotbutton does not follow links in its folders.",
    }
    hint = hints.get(
        exc.errno or 0, "Check the path and its permissions (`iotbutton paths` shows them)."
    )
    return IotButtonError("file-error", f"Cannot use {where}: {reason}.", hint)
