"""IoT topic rules that invoke the notifier, each with the Lambda permission it needs.

Without ``lambda:AddPermission`` for ``iot.amazonaws.com`` (scoped by SourceArn and SourceAccount)
a rule silently never invokes the function, so a rule and its permission are made and removed
together. Every rule gets an error action that logs failed invocations to CloudWatch Logs.

Every rule also selects ``topic(2) AS topicSerial``: the serial in the topic is the one the IoT
policy lets a certificate publish to, while the payload's ``serialNumber`` is whatever the device
wrote. The notifier names the button by ``topicSerial``, so a stolen certificate can only speak
for its own button. The rules select the payload's fields by name, never ``*``: with ``SELECT *``
a payload could carry a ``topicSerial`` of its own, and AWS does not document which of the two
would win.

Every rule selects ``timestamp() AS clickedAt`` too: when IoT Core received the click, so the
message says when the button was pressed, not when a retried invocation ran hours later.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from iotbutton_cli.aws import iotsql
from iotbutton_cli.aws.calls import absent_is_fine, absent_ok, deleted
from iotbutton_cli.aws.errors import error_code
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import IotButtonError, not_ours, usage_error
from iotbutton_cli.notifier_lambda.contract import CLICKED_AT_FIELD
from iotbutton_cli.notify import plan, resources
from iotbutton_cli.notify.plan import DeployAction
from iotbutton_cli.provisioning.policies import TOPIC_PREFIX
from iotbutton_cli.provisioning.serials import validate_serial
from iotbutton_cli.registry import kinds

KIND = kinds.TOPIC_RULES
PERMISSION_KIND = kinds.LAMBDA_PERMISSIONS
DEFAULT_RULE = "iotbutton_notifier"
# The topic's second level is the button's serial (iotbutton/<serial>); the notifier trusts it,
# not the payload's serialNumber.
TOPIC_SERIAL = "topicSerial"
TOPIC_SERIAL_ITEM = f"topic(2) AS {TOPIC_SERIAL}"
# When IoT Core received the click (ms since the epoch): the time the messages tell.
CLICKED_AT = CLICKED_AT_FIELD
CLICKED_AT_ITEM = f"timestamp() AS {CLICKED_AT}"
# What the notifier reads of a click: a rule's ``*`` becomes these.
NOTIFIER_FIELDS = ("serialNumber", "clickType", "batteryVoltage")
NOTIFIER_SELECT = ", ".join((*NOTIFIER_FIELDS, TOPIC_SERIAL_ITEM, CLICKED_AT_ITEM))
DEFAULT_SQL = f"SELECT {NOTIFIER_SELECT} FROM '{TOPIC_PREFIX}/+'"  # noqa: S608 - IoT SQL
# What the notifier trusts only from IoT Core, never from the payload: (the key, where it must
# come from, as said and as parsed, the SELECT item that sets it, what the notifier takes it for).
TRUSTED_ITEMS: tuple[tuple[str, str, type, str, str], ...] = (
    (TOPIC_SERIAL, "the topic", iotsql.Topic, TOPIC_SERIAL_ITEM, "the button's serial"),
    (
        CLICKED_AT,
        "timestamp()",
        iotsql.Timestamp,
        CLICKED_AT_ITEM,
        "the time the button was pressed",
    ),
)
SQL_EXAMPLE = "SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'"
SQL_VERSION = "2016-03-23"
RULE_DESCRIPTION = "Invokes the iotbutton notifier"  # how `clean --discover` knows our rules
RULE_NAME = re.compile(r"^[a-zA-Z0-9_]{1,128}$")
# Every rule iotbutton makes is named with this prefix: the documented IAM policy scopes topic rules
# to rule/iotbutton_*, and `clean --discover` reads only rules named so.
RULE_PREFIX = "iotbutton_"


@dataclass(frozen=True)
class RuleTarget:
    """What every rule points at: the notifier function, and where failures are logged."""

    function_name: str
    function_arn: str
    error_role_arn: str
    error_log_group: str


@dataclass
class RuleInfo:
    name: str
    arn: str
    sql: str
    enabled: bool
    function_arn: str | None
    permission: bool


def validate_rule_name(name: str) -> str:
    if not RULE_NAME.fullmatch(name):
        raise usage_error(
            "bad-rule-name",
            f"Invalid rule name {name!r}: AWS allows only letters, digits and '_' (1-128).",
            "For example: iotbutton_long_clicks.",
        )
    if not name.startswith(RULE_PREFIX):
        raise usage_error(
            "bad-rule-name",
            f"Rule name {name!r} does not start with {RULE_PREFIX}.",
            f"Name it {RULE_PREFIX}{name[:118]}: iotbutton's IAM policy allows rules named so, "
            "and `clean --discover` finds them.",
        )
    return name


@dataclass(frozen=True)
class RuleRequest:
    """What a ``rules create`` will make: the name, the SQL as it will be stored, and whether
    iotbutton changed the SELECT it was given (``*`` into the notifier's fields, and
    ``topic(2) AS topicSerial`` added)."""

    name: str
    sql: str
    changed_select: bool = False


def rule_for(name: str | None, sql: str | None, serial: str | None) -> RuleRequest:
    """The rule a ``rules create`` asks for, validated before any AWS call."""
    if serial is not None:
        validate_serial(serial)
        if sql is not None:
            raise usage_error(
                "sql-and-serial",
                "Give --sql or --serial, not both.",
                f'--serial S is short for --sql "SELECT {NOTIFIER_SELECT} '  # noqa: S608
                "FROM 'iotbutton/S'\".",
            )
        sql = f"SELECT {NOTIFIER_SELECT} FROM '{TOPIC_PREFIX}/{serial}'"  # noqa: S608
        name = name or f"{RULE_PREFIX}{serial.replace('-', '_').replace(':', '_')}"
    if name is None:
        raise usage_error("rule-name-missing", "A rule needs a --name.", "Or pass --serial.")
    validate_rule_name(name)
    if sql is None:
        return RuleRequest(name, DEFAULT_SQL)
    statement = parse_rule_sql(sql)
    for key, source, kind, item, meaning in TRUSTED_ITEMS:
        selected = statement.item_named(key)
        if selected is not None and not isinstance(selected.expression, kind):
            raise usage_error(
                "bad-rule-sql",
                f"The --sql sets {key} from the payload, not from {source}.",
                f"The notifier takes {key} as {meaning}: write "
                f"{item}, or leave it out and iotbutton adds it.",
            )
    items, changed = trusted_select(statement)
    if not changed:
        return RuleRequest(name, sql)
    return RuleRequest(name, iotsql.with_select_list(sql, statement, items), True)


def trusted_select(statement: iotsql.Statement) -> tuple[list[str], bool]:
    """The SELECT list with ``*`` replaced by the notifier's fields, ``topicSerial`` taken from
    the topic and ``clickedAt`` from the broker's clock; and whether that differs from what was
    written."""
    items: list[str] = []
    changed = False
    for item in statement.select:
        if isinstance(item.expression, iotsql.Star):
            items += [field for field in NOTIFIER_FIELDS if statement.item_named(field) is None]
            changed = True
        else:
            items.append(iotsql.item_text(item))
    for name, _source, _kind, added, _meaning in TRUSTED_ITEMS:
        if statement.item_named(name) is None:
            items.append(added)
            changed = True
    return items, changed


def parse_rule_sql(sql: str) -> iotsql.Statement:
    """The parsed SQL, or a one-line usage error that says where reading it stopped."""
    try:
        return iotsql.parse(sql)
    except iotsql.IotSqlError as exc:
        raise usage_error(
            "bad-rule-sql",
            f"Cannot read --sql at column {exc.column}: {exc.reason}.",
            "iotbutton understands SELECT *, fields, topic(n) and timestamp() "  # noqa: S608
            "[AS name] FROM '<topic filter>' [WHERE comparisons with AND, OR, NOT], "
            f'e.g. --sql "{SQL_EXAMPLE}".',
        ) from None


def rule_payload(sql: str, target: RuleTarget) -> dict[str, Any]:
    """The ``topicRulePayload`` of a rule that invokes the notifier."""
    return {
        "sql": sql,
        "description": RULE_DESCRIPTION,
        "awsIotSqlVersion": SQL_VERSION,
        "ruleDisabled": False,
        "actions": [{"lambda": {"functionArn": target.function_arn}}],
        "errorAction": {
            "cloudwatchLogs": {
                "roleArn": target.error_role_arn,
                "logGroupName": target.error_log_group,
            }
        },
    }


def _made_by_us(rule: dict[str, Any], function_name: str) -> bool:
    """Our description, and it invokes our function: made by iotbutton (on another machine, or by
    a run that stopped before recording it)."""
    arns = [action.get("lambda", {}).get("functionArn") or "" for action in rule.get("actions", [])]
    return rule.get("description") == RULE_DESCRIPTION and any(
        arn.split(":function:")[-1].split(":")[0] == function_name for arn in arns
    )


def rule_target(ctx: AppContext) -> RuleTarget:
    """The deployed notifier, for ``rules create``; refuses if ``notify deploy`` has not run."""
    function = ctx.namespace.get(resources.FUNCTION_KIND, resources.FUNCTION_NAME)
    role = ctx.namespace.get(resources.ROLE_KIND, resources.Names.for_context(ctx).rule_error_role)
    if function is None or role is None:
        raise IotButtonError(
            "notifier-not-deployed",
            "The notifier is not deployed in this account and region.",
            "Run `iotbutton notify deploy` first.",
        )
    return RuleTarget(
        resources.FUNCTION_NAME, function["arn"], role["arn"], resources.RULE_ERROR_LOG_GROUP
    )


# --- read, plan, apply ---------------------------------------------------------------------------


def current_rule(
    ctx: AppContext, name: str, function_name: str, forget_pending: bool = True
) -> dict[str, Any] | None:
    """The rule's payload as AWS has it (reads only), or None; a rule of that name that is not
    iotbutton's is refused (``forget_pending=False``: leave the registry as it is)."""
    found = absent_ok(ctx.client("iot").get_topic_rule, ruleName=name)
    if found is None:
        return None
    _require_ours(ctx, name, found["rule"], function_name, forget_pending)
    return dict(found["rule"])


