"""Run a Lambda function's deployed zip locally, as the Lambda Python runtime would.

moto stores a function's code but can only run it in Docker, which this tool cannot assume. The
runner starts a worker process per function and code hash (``python -I`` with only the zip and the
interpreter's own site-packages, where boto3 lives, as in Lambda), keeps it warm between
invocations (one per concurrent invocation, up to ``MAX_WORKERS_PER_FUNCTION``), and starts new
ones when the code or environment changes. Each invocation gets a request id, a deadline and
Lambda's START/END log lines; the handler's output is its log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The worker: reads one JSON request per line on stdin, answers one JSON line on a private copy of
# stdout; the handler's prints and logs go to stderr, which is the function's log.
BOOTSTRAP = r"""
import importlib, json, logging, os, sys, time, traceback
zip_path, handler_spec = sys.argv[1], sys.argv[2]
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
sys.path.insert(0, zip_path)
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="[%(levelname)s]\t%(asctime)s\t%(message)s")
module_name, function_name = handler_spec.rsplit(".", 1)
handler = None
init_error = None
try:
    handler = getattr(importlib.import_module(module_name), function_name)
except Exception as exc:
    init_error = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                  "stackTrace": traceback.format_exc().splitlines()}

class Context:
    def __init__(self, request):
        self.aws_request_id = request["request_id"]
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.invoked_function_arn = request.get("function_arn", "")
        self.log_group_name = "/aws/lambda/" + self.function_name
        self._deadline = request["deadline"]
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.time()) * 1000))

for line in sys.stdin:
    request = json.loads(line)
    rid = request["request_id"]
    print(f"START RequestId: {rid} Version: $LATEST", file=sys.stderr, flush=True)
    started = time.time()
    if init_error is not None:
        answer = {"error": init_error}
    else:
        try:
            answer = {"payload": handler(request["event"], Context(request))}
        except Exception as exc:
            answer = {"error": {"errorMessage": str(exc), "errorType": type(exc).__name__,
                                "stackTrace": traceback.format_exc().splitlines()}}
    elapsed = (time.time() - started) * 1000
    print(f"END RequestId: {rid}", file=sys.stderr, flush=True)
    print(f"REPORT RequestId: {rid}\tDuration: {elapsed:.2f} ms", file=sys.stderr, flush=True)
    try:
        answers.write(json.dumps(answer, default=str) + "\n")
    except Exception as exc:
        answers.write(json.dumps({"error": {"errorMessage": "Unserializable result: " + str(exc),
                                            "errorType": "Runtime.SerializationError"}}) + "\n")
    answers.flush()
