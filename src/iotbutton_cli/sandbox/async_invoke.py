"""Asynchronous Lambda invocations as Lambda runs them: retries, maximum age, destinations.

What a topic rule's Lambda action and ``Invoke`` with ``InvocationType=Event`` start. Lambda
queues the event and runs the function; a function error is retried ``MaximumRetryAttempts``
times (0, 1 or 2; 2 without an event invoke config) with the same request id, unless the event
is older than ``MaximumEventAgeInSeconds`` by then (21600 by default). When it gives up, the
invocation record ("Capturing records of Lambda asynchronous invocations") goes to the config's
``DestinationConfig.OnFailure.Destination``; a success's goes to ``OnSuccess``'s.

Lambda waits about 1 and 2 minutes before the retries; the sandbox waits ``ASYNC_RETRY_DELAYS``
(a quarter and a half of a second), and counts each wait as the minute or two it stands for
when it measures the event's age, so a ``MaximumEventAgeInSeconds`` of 60 stops the first retry,
as on AWS.

A Lambda destination is invoked asynchronously in turn (its own config honoured, a function
already in the chain is not invoked again); an SNS topic gets the record as the message (JSON);
SQS, S3 and EventBridge destinations are logged as not emulated. Every step is a line in
``sandbox.log``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from iotbutton_cli.sandbox.protocol import SANDBOX_ACCOUNT, SANDBOX_REGION

if TYPE_CHECKING:
    from iotbutton_cli.sandbox.aws_server import SandboxAWS
    from iotbutton_cli.sandbox.lambda_runner import FunctionCode, Invocation

log = logging.getLogger("iotbutton.sandbox")

# Lambda retries a failed asynchronous invocation after about 1 and 2 minutes (AWS_RETRY_DELAYS);
# the sandbox keeps the count and the order, in seconds. Read at each retry (tests shorten it).
ASYNC_RETRY_DELAYS = (0.25, 0.5)
AWS_RETRY_DELAYS = (60.0, 120.0)
DEFAULT_MAXIMUM_RETRY_ATTEMPTS = 2
DEFAULT_MAXIMUM_EVENT_AGE_SECONDS = 21600
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
NOT_EMULATED_DESTINATIONS = {"sqs": "SQS", "s3": "S3", "events": "EventBridge"}


@dataclass
class AsyncEvent:
    """One event in Lambda's asynchronous queue for a function."""

    function: str  # name or ARN
    event: Any
    source: str  # who queued it, as the log lines name it: "rule NAME", "Invoke", ...
    request_id: str | None = None
    attempts: int = 0
    first_attempt: float = 0.0  # time.monotonic() of the first attempt
    waited: float = 0.0  # sandbox seconds waited before retries
    stood_for: float = 0.0  # the AWS seconds those waits stand for
    last: Invocation | None = None
    # The functions whose invocation records led to this event (no loops).
    chain: tuple[str, ...] = field(default_factory=tuple)
    # Asked before the first attempt, off the caller's thread: may it invoke this function at
    # all (a rule needs the function's resource policy to let it)? False drops the event.
    admit: Callable[[FunctionCode], bool] | None = None

    def age(self) -> float:
        """How old the event is, as Lambda would count it (see the module's note)."""
        return time.monotonic() - self.first_attempt - self.waited + self.stood_for


def event_invoke_config(function_name: str, region: str = SANDBOX_REGION) -> dict[str, Any]:
    """The function's event invoke config in moto ({} without one)."""
    from moto.awslambda.models import lambda_backends

    from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

    with MOTO_LOCK:
        try:
            config = lambda_backends[SANDBOX_ACCOUNT][region].get_function_event_invoke_config(
                function_name
            )
        except Exception:  # none (moto raises UnknownEventConfig), or no such function
            return {}
    return dict(config)


def destination_of(config: dict[str, Any], condition: str) -> str | None:
    """``OnFailure`` or ``OnSuccess``'s destination ARN, if the config names one."""
    found = (config.get("DestinationConfig") or {}).get(condition) or {}
    destination = found.get("Destination")
    return str(destination) if destination else None


def invocation_record(
    function: FunctionCode, item: AsyncEvent, condition: str, invocation: Invocation
) -> dict[str, Any]:
    """What Lambda sends a destination: the request, the response, and why."""
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if invocation.error:
        response_context["functionError"] = "Unhandled"
    now = datetime.now(timezone.utc)
    return {
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": invocation.request_id,
            "functionArn": f"{function.arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": item.attempts,
        },
        "requestPayload": item.event,
        "responseContext": response_context,
        "responsePayload": invocation.error if invocation.error else invocation.payload,
    }


