"""Start a function's worker as soon as its code or settings settle, before the first event.

Lambda "may proactively initialize" an execution environment ahead of invocations (the Lambda
developer guide, "Understanding the Lambda execution environment lifecycle"). The sandbox does
so for every function that CreateFunction, UpdateFunctionCode or UpdateFunctionConfiguration
changed, once no further change to it came for ``QUIET_SECONDS`` (a deploy changes a function
several times in a row): the first click then finds the handler imported instead of paying a
Python start and its imports (about 1 s on a 2-core machine). The first invocation is still
reported cold, with its init, as it would be on Lambda. A worker that is busy is never replaced
from here: an update reaches it at its next invocation, as before.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iotbutton_cli.sandbox.lambda_runner import FunctionCode

log = logging.getLogger("iotbutton.sandbox")

QUIET_SECONDS = 0.3
# /2015-03-31/functions (Create) and /2015-03-31/functions/<name>/code|configuration (Update*).
CHANGES = re.compile(r"^/2015-03-31/functions(?:/(?P<name>[^/]+)/(?:code|configuration))?/?$")


def changed_function(method: str, path: str, body: bytes) -> str | None:
    """The function a Lambda request creates or updates, or None if it changes none."""
    match = CHANGES.match(path)
    if match is None:
        return None
    if match.group("name"):
        return match.group("name") if method == "PUT" else None
    if method != "POST":
        return None
    import json

    try:
        name = json.loads(body or b"{}").get("FunctionName")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


class Prewarmer:
    """Warms each changed function once it has been quiet for ``quiet`` seconds."""

    def __init__(
        self,
        function_code: Callable[[str, str], FunctionCode | None],
        warm: Callable[[FunctionCode], bool],
        quiet: float = QUIET_SECONDS,
    ) -> None:
        self._function_code = function_code
        self._warm = warm
        self._quiet = quiet
        self._due: dict[tuple[str, str], float] = {}
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def changed(self, name: str, region: str) -> None:
        from urllib.parse import unquote

        with self._wake:
            if self._stopped:
                return
            self._due[(unquote(name), region)] = time.monotonic() + self._quiet
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True)
                self._thread.start()
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped:
                    now = time.monotonic()
                    ready = [key for key, due in self._due.items() if due <= now]
                    if ready:
                        break
                    wait = min(self._due.values(), default=now + 60) - now
                    self._wake.wait(max(0.01, wait))
                if self._stopped:
                    return
                for key in ready:
                    del self._due[key]
            for name, region in ready:
                self._warm_one(name, region)

    def _warm_one(self, name: str, region: str) -> None:
        try:
            function = self._function_code(name, region)
            if function is not None and self._warm(function):
                log.info("started a worker for %s ahead of its first invocation", function.name)
        except Exception as error:  # a warm-up is only ever a head start
            log.warning("could not start a worker for %s ahead of time: %s", name, error)


def on_request(prewarmer: Prewarmer, environ: dict[str, Any], body: bytes, region: str) -> None:
    """Note a Lambda request that may have changed a function."""
    name = changed_function(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), body)
    if name is not None:
        prewarmer.changed(name, region)
