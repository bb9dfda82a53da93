"""Deploy the notifier: roles, log groups, config bucket and object, secret, alarm table, owner
topic, failures function, function and its URL, asynchronous invocation settings, the release
schedule (only while quiet hours hold clicks), metric filter and alarms, rule.

A deploy is read → plan → apply: :mod:`~iotbutton_cli.notify.current` reads what AWS has (reads
only), :mod:`~iotbutton_cli.notify.plan` compares it with what the notifier wants (a pure
function), and :mod:`~iotbutton_cli.notify.apply` changes only what differs, so a second deploy
with nothing changed makes no mutating call, and ``--dry-run`` (:func:`plan_deploy`) shows the
plan without making any. Each resource is recorded in the registry the moment AWS confirms it,
and ``clean`` removes them all.

Changes reach warm Lambda containers because the function's environment names the config object
by its content hash and the secret by its parameter version: a new config or secret changes the
environment, and Lambda starts fresh containers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import NotOurs
from iotbutton_cli.notifier_lambda.contract import hold_ends
from iotbutton_cli.notify import alerts, apply, rules, schedules, shadow_grant
from iotbutton_cli.notify import current as aws_state
from iotbutton_cli.notify import plan as planner
from iotbutton_cli.notify.plan import DeployAction, Plan, Step
from iotbutton_cli.notify.resources import (
    FAILURES_FUNCTION_NAME,
    FUNCTION_NAME,
    LOG_GROUPS,
    LOG_RETENTION_DAYS,
    OWNER_TOPIC,
    RELEASE_SCHEDULE,
    RELEASE_SCHEDULE_ID,
    ROLE_KIND,
    RULE_ERROR_LOG_GROUP,
    SCHEDULE_GROUP_KIND,
    SCHEDULE_KIND,
    SCHEDULER_SERVICE,
    SECRET_PARAMETER,
    DeployInput,
    Names,
    config_key_for,
    environment,
    function_config,
    function_policy,
    invoke_configs,
    metric_alarms,
    owner_topic_arn,
    receipts_possible,
    release_schedule,
    role_arn,
    rule_error_policy,
    rule_errors_filter,
    scheduler_policy,
)

FUNCTION_ROLE_SERVICE = "lambda.amazonaws.com"
RULE_ERROR_ROLE_SERVICE = "iot.amazonaws.com"


@dataclass
class StepResult:
    resource: str
    name: str
    action: DeployAction


@dataclass
class DeployReport:
    function_arn: str = ""
    code_sha256: str = ""
    config_key: str = ""
    steps: list[StepResult] = field(default_factory=list)
    # Buttons whose shadows the role cannot name within IAM's size limit (their clicks alarm).
    shadow_left_out: tuple[str, ...] = ()
    # The release schedule went (no quiet hours hold clicks now): the notifier was asked to
    # send what they still held.
    released_held: bool = False

    @property
    def up_to_date(self) -> bool:
        return all(step.action == "unchanged" for step in self.steps)


def prepare(
    lambda_document: dict[str, Any],
    secret: str,
    *,
    twilio_api_base: str | None = None,
    default_rule: bool = True,
    owner: tuple[tuple[str, str], ...] = (),
    loopback_hooks: bool = False,
) -> DeployInput:
    """What ``notify deploy`` and the demo deploy: the config, the secret and the bundle built
    here."""
    from iotbutton_cli.notify import bundle

    built = bundle.build_bundle()
    return DeployInput(
        lambda_document=lambda_document,
        secret=secret,
        bundle_data=built.data,
        code_sha256=built.code_sha256,
        handler=bundle.HANDLER,
        failures_handler=bundle.FAILURES_HANDLER,
        twilio_api_base=twilio_api_base,
        default_rule=default_rule,
        owner=owner,
        loopback_hooks=loopback_hooks,
    )


def wanted_state(
    ctx: AppContext, source: DeployInput, granted: shadow_grant.ShadowGrant | None = None
) -> planner.Wanted:
    """What the notifier should be, with the ARNs AWS will give what is still to be made."""
    names = Names.for_context(ctx)
    granted = granted or shadow_grant.grant(ctx)
    config_key = config_key_for(source.lambda_document)
    function_arn = ctx.arn("lambda", f"function:{FUNCTION_NAME}")
    target = rules.RuleTarget(
        FUNCTION_NAME, function_arn, role_arn(ctx, names.rule_error_role), RULE_ERROR_LOG_GROUP
    )
    roles = {
        names.function_role: function_policy(ctx, names, granted.granted),
        names.rule_error_role: rule_error_policy(ctx),
    }
    schedule = wanted_schedule(ctx, names, source.lambda_document)
    if schedule is not None:
        roles[names.scheduler_role] = scheduler_policy(ctx)
    return planner.Wanted(
        roles=roles,
        log_groups=dict.fromkeys(LOG_GROUPS, LOG_RETENTION_DAYS),
        bucket=names.bucket,
        config_key=config_key,
        secret=source.secret,
        function=_wanted_function(
            ctx, source, role_arn(ctx, names.function_role), config_key, secret_version=1
        ),
        rule_name=rules.DEFAULT_RULE,
        rule_payload=rules.rule_payload(rules.DEFAULT_SQL, target) if source.default_rule else None,
        receipts=receipts_possible(source.lambda_document),
        failures_function=_wanted_failures(
            ctx, source, role_arn(ctx, names.function_role), config_key, secret_version=1
        ),
        invoke_configs=invoke_configs(ctx),
        owner=source.owner,
        metric_filter=rule_errors_filter(),
        metric_alarms=metric_alarms(ctx),
        schedule=schedule,
        scheduler_role=names.scheduler_role,
    )


def wanted_schedule(
    ctx: AppContext, names: Names, lambda_document: dict[str, Any], scheduler_role: str = ""
) -> dict[str, Any] | None:
    """The release schedule's settings while some quiet hours hold clicks (in the config's time
    zone), else None; ``scheduler_role``: the role's ARN as AWS gave it."""
    ends = hold_ends(lambda_document)
    if not ends:
        return None
    zone = str(lambda_document.get("timezone") or "UTC")
    settings = release_schedule(ctx, names, ends, zone)
    if scheduler_role:
        settings["Target"] = {**settings["Target"], "RoleArn": scheduler_role}
    return settings


