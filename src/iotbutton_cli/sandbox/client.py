"""Start, find and stop the sandbox process, and read its outbox and its webhook sink's entries.

The sandbox runs in the background (``python -m iotbutton_cli.sandbox.server``, see
:mod:`.protocol` for what client and server share); its pid, the identity of that process (start
time and command line), its ports, CA file and AWS key pair are in
``<state dir>/sandbox/sandbox.json`` (0600), written once everything listens. A state file whose
process is gone is removed. One whose pid now belongs to another process is *stale*: it is
removed, said so, and that process is never signalled.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iotbutton_cli.errors import IotButtonError
from iotbutton_cli.paths import ensure_private_dir, state_dir
from iotbutton_cli.sandbox import process_identity
from iotbutton_cli.sandbox.protocol import STATE_FILE, SandboxInfo, server_command

if TYPE_CHECKING:
    from iotbutton_cli.sandbox.twilio_phones import PhoneBehaviour
    from iotbutton_cli.sandbox.webhook_sink import Controls

SANDBOX_NAMESPACE = "sandbox"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
LOG_FILE = "sandbox.log"
# How the server's log names a port it could not listen on (server.PortInUse).
PORT_IN_USE = re.compile(r"the (aws|mqtt|twilio|hooks) port (\d+) is already in use")
PART_NAMES = {"aws": "AWS", "mqtt": "MQTT", "twilio": "Twilio", "hooks": "webhook sink"}
# What would override the sandbox's keys in an AWS tool's environment, or add to them.
UNSET_FOR_SANDBOX = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")


@dataclass
class Found:
    """What the state file says: a running sandbox, nothing, or a stale pid (another process)."""

    info: SandboxInfo | None = None
    stale_pid: int | None = None


def sandbox_dir() -> Path:
    return state_dir() / "sandbox"


def _state_path() -> Path:
    return sandbox_dir() / STATE_FILE


def _alive(pid: int) -> bool:
    try:
        # If this process started the sandbox, reap it: a zombie still answers kill(pid, 0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_the_sandbox(info: SandboxInfo) -> bool:
    """Whether ``info.pid`` is still the process that wrote the state file."""
    if not _alive(info.pid):
        return False
    if not info.process:  # it could not tell itself (no /proc and no ps): liveness is all
        return True
    return process_identity.same_process(info.pid, info.process)


def find() -> Found:
    """What runs, according to the state file; a file naming no sandbox is removed."""
    path = _state_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Found()
    except ValueError:
        path.unlink(missing_ok=True)
        return Found()
    pid = data.get("pid") if isinstance(data, dict) else None
    if not isinstance(pid, int) or not _alive(pid):
        path.unlink(missing_ok=True)
        return Found()
    info = SandboxInfo.from_state(data)
    if info is None or not _is_the_sandbox(info):
        path.unlink(missing_ok=True)
        return Found(stale_pid=pid)
    return Found(info=info)


def running() -> SandboxInfo | None:
    """The running sandbox, or None (a state file naming no sandbox is removed)."""
    return find().info


def forget_sandbox_records() -> int:
    """moto keeps its state in memory only: once a sandbox is gone, so is everything in it, and
    the registry must not keep pretending otherwise. Returns how many records were dropped."""
    return sum(_forget_sandbox_namespace().values())


def _forget_sandbox_namespace() -> dict[str, int]:
    """Drop the registry's sandbox namespace and its key files; how many records of each kind."""
    from iotbutton_cli.registry import keyfiles, kinds
    from iotbutton_cli.registry.store import Registry

    with Registry().transaction() as document:
        namespace = document["namespaces"].pop(SANDBOX_NAMESPACE, None)
    if namespace is None:
        return {}
    resources = namespace.get("resources", {})
    for record in resources.get(kinds.CERTIFICATES, {}).values():
        keyfiles.remove_key_files(record.get("files"))
    keyfiles.remove_empty_namespace_dir(SANDBOX_NAMESPACE)
    return {kind: len(items) for kind, items in resources.items() if items}


