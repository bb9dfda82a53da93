"""The sandbox process: AWS (moto), an MQTT broker, the rules engine, Twilio and a webhook sink,
on loopback.

Run by ``iotbutton sandbox start`` as ``python -m iotbutton_cli.sandbox.server --state-dir DIR``.
It writes ``sandbox.json`` (pid and what identifies the process, ports, CA file, and the AWS key
pair its AWS port accepts) into DIR, 0600, once every part listens, and removes it when it stops
(SIGTERM or Ctrl-C). Other local users can reach the ports but not that file: the AWS port wants
the key pair, the Twilio stand-in the deployed Twilio account and secret, the MQTT broker a
device certificate. The webhook sink takes anyone's posts, as a webhook URL does, but only
files in DIR control it.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iotbutton_cli.sandbox.protocol import SANDBOX_ACCOUNT as ACCOUNT
from iotbutton_cli.sandbox.protocol import SANDBOX_REGION as REGION
from iotbutton_cli.sandbox.protocol import STATE_FILE, SandboxInfo

if TYPE_CHECKING:
    from iotbutton_cli.sandbox.aws_server import SandboxAWS
    from iotbutton_cli.sandbox.lambda_runner import FunctionCode
    from iotbutton_cli.sandbox.rules_engine import Rule
    from iotbutton_cli.sandbox.twilio import TwilioAccount

log = logging.getLogger("iotbutton.sandbox")

OUTBOX_FILE = "outbox.jsonl"
MQTT_HOST = "localhost"  # the name the broker's certificate carries, sent as SNI


class Sandbox:
    """Every part of the sandbox in one process; the rules engine links the broker to Lambda."""

    def __init__(
        self,
        state_dir: Path,
        aws_port: int = 0,
        mqtt_port: int = 0,
        twilio_port: int = 0,
        time_scale: float | None = None,
        hooks_port: int = 0,
    ) -> None:
        self.state_dir = state_dir
        self.ports = (aws_port, mqtt_port, twilio_port)
        self.hooks_port = hooks_port
        self.time_scale = time_scale
        self.state: SandboxInfo | None = None
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> SandboxInfo:
        from iotbutton_cli.notifier_lambda.contract import SECRET_PARAMETER
        from iotbutton_cli.paths import ensure_private_dir
        from iotbutton_cli.sandbox.aws_server import SandboxAWS
        from iotbutton_cli.sandbox.broker import Broker, MotoDirectory
        from iotbutton_cli.sandbox.process_identity import identity
        from iotbutton_cli.sandbox.scheduler import Scheduler
        from iotbutton_cli.sandbox.tls import ensure_ca
        from iotbutton_cli.sandbox.twilio import DEFAULT_TIME_SCALE, TwilioStandIn
        from iotbutton_cli.sandbox.webhook_sink import WebhookSink

        ensure_private_dir(self.state_dir)
        aws_port, mqtt_port, twilio_port = self.ports
        self.aws = SandboxAWS(self.state_dir, port=aws_port)
        with _listening("aws", aws_port):
            aws_url = self.aws.start()
        # A new sandbox has an empty account, so its outbox starts empty too.
        (self.state_dir / OUTBOX_FILE).unlink(missing_ok=True)
        aws = self.aws
        # Twilio's stand-in accepts what Twilio would: the account the notifier was deployed for
        # (its config names it, and the From number it owns), with the secret it was deployed
        # with.
        self.twilio = TwilioStandIn(
            outbox_path=self.state_dir / OUTBOX_FILE,
            port=twilio_port,
            deployed_secret=lambda: twilio_secret(aws.parameter_value(SECRET_PARAMETER, REGION)),
            deployed_account=lambda: deployed_twilio_account(aws),
            time_scale=self.time_scale or DEFAULT_TIME_SCALE,
        )
        with _listening("twilio", twilio_port):
            twilio_url = self.twilio.start()
        # What SNS would bring people (an SMS, an email) goes to the same outbox, one writer.
        self.aws.on_owner_messages = self.twilio.add_to_outbox
        # Where the notifier's webhooks and Slack posts go; it records them in hooks.jsonl.
        self.hooks = WebhookSink(self.state_dir, port=self.hooks_port)
        with _listening("hooks", self.hooks_port):
            self.hooks.start()
        ca = ensure_ca(self.state_dir / "tls")
        self.broker = Broker(
            MotoDirectory(ACCOUNT, REGION),
            ca,
            REGION,
            ACCOUNT,
            mqtt_port,
            self.on_publish,
            on_basic_ingest=self.on_basic_ingest,
        )
        self._loop_thread.start()
        with _listening("mqtt", mqtt_port):
            port = asyncio.run_coroutine_threadsafe(self.broker.start(), self._loop).result(30)
        self.aws.data_endpoint_host = MQTT_HOST
        self.aws.on_data_publish = self._publish_from_http
        self.aws.retained_messages = self.broker.retained
        # EventBridge Scheduler: moto stores the schedules, this runs them (see scheduler.py).
        self.scheduler = Scheduler(self.aws.async_invoker)
        self.scheduler.start()
        self.state = SandboxInfo(
            pid=os.getpid(),
            aws_url=aws_url,
            mqtt_host=MQTT_HOST,
            mqtt_port=port,
            ca_file=str(ca.ca_cert),
            twilio_url=twilio_url,
            outbox=str(self.state_dir / OUTBOX_FILE),
            region=REGION,
            account=ACCOUNT,
            access_key_id=self.aws.keys.access_key_id,
            secret_access_key=self.aws.keys.secret_access_key,
            process=identity(os.getpid()) or {},
            time_scale=self.twilio.time_scale,
            hooks_port=self.hooks.port,
        )
        return self.state

    def _publish_from_http(self, topic: str, payload: bytes, qos: int, retain: bool) -> str | None:
        publish = self.broker.publish_from_http(topic, payload, qos, retain)
        return asyncio.run_coroutine_threadsafe(publish, self._loop).result(10)

    def on_publish(self, topic: str, payload: bytes, client_id: str) -> None:
        """Every authorized publish goes through the topic rules stored in moto."""
        from iotbutton_cli.sandbox.rules_engine import evaluate, rules_from_moto

        received_ms = int(time.time() * 1000)  # one receive time for every rule, as IoT's
        for rule in rules_from_moto(ACCOUNT, REGION):
            message = evaluate(rule, topic, payload, received_ms)
            if message is not None:
                log.info("rule %s matched %s from %s", rule.name, topic, client_id)
                self._run_actions(rule, message)

    def on_basic_ingest(self, rule_name: str, topic: str, payload: bytes, client_id: str) -> None:
        """A publish to ``$aws/rules/<rule_name>/<topic>``: that rule alone, its FROM not matched,
        ``topic()`` seeing ``topic`` (IoT Core's Basic Ingest). An unknown or disabled rule
        drops the message; IoT Core logs RuleNotFound to CloudWatch, the sandbox to its log."""
        import dataclasses

        from iotbutton_cli.sandbox.rules_engine import evaluate, rules_from_moto

        rule = next((r for r in rules_from_moto(ACCOUNT, REGION) if r.name == rule_name), None)
        if rule is None or not rule.enabled:
            log.info(
                "Basic Ingest from %s to rule %s dropped: %s (RuleNotFound)",
                client_id,
                rule_name,
                "no such rule" if rule is None else "the rule is disabled",
            )
            return
        # Every topic matches "#": the rule's own FROM filter is not what picks it.
        statement = dataclasses.replace(rule.statement, topic_filter="#")
        message = evaluate(dataclasses.replace(rule, statement=statement), topic, payload)
        if message is not None:
            log.info("rule %s got %s by Basic Ingest from %s", rule.name, topic, client_id)
            self._run_actions(rule, message)

    def _run_actions(self, rule: Rule, message: dict[str, Any]) -> None:
        for action in rule.other_actions:
            log.info("rule %s: %s actions are not emulated", rule.name, action)
        for arn in rule.lambda_arns:
            self._run_lambda_action(rule.name, arn, message)

    def _run_lambda_action(self, rule_name: str, function_arn: str, message: Any) -> None:
        """IoT invokes the function asynchronously, if its resource policy lets the rule: Lambda
        queues the event, retries it and sends its record on as the function's event invoke
        config says (see async_invoke). A click never waits for the function."""
        from iotbutton_cli.sandbox.async_invoke import AsyncEvent

        rule_arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:rule/{rule_name}"

        def may_invoke(function: FunctionCode) -> bool:
            if iot_may_invoke(function.name, rule_arn):
                return True
            # What AWS does too: without the permission, the rule silently never invokes.
            log.warning(
                "rule %s may not invoke %s (no lambda:AddPermission for it)",
                rule_name,
                function.name,
            )
            return False

        self.aws.async_invoker.submit(
            AsyncEvent(function_arn, message, source=f"rule {rule_name}", admit=may_invoke)
        )

    def stop(self) -> None:
        if hasattr(self, "scheduler"):
            self.scheduler.stop()
        if hasattr(self, "broker"):
            asyncio.run_coroutine_threadsafe(self.broker.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if hasattr(self, "twilio"):
            self.twilio.stop()
        if hasattr(self, "hooks"):
            self.hooks.stop()
        if hasattr(self, "aws"):
            self.aws.stop()


def deployed_twilio_account(aws: SandboxAWS) -> TwilioAccount | None:
    """The Twilio account the deployed notifier's config names, as the Twilio stand-in plays it
    (the account SID, the user that authenticates for it, and the From number it owns); None
    while no notifier with a readable config is deployed. Read from moto at each call, so a new
    deploy counts at once."""
    from iotbutton_cli.notifier_lambda.contract import (
        CONFIG_BUCKET_ENV,
        CONFIG_KEY_ENV,
        FUNCTION_NAME,
        ConfigError,
        parse_config,
    )
    from iotbutton_cli.sandbox.twilio import TwilioAccount

    function = aws.function_code(FUNCTION_NAME, REGION)
    if function is None:
        return None
    bucket = function.environment.get(CONFIG_BUCKET_ENV, "")
    key = function.environment.get(CONFIG_KEY_ENV, "")
    raw = aws.object_bytes(bucket, key) if bucket and key else None
    if raw is None:
        return None
    try:
        config = parse_config(json.loads(raw))
    except (ValueError, ConfigError):
        return None
    return TwilioAccount.of(config.account_sid, config.api_key_sid, [config.sender])


def twilio_secret(stored: str | None) -> str | None:
    """The Twilio part of the deployed secret (which may carry webhook secrets too)."""
    from iotbutton_cli.notifier_lambda.hook_settings import HookSettingsError, split_secret

    if stored is None:
        return None
    try:
        return split_secret(stored.strip()).twilio
    except HookSettingsError:
        return None


class PortInUse(OSError):
    """A part of the sandbox could not listen on the port it was given."""

    def __init__(self, part: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"the {part} port {port} is already in use")
        self.part, self.port = part, port


@contextmanager
def _listening(part: str, port: int) -> Iterator[None]:
    """Name the part and the port when binding fails (the OS says only "Address already in
    use"); the client reads this line from the log (see client.PORT_IN_USE)."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE or "address already in use" in str(exc).lower():
            raise PortInUse(part, port) from exc
        raise


def iot_may_invoke(function_name: str, rule_arn: str) -> bool:
    """True if the function's resource policy lets iot.amazonaws.com invoke it for this rule."""
    from moto.awslambda.models import lambda_backends

    from iotbutton_cli.sandbox.aws_server import MOTO_LOCK

    try:
        with MOTO_LOCK:
            policy = json.loads(lambda_backends[ACCOUNT][REGION].get_policy(function_name))
    except Exception:  # no policy at all
        return False
    if "Policy" in policy:  # moto answers as the GetPolicy API does: the document as a string
        policy = json.loads(policy["Policy"])
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal", {})
        service = principal.get("Service") if isinstance(principal, dict) else principal
        source = statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
        if (
            service == "iot.amazonaws.com"
            and statement.get("Effect") == "Allow"
            and (source in (None, rule_arn))
        ):
            return True
    return False


def write_state(state_dir: Path, state: SandboxInfo) -> Path:
    from iotbutton_cli.paths import write_private_file

    path = state_dir / STATE_FILE
    write_private_file(path, json.dumps(state.state(), indent=2) + "\n")
    return path


def raise_open_file_limit(wanted: int = 65_536) -> None:
    """Every connection is a descriptor: allow as many as the hard limit lets a process have
    (the soft limit is often 1024, the hard one far more), so the AWS port's connection limit
    (see aws_server.connection_limit) is not the first thing idle clients exhaust."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below the hard limit
            log.debug("could not raise the open-file limit to %s: %s", target, exc)


def argument_parser() -> argparse.ArgumentParser:
    """Parses what ``protocol.server_args`` builds."""
    parser = argparse.ArgumentParser(prog="iotbutton-sandbox")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--aws-port", type=int, default=0)
    parser.add_argument("--mqtt-port", type=int, default=0)
    parser.add_argument("--twilio-port", type=int, default=0)
    parser.add_argument("--hooks-port", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for chatty in ("amqtt", "transitions", "waitress"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    raise_open_file_limit()
    sandbox = Sandbox(
        args.state_dir,
        args.aws_port,
        args.mqtt_port,
        args.twilio_port,
        args.time_scale,
        hooks_port=args.hooks_port,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        state = sandbox.start()
    except (OSError, ValueError) as exc:  # ValueError: a time scale out of (0, 1]
        log.error("cannot start the sandbox: %s", exc)
        sandbox.stop()
        return 1
    state_path = write_state(args.state_dir, state)
    log.info("sandbox ready: %s", json.dumps(state.loggable()))
    if os.environ.get(AHEAD_ENV, "1") != "0":
        threading.Thread(target=import_ahead, daemon=True).start()
    try:
        stopping.wait()
    finally:
        state_path.unlink(missing_ok=True)
        sandbox.stop()
        log.info("sandbox stopped")
    return 0


# moto imports a service's models at its first request, and reads botocore's description of the
# service (its service-2.json) and builds its request router then: SSM's models bring EC2's
# (about 1 s of CPU, which made a first deploy's first SSM call take 1.3 s), and the services a
# provision and a deploy use cost about 0.7 s more. Done once the sandbox answers, in this order.
# "0": skip it (a test suite that starts hundreds of sandboxes, most of which never deploy,
# saves about 1.5 s of CPU each).
AHEAD_ENV = "IOTBUTTON_SANDBOX_AHEAD"
SERVICES_AHEAD = (
    ("sts", "sts"),
    ("iot", "iot"),
    ("iam", "iam"),
    ("s3", "s3"),
    ("ssm", "ssm"),
    ("dynamodb", "dynamodb"),
    ("awslambda", "lambda"),
    ("logs", "logs"),
    ("sns", "sns"),
    ("cloudwatch", "cloudwatch"),
    ("scheduler", "scheduler"),
)


def import_ahead() -> None:
    """Import and load what the moto services a provision and a deploy use need, while nothing
    is asked of them."""
    import importlib

    from moto.core.routing import get_service_router
    from moto.core.utils import get_service_model

    for package, service in SERVICES_AHEAD:
        try:
            importlib.import_module(f"moto.{package}.models")
            importlib.import_module(f"moto.{package}.responses")
            get_service_router(service)._get_router(get_service_model(service).protocol)
        except Exception as error:  # the request that needs it loads it, and says why
            log.warning("could not prepare moto's %s ahead: %s", service, error)


def exit_now(status: int) -> None:
    """Exit once the log is flushed, without Python's finalization: every part is stopped and
    every file written by now, and tearing down moto's objects took about 0.9 s after
    "sandbox stopped", which `sandbox stop` (and every demo) waited for."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