def with_callback_url(
    ctx: AppContext, source: DeployInput, wanted: planner.Wanted, current: planner.Current
) -> planner.Wanted:
    """The wanted function's environment names its URL, once it has one."""
    url = (current.function_url or {}).get("FunctionUrl") if wanted.receipts else None
    if not url:
        return wanted
    names = Names.for_context(ctx)
    function = _wanted_function(
        ctx, source, role_arn(ctx, names.function_role), wanted.config_key, 1, url
    )
    return replace(wanted, function=function)


def _wanted_function(
    ctx: AppContext,
    source: DeployInput,
    role: str,
    config_key: str,
    secret_version: int,
    callback_url: str | None = None,
    handler: str | None = None,
) -> dict[str, Any]:
    """The notifier's code and settings; with ``handler``, the failures function's (the same
    bundle and environment, without the callback URL it has no use for)."""
    variables = environment(
        Names.for_context(ctx).bucket,
        config_key,
        secret_version,
        source.twilio_api_base,
        callback_url if handler is None else None,
        owner_topic_arn(ctx),
        source.loopback_hooks,
        data_endpoint=ctx.data_plane_url if handler is None else None,
    )
    return {
        "CodeSha256": source.code_sha256,
        "config": function_config(role, variables, handler or source.handler),
    }


def _wanted_failures(
    ctx: AppContext, source: DeployInput, role: str, config_key: str, secret_version: int
) -> dict[str, Any]:
    return _wanted_function(
        ctx, source, role, config_key, secret_version, handler=source.failures_handler
    )


