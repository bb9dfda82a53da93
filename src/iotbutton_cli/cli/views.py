"""What ``--json`` prints: one function per result, naming every key it writes.

These are the documented JSON shapes (docs/reference.md, pinned by tests/test_json_views.py).
They read the service layer's results field by field and never dump a dataclass whole, so
renaming a service field is a type error here, not a silent change to a promised output.
Values are plain JSON types (paths become strings).

Only type names are imported from the services, so loading this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iotbutton_cli.demo import DemoOutcome
    from iotbutton_cli.device.simulator import Published, Received
    from iotbutton_cli.errors import IotButtonError
    from iotbutton_cli.lifecycle.teardown import CleanReport, Step
    from iotbutton_cli.notify.ack import AckResult
    from iotbutton_cli.notify.bundle import Bundle
    from iotbutton_cli.notify.config import NotifyConfig, TwilioSecret
    from iotbutton_cli.notify.deploy import DeployReport, StepResult
    from iotbutton_cli.notify.history import Alarm, Delivery, Escalation
    from iotbutton_cli.notify.ops import LogEvent, NotifierStatus, SendResult, TestInvocation
    from iotbutton_cli.notify.plan import Plan
    from iotbutton_cli.notify.release import ReleaseResult
    from iotbutton_cli.notify.retry import RetryResult
    from iotbutton_cli.notify.rules import RuleInfo
    from iotbutton_cli.provisioning.certs import CertificateInfo
    from iotbutton_cli.provisioning.endpoint import Endpoint
    from iotbutton_cli.provisioning.shadows import ShadowReading
    from iotbutton_cli.provisioning.things import (
        Button,
        DeleteReport,
        ProvisionReport,
        ProvisionResult,
    )
    from iotbutton_cli.sandbox.client import SandboxInfo, Started
    from iotbutton_cli.sandbox.twilio_phones import PhoneBehaviour
    from iotbutton_cli.sandbox.webhook_sink import Controls

View = dict[str, Any]


# -- errors -------------------------------------------------------------------------------------


# `things show` and `certs show`, for a certificate whose key never left its device.
DEVICE_KEY_ROW = ["private key", "on the device (its certificate came from a CSR)"]


def error_view(error: IotButtonError) -> View:
    """The ``error`` of every JSON failure."""
    return {
        "code": error.code,
        "message": error.message,
        "hint": error.hint,
        "exit_status": int(error.exit_status),
    }


def _error_record_view(error: dict[str, Any] | None) -> View | None:
    """An error a service kept as ``IotButtonError.as_dict()`` (a failed button)."""
    if error is None:
        return None
    return {
        "code": error.get("code"),
        "message": error.get("message"),
        "hint": error.get("hint"),
        "exit_status": error.get("exit_status"),
    }


def _files_view(files: dict[str, str]) -> dict[str, str]:
    """A button's key files by role (certificate, private_key, public_key): paths as text."""
    return {str(role): str(path) for role, path in files.items()}


# -- things -------------------------------------------------------------------------------------


def provision_result_view(result: ProvisionResult) -> View:
    return {
        "serial": result.serial,
        "action": result.action,
        "certificate_id": result.certificate_id,
        "error": _error_record_view(result.error),
    }


def provision_report_view(report: ProvisionReport) -> View:
    """``things create``."""
    return {
        "policy": report.policy,
        "thing_type": report.thing_type,
        "buttons": [provision_result_view(button) for button in report.buttons],
        "half_done_left": report.half_done_left,
    }


def button_view(button: Button, shadow: ShadowReading | None = None) -> View:
    """One of ``things list``: the recorded button, and its last click from its shadow."""
    return {
        "serial": button.serial,
        "thing_arn": button.thing_arn,
        "thing_type": button.thing_type,
        "created": button.created,
        "certificate_id": button.certificate_id,
        "certificate_arn": button.certificate_arn,
        "certificate_status": button.certificate_status,
        "half_done": button.half_done,
        "files": _files_view(button.files),
        "root_ca": str(button.root_ca),
        "last_click": _last_click_view(shadow),
        "shadow_error": shadow.error if shadow else None,
    }


