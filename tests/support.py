"""Helpers the tests share: reading the registry as a user's files hold it, watching the
sandbox's button topics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
NAMESPACE = f"aws:{ACCOUNT}:us-east-1"
TWILIO_ACCOUNT_SID = "AC" + "1" * 32
TWILIO_SECRET = "s" * 32


def notify_init_args(person: str = "P", sms: str = "+15551230001") -> list[str]:
    """`notify init` with the stand-in's account, a sender, and one SMS recipient."""
    return [
        "notify",
        "init",
        "--account-sid",
        TWILIO_ACCOUNT_SID,
        "--from",
        "+15005550006",
        "--person",
        person,
        "--sms",
        sms,
    ]


def registry_document(home: Path) -> dict[str, Any]:
    """The registry as iotbutton reads it: registry.json, and the journal a killed command
    left (read fresh, and forgotten again, so no test sees another's copy)."""
    from iotbutton_cli.registry.store import Registry

    registry = Registry(home / "registry.json")
    if not registry.path.exists() and not registry.journal_path.exists():
        return {"namespaces": {}}
    try:
        return registry.read()
    finally:
        registry.close()


def recorded(home: Path, kind: str) -> dict[str, Any]:
    namespace = registry_document(home)["namespaces"].get(NAMESPACE, {})
    return namespace.get("resources", {}).get(kind, {})


def wait_for_outbox(cli: Any, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The sandbox's outbox requests once it holds ``count`` of them (or what it holds at the
    timeout); the status callbacks the stand-in made, and what the webhook sink received, are
    left out."""
    deadline = time.monotonic() + timeout
    while True:
        entries: list[dict[str, Any]] = [
            entry
            for entry in cli.json("sandbox", "outbox")
            if entry.get("kind") not in ("callback", "webhook", "slack", "oauth-token")
        ]
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


class Watcher:
    """`sim subscribe` in its own process: what the monitor saw arrive."""

    def __init__(self, count: int = 1, duration: int = 20) -> None:
        self.duration = duration
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iotbutton_cli",
                "--sandbox",
                "sim",
                "subscribe",
                "--count",
                str(count),
                "--duration",
                str(duration),
                "--json",
            ],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ),
        )
        assert self.process.stderr is not None
        assert "Watching" in self.process.stderr.readline()

    def received(self) -> list[dict[str, Any]]:
        try:
            seen, _ = self.process.communicate(timeout=self.duration + 30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        return [json.loads(line) for line in seen.splitlines() if line]