def plan_deploy(ctx: AppContext, source: DeployInput) -> Plan:
    """``notify deploy --dry-run``: what a deploy would change, from AWS reads only; the registry
    is read, never written."""
    ctx.check_namespace_owner()
    wanted = wanted_state(ctx, source)
    current = aws_state.read(ctx, wanted, forget_pending=False)
    return planner.plan(current, with_callback_url(ctx, source, wanted, current))


def deploy(
    ctx: AppContext,
    source: DeployInput,
    on_step: Callable[[StepResult], None] | None = None,
) -> DeployReport:
    """Bring every notifier resource to the wanted state, in dependency order."""
    ctx.before_changes()
    names = Names.for_context(ctx)
    shadows = shadow_grant.grant(ctx)
    wanted = wanted_state(ctx, source, shadows)
    found = aws_state.read(ctx, wanted)
    wanted = with_callback_url(ctx, source, wanted, found)
    planned = {(step.resource, step.name): step for step in planner.plan(found, wanted).steps}
    report = DeployReport(config_key=wanted.config_key, shadow_left_out=shadows.left_out)

    def done(step: Step) -> None:
        result = StepResult(step.resource, step.name, step.outcome)
        report.steps.append(result)
        if on_step:
            on_step(result)

    def step_for(resource: str, name: str) -> Step:
        return planned[(resource, name)]

    role_arns = {}
    for name, service, account in (
        (names.function_role, FUNCTION_ROLE_SERVICE, None),
        (names.rule_error_role, RULE_ERROR_ROLE_SERVICE, ctx.account_id),
        (names.scheduler_role, SCHEDULER_SERVICE, ctx.account_id),
    ):
        if name not in wanted.roles:  # the scheduler's, while nothing is held
            continue
        role_arns[name], step = apply.apply_role(
            ctx,
            step_for(planner.ROLE, name),
            found.roles.get(name),
            service,
            wanted.roles[name],
            account,
        )
        done(step)
    for group, days in wanted.log_groups.items():
        done(apply.apply_log_group(ctx, step_for(planner.LOG_GROUP, group), days))
    done(apply.apply_bucket(ctx, step_for(planner.BUCKET, names.bucket)))
    config_step = step_for(planner.CONFIG_OBJECT, wanted.config_key)
    done(apply.apply_config_object(ctx, config_step, names.bucket, source))
    version, step = apply.apply_secret(
        ctx, step_for(planner.PARAMETER, SECRET_PARAMETER), found.secret, source.secret
    )
    done(step)
    done(apply.apply_table(ctx, step_for(planner.TABLE, wanted.table)))
    function_role = role_arns[names.function_role]
    done(alerts.apply_topic(ctx, step_for(planner.TOPIC, OWNER_TOPIC), found.topic, source.owner))
    failures = _wanted_failures(ctx, source, function_role, wanted.config_key, version)
    step = planner.function_step(FAILURES_FUNCTION_NAME, found.failures_function, failures)
    _arn, _sha, step = apply.apply_function(
        ctx, step, found.failures_function, failures, source, FAILURES_FUNCTION_NAME
    )
    done(step)
    # Planned again with what AWS answered: the role's ARN, the secret's version.
    known_url = (found.function_url or {}).get("FunctionUrl")
    function = _wanted_function(
        ctx, source, role_arns[names.function_role], wanted.config_key, version, known_url
    )
    step = planner.function_step(FUNCTION_NAME, found.function, function)
    function_arn, code_sha, step = apply.apply_function(ctx, step, found.function, function, source)
    done(step)
    if wanted.receipts:
        url_step = planner.function_url_step(
            planner.FUNCTION_URL_NAME, found.function_url if found.function is not None else None
        )
        granted = (found.function_url or {}).get("grants", ()) if found.function else ()
        url, url_step = apply.apply_function_url(ctx, url_step, granted)
        done(url_step)
        if url != known_url:  # a new URL: the function must know where Twilio will post
            function = _wanted_function(
                ctx, source, role_arns[names.function_role], wanted.config_key, version, url
            )
            now = aws_state.function_configuration(ctx.client("lambda"))
            again = planner.function_step(FUNCTION_NAME, now, function)
            if again.changes_something:
                apply.apply_function(ctx, again, now, function, source)
    report.function_arn, report.code_sha256 = function_arn, code_sha
    for name, settings in wanted.invoke_configs.items():
        step = step_for(planner.INVOKE_CONFIG, planner.invoke_config_name(name))
        done(alerts.apply_invoke_config(ctx, step, name, settings))
    if wanted.schedule is not None:
        group_step = step_for(planner.SCHEDULE_GROUP_STEP, wanted.schedule_group)
        done(schedules.apply_schedule_group(ctx, group_step, found.schedule_group))
        # Planned again with what AWS answered: the scheduler role's ARN.
        schedule = wanted_schedule(
            ctx, names, source.lambda_document, role_arns[names.scheduler_role]
        )
        assert schedule is not None  # wanted.schedule is
        existing = found.schedule if found.schedule_group is not None else None
        step = planner.schedule_step(RELEASE_SCHEDULE_ID, existing, schedule)
        done(schedules.apply_schedule(ctx, step, wanted.schedule_group, RELEASE_SCHEDULE, schedule))
    else:
        report.released_held = _remove_release_schedule(ctx, wanted, planned.values(), done)
    filter_step = step_for(planner.METRIC_FILTER, RULE_ERROR_LOG_GROUP)
    done(alerts.apply_metric_filter(ctx, filter_step, wanted.metric_filter))
    for name, settings in wanted.metric_alarms.items():
        done(alerts.apply_metric_alarm(ctx, step_for(planner.METRIC_ALARM, name), settings))
    target = rules.RuleTarget(
        FUNCTION_NAME, function_arn, role_arns[names.rule_error_role], RULE_ERROR_LOG_GROUP
    )
    if source.default_rule:
        payload = rules.rule_payload(rules.DEFAULT_SQL, target)
        step = planner.rule_step(rules.DEFAULT_RULE, found.rule, payload, found.rule_permission)
        done(rules.apply_rule(ctx, step, rules.DEFAULT_SQL, target, found.rule_permission))
    elif found.default_rule_recorded:
        rules.delete_rule(ctx, rules.DEFAULT_RULE)
        done(step_for(planner.RULE, rules.DEFAULT_RULE))
    stale = apply.apply_stale_objects(ctx, names.bucket, keep=wanted.config_key)
    if stale is not None:
        done(stale)
    return report