def _last_click_view(shadow: ShadowReading | None) -> View | None:
    """What the notifier last reported on the button's shadow; None: nothing (or unreadable)."""
    click = shadow.last_click if shadow else None
    if click is None:
        return None
    return {
        "type": click.type,
        "time": click.time,
        "outcome": click.outcome,
        "battery": click.battery,
        "battery_mv": click.battery_mv,
        "alarm": click.alarm,
    }


def button_detail_view(
    button: Button, live: dict[str, Any], shadow: ShadowReading | None = None
) -> View:
    """``things show``: the recorded button and what AWS says about its thing now."""
    return {
        **button_view(button, shadow),
        "aws": {
            "exists": live["exists"],
            "attributes": dict(live["attributes"]),
            "version": live["version"],
        },
    }


def button_deleted_view(serial: str, report: DeleteReport) -> View:
    """``things delete``."""
    return {
        "serial": serial,
        "deleted": True,
        "certificates": list(report.certificates),
        "already_gone": list(report.already_gone),
        "certificates_left": dict(report.certificates_left),
        "files_left": {str(path): reason for path, reason in report.files_left.items()},
    }


# -- certs --------------------------------------------------------------------------------------


def certificate_view(cert: CertificateInfo) -> View:
    """``certs show``, and one of ``certs list``."""
    return {
        "certificate_id": cert.certificate_id,
        "arn": cert.arn,
        "serial": cert.serial,
        "status": cert.status,
        "created": cert.created,
        "files": _files_view(cert.files),
        "current": cert.current,
    }


def certificate_rotated_view(serial: str, certificate_id: str, retired: list[str]) -> View:
    """``certs rotate``."""
    return {"serial": serial, "certificate_id": certificate_id, "retired": list(retired)}


def certificate_revoked_view(serial: str, certificate_id: str) -> View:
    """``certs revoke``."""
    return {"serial": serial, "certificate_id": certificate_id, "status": "INACTIVE"}


# -- endpoint and paths -------------------------------------------------------------------------


def endpoint_view(endpoint: Endpoint) -> View:
    """``endpoint``."""
    return {"host": endpoint.host, "port": endpoint.port, "ca_file": str(endpoint.ca_file)}


def paths_view(registry: Path, keys: Path, config: Path, cache: Path, state: Path) -> View:
    """``paths``."""
    return {
        "registry": str(registry),
        "keys": str(keys),
        "config": str(config),
        "cache": str(cache),
        "state": str(state),
    }


# -- notify -------------------------------------------------------------------------------------


def config_written_view(path: Path) -> View:
    """``notify init``."""
    return {"path": str(path)}


def config_check_view(
    config: NotifyConfig, secret: TwilioSecret | None, problem: IotButtonError | None
) -> View:
    """``notify check``: the config's summary (no secrets) and where the secret would come
    from, and whether each webhook's and Slack post's secret is in the environment."""
    from iotbutton_cli.notify.hooks_config import missing_secrets, secret_names

    missing = set(missing_secrets(config))
    return {
        "valid": True,
        **config.summary(),
        "twilio_secret": {
            "available": secret is not None,
            "source": secret.source if secret else None,
            "username": secret.username if secret else None,
            "problem": problem.message if problem else None,
            "problem_code": problem.code if problem else None,
        },
        "hook_secrets": [
            {"name": name, "for": use, "available": name not in missing}
            for name, use in secret_names(config).items()
        ],
    }


def bundle_view(built: Bundle, handler: str) -> View:
    """``notify bundle``."""
    return {
        "path": str(built.path),
        "size": built.size,
        "sha256": built.sha256_hex,
        "code_sha256": built.code_sha256,
        "handler": handler,
    }


def deploy_step_view(step: StepResult) -> View:
    return {"resource": step.resource, "name": step.name, "action": step.action}