def _require_ours(
    ctx: AppContext,
    name: str,
    rule: dict[str, Any],
    function_name: str,
    forget_pending: bool = True,
) -> None:
    recorded = ctx.namespace.get(KIND, name)
    known = recorded is not None and not recorded.get("pending")
    if known or _made_by_us(rule, function_name):
        return
    if forget_pending:
        ctx.namespace.forget_pending(KIND, name)
    raise IotButtonError(
        "rule-not-ours",
        f"A topic rule named {name} exists that iotbutton did not create.",
        "Use another rule name; iotbutton never changes resources it did not make.",
    )


def has_permission(ctx: AppContext, rule_name: str, function: str) -> bool:
    """Whether the function's policy already lets IoT invoke it for this rule."""
    sid = statement_id(rule_name)
    return any(s.get("Sid") == sid for s in _policy_statements(ctx.client("lambda"), function))


def ensure_rule(ctx: AppContext, name: str, sql: str, target: RuleTarget) -> DeployAction:
    """Create or update the rule, then its permission; returns created, updated or unchanged."""
    current = current_rule(ctx, name, target.function_name)
    permission = has_permission(ctx, name, target.function_name)
    step = plan.rule_step(name, current, rule_payload(sql, target), permission)
    return apply_rule(ctx, step, sql, target, permission).outcome