def _remove_release_schedule(
    ctx: AppContext, wanted: planner.Wanted, steps: Any, done: Callable[[Step], None]
) -> bool:
    """No quiet hours hold clicks now: remove the schedule, its group and the scheduler role
    the registry records, in that order, and once the schedule is gone ask the notifier to
    send what it still holds (no schedule will). True if the schedule went. A resource that
    turns out not to be iotbutton's is forgotten (the registry was wrong to name it) and the
    deploy stops, saying so."""
    removals = {
        (planner.SCHEDULE, RELEASE_SCHEDULE_ID): (
            SCHEDULE_KIND,
            lambda: schedules.delete_schedule(
                ctx, RELEASE_SCHEDULE_ID, then=lambda: schedules.release_held_now(ctx)
            ),
        ),
        (planner.SCHEDULE_GROUP_STEP, wanted.schedule_group): (
            SCHEDULE_GROUP_KIND,
            lambda: schedules.delete_schedule_group(ctx, wanted.schedule_group),
        ),
        (planner.ROLE, wanted.scheduler_role): (
            ROLE_KIND,
            lambda: apply.delete_role(ctx, wanted.scheduler_role),
        ),
    }
    released = False
    for step in steps:
        removal = removals.get((step.resource, step.name))
        if removal is None or step.action != "remove":
            continue
        kind, remove = removal
        try:
            remove()
        except NotOurs:
            ctx.namespace.remove(kind, step.name)
            raise
        released = released or step.resource == planner.SCHEDULE
        done(step)
    return released
