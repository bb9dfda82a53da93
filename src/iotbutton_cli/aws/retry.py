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


# A network that is down, a wrong --endpoint-url, or a firewall that drops packets: botocore would
# retry these like throttling (11 tries, 60 s connect timeout each), which leaves a CLI silent
# for tens of seconds or minutes. Two short attempts ride out a lost SYN or a blip, and fail fast.
CONNECT_TIMEOUT_SECONDS = 2.0
CONNECT_ATTEMPTS = 2


def limit_connection_retries(client: object, attempts: int | None = None) -> None:
    """Give up on ``client``'s calls after ``attempts`` tries when AWS cannot be reached at all
    (no route, refused, DNS failure, connect timeout). Throttling, 5xx answers, and connections
    dropped mid-request keep botocore's full retry budget."""
    limit = attempts or CONNECT_ATTEMPTS
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    def give_up_unreachable(
        caught_exception: object = None, attempts: int = 0, **_: object
    ) -> None:
        if isinstance(caught_exception, EndpointConnectionError | ConnectTimeoutError) and (
            attempts >= limit
        ):
            # Raising (not returning False) stops the retry loop in every botocore version; the
            # caller sees the same exception botocore raises when its own attempts run out.
            raise caught_exception
        return None

    client.meta.events.register_first("needs-retry", give_up_unreachable)  # type: ignore[attr-defined]
