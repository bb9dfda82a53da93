"""The sandbox's AWS API: moto's server, plus Lambda invocations that really run the code.

Every request must be signed (SigV4) with the sandbox's own key pair (:mod:`.sigv4`), or it is
refused in AWS's error shape (:mod:`.aws_refusal`); moto's management API (``/moto-api``, which
can reset the whole account) is never served.

moto answers every AWS call in-process. Lambda ``Invoke`` is the exception: moto would need
Docker, so this server intercepts it and runs the function's deployed zip with
:class:`LambdaRunner`, with the function's own environment, the sandbox's key pair as its role's
credentials, and its AWS endpoint pointed back here. What the function logs is
written to its CloudWatch log group in moto, as Lambda does, so ``notify logs`` shows it.
An asynchronous invocation (``InvocationType=Event``, or a topic rule's) goes through
:class:`~.async_invoke.AsyncInvoker`: retries, maximum age and destinations as the function's
event invoke config says. An SNS Publish moto accepts puts what its sms and email subscribers
would receive into the outbox (:mod:`.owner_messages`, ``on_owner_messages``).
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from iotbutton_cli.sandbox import (
    aws_refusal,
    csr_signing,
    function_urls,
    moto_fixes,
    owner_messages,
    prewarm,
    sigv4,
)
from iotbutton_cli.sandbox.async_invoke import AsyncEvent, AsyncInvoker
from iotbutton_cli.sandbox.lambda_runner import (
    FunctionCode,
    Invocation,
    LambdaRunner,
    minimal_environment,
)
from iotbutton_cli.sandbox.protocol import SANDBOX_ACCOUNT, SANDBOX_REGION

log = logging.getLogger("iotbutton.sandbox.aws")

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
# moto's management API: reset the account, change its behaviour. Never for callers to reach.
MOTO_API_PATH = re.compile(r"^/+moto-api(/|$)")
SERVER_THREADS = 16
# Idle keep-alive connections are closed after this long (checked every CLEANUP_INTERVAL), so
# connections nobody uses cannot pile up to the connection limit.
CHANNEL_TIMEOUT_SECONDS = 30
CLEANUP_INTERVAL_SECONDS = 5
# Connections at once: as many as open files allow, less some for everything else the process
# opens (MQTT clients, Lambda workers' pipes, the Twilio stand-in, logs).
MAX_CONNECTIONS = 10_000
FILES_KEPT_FREE = 256
# RSA keys made ahead of time for CreateKeysAndCertificate (see KeyPool).
KEY_POOL_SIZE = 16

# moto's backends are plain dicts and lists, not safe for threads: a request that iterates
# certificates while another creates one fails with "dictionary changed size during iteration".
# Every moto request, and every read of moto's state by the rest of the sandbox, holds this lock.
MOTO_LOCK = threading.RLock()

StartResponse = Callable[..., Any]


class SandboxAWS:
    """moto on a loopback port, with Lambda Invoke run locally."""

    def __init__(
        self,
        state_folder: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        keys: sigv4.KeyPair | None = None,
        channel_timeout: int = CHANNEL_TIMEOUT_SECONDS,
        cleanup_interval: int = CLEANUP_INTERVAL_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.state_folder = state_folder
        # The only key this server accepts; Lambda functions get it too, as a role's credentials.
        self.keys = keys or sigv4.KeyPair.generate()
        self.channel_timeout = channel_timeout
        self.cleanup_interval = cleanup_interval
        self.url = ""
        self.runner: LambdaRunner | None = None
        self.prewarmer: prewarm.Prewarmer | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.invocations: list[Invocation] = []
        # Set by the sandbox once its broker listens: what DescribeEndpoint answers for the data
        # endpoint, and where iot-data Publish hands a message (topic, payload, qos).
        self.data_endpoint_host: str | None = None
        self.on_data_publish: Callable[[str, bytes, int, bool], str | None] | None = None
        self.retained_messages: Callable[[], list[dict[str, Any]]] | None = None
        # Set by the sandbox: where the SNS messages a person would receive go (its outbox).
        self.on_owner_messages: Callable[[list[dict[str, Any]]], None] | None = None
        # Lambda's asynchronous queue: Invoke with InvocationType=Event, and the rules' actions.
        self.async_invoker = AsyncInvoker(self)

    def start(self) -> str:
        """Serve on a loopback port, with keep-alive connections (as AWS's endpoints have).

        waitress rather than werkzeug's development server: werkzeug closes every connection
        after one request, so each AWS call paid a new TCP connection and a new server thread.
        Its threads also serve Lambda invocations, whose code calls back into this server:
        enough of them that those calls never wait for each other. poll() rather than select(),
        which fails outright once a descriptor is past 1024; idle connections time out.
        """
        from moto.server import create_backend_app
        from waitress.server import create_server

        moto_app = _dispatcher(create_backend_app)
        KeyPool.install(KEY_POOL_SIZE)
        csr_signing.install()
        function_urls.install(lambda: self.url)
        moto_fixes.install()
        owner_messages.install()
        self._server = create_server(
            self._wsgi(moto_app),
            host=self.host,
            port=self.port,
            threads=SERVER_THREADS,
            ident="iotbutton-sandbox",
            connection_limit=connection_limit(),
            channel_timeout=self.channel_timeout,
            cleanup_interval=self.cleanup_interval,
            asyncore_use_poll=True,
        )
        self.port = int(self._server.effective_port)
        self.url = f"http://{self.host}:{self.port}"
        # The functions' AWS endpoint is this server: known once the port is.
        self.runner = LambdaRunner(self.state_folder / "lambda", self._function_env_base())
        self.prewarmer = prewarm.Prewarmer(self.function_code, self.runner.warm)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server.task_dispatcher.shutdown(timeout=1)
        self.async_invoker.stop()
        if self.prewarmer is not None:
            self.prewarmer.stop()
        if self.runner is not None:
            self.runner.stop()

    def _function_env_base(self) -> dict[str, str]:
        """What Lambda gives every function: its role's credentials (here, the sandbox's own key,
        so the notifier can read its config and secret) and the endpoint to use them on."""
        return {
            **minimal_environment(),
            "AWS_ACCESS_KEY_ID": self.keys.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.keys.secret_access_key,
            "AWS_ENDPOINT_URL": self.url,
        }

    def _wsgi(self, moto_app: Any) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if MOTO_API_PATH.match(environ.get("PATH_INFO", "")):
                log.warning("refused %s: moto's API is not served", _request_line(environ))
                return aws_refusal.not_found(start_response)
            url_call = function_urls.PATH.match(environ.get("PATH_INFO", ""))
            if url_call:  # a function URL is public: no signature, its own checks
                return self._function_url(environ, start_response, url_call)
            body = _read_body(environ)
            refusal = sigv4.verify(environ, body, self.keys)
            if refusal is not None:
                log.warning(
                    "refused %s: %s (%s)", _request_line(environ), refusal.reason, refusal.message
                )
                return aws_refusal.respond(refusal, environ, body, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            match = INVOKE_PATH.match(environ.get("PATH_INFO", ""))
            if match and environ.get("REQUEST_METHOD") == "POST":
                return self._invoke(environ, start_response, match.group("name"))
            answered = self._iot_data_plane(environ, body, start_response)
            if answered is not None:
                return answered
            service = _service_of(environ)
            if service == "sns":
                return self._sns(moto_app, environ, start_response)
            answer = _call_moto(moto_app, environ, start_response)
            if service == "lambda" and self.prewarmer is not None:
                prewarm.on_request(self.prewarmer, environ, body, _region_of(environ))
            return answer

        return app

    def _sns(
        self, moto_app: Any, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """moto's SNS, and the messages a Publish it accepts would bring people (the outbox)."""
        statuses: list[str] = []

        def remember(status: str, headers: Any, *args: Any) -> Any:
            statuses.append(status)
            return start_response(status, headers, *args)

        with owner_messages.capturing() as entries:
            answer = _call_moto(moto_app, environ, remember)
        if entries and statuses and statuses[0].startswith("2"):
            self._owner_messages(entries)
        return answer

    def _owner_messages(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            log.info(
                "SNS %s -> %s (%s, message %s)",
                entry["protocol"],
                entry["to"],
                entry["topic"] or "direct",
                entry["message_id"],
            )
        if self.on_owner_messages is not None:
            self.on_owner_messages(entries)

    def publish_to_topic(
        self, topic_arn: str, message: str, subject: str | None = None
    ) -> str | None:
        """Publish to an SNS topic in moto as a service does (a Lambda destination); its
        people's messages go to the outbox. The message id, or None if there is no such topic."""
        from moto.sns.models import sns_backends

        region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else SANDBOX_REGION
        with owner_messages.capturing() as entries:
            try:
                with MOTO_LOCK:
                    backend = sns_backends[SANDBOX_ACCOUNT][region]
                    if topic_arn not in backend.topics:
                        return None
                    message_id = str(backend.publish(message, arn=topic_arn, subject=subject))
            except Exception as exc:
                log.warning("could not publish to %s: %s", topic_arn, exc)
                return None
        if entries:
            self._owner_messages(entries)
        return message_id

    def _iot_data_plane(
        self, environ: dict[str, Any], body: bytes, start_response: StartResponse
    ) -> Iterable[bytes] | None:
        """What moto cannot answer truthfully: the data endpoint is the sandbox's broker (moto
        makes up an ``*.amazonaws.com`` name on every call), and an iot-data Publish reaches
        the broker's subscribers and the rules engine, as on AWS (moto only stores it)."""
        from urllib.parse import parse_qs, unquote

        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        service = _service_of(environ)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if service == "iot" and path == "/endpoint" and method == "GET" and self.data_endpoint_host:
            kind = query.get("endpointType", ["iot:Data"])[0]
            if kind in ("iot:Data-ATS", "iot:Data"):
                return _json_ok(start_response, {"endpointAddress": self.data_endpoint_host})
        if service == "iotdata" and path.startswith("/topics/") and method == "POST":
            if self.on_data_publish is None:
                return None
            topic = unquote(path[len("/topics/") :])
            qos = int(query.get("qos", ["0"])[0] or 0)
            retain = query.get("retain", ["false"])[0].lower() == "true"
            refusal = self.on_data_publish(topic, body, qos, retain)
            if refusal:
                log.info("refused iot-data Publish to %s: %s", topic, refusal)
                return _json_error(
                    start_response, "400 Bad Request", "InvalidRequestException", refusal
                )
            log.info("iot-data Publish to %s (%d bytes, QoS %d)", topic, len(body), qos)
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", "0")]
            )
            return [b""]
        if service == "iotdata" and path.startswith("/retainedMessage") and method == "GET":
            return self._retained(
                unquote(path[len("/retainedMessage") :].lstrip("/")), start_response
            )
        return None

    def _retained(self, topic: str, start_response: StartResponse) -> Iterable[bytes] | None:
        """ListRetainedMessages (no topic) and GetRetainedMessage, from the broker's store."""
        import base64

        if self.retained_messages is None:
            return None
        messages = self.retained_messages()
        if topic:
            found = next((m for m in messages if m["topic"] == topic), None)
            if found is None:
                return _json_error(
                    start_response,
                    "404 Not Found",
                    "ResourceNotFoundException",
                    f"No retained message for topic {topic}",
                )
            answer: dict[str, Any] = {
                **found,
                "payload": base64.b64encode(found["payload"]).decode("ascii"),
            }
        else:
            answer = {
                "retainedTopics": [
                    {
                        "topic": m["topic"],
                        "payloadSize": len(m["payload"]),
                        "qos": m["qos"],
                        "lastModifiedTime": m["lastModifiedTime"],
                    }
                    for m in messages
                ]
            }
        return _json_ok(start_response, answer)

    def _invoke(
        self, environ: dict[str, Any], start_response: StartResponse, name: str
    ) -> Iterable[bytes]:
        from urllib.parse import unquote

        region = _region_of(environ)
        function = self.function_code(unquote(name), region)
        if function is None:
            return _json_error(
                start_response,
                "404 Not Found",
                "ResourceNotFoundException",
                f"Function not found: {unquote(name)}",
            )
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            return _json_error(
                start_response,
                "400 Bad Request",
                "InvalidRequestContentException",
                "Could not parse request body into json",
            )
        invocation_type = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
        if invocation_type == "DryRun":
            start_response("204 No Content", [])
            return [b""]
        if invocation_type == "Event":
            self.async_invoker.submit(AsyncEvent(function.arn, event, source="Invoke"))
            start_response("202 Accepted", [("Content-Length", "0")])
            return [b""]
        invocation = self.invoke_and_log(function, event, region)
        payload = invocation.error if invocation.error else invocation.payload
        data = json.dumps(payload).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("X-Amz-Executed-Version", "$LATEST"),
        ]
        if invocation.error:
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        if environ.get("HTTP_X_AMZ_LOG_TYPE") == "Tail":
            headers.append(("X-Amz-Log-Result", invocation.log_tail_b64))
        start_response("200 OK", headers)
        return [data]

    def _function_url(
        self, environ: dict[str, Any], start_response: StartResponse, call: re.Match[str]
    ) -> Iterable[bytes]:
        """A request to a function URL, answered as Lambda answers it (see function_urls)."""
        from moto.awslambda.models import lambda_backends

        name, region = call.group("name"), SANDBOX_REGION
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > function_urls.MAX_BODY_BYTES:
            return function_urls.too_large(start_response)
        body = environ["wsgi.input"].read(length) if length else b""
        with MOTO_LOCK:
            backend = lambda_backends[SANDBOX_ACCOUNT][region]
            try:
                auth_type = function_urls.url_auth_type(backend.get_function(name))
            except Exception:
                auth_type = None
            try:
                policy = json.loads(backend.get_policy(name))
            except Exception:  # no policy at all
                policy = {}
        if "Policy" in policy:
            policy = json.loads(policy["Policy"])
        if auth_type is None:
            return function_urls.not_found(start_response)
        if auth_type != "NONE" or not function_urls.public_url_allowed(policy):
            log.info(
                "refused %s: the function URL of %s is not public", _request_line(environ), name
            )
            return function_urls.forbidden(start_response)
        function = self.function_code(name, region)
        if function is None:
            return function_urls.not_found(start_response)
        event = function_urls.event_for(environ, body, call.group("rest") or "/", SANDBOX_ACCOUNT)
        invocation = self.invoke_and_log(function, event, region)
        return function_urls.respond(invocation.payload, invocation.error, start_response)

    def parameter_value(self, name: str, region: str = SANDBOX_REGION) -> str | None:
        """The current (decrypted) value of an SSM parameter in moto, or None if there is none."""
        from moto.ssm.models import ssm_backends

        with MOTO_LOCK:
            try:
                parameter = ssm_backends[SANDBOX_ACCOUNT][region].get_parameter(name)
            except Exception:
                return None
            if parameter is None:
                return None
            value = parameter.decrypt(parameter.value)
        return None if value is None else str(value)

    def object_bytes(self, bucket: str, key: str) -> bytes | None:
        """An S3 object's content in moto, or None if the bucket or the object is not there."""
        from moto.s3.models import s3_backends

        with MOTO_LOCK:
            try:
                found = s3_backends[SANDBOX_ACCOUNT]["aws"].get_object(bucket, key)
            except Exception:  # no such bucket
                return None
            return None if found is None else bytes(found.value)

    def function_code(self, name_or_arn: str, region: str) -> FunctionCode | None:
        """The deployed code and settings of a function, straight from moto's backend."""
        from moto.awslambda.models import lambda_backends

        name = name_or_arn.split(":function:")[-1].split(":")[0]
        try:
            with MOTO_LOCK:
                function = lambda_backends[SANDBOX_ACCOUNT][region].get_function(name)
        except Exception:
            return None
        return FunctionCode(
            name=function.function_name,
            arn=function.function_arn,
            handler=str(function.handler),
            code=function.code_bytes,
            environment={
                **function.environment_vars,
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
            },
            timeout_seconds=int(function.timeout),
            memory_mb=int(function.memory_size),
        )

    def invoke_and_log(
        self, function: FunctionCode, event: Any, region: str, request_id: str | None = None
    ) -> Invocation:
        assert self.runner is not None
        invocation = self.runner.invoke(function, event, request_id)
        self.invocations.append(invocation)
        log.info(
            "invoked %s (%s, %.0f ms)%s",
            function.name,
            "cold" if invocation.cold else "warm",
            invocation.duration_ms,
            " with error" if invocation.error else "",
        )
        self._write_log(function.name, region, invocation)
        return invocation

    def _write_log(self, function_name: str, region: str, invocation: Invocation) -> None:
        """Append the invocation's log to a new stream of /aws/lambda/<name>, as Lambda does.

        The group itself is not created: the notifier's role may create streams, not groups
        (iotbutton makes the group, tagged, at deploy), so on AWS a missing group means a lost
        log, not an untagged group that the next deploy would refuse as someone else's."""
        from moto.logs.models import logs_backends

        backend = logs_backends[SANDBOX_ACCOUNT][region]
        group = f"/aws/lambda/{function_name}"
        stream = time.strftime("%Y/%m/%d/[$LATEST]") + invocation.request_id.replace("-", "")
        now = int(time.time() * 1000)
        events = [
            {"timestamp": now, "message": line}
            for line in invocation.log.splitlines()
            if line.strip()
        ]
        try:
            with MOTO_LOCK:
                if group not in backend.groups:
                    log.warning("no log group %s: the invocation's log is lost", group)
                    return
                if stream not in backend.groups[group].streams:  # a retry writes on in it
                    backend.create_log_stream(group, stream)
                if events:
                    backend.put_log_events(group, stream, events)
        except Exception as exc:  # logs are a convenience; never fail an invocation over them
            log.warning("could not store the log of %s: %s", function_name, exc)