def apply_rule(
    ctx: AppContext, step: plan.Step, sql: str, target: RuleTarget, permission: bool
) -> plan.Step:
    """Make the planned change to the rule ``step.name`` and its permission; the step as it was
    applied (a create that found the rule made meanwhile is planned again against it)."""
    iot = ctx.client("iot")
    name = step.name
    wanted = rule_payload(sql, target)
    arn = ctx.arn("iot", f"rule/{name}")
    record = {"arn": arn, "function": target.function_name, "sql": sql}
    if step.action == "create":
        # Recorded (pending) first: a run killed before the registry write leaves it to `clean`.
        ctx.namespace.put(KIND, name, {**record, "pending": True})
        try:
            iot.create_topic_rule(ruleName=name, topicRulePayload=wanted)
        except Exception as exc:
            # Our own call retried after its answer was lost (or a deploy running elsewhere):
            # handled as an existing rule, adopted only if it is iotbutton's.
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
            current = iot.get_topic_rule(ruleName=name)["rule"]
            _require_ours(ctx, name, current, target.function_name)
            step = plan.rule_step(name, current, wanted, permission)
    if "rule" in step.changes:
        iot.replace_topic_rule(ruleName=name, topicRulePayload=wanted)
    ctx.namespace.confirm(KIND, name, record)
    sid = statement_id(name)
    # Recorded first: it lives in our function, and a permission that was never added is gone.
    ctx.namespace.put(PERMISSION_KIND, sid, {"function": target.function_name, "rule": name})
    if not permission:
        add_permission(ctx, name, arn, target.function_name)
    return step