class AsyncInvoker:
    """Lambda's asynchronous queue, for the functions in the sandbox's moto."""

    def __init__(
        self,
        aws: SandboxAWS,
        region: str = SANDBOX_REGION,
        workers: int = 4,
        retry_delays: tuple[float, ...] | None = None,
    ) -> None:
        self.aws = aws
        self.region = region
        self.retry_delays = retry_delays
        # A click never waits for the function: a few workers run the queue.
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="async")

    def submit(self, item: AsyncEvent) -> None:
        with contextlib.suppress(RuntimeError):  # the sandbox is stopping
            self._workers.submit(self._attempt, item)

    def stop(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)

    def _attempt(self, item: AsyncEvent) -> None:
        try:
            self._run(item)
        except Exception:  # a worker thread's error would vanish: say it
            log.exception(
                "%s: the asynchronous invocation of %s failed", item.source, item.function
            )

    def _run(self, item: AsyncEvent) -> None:
        function = self.aws.function_code(item.function, self.region)
        if function is None:
            log.warning("%s: function %s does not exist", item.source, item.function)
            return
        config = event_invoke_config(function.name, self.region)
        maximum_age = int(config.get("MaximumEventAgeInSeconds", DEFAULT_MAXIMUM_EVENT_AGE_SECONDS))
        if item.attempts == 0:
            if item.admit is not None and not item.admit(function):
                return
            item.first_attempt = time.monotonic()
        elif item.age() > maximum_age and item.last is not None:
            self._give_up(item, function, config, EVENT_AGE_EXCEEDED, item.last)
            return
        invocation = self.aws.invoke_and_log(function, item.event, self.region, item.request_id)
        item.attempts += 1
        item.request_id = invocation.request_id
        item.last = invocation
        if not invocation.error:
            success = destination_of(config, "OnSuccess")
            if success is not None:
                record = invocation_record(function, item, "Success", invocation)
                log.info(
                    "%s: %s succeeded; its record goes to %s (Success)",
                    item.source,
                    function.name,
                    success,
                )
                self._deliver(item, function, success, record)
            return
        log.warning("%s: %s failed: %s", item.source, function.name, invocation.error)
        retries = int(config.get("MaximumRetryAttempts", DEFAULT_MAXIMUM_RETRY_ATTEMPTS))
        done = item.attempts - 1
        if done >= retries:
            self._give_up(item, function, config, RETRIES_EXHAUSTED, invocation)
            return
        delays = self.retry_delays if self.retry_delays is not None else ASYNC_RETRY_DELAYS
        delay = delays[min(done, len(delays) - 1)]
        stands_for = AWS_RETRY_DELAYS[min(done, len(AWS_RETRY_DELAYS) - 1)]
        log.info(
            "%s: Lambda retries %s in %g s (retry %d of %d, request %s)",
            item.source,
            function.name,
            delay,
            done + 1,
            retries,
            invocation.request_id,
        )
        timer = threading.Timer(delay, self._retry, args=(item, delay, stands_for))
        timer.daemon = True
        timer.start()

    def _retry(self, item: AsyncEvent, delay: float, stands_for: float) -> None:
        item.waited += delay
        item.stood_for += stands_for
        self.submit(item)

    def _give_up(
        self,
        item: AsyncEvent,
        function: FunctionCode,
        config: dict[str, Any],
        condition: str,
        invocation: Invocation,
    ) -> None:
        retries = item.attempts - 1
        destination = destination_of(config, "OnFailure")
        if condition == EVENT_AGE_EXCEEDED:
            why = (
                f"dropped the event after {retries} retries: it is {item.age():.0f} s old, "
                f"over its maximum age of {config.get('MaximumEventAgeInSeconds')} s"
            )
        else:
            why = f"dropped the event after {retries} retries"
        if destination is None:
            log.warning(
                "%s: %s %s (request %s)", item.source, function.name, why, invocation.request_id
            )
            return
        log.warning(
            "%s: %s %s; its record goes to %s (%s)",
            item.source,
            function.name,
            why,
            destination,
            condition,
        )
        self._deliver(
            item, function, destination, invocation_record(function, item, condition, invocation)
        )

    def _deliver(
        self, item: AsyncEvent, function: FunctionCode, destination: str, record: dict[str, Any]
    ) -> None:
        parts = destination.split(":")
        service = parts[2] if len(parts) > 2 and parts[0] == "arn" else ""
        condition = record["requestContext"]["condition"]
        if service == "lambda":
            name = destination.split(":function:")[-1].split(":")[0]
            chain = (*item.chain, function.name)
            if name in chain:
                log.warning(
                    "%s: the record of %s is not sent to %s: it is already in this chain of "
                    "destinations (%s)",
                    item.source,
                    function.name,
                    name,
                    " -> ".join(chain),
                )
                return
            if self.aws.function_code(destination, self.region) is None:
                _no_destination(item, destination, function.name, condition)
                return
            self.submit(
                AsyncEvent(
                    destination,
                    record,
                    source=f"{item.source} (destination of {function.name})",
                    chain=chain,
                )
            )
            return
        if service == "sns":
            message_id = self.aws.publish_to_topic(destination, json.dumps(record))
            if message_id is None:
                _no_destination(item, destination, function.name, condition)
            else:
                log.info(
                    "%s: the record of %s (%s) was published to %s (message %s)",
                    item.source,
                    function.name,
                    condition,
                    destination,
                    message_id,
                )
            return
        what = NOT_EMULATED_DESTINATIONS.get(service, f"this kind of destination ({service!r})")
        log.warning(
            "%s: the record of %s (%s) is not sent to %s: %s destinations are not emulated",
            item.source,
            function.name,
            condition,
            destination,
            what,
        )


def _no_destination(item: AsyncEvent, destination: str, function: str, condition: str) -> None:
    log.warning(
        "%s: destination %s does not exist: the record of %s (%s) is dropped "
        "(Lambda counts DestinationDeliveryFailures)",
        item.source,
        destination,
        function,
        condition,
    )
