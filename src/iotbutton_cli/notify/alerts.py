"""Make and remove what tells the owner when an alarm fails: the owner's SNS topic and its
subscriptions, the functions' asynchronous invocation settings (retries, age, the on-failure
destination), the metric filter on the rule-error log group, and the CloudWatch alarms.

Each ``apply_*`` takes the planner's :class:`~iotbutton_cli.notify.plan.Step` and returns it as
applied; each resource is recorded in the registry the moment AWS confirms it, as in
:mod:`iotbutton_cli.notify.apply`. The invocation settings and the metric filter belong to a
function and a log group: they go when those go.
"""

from __future__ import annotations

from typing import Any

from iotbutton_cli.aws.calls import absent_is_fine
from iotbutton_cli.aws.errors import error_code, error_message
from iotbutton_cli.aws.retry import retry_while
from iotbutton_cli.aws.tags import aws_tags
from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import not_ours
from iotbutton_cli.notify import current as aws_state
from iotbutton_cli.notify.plan import Step
from iotbutton_cli.notify.resources import (
    LOG_GROUP_KIND,
    METRIC_ALARM_KIND,
    OWNER_TOPIC,
    RULE_ERROR_LOG_GROUP,
    TOPIC_KIND,
    owner_topic_arn,
    subscription_key,
)
from iotbutton_cli.provisioning import ownership

# --- SNS ---------------------------------------------------------------------------------------


def apply_topic(
    ctx: AppContext, step: Step, found: dict[str, Any] | None, owner: tuple[tuple[str, str], ...]
) -> Step:
    """The owner's topic (CreateTopic is idempotent for the same name and tags), subscribed to
    exactly notify.yaml's owner contacts."""
    sns = ctx.client("sns")
    arn = found["TopicArn"] if found else owner_topic_arn(ctx)
    if step.action == "create":
        ctx.namespace.put(TOPIC_KIND, OWNER_TOPIC, {"arn": arn, "pending": True})
        arn = sns.create_topic(Name=OWNER_TOPIC, Tags=aws_tags())["TopicArn"]
        found = {"TopicArn": arn, "subscriptions": {}}
    assert found is not None
    ctx.namespace.confirm(TOPIC_KIND, OWNER_TOPIC, {"arn": arn})
    have: dict[str, str] = found.get("subscriptions", {})
    wanted = {
        subscription_key(protocol, endpoint): (protocol, endpoint) for protocol, endpoint in owner
    }
    for key, (protocol, endpoint) in wanted.items():
        if key not in have:
            sns.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=endpoint)
    for key, subscription in have.items():
        # A subscription still pending confirmation has no ARN yet; AWS drops it in 3 days.
        if key not in wanted and subscription.startswith("arn:"):
            sns.unsubscribe(SubscriptionArn=subscription)
    ctx.namespace.update(TOPIC_KIND, OWNER_TOPIC, subscriptions=sorted(wanted))
    return step


def delete_topic(ctx: AppContext, name: str) -> None:
    """Only a topic with iotbutton's tag; its subscriptions go with it."""
    sns = ctx.client("sns")
    arn = owner_topic_arn(ctx) if name == OWNER_TOPIC else ctx.arn("sns", name)
    with absent_is_fine():
        if not ownership.tagged(aws_state.topic_tags(sns, arn)):
            raise not_ours("SNS topic", name, "it has no managed-by=iotbutton tag")
        sns.delete_topic(TopicArn=arn)
    ctx.namespace.remove(TOPIC_KIND, name)


# --- Lambda's asynchronous invocation ---------------------------------------------------------


def apply_invoke_config(ctx: AppContext, step: Step, function: str, config: dict[str, Any]) -> Step:
    """Put overwrites every setting at once. A destination the role cannot yet reach (IAM takes
    seconds to spread) is refused as invalid: retried while it is."""
    if step.changes_something:
        lam = ctx.client("lambda")
        retry_while(
            lambda: lam.put_function_event_invoke_config(FunctionName=function, **config),
            _destination_not_ready,
        )
    return step


def _destination_not_ready(exc: BaseException) -> bool:
    """Lambda checks that the execution role may invoke the destination: "The function
    execution role does not have permissions to call InvokeFunction on <arn>" (or, from some
    SDK paths, "The destination ARN ... is invalid") until the new role policy has spread."""
    message = error_message(exc).lower()
    return error_code(exc) == "InvalidParameterValueException" and (
        "destination" in message or "does not have permission" in message
    )


# --- CloudWatch --------------------------------------------------------------------------------


def apply_metric_filter(ctx: AppContext, step: Step, settings: dict[str, Any]) -> Step:
    """The rule-error log group's filter, recorded on the log group (it goes with it)."""
    if step.changes_something:
        ctx.client("logs").put_metric_filter(logGroupName=RULE_ERROR_LOG_GROUP, **settings)
        ctx.namespace.update(
            LOG_GROUP_KIND, RULE_ERROR_LOG_GROUP, metric_filter=settings["filterName"]
        )
    return step


def apply_metric_alarm(ctx: AppContext, step: Step, settings: dict[str, Any]) -> Step:
    """PutMetricAlarm creates or overwrites; tags only on create (later ones are ignored)."""
    if not step.changes_something:
        return step
    cloudwatch = ctx.client("cloudwatch")
    name = step.name
    arn = ctx.arn("cloudwatch", f"alarm:{name}")
    if step.action == "create":
        ctx.namespace.put(METRIC_ALARM_KIND, name, {"arn": arn, "pending": True})
    cloudwatch.put_metric_alarm(AlarmName=name, Tags=aws_tags(), **settings)
    ctx.namespace.confirm(METRIC_ALARM_KIND, name, {"arn": arn})
    return step


def delete_metric_alarm(ctx: AppContext, name: str) -> None:
    cloudwatch = ctx.client("cloudwatch")
    arn = ctx.arn("cloudwatch", f"alarm:{name}")
    with absent_is_fine():
        if not ownership.tagged(aws_state.metric_alarm_tags(cloudwatch, arn)):
            raise not_ours("CloudWatch alarm", name, "it has no managed-by=iotbutton tag")
        cloudwatch.delete_alarms(AlarmNames=[name])
    ctx.namespace.remove(METRIC_ALARM_KIND, name)