def deploy_plan_view(plan: Plan) -> dict[str, Any]:
    """``notify deploy --dry-run --json``: what a deploy would do, step by step."""
    return {
        "dry_run": True,
        "up_to_date": plan.up_to_date,
        "config_key": plan.config_key,
        "steps": [
            {
                "resource": step.resource,
                "name": step.name,
                "action": step.action,
                "changes": list(step.changes),
            }
            for step in plan.steps
        ],
    }


def deploy_view(report: DeployReport) -> View:
    """``notify deploy``."""
    return {
        "function_arn": report.function_arn,
        "code_sha256": report.code_sha256,
        "config_key": report.config_key,
        "steps": [deploy_step_view(step) for step in report.steps],
        "up_to_date": report.up_to_date,
    }


def _deployed_config_view(config: dict[str, Any]) -> View:
    """The deployed config as ``notify show`` summarises it (no secrets: it holds none)."""
    return {
        "from": config.get("from"),
        "person": config.get("person"),
        "account_sid": config.get("account_sid"),
        "api_key_sid": config.get("api_key_sid"),
        "debounce_seconds": config.get("debounce_seconds"),
        "clicks": {
            click: {
                "sms": list(item.get("sms", [])),
                "call": list(item.get("call", [])),
                "message": item.get("message", ""),
            }
            for click, item in config.get("clicks", {}).items()
        },
    }


def notifier_status_view(status: NotifierStatus) -> View:
    """``notify show``."""
    return {
        "function_arn": status.function_arn,
        "runtime": status.runtime,
        "code_sha256": status.code_sha256,
        "last_modified": status.last_modified,
        "state": status.state,
        "config_object": status.config_object,
        "secret_parameter": status.secret_parameter,
        "config": _deployed_config_view(status.config),
        "rules": [rule_view(rule) for rule in status.rules],
    }


def test_invocation_view(result: TestInvocation) -> View:
    """``notify test``: the event sent, and the function's own answer as it gave it."""
    return {
        "event": dict(result.event),
        "payload": result.payload,  # the notifier's response, its own contract
        "function_error": result.function_error,
        "log_tail": result.log_tail,
        "ok": result.ok,
    }


def send_result_view(result: SendResult) -> View:
    """One of ``notify send``."""
    return {
        "channel": result.channel,
        "to": result.to,
        "status": result.status,
        "sid": result.sid,
        "error": _twilio_error_view(result.error),
    }


def _twilio_error_view(error: dict[str, Any] | None) -> View | None:
    """Twilio's refusal: its error code, message and HTTP status."""
    if error is None:
        return None
    return {
        "code": error.get("code"),
        "message": error.get("message"),
        "status": error.get("status"),
    }


def log_line_view(event: LogEvent) -> View:
    """One line of ``notify logs --json``: ``time`` in ISO 8601 UTC."""
    from datetime import datetime, timezone

    moment = datetime.fromtimestamp(event.timestamp / 1000, timezone.utc)
    return {"time": moment.isoformat(), "message": event.message, "stream": event.stream}


