"""What the sandbox's client (``sandbox.client``, the CLI side) and its server process agree on.

The client starts the server as :func:`server_command` (``python -m iotbutton_cli.sandbox.server
--state-dir DIR --aws-port N --mqtt-port N --twilio-port N --hooks-port N [--time-scale F]
[--verbose]``;
``sandbox start --foreground`` runs the same :func:`server_args` in its own process). Once
everything listens, the server writes :class:`SandboxInfo` as JSON to ``DIR/``:data:`STATE_FILE`
(0600), and removes it when it stops; the client reads it back with
:meth:`SandboxInfo.from_state`. The sandbox's AWS account is always :data:`SANDBOX_ACCOUNT` in
:data:`SANDBOX_REGION` (moto's default account).

Standard library only: the CLI imports this to find a running sandbox, with nothing heavy.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SANDBOX_ACCOUNT = "123456789012"  # moto's default account
SANDBOX_REGION = "us-east-1"
SERVER_MODULE = "iotbutton_cli.sandbox.server"
STATE_FILE = "sandbox.json"


@dataclass
class SandboxInfo:
    """A running sandbox: its process, where its parts listen, and the key pair its AWS port
    accepts (and nothing else)."""

    pid: int
    aws_url: str
    mqtt_host: str
    mqtt_port: int
    ca_file: str
    twilio_url: str
    outbox: str
    region: str
    account: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    # process_identity.identity(pid) when it started: a later process with the same pid is not it.
    process: dict[str, str] = field(default_factory=dict, repr=False)
    # How much faster than real time the Twilio stand-in plays calls (twilio.DEFAULT_TIME_SCALE).
    time_scale: float = 0.05
    # The webhook sink's port (webhook_sink); 0 in a state file an older sandbox wrote (no sink).
    hooks_port: int = 0

    @property
    def hooks_url(self) -> str:
        """The webhook sink's base URL, ``http://127.0.0.1:<port>`` (``/hooks/<name>``,
        ``/slack/<name>``, ``/oauth/token``); "" for an older sandbox, which has none."""
        return f"http://127.0.0.1:{self.hooks_port}" if self.hooks_port else ""

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> SandboxInfo | None:
        """The info in a sandbox.json, or None if it is not one this version wrote."""
        known = {f.name for f in fields(cls)}
        try:
            info = cls(**{key: value for key, value in data.items() if key in known})
        except TypeError:
            return None
        return info if info.access_key_id and info.secret_access_key else None

    def state(self) -> dict[str, Any]:
        """What the server writes to the state file: everything."""
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What `sandbox status --json` shows: all but the process identity (secret included:
        the owner asked for it)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "process"}

    def loggable(self) -> dict[str, Any]:
        """What may go in the sandbox's log: everything but the secret and the process."""
        return {
            key: value
            for key, value in self.public().items()
            if key not in ("secret_access_key", "process")
        }


def server_args(
    state_dir: Path,
    aws_port: int = 0,
    mqtt_port: int = 0,
    twilio_port: int = 0,
    verbose: bool = False,
    time_scale: float | None = None,
    hooks_port: int = 0,
) -> list[str]:
    """The server's command-line arguments (what its ``main`` parses)."""
    args = [
        "--state-dir",
        str(state_dir),
        "--aws-port",
        str(aws_port),
        "--mqtt-port",
        str(mqtt_port),
        "--twilio-port",
        str(twilio_port),
        "--hooks-port",
        str(hooks_port),
    ]
    if time_scale is not None:
        args += ["--time-scale", repr(float(time_scale))]
    return [*args, "--verbose"] if verbose else args


def server_command(
    state_dir: Path,
    aws_port: int = 0,
    mqtt_port: int = 0,
    twilio_port: int = 0,
    verbose: bool = False,
    time_scale: float | None = None,
    hooks_port: int = 0,
) -> list[str]:
    """The command that runs the server in a process of its own."""
    return [
        sys.executable,
        "-m",
        SERVER_MODULE,
        *server_args(state_dir, aws_port, mqtt_port, twilio_port, verbose, time_scale, hooks_port),
    ]
