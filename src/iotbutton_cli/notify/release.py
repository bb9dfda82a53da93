"""``notify release``: send now what quiet hours hold (``then: hold``), without waiting for
their end.

The deployed function does the sending, as the release schedule's run does at the end of the
hours (notifier_lambda/release.py), with ``force``: every held alarm goes out, as SMS while its
quiet hours still last. Each delivery is claimed in the ledger first, so one the schedule's run
sent meanwhile is not sent twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from iotbutton_cli.context import AppContext
from iotbutton_cli.notifier_lambda.contract import release_event
from iotbutton_cli.notify.resources import FUNCTION_NAME


@dataclass
class ReleaseResult:
    released: list[dict[str, Any]] = field(default_factory=list)  # the function's, per alarm
    incomplete: list[dict[str, Any]] = field(default_factory=list)
    function_error: str | None = None

    @property
    def ok(self) -> bool:
        failed = [
            r
            for alarm in self.released + self.incomplete
            for r in alarm.get("results", [])
            if r.get("status") == "failed"
        ]
        return self.function_error is None and not self.incomplete and not failed


def release(ctx: AppContext) -> ReleaseResult:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = release_event(now, force=True)
    answer = ctx.client("lambda").invoke(FunctionName=FUNCTION_NAME, Payload=json.dumps(event))
    payload = json.loads(answer["Payload"].read() or b"null")
    result = ReleaseResult()
    if answer.get("FunctionError"):
        result.function_error = str((payload or {}).get("errorMessage", answer["FunctionError"]))
    elif isinstance(payload, dict):
        result.released = [r for r in payload.get("released", []) if isinstance(r, dict)]
    return result