def statement_id(rule_name: str) -> str:
    return f"iotbutton-rule-{rule_name}"


def add_permission(ctx: AppContext, rule_name: str, rule_arn: str, function: str) -> None:
    """Let IoT invoke ``function`` for this rule only (a permission already there is fine)."""
    try:
        ctx.client("lambda").add_permission(
            FunctionName=function,
            StatementId=statement_id(rule_name),
            Action="lambda:InvokeFunction",
            Principal="iot.amazonaws.com",
            SourceArn=rule_arn,
            SourceAccount=ctx.account_id,
        )
    except Exception as exc:
        if error_code(exc) != "ResourceConflictException":
            raise


def _policy_statements(lam: Any, function: str) -> list[dict[str, Any]]:
    found = absent_ok(lam.get_policy, FunctionName=function)
    if found is None:
        return []
    return list(json.loads(found["Policy"]).get("Statement", []))


def delete_rule(ctx: AppContext, name: str) -> None:
    """Delete the rule (NotFound is done); its permission goes with it. Only a rule with
    iotbutton's description that invokes the notifier is deleted."""
    iot = ctx.client("iot")
    function = (ctx.namespace.get(KIND, name) or {}).get("function") or resources.FUNCTION_NAME
    with absent_is_fine():
        rule = iot.get_topic_rule(ruleName=name)["rule"]
        if not _made_by_us(rule, function):
            ctx.namespace.remove(KIND, name)
            raise not_ours("topic rule", name, "its description or action is not iotbutton's")
        iot.delete_topic_rule(ruleName=name)
    ctx.namespace.remove(KIND, name)
    sid = statement_id(name)
    permission = ctx.namespace.get(PERMISSION_KIND, sid)
    if permission is not None:
        remove_permission(ctx, sid)


def remove_permission(ctx: AppContext, sid: str) -> None:
    record = ctx.namespace.get(PERMISSION_KIND, sid)
    if record is None:
        return
    deleted(
        ctx.client("lambda").remove_permission, FunctionName=record["function"], StatementId=sid
    )
    ctx.namespace.remove(PERMISSION_KIND, sid)


# --- rules create ------------------------------------------------------------------------------


@dataclass
class RuleCreated:
    """What ``rules create`` did: the rule as AWS has it now, and what to tell the user."""

    info: RuleInfo
    action: DeployAction
    request: RuleRequest
    # The default rule also sends every click to the notifier: clicks this rule matches
    # message twice.
    doubles_default_rule: bool


def create_rule(
    ctx: AppContext, name: str | None, sql: str | None, serial: str | None
) -> RuleCreated:
    """``rules create``: validate (before any AWS call), then create or update the rule with its
    permission against the deployed notifier."""
    request = rule_for(name, sql, serial)
    target = rule_target(ctx)
    action = ensure_rule(ctx, request.name, request.sql, target)
    doubles = request.name != DEFAULT_RULE and ctx.namespace.get(KIND, DEFAULT_RULE) is not None
    return RuleCreated(show_rule(ctx, request.name), action, request, doubles)


def list_rules(ctx: AppContext) -> list[RuleInfo]:
    return [show_rule(ctx, name) for name in sorted(ctx.namespace.items(KIND))]


def show_rule(ctx: AppContext, name: str) -> RuleInfo:
    record = ctx.namespace.get(KIND, name)
    if record is None:
        raise usage_error(
            "unknown-rule",
            f"No topic rule {name!r} in the registry for this account and region.",
            "List them with `iotbutton rules list`.",
        )
    found = absent_ok(ctx.client("iot").get_topic_rule, ruleName=name)
    rule: dict[str, Any] = found["rule"] if found else {}
    actions = rule.get("actions", [])
    function_arn = actions[0].get("lambda", {}).get("functionArn") if actions else None
    return RuleInfo(
        name=name,
        arn=record["arn"],
        sql=str(rule.get("sql", record.get("sql", ""))),
        enabled=bool(rule) and not rule.get("ruleDisabled", False),
        function_arn=function_arn,
        permission=ctx.namespace.get(PERMISSION_KIND, statement_id(name)) is not None,
    )
