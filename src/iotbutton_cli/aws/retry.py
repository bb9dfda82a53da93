"""Retry the calls AWS answers with "not yet": eventual consistency, not throttling.

Throttling is botocore's job (adaptive retry mode); this is for DeleteThing failing while
DetachThingPrincipal completes, or CreateFunction while a new IAM role propagates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Module-level so the test suite can shorten the waits; AWS needs seconds, moto none.
BASE_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0
MAX_ATTEMPTS = 8


def retry_while(
    call: Callable[[], T],
    should_retry: Callable[[BaseException], bool],
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``call`` until it succeeds or raises something ``should_retry`` rejects."""
    attempts = attempts or MAX_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not should_retry(exc):
                raise
            delay = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (attempt - 1))
            sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable")