@dataclass
class Started:
    """What :func:`start` found or did: the sandbox, whether it was started now, and what the
    registry had recorded in an earlier sandbox that had died without `sandbox stop` (records
    per kind, forgotten now: that sandbox's AWS state died with it)."""

    info: SandboxInfo
    started: bool
    forgotten: dict[str, int] = field(default_factory=dict)

    def notice(self) -> str | None:
        """What to tell a user whose command (not `sandbox start`) just started the sandbox."""
        if not self.started:
            return None
        line = f"Started the sandbox (pid {self.info.pid}); `iotbutton sandbox stop` ends it."
        return f"{line} {self.forgotten_line()}" if self.forgotten else line

    def forgotten_line(self) -> str:
        from iotbutton_cli.registry import kinds

        total = sum(self.forgotten.values())
        buttons = self.forgotten.get(kinds.THINGS, 0)
        what = _count(buttons, "button") if buttons else _count(total, "resource")
        return (
            "The sandbox before it had stopped without `iotbutton sandbox stop`: "
            f"its {what} went with it ({_count(total, 'registry record')} forgotten)."
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def start(
    aws_port: int = 0,
    mqtt_port: int = 0,
    twilio_port: int = 0,
    verbose: bool = False,
    time_scale: float | None = None,
    hooks_port: int = 0,
) -> Started:
    """Start the sandbox in the background unless it runs (``time_scale``: the Twilio
    stand-in's, its default if None)."""
    current = running()
    if current is not None:
        return Started(current, started=False)
    forgotten = _forget_sandbox_namespace()  # left by a sandbox that died without `sandbox stop`
    folder = ensure_private_dir(sandbox_dir())
    command = server_command(
        folder, aws_port, mqtt_port, twilio_port, verbose, time_scale, hooks_port
    )
    log_path = folder / LOG_FILE
    # The log names phone numbers and who was refused: the owner's alone, like everything here.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(log_fd, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        info = running()
        if info is not None and info.pid == process.pid:
            return Started(info, started=True, forgotten=forgotten)
        if process.poll() is not None:
            raise _start_failed(log_path, f"it exited with status {process.returncode}")
        time.sleep(0.1)
    process.terminate()
    raise _start_failed(log_path, f"it was not ready after {START_TIMEOUT_SECONDS:.0f} s")


def _start_failed(log_path: Path, why: str) -> IotButtonError:
    lines = [line for line in _tail(log_path, 20) if line.strip()]
    cause = next((line for line in reversed(lines) if "ERROR" in line or "Error" in line), "")
    detail = cause.split(" ERROR ", 1)[-1].strip() if cause else why
    in_use = PORT_IN_USE.search(detail)
    if in_use:
        part, port = in_use.groups()
        return IotButtonError(
            "sandbox-port-in-use",
            f"The sandbox could not start: its {PART_NAMES[part]} port {port} is already in use.",
            f"Free that port, or pick another with --{part}-port (0: any free one).",
        )
    if "address already in use" in detail.lower():
        return IotButtonError(
            "sandbox-port-in-use",
            f"The sandbox could not start: {detail}",
            "Pick other ports (--aws-port/--mqtt-port/--twilio-port/--hooks-port) or 0 for any "
            "free one.",
        )
    return IotButtonError(
        "sandbox-start-failed",
        f"The sandbox could not start: {detail}",
        f"See its log: {log_path}",
    )


def _tail(path: Path, count: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-count:]
    except FileNotFoundError:
        return []


def stop() -> Found:
    """Stop the running sandbox (SIGTERM, then SIGKILL); ``Found()`` if none was running.

    A pid is signalled only while it is still the sandbox's process: a stale state file (the pid
    now someone else's) is removed and nothing is signalled.
    """
    found = find()
    info = found.info
    if info is None:
        return found
    _signal_the_sandbox(info, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and _is_the_sandbox(info):
        time.sleep(0.05)
    _signal_the_sandbox(info, signal.SIGKILL)
    _state_path().unlink(missing_ok=True)
    return found


@dataclass
class Stopped:
    """What `sandbox stop` did: what the state file said (the sandbox stopped, a stale pid, or
    nothing) and how many records of the registry's sandbox namespace were forgotten."""

    found: Found
    forgotten_records: int = 0


def stop_and_forget() -> Stopped:
    """Stop the sandbox and forget what the registry recorded in it: moto's state went with it.

    With no state file at all nothing is forgotten: the records may belong to a sandbox that
    another process is starting right now.
    """
    found = stop()
    gone = found.info is not None or found.stale_pid is not None
    return Stopped(found, forget_sandbox_records() if gone else 0)


def _signal_the_sandbox(info: SandboxInfo, signum: int) -> None:
    """Send ``signum`` to the sandbox's process, if ``info.pid`` still is it.

    Where Linux offers a pidfd, the check and the signal are about one process for certain: the
    pid cannot be handed to another between them.
    """
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(info.pid)
        except ProcessLookupError:
            return
        except OSError:  # an older kernel
            pidfd = None
    try:
        if not _is_the_sandbox(info):
            return
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(info.pid, signum)
    except ProcessLookupError:
        pass
    finally:
        if pidfd is not None:
            os.close(pidfd)


def require_running() -> SandboxInfo:
    info = running()
    if info is None:
        raise IotButtonError(
            "sandbox-not-running",
            "The sandbox is not running.",
            "Start it with `iotbutton sandbox start` (or pass --sandbox to any command).",
        )
    return info


def aws_environment(info: SandboxInfo | None = None) -> dict[str, str]:
    """The variables that make any AWS SDK or the AWS CLI talk to the sandbox with its key (of
    the running sandbox when ``info`` is None).

    boto3 reads the region from AWS_DEFAULT_REGION (the AWS CLI and newer SDKs from AWS_REGION),
    so both are set.
    """
    info = info or require_running()
    return {
        "AWS_ACCESS_KEY_ID": info.access_key_id,
        "AWS_SECRET_ACCESS_KEY": info.secret_access_key,
        "AWS_REGION": info.region,
        "AWS_DEFAULT_REGION": info.region,
        "AWS_ENDPOINT_URL": info.aws_url,
    }


def outbox(info: SandboxInfo | None = None, requests_only: bool = False) -> list[dict[str, Any]]:
    """Every Twilio request the stand-in received, every status callback it made and every SNS
    message a person would have received, oldest first (of the running sandbox when ``info`` is
    None); ``requests_only``: the Twilio requests alone."""
    info = info or require_running()
    entries = []
    for line in _lines(Path(info.outbox)):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if not (requests_only and (is_callback(entry) or is_owner_message(entry))):
            entries.append(entry)
    return entries


def is_callback(entry: dict[str, Any]) -> bool:
    """A status callback the stand-in made (not a request it received)."""
    return entry.get("kind") == "callback"


def is_owner_message(entry: dict[str, Any]) -> bool:
    """An SNS message a person would have received (an SMS or an email), not a Twilio request."""
    return entry.get("kind") == "sns"


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def log_path() -> Path:
    return sandbox_dir() / LOG_FILE


# -- the Twilio stand-in's phone table (phones.json) ----------------------------------------------


def phones_path(info: SandboxInfo) -> Path:
    """The running sandbox's ``phones.json``: beside its outbox, where its Twilio stand-in reads
    it at each create (``twilio_phones.PhoneBook``)."""
    from iotbutton_cli.sandbox.twilio_phones import PHONES_FILE

    return Path(info.outbox).parent / PHONES_FILE


def read_phones(info: SandboxInfo) -> dict[str, PhoneBehaviour]:
    """The sandbox's phone table (empty without a file); a one-line error for a file that is
    not a phone table, cannot be read, or is a symbolic link (never followed)."""
    from iotbutton_cli.paths import open_private_dir

    path = phones_path(info)
    folder_fd = open_private_dir(path.parent, create=False)
    try:
        return _read_phones_at(path, folder_fd)
    finally:
        os.close(folder_fd)


def change_phones(
    info: SandboxInfo, change: Callable[[dict[str, PhoneBehaviour]], None]
) -> dict[str, PhoneBehaviour]:
    """Read the table, let ``change`` edit it, write it back (a 0600 temp file in the same folder,
    then ``os.replace``: the stand-in never reads half a file), under a lock on the folder so two
    commands never lose each other's change. Returns the table written."""
    from iotbutton_cli.paths import open_private_dir, write_private_file
    from iotbutton_cli.sandbox.twilio_phones import dump_phones

    path = phones_path(info)
    folder_fd = open_private_dir(path.parent, create=False)
    try:
        _lock_folder(folder_fd)
        table = _read_phones_at(path, folder_fd)
        change(table)
        write_private_file(path, dump_phones(table))
        return table
    finally:
        os.close(folder_fd)  # and with it the lock


def reset_phones() -> str | None:
    """Delete the sandbox's ``phones.json`` (`sandbox stop`: the next sandbox starts with every
    number on and answering); None when it is gone, else why it was left."""
    from iotbutton_cli.paths import remove_file_within
    from iotbutton_cli.sandbox.twilio_phones import PHONES_FILE

    return remove_file_within(sandbox_dir() / PHONES_FILE, sandbox_dir())


def _lock_folder(folder_fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): a lost update needs two commands at once
        return
    fcntl.flock(folder_fd, fcntl.LOCK_EX)


def _read_phones_at(path: Path, folder_fd: int) -> dict[str, PhoneBehaviour]:
    from iotbutton_cli.sandbox.twilio_phones import parse_phones, read_phones_file

    again = "set the numbers again with `iotbutton sandbox phone`"
    with _state_file_errors(path, "phones", "a phone table", "phone", again):
        text = read_phones_file(path.name, dir_fd=folder_fd)
        return parse_phones(text) if text is not None else {}


# -- the webhook sink: its entries (hooks.jsonl) and its controls (hooks.json) --------------------


def hooks(info: SandboxInfo | None = None) -> list[dict[str, Any]]:
    """What the webhook sink recorded (webhook and Slack posts, token requests), oldest first, at
    most its last ``webhook_sink.KEEP_ENTRIES`` (of the running sandbox when ``info`` is None);
    the keys are in ``webhook_sink``'s docstring. An older sandbox, without a sink, has none."""
    from iotbutton_cli.sandbox.webhook_sink import ENTRIES_FILE, KEEP_ENTRIES

    info = info or require_running()
    entries = []
    for line in _lines(Path(info.outbox).parent / ENTRIES_FILE):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if isinstance(entry, dict) and isinstance(entry.get("seq"), int):
            entries.append(entry)
    entries.sort(key=lambda entry: int(entry["seq"]))
    return entries[-KEEP_ENTRIES:]


def require_sink(info: SandboxInfo) -> SandboxInfo:
    """``info``, if its sandbox has a webhook sink (one an older iotbutton started has none)."""
    if not info.hooks_port:
        raise IotButtonError(
            "sandbox-no-webhook-sink",
            f"The running sandbox (pid {info.pid}) has no webhook sink: an older iotbutton "
            "started it.",
            "Restart it: `iotbutton sandbox stop`, then `iotbutton sandbox start`.",
        )
    return info


def read_hook_controls(info: SandboxInfo) -> Controls:
    """The webhook sink's controls (``hooks.json``; the defaults without one); a one-line error
    for a file that is not its controls, cannot be read, or is a symbolic link (never followed)."""
    from iotbutton_cli.sandbox.webhook_sink import read_controls

    with _hook_controls_errors(info):
        return read_controls(Path(info.outbox).parent)


def change_hook_controls(info: SandboxInfo, change: Callable[[Controls], None]) -> Controls:
    """Let ``change`` edit the sink's controls and write them back (atomically, under the state
    folder's lock, which the sink takes too when a post uses up one of a name's times)."""
    from iotbutton_cli.sandbox.webhook_sink import change_controls

    with _hook_controls_errors(info):
        return change_controls(Path(info.outbox).parent, change)


def reset_hook_controls() -> str | None:
    """Delete the sandbox's ``hooks.json`` (`sandbox stop`: the next sandbox's sink answers every
    name as usual, with tokens of the default lifetime); None when it is gone, else why it was
    left."""
    from iotbutton_cli.paths import remove_file_within
    from iotbutton_cli.sandbox.webhook_sink import CONTROLS_FILE

    return remove_file_within(sandbox_dir() / CONTROLS_FILE, sandbox_dir())


@contextmanager
def _hook_controls_errors(info: SandboxInfo) -> Iterator[None]:
    """Turns what reading or writing ``hooks.json`` raises into one-line errors."""
    from iotbutton_cli.sandbox.webhook_sink import CONTROLS_FILE

    path = Path(info.outbox).parent / CONTROLS_FILE
    again = "set them again with `iotbutton sandbox hook`"
    with _state_file_errors(path, "hooks", "the webhook sink's controls", "hook", again):
        yield


@contextmanager
def _state_file_errors(
    path: Path, name: str, what: str, command: str, again: str
) -> Iterator[None]:
    """A state file the sandbox commands edit (phones.json, hooks.json): a symbolic link, an
    unreadable file, or one that is not ``what``, becomes a one-line error."""
    from iotbutton_cli.paths import file_error
    from iotbutton_cli.sandbox.twilio_phones import is_link_error

    try:
        yield
    except OSError as exc:
        if is_link_error(exc):
            raise IotButtonError(
                f"sandbox-{name}-link",
                f"{path} is a symbolic link; iotbutton never follows one in its folders.",
                f"Delete the link (`iotbutton sandbox stop` does too); `iotbutton sandbox "
                f"{command}` then writes a real file.",
            ) from None
        exc.filename = str(path)
        raise (file_error(exc) or exc) from None
    except ValueError as exc:  # json.JSONDecodeError is one
        problem = "".join(c if c.isprintable() else "?" for c in str(exc))[:200].rstrip(".")
        raise IotButtonError(
            f"sandbox-{name}-corrupt",
            f"{path} is not {what}: {problem}.",
            f"Repair it, or delete it (`iotbutton sandbox stop` does too) and {again}.",
        ) from None