def iso_time(millis: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(millis / 1000, timezone.utc).isoformat(timespec="milliseconds")


def alarm_view(alarm: Alarm) -> View:
    """One of ``notify history``."""
    return {
        "alarm": alarm.alarm_id,
        "serial": alarm.serial,
        "click": alarm.click,
        "clicked_at": iso_time(alarm.clicked_ms),
        "click_time_known": alarm.click_time_known,
        "state": alarm.state,
        "repeat_of": alarm.repeat_of,
        "dropped": None
        if alarm.dropped is None
        else {
            "condition": alarm.dropped,
            "attempts": alarm.invoke_count,
            "error": alarm.drop_error,
            "owner_told_at": None if alarm.owner_told_ms is None else iso_time(alarm.owner_told_ms),
        },
        "deliveries": [delivery_view(delivery) for delivery in alarm.deliveries],
        "escalation": None if alarm.escalation is None else escalation_view(alarm.escalation),
        "joined_escalation": alarm.joined_escalation,
        "held_until": alarm.held_until,
        "released_at": None if alarm.released_ms is None else iso_time(alarm.released_ms),
    }


def escalation_view(escalation: Escalation) -> View:
    """An alarm's escalation in ``notify history``: its state, and every call and notice."""
    return {
        "state": escalation.state,
        "round": escalation.round,
        "step": escalation.step,
        "acknowledged_by": escalation.ack_by,
        "acknowledged_at": None if escalation.ack_ms is None else iso_time(escalation.ack_ms),
        "acknowledged_via": escalation.ack_via,
        "exhausted_at": None
        if escalation.exhausted_ms is None
        else iso_time(escalation.exhausted_ms),
        "calls": [
            {
                "round": call.round,
                "step": call.step,
                "to": call.to,
                "outcome": call.outcome,
                "sid": call.sid,
                "started_at": None if call.started_ms is None else iso_time(call.started_ms),
                "ended_at": None if call.ended_ms is None else iso_time(call.ended_ms),
            }
            for call in escalation.calls
        ],
        "notices": [delivery_view(notice) for notice in escalation.notices],
    }


def escalation_lines(escalation: Escalation) -> list[str]:
    """The escalation as a timeline (UTC): one line per call, then how it ended."""
    lines = []
    for call in escalation.calls:
        when = _clock(call.started_ms)
        lines.append(f"{when}  round {call.round} step {call.step}  {call.to}: {call.outcome}")
    if escalation.state == "acknowledged":
        via = " (from a terminal)" if escalation.ack_via == "terminal" else ""
        lines.append(f"{_clock(escalation.ack_ms)}  acknowledged by {escalation.ack_by}{via}")
    elif escalation.state == "exhausted":
        lines.append(f"{_clock(escalation.exhausted_ms)}  nobody acknowledged")
    else:
        lines.append(f"still calling (round {escalation.round} step {escalation.step})")
    for notice in escalation.notices:
        kind = {"ack-sms": "told who is coming", "exhausted-sms": "told nobody came"}.get(
            notice.channel, "owner told through SNS"
        )
        state = notice.twilio_status or notice.status
        if notice.channel == "exhausted-owner":
            lines.append(f"          {kind}: {'published' if state == 'queued' else state}")
        else:
            lines.append(f"          {notice.to} {kind}: {state}")
    return lines


def escalation_summary(escalation: Escalation) -> str:
    """One line for a table cell."""
    if escalation.state == "acknowledged":
        return f"acknowledged by {escalation.ack_by}"
    if escalation.state == "exhausted":
        return "escalated: nobody acknowledged"
    return f"calling: round {escalation.round} step {escalation.step}"


def _clock(ms: int | None) -> str:
    return iso_time(ms)[11:19] if ms else "--:--:--"


def delivery_view(delivery: Delivery) -> View:
    return {
        "channel": delivery.channel,
        "to": delivery.to,
        "status": delivery.status,
        "sid": delivery.sid,
        "attempts": delivery.attempts,
        "twilio_status": delivery.twilio_status,
        "answered_by": delivery.answered_by,
        "reached": delivery.reached,
        "error": None
        if delivery.error_code is None and delivery.error_message is None
        else {"code": delivery.error_code, "message": delivery.error_message},
    }


def ack_view(result: AckResult) -> View:
    """``notify ack``: whether this acknowledged the alarm, and who did."""
    return {
        "alarm": result.alarm_id,
        "acknowledged": result.acknowledged,
        "state": result.state,
        "by": result.by,
        "at": None if result.at_ms is None else iso_time(result.at_ms),
        "error": result.function_error,
    }


def retry_view(result: RetryResult) -> View:
    """``notify retry``: what did not get through, and what the resend did."""
    return {
        "alarm": result.alarm.alarm_id,
        "ok": result.ok,
        "resent": [
            {"channel": d.channel, "to": d.to, "was": d.twilio_status or d.status}
            for d in result.asked
        ],
        "results": [
            {
                "channel": item.get("channel"),
                "to": item.get("to"),
                "status": item.get("status"),
                "sid": item.get("sid"),
                "error": item.get("error"),
            }
            for item in result.results
        ],
        "function_error": result.function_error,
    }


def release_view(result: ReleaseResult) -> View:
    """``notify release``: each held alarm sent, and what became of its deliveries."""
    return {
        "ok": result.ok,
        "released": [
            {
                "alarm": alarm.get("alarm"),
                "serial": alarm.get("serial"),
                "click": alarm.get("click"),
                "ignored": alarm.get("ignored"),
                "results": [
                    {
                        "channel": item.get("channel"),
                        "to": item.get("to"),
                        "status": item.get("status"),
                        "error": item.get("error"),
                    }
                    for item in alarm.get("results", [])
                ],
            }
            for alarm in result.released
        ],
        "function_error": result.function_error,
    }


def delivery_line(delivery: Delivery) -> str:
    """A delivery in ``notify history``'s table: "sms +15551230001 delivered" (Twilio's latest
    word; "queued" until a receipt says more)."""
    line = f"{delivery.channel} {delivery.to} {delivery.twilio_status or delivery.status}"
    if delivery.answered_by:
        line += f" ({delivery.answered_by})"
    if delivery.status == "sending":
        line += " (never finished: outcome unknown)"
    if delivery.error_code:
        line += f" (Twilio {delivery.error_code})"
    elif delivery.channel in ("webhook", "slack") and delivery.error_message:
        line += f" ({delivery.error_message})"
    return line


# -- rules --------------------------------------------------------------------------------------


def rule_view(rule: RuleInfo) -> View:
    """``rules show``, and one of ``rules list``."""
    return {
        "name": rule.name,
        "arn": rule.arn,
        "sql": rule.sql,
        "enabled": rule.enabled,
        "function_arn": rule.function_arn,
        "permission": rule.permission,
    }


def rule_created_view(rule: RuleInfo, action: str) -> View:
    """``rules create``: the rule as AWS has it, and what was done."""
    return {**rule_view(rule), "action": action}


def rule_deleted_view(name: str) -> View:
    """``rules delete``."""
    return {"name": name, "deleted": True}


# -- sim ----------------------------------------------------------------------------------------


def published_view(sent: Published) -> View:
    """``sim send``, and one of ``sim click``."""
    return {
        "serial": sent.serial,
        "topic": sent.topic,
        "payload": sent.payload,
        "host": sent.host,
        "port": sent.port,
    }


def received_view(message: Received) -> View:
    """One line of ``sim subscribe --json``: ``time`` in ISO 8601 UTC, to the millisecond."""
    return {
        "topic": message.topic,
        "payload": message.payload,
        "time": message.time.isoformat(timespec="milliseconds"),
    }


# -- sandbox ------------------------------------------------------------------------------------


def sandbox_view(info: SandboxInfo) -> View:
    """Where the running sandbox is, its key pair included (the owner asked for it)."""
    return {
        "pid": info.pid,
        "aws_url": info.aws_url,
        "mqtt_host": info.mqtt_host,
        "mqtt_port": info.mqtt_port,
        "ca_file": info.ca_file,
        "twilio_url": info.twilio_url,
        "hooks_url": info.hooks_url,
        "outbox": info.outbox,
        "region": info.region,
        "account": info.account,
        "access_key_id": info.access_key_id,
        "secret_access_key": info.secret_access_key,
    }


def sandbox_started_view(result: Started) -> View:
    """``sandbox start``; ``forgotten_records``: what the registry held of a sandbox that had
    died without `sandbox stop`, forgotten now."""
    return {
        **sandbox_view(result.info),
        "started": result.started,
        "forgotten_records": sum(result.forgotten.values()),
    }


def sandbox_stopped_view(
    info: SandboxInfo | None, stale_pid: int | None, forgotten_records: int
) -> View:
    """``sandbox stop``; ``stale`` and ``stale_pid`` only when the state file was stale."""
    view: View = {
        "stopped": info is not None,
        "pid": info.pid if info else None,
        "forgotten_records": forgotten_records,
    }
    if stale_pid is not None:
        view.update(stale=True, stale_pid=stale_pid)
    return view


def sandbox_status_view(info: SandboxInfo | None, stale_pid: int | None) -> View:
    """``sandbox status``."""
    if info is not None:
        return {"running": True, **sandbox_view(info)}
    if stale_pid is not None:
        return {"running": False, "stale": True, "pid": stale_pid}
    return {"running": False}


def environment_view(variables: dict[str, str]) -> View:
    """``sandbox env``: variable name to value (the names are the data)."""
    return {str(name): str(value) for name, value in variables.items()}


def outbox_view(
    entries: list[dict[str, Any]], hooks: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``sandbox outbox``: the Twilio stand-in's records as it wrote them (its own format,
    documented with the sandbox: requests, status callbacks and Gather requests) and the webhook
    sink's (``kind`` "webhook", "slack" or "oauth-token"), merged by time, oldest first."""
    import heapq

    twilio = [dict(entry) for entry in entries]
    if not hooks:
        return twilio
    keyed: list[tuple[float, dict[str, Any]]] = []
    last = float("-inf")
    for entry in twilio:  # in the order written; an entry without a readable time keeps its place
        last = max(last, _epoch(entry.get("time")) or last)
        keyed.append((last, entry))
    sink = [(float(entry.get("received_at") or 0), dict(entry)) for entry in hooks]
    return [entry for _, entry in heapq.merge(keyed, sink, key=lambda pair: pair[0])]


def _epoch(moment: Any) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(moment)).timestamp()
    except ValueError:
        return None