class KeyPool:
    """RSA keys for moto's CreateKeysAndCertificate, made ahead of time by a background thread.

    moto makes a 2048-bit key inside the call (about 50 ms of CPU), which under MOTO_LOCK would
    hold up every other request; AWS does not make callers wait for that either. A call takes a
    ready key (or, with none ready, makes one as moto would); the thread refills the pool
    whenever it runs low. The keys are as real as moto's: cryptography's, one per certificate.

    The thread starts with the first call, not with the sandbox: iotbutton itself never calls
    CreateKeysAndCertificate (it has AWS sign keys it made, see csr_signing.py), and 16 keys
    made at every start were most of the CPU a sandbox start took.
    """

    def __init__(self, size: int) -> None:
        import queue

        from cryptography.hazmat.primitives.asymmetric import rsa

        self._rsa = rsa
        self._ready: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._filling = threading.Event()
        self._starting = threading.Lock()

    @classmethod
    def install(cls, size: int) -> None:
        import moto.iot.models as iot_models

        if not isinstance(iot_models.rsa, cls):
            iot_models.rsa = cls(size)  # type: ignore[assignment]

    def _fill(self) -> None:
        while True:
            self._ready.put(self._rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def generate_private_key(self, public_exponent: int, key_size: int, backend: Any = None) -> Any:
        import queue

        if (public_exponent, key_size) == (65537, 2048):
            with self._starting:
                if not self._filling.is_set():
                    self._filling.set()
                    threading.Thread(target=self._fill, name="rsa-key-pool", daemon=True).start()
            try:
                return self._ready.get_nowait()
            except queue.Empty:
                pass
        return self._rsa.generate_private_key(public_exponent=public_exponent, key_size=key_size)


def reset_moto() -> None:
    """Empty every moto backend in this process, as moto's /moto-api/reset did (which this
    server no longer serves): for tests and benchmarks that run the server in-process."""
    from moto.moto_api._internal.models import moto_api_backend

    with MOTO_LOCK:
        moto_api_backend.reset()


def connection_limit() -> int:
    """How many connections waitress may hold: what RLIMIT_NOFILE allows, less a margin."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(64, min(MAX_CONNECTIONS, soft - FILES_KEPT_FREE))


def _call_moto(
    moto_app: Any, environ: dict[str, Any], start_response: StartResponse
) -> list[bytes]:
    with MOTO_LOCK:
        body = moto_app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _request_line(environ: dict[str, Any]) -> str:
    return f"{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '')[:200]}"


def _dispatcher(create_app: Callable[..., Any]) -> Any:
    """moto's request dispatcher, remembering which service a host name belongs to.

    moto works that out for every request by listing its own package folder (a stat per
    service) and trying hundreds of URL patterns, under one lock: about 5 ms that serialized the
    whole sandbox. A host's service never changes, so the answer is kept.
    """
    from moto.server import DomainDispatcherApplication

    class RememberingDispatcher(DomainDispatcherApplication):
        def __init__(self, create_app: Callable[..., Any]) -> None:
            super().__init__(create_app)
            self._backend_of: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            if host not in self._backend_of:
                self._backend_of[host] = super().get_backend_for_host(host)
            return self._backend_of[host]

    return RememberingDispatcher(create_app)


def _service_of(environ: dict[str, Any]) -> str:
    """The service from the request's SigV4 credential scope (…/<region>/<service>/aws4_request)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/", authorization)
    return match.group(1) if match else ""


def _region_of(environ: dict[str, Any]) -> str:
    """The region from the request's SigV4 credential scope (…/<date>/<region>/lambda/…)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/", authorization)
    return match.group(1) if match else "us-east-1"


def _json_ok(start_response: StartResponse, answer: Any) -> Iterable[bytes]:
    """A 200 answer with a JSON body."""
    data = json.dumps(answer).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _json_error(
    start_response: StartResponse, status: str, error_type: str, message: str
) -> Iterable[bytes]:
    data = json.dumps({"Type": "User", "message": message}).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("X-Amzn-ErrorType", error_type),
            ("Content-Length", str(len(data))),
        ],
    )
    return [data]
