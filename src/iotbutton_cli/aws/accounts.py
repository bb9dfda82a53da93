"""Which account an access key belongs to, remembered so local commands need no network.

The account of an access key id never changes, so ``sts:GetCallerIdentity`` is asked once per
key id, endpoint (a moto server answers its own account for any key) and region, and the answer
kept in ``<state folder>/accounts.json``, 0600: a SHA-256 of the three, never the key id itself,
never the secret. With the key in the environment, a command that reads only local state then
imports no AWS SDK at all. A command that changes AWS still asks STS first (``AppContext.
before_changes``), so a damaged or edited file can mislead a listing but never a change; and
``--refresh`` asks again. A file that cannot be read as this cache is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from iotbutton_cli import paths
from iotbutton_cli.errors import IotButtonError

CACHE_FILE = "accounts.json"
ACCOUNT_ID = re.compile(r"\d{12}")
MAX_ENTRIES = 100  # a person's keys and endpoints; the oldest go first
MAX_BYTES = 64 * 1024


def cache_key(access_key_id: str, endpoint_url: str | None, region: str) -> str:
    """What an entry is filed under: neither the key id, the endpoint nor the region can be read
    back. The region is part of it because an entry is only written once botocore has checked
    the region: finding one lets a listing skip botocore altogether (``AppContext.region``)."""
    text = f"{endpoint_url or 'aws'}\n{region}\n{access_key_id}"
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path() -> Path:
    return paths.state_dir() / CACHE_FILE


def lookup(key: str) -> str | None:
    """The account remembered for ``key``, or None."""
    account = _entries().get(key)
    return account if isinstance(account, str) and ACCOUNT_ID.fullmatch(account) else None


def remember(key: str, account: str) -> None:
    """Keep ``account`` for ``key``; a cache that cannot be written is no error (it is a cache)."""
    if not ACCOUNT_ID.fullmatch(account):
        return
    entries = {k: v for k, v in _entries().items() if k != key}
    entries[key] = account
    kept = dict(list(entries.items())[-MAX_ENTRIES:])
    try:
        paths.ensure_private_dir(cache_path().parent)
        paths.write_private_file(cache_path(), json.dumps({"accounts": kept}, indent=2) + "\n")
    except (OSError, ValueError, IotButtonError):
        pass  # an unsafe folder is reported by the command's own folder check


def _entries() -> dict[str, str]:
    """The cache's entries; none when the file is missing, a link, too big or not this cache."""
    try:
        fd = os.open(cache_path(), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
        document = json.loads(data) if len(data) <= MAX_BYTES else None
    except (OSError, ValueError):
        return {}
    found = document.get("accounts") if isinstance(document, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}