def hooks_view(controls: Controls, name: str | None = None) -> View:
    """``sandbox hook``: the lifetime of the tokens ``/oauth/token`` issues, and the names whose
    next posts get another answer (with NAME: that one, ``status`` 200 and ``times`` 0 when it
    answers as usual), sorted by name."""
    answers = {key: (a.status, a.times) for key, a in controls.hooks.items()}
    if name is not None:
        answers = {name: answers.get(name, (200, 0))}
    return {
        "token_lifetime": controls.token_lifetime,
        "hooks": [
            {"name": key, "status": status, "times": times}
            for key, (status, times) in sorted(answers.items())
        ],
    }


def phones_view(phones: dict[str, PhoneBehaviour]) -> View:
    """``sandbox phone`` and ``sandbox phones``: number (the data) -> how it behaves, numbers
    sorted; ``sms_error`` is the code an SMS that does not arrive carries (None if delivered),
    ``press`` the keys a person answering presses, ``hold`` the seconds Twilio takes to answer."""
    return {
        str(number): {
            "sms": behaviour.sms,
            "sms_error": behaviour.sms_error_code,
            "call": behaviour.call,
            "press": behaviour.press,
            "hold": behaviour.hold,
            "outage": behaviour.outage,
        }
        for number, behaviour in sorted(phones.items())
    }