"""

LOG_TAIL_BYTES = 4096


@dataclass(frozen=True)
class FunctionCode:
    """What the runner needs of a deployed function (as moto stores it)."""

    name: str
    arn: str
    handler: str
    code: bytes = field(repr=False)
    environment: dict[str, str]
    timeout_seconds: int = 3
    memory_mb: int = 128

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.code)
        digest.update(json.dumps([self.handler, self.environment], sort_keys=True).encode())
        return digest.hexdigest()


@dataclass
class Invocation:
    request_id: str
    payload: Any = None
    error: dict[str, Any] | None = None
    log: str = ""
    cold: bool = False
    duration_ms: float = 0.0

    @property
    def log_tail_b64(self) -> str:
        return base64.b64encode(self.log.encode()[-LOG_TAIL_BYTES:]).decode()


class _Worker:
    """One warm process for one version of one function; invocations are serialised."""

    def __init__(self, function: FunctionCode, folder: Path, base_env: dict[str, str]) -> None:
        self.function = function
        self.fingerprint = function.fingerprint
        zip_path = folder / f"{function.name}-{self.fingerprint[:16]}.zip"
        if not zip_path.exists():
            zip_path.write_bytes(function.code)
        env = {
            **base_env,
            **function.environment,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", BOOTSTRAP, str(zip_path), function.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        self.lock = threading.Lock()
        self.invocations = 0
        self.retired = False  # replaced by a newer worker: takes no more invocations
        self._log_lines: list[str] = []
        self._log_ready = threading.Condition()
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._log_ready:
                self._log_lines.append(line)
                self._log_ready.notify_all()

    def _log_until_end(self, request_id: str, timeout: float) -> str:
        """The lines from this invocation's START to its REPORT line."""
        deadline = time.monotonic() + timeout
        with self._log_ready:
            while not any(f"REPORT RequestId: {request_id}" in line for line in self._log_lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    break
                self._log_ready.wait(remaining)
            lines, self._log_lines = self._log_lines, []
        return "".join(lines)

    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, event: Any, request_id: str) -> Invocation | None:
        """The invocation, or None if this worker was retired before it could take it."""
        with self.lock:
            if self.retired or not self.alive():  # the runner starts or finds another
                return None
            cold = self.invocations == 0
            self.invocations += 1
            started = time.monotonic()
            request = {
                "event": event,
                "request_id": request_id,
                "deadline": time.time() + self.function.timeout_seconds,
                "function_arn": self.function.arn,
            }
            assert self.process.stdin is not None and self.process.stdout is not None
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                return self._crashed(request_id, cold, started)
            answer_line = _read_line(self.process.stdout, self.function.timeout_seconds + 1)
            duration = (time.monotonic() - started) * 1000
            if answer_line is None:
                self.stop()
                log = self._log_until_end(request_id, 0.5)
                error = {
                    "errorMessage": f"Task timed out after {self.function.timeout_seconds} seconds",
                    "errorType": "Sandbox.Timeout",
                }
                return Invocation(request_id, None, error, log, cold, duration)
            if not answer_line:
                return self._crashed(request_id, cold, started)
            answer = json.loads(answer_line)
            log = self._log_until_end(request_id, 2.0)
            return Invocation(
                request_id, answer.get("payload"), answer.get("error"), log, cold, duration
            )

    def _crashed(self, request_id: str, cold: bool, started: float) -> Invocation:
        log = self._log_until_end(request_id, 0.5)
        error = {"errorMessage": "Runtime exited", "errorType": "Runtime.ExitError"}
        return Invocation(request_id, None, error, log, cold, (time.monotonic() - started) * 1000)

    def retire(self) -> None:
        """Stop once the invocation in progress, if any, has ended."""
        with self.lock:
            self.retired = True
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _read_line(stream: Any, timeout: float) -> str | None:
    """A line from ``stream``, '' at EOF, or None if none came within ``timeout`` seconds."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else None


# Lambda runs concurrent events of a function in execution environments of their own (up to the
# account's concurrency, 1,000 by default); the sandbox starts at most this many per function.
MAX_WORKERS_PER_FUNCTION = 4


class LambdaRunner:
    """Warm workers per function, one per concurrent invocation up to
    ``MAX_WORKERS_PER_FUNCTION``; a new code hash or environment retires the old ones."""

    def __init__(self, folder: Path, base_env: dict[str, str]) -> None:
        from iotbutton_cli.paths import ensure_private_dir

        self.folder = ensure_private_dir(folder)  # the deployed code is the sandbox owner's
        self.base_env = base_env
        self._workers: dict[str, list[_Worker]] = {}
        self._busy: set[_Worker] = set()
        self._changed = threading.Condition(threading.Lock())

    def invoke(
        self, function: FunctionCode, event: Any, request_id: str | None = None
    ) -> Invocation:
        """``request_id``: Lambda keeps an asynchronous event's id across its retries."""
        request_id = request_id or str(uuid.uuid4())
        while True:
            worker = self._take(function)
            try:
                invocation = worker.invoke(event, request_id)
            finally:
                with self._changed:
                    self._busy.discard(worker)
                    self._changed.notify_all()
            if invocation is not None:  # None: retired while this waited for it
                return invocation

    def warm(self, function: FunctionCode) -> bool:
        """Have a worker for this version of the function ready; True if one was started."""
        with self._changed:
            if self._current(function):
                return False
            self._start(function)
            return True

    def _take(self, function: FunctionCode) -> _Worker:
        """An idle worker for this version of the function, a new one if none is idle and there
        is room, else the first to become idle."""
        with self._changed:
            while True:
                current = self._current(function)
                idle = [worker for worker in current if worker not in self._busy]
                if idle:
                    worker = idle[0]
                elif len(current) < MAX_WORKERS_PER_FUNCTION:
                    worker = self._start(function)
                else:
                    self._changed.wait()
                    continue
                self._busy.add(worker)
                return worker

    def _current(self, function: FunctionCode) -> list[_Worker]:
        """The function's live workers for this code and settings; the others are retired,
        each once its invocation in progress has ended."""
        current = []
        for worker in self._workers.get(function.name, []):
            if worker.fingerprint == function.fingerprint and worker.alive():
                current.append(worker)
            else:
                threading.Thread(target=worker.retire, daemon=True).start()
        self._workers[function.name] = current
        return current

    def _start(self, function: FunctionCode) -> _Worker:
        worker = _Worker(function, self.folder, self.base_env)
        self._workers.setdefault(function.name, []).append(worker)
        return worker

    def stop(self) -> None:
        with self._changed:
            for workers in self._workers.values():
                for worker in workers:
                    worker.stop()
            self._workers.clear()


def minimal_environment() -> dict[str, str]:
    """Lambda starts functions with a clean environment; keep only what Python needs to run."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")
    return {name: os.environ[name] for name in keep if name in os.environ}