# -- clean --------------------------------------------------------------------------------------


def clean_nothing_view(dry_run: bool) -> View:
    """``clean`` with nothing recorded."""
    return {"dry_run": dry_run, "complete": True, "pending": 0, "steps": []}


def clean_plan_view(steps: list[Step]) -> View:
    """``clean --dry-run``."""
    return {
        "dry_run": True,
        "steps": [
            {"kind": step.kind, "id": step.resource_id, "label": step.label, "status": "planned"}
            for step in steps
        ],
    }


def clean_report_view(report: CleanReport) -> View:
    """``clean``."""
    return {
        "dry_run": False,
        "complete": report.complete,
        "pending": len(report.with_status("pending")),
        "steps": [
            {
                "kind": outcome.step.kind,
                "id": outcome.step.resource_id,
                "label": outcome.step.label,
                "status": outcome.status,
                "detail": outcome.detail,
            }
            for outcome in report.outcomes
        ],
    }


# -- demo ---------------------------------------------------------------------------------------


def demo_view(outcome: DemoOutcome, outbox: list[dict[str, Any]]) -> View:
    """``demo``."""
    return {
        "ok": outcome.ok,
        "clicks": dict(outcome.clicks),
        "receipts": outcome.receipts,
        "owner_told": outcome.owner_told,
        "escalated": outcome.escalated,
        "home": outcome.home,
        "outbox": outbox_view(outbox),
    }
